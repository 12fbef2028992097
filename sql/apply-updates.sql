-- apply-updates: apply one batch of update records and count them on their partitions, in one
-- statement (so in one transaction and one round trip), idempotently.
--   $1 ids            bigint[]   row ids (distinct)
--   $2 to_versions    integer[]  target version per row
--   $3 run_ids        bigint[]
--   $4 partition_ids  bigint[]
-- A row changes only while its version is below the record's target, so a replayed record
-- or a stale one arriving after a newer one changes nothing. What the batch really changed
-- is added to each partition's rows_applied in the same statement, so that count is exact
-- (a replay adds nothing). The partition rows are locked in id order first, so concurrent
-- batches cannot deadlock: every partition row the last UPDATE writes comes out of `locked`,
-- which locks in id order, before it is written.
-- Returns one row per (run, partition) with the number of rows this batch changed. Records
-- whose row no longer exists are looked for separately (find-missing-rows), and only when a
-- batch changed fewer rows than it holds: in a normal run that never happens, and the check
-- is 27% of this statement's cost when done for every batch (docs/benchmarks.md).
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
),
counts AS (
  SELECT c.run_id, c.partition_id, count(*)::bigint AS n
  FROM changed c
  GROUP BY c.run_id, c.partition_id
),
locked AS (
  SELECT p.id FROM partitions p
  WHERE p.id IN (SELECT partition_id FROM counts)
  ORDER BY p.id
  FOR NO KEY UPDATE
),
counted AS (
  UPDATE partitions p SET rows_applied = p.rows_applied + t.n
  FROM (SELECT partition_id, sum(n)::bigint AS n FROM counts GROUP BY partition_id) t, locked l
  WHERE p.id = t.partition_id AND l.id = p.id
)
SELECT run_id, partition_id, n FROM counts
