-- remaining-eligible: does any row of a run's partitions still wait for its update?
--   $1 run_id  bigint
-- A partition whose rows_applied reached its row_count is done: rows_applied is added to in
-- the transaction that changes the rows, counts each row once (a row changes only while below
-- its target, so replays add nothing) and only rows of that partition's range, so every row
-- counted at identification has been changed. Only the other partitions (rows deleted since
-- identification, a rerun, an odd external write) are probed, and EXISTS stops at the first
-- eligible row. Probing every partition made the check scan the whole range of every
-- partition, through the heap once the updates had cleared the visibility map: 1.1-1.5 s at
-- 1,000,000 rows and minutes at 10,000,000 (docs/benchmarks.md).
SELECT EXISTS (
  SELECT 1
  FROM partitions p
  WHERE p.run_id = $1
    AND p.rows_applied < p.row_count
    AND EXISTS (
      SELECT 1 FROM subscriptions s
      WHERE s.product_key = p.product_key
        AND (s.created_date, s.id) >= (p.min_created_date, p.min_id)
        AND (s.created_date, s.id) <= (p.max_created_date, p.max_id)
        AND s.product_version < p.product_version
    )
) AS remaining
