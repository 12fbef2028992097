-- apply-updates: apply one batch of update records in one statement, idempotently.
--   $1 ids            bigint[]   row ids (distinct)
--   $2 to_versions    integer[]  target version per row
--   $3 run_ids        bigint[]
--   $4 partition_ids  bigint[]
-- A row changes only while its version is below the record's target, so a replayed record
-- or a stale one arriving after a newer one changes nothing. Returns one row per
-- (run, partition) with the number of rows this batch really changed. Records whose row no
-- longer exists are looked for separately (find-missing-rows), and only when a batch changed
-- fewer rows than it holds: in a normal run that never happens, and the check is 27% of
-- this statement's cost when done for every batch (docs/benchmarks.md).
WITH input AS (
  SELECT * FROM unnest($1::bigint[], $2::integer[], $3::bigint[], $4::bigint[])
    AS r(id, to_version, run_id, partition_id)
),
changed AS (
  UPDATE subscriptions s
  SET product_version = r.to_version, updated_at = now()
  FROM input r
  WHERE s.id = r.id AND s.product_version < r.to_version
  RETURNING r.run_id, r.partition_id
)
SELECT c.run_id, c.partition_id, count(*)::bigint AS n
FROM changed c
GROUP BY c.run_id, c.partition_id
