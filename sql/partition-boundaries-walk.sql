-- partition-boundaries-walk: the partitions of one product's eligible subscriptions, in ONE recursive statement.
-- (The previous implementation; kept for comparison in bench/identify.ts and as a differential
-- check in the tests. Identification uses partition-boundaries.sql, a single pass.)
--   $1 product_key     text     the product
--   $2 target_version  integer  rows with product_version < $2 are eligible
--   $3 partition_size  integer  rows per partition (the last one may hold fewer)
--   $4 max_partitions  integer  cap: the last partition runs to the end once it is reached
-- Returns one row per partition, in (created_date, id) order:
--   seq, min_created_date, min_id, max_created_date, max_id, row_count
-- Bounds are inclusive and taken from real rows. It walks the index
-- subscriptions (product_key, created_date, id) INCLUDE (product_version) from boundary
-- to boundary: each step is one probe that skips $3 eligible entries (OFFSET $3 - 1 LIMIT 2
-- yields this partition's last row and the next partition's first row). Ties on
-- created_date are broken by id, so the cover is exact however many rows share a timestamp.
WITH RECURSIVE walk (seq, lo_date, lo_id, dates, ids) AS (
  SELECT 1, f.created_date, f.id, probe.dates, probe.ids
  FROM (
    SELECT s.created_date, s.id
    FROM subscriptions s
    WHERE s.product_key = $1 AND s.product_version < $2
    ORDER BY s.created_date, s.id
    LIMIT 1
  ) f
  CROSS JOIN LATERAL (
    SELECT array_agg(q.created_date ORDER BY q.created_date, q.id) AS dates,
           array_agg(q.id ORDER BY q.created_date, q.id) AS ids
    FROM (
      SELECT s.created_date, s.id
      FROM subscriptions s
      WHERE s.product_key = $1 AND s.product_version < $2
        AND (s.created_date, s.id) >= (f.created_date, f.id)
      ORDER BY s.created_date, s.id
      OFFSET $3 - 1 LIMIT 2
    ) q
  ) probe
  UNION ALL
  SELECT w.seq + 1, w.dates[2], w.ids[2], probe.dates, probe.ids
  FROM walk w
  CROSS JOIN LATERAL (
    SELECT array_agg(q.created_date ORDER BY q.created_date, q.id) AS dates,
           array_agg(q.id ORDER BY q.created_date, q.id) AS ids
    FROM (
      SELECT s.created_date, s.id
      FROM subscriptions s
      WHERE s.product_key = $1 AND s.product_version < $2
        AND (s.created_date, s.id) >= (w.dates[2], w.ids[2])
      ORDER BY s.created_date, s.id
      OFFSET $3 - 1 LIMIT 2
    ) q
  ) probe
  WHERE w.ids[2] IS NOT NULL AND w.seq < $4
),
last_row AS (
  SELECT s.created_date, s.id
  FROM subscriptions s
  WHERE s.product_key = $1 AND s.product_version < $2
  ORDER BY s.created_date DESC, s.id DESC
  LIMIT 1
),
-- A probe that found both rows ends a full partition. One that found only the first row
-- means exactly $3 rows were left: a full last partition, nothing to count. Otherwise
-- (fewer rows left, or the cap reached) the partition runs to the product's last row and is
-- counted, from its lower bound only: no upper bound to compare on every entry.
bounded AS (
  SELECT w.seq, w.lo_date, w.lo_id,
         ((w.ids[2] IS NOT NULL AND w.seq < $4) OR (w.ids[1] IS NOT NULL AND w.ids[2] IS NULL)) AS full_size,
         w.dates[1] AS end_date, w.ids[1] AS end_id
  FROM walk w
)
SELECT b.seq,
       b.lo_date AS min_created_date, b.lo_id AS min_id,
       CASE WHEN b.full_size THEN b.end_date ELSE l.created_date END AS max_created_date,
       CASE WHEN b.full_size THEN b.end_id ELSE l.id END AS max_id,
       CASE WHEN b.full_size THEN $3::bigint ELSE (
         SELECT count(*)
         FROM subscriptions s
         WHERE s.product_key = $1 AND s.product_version < $2
           AND (s.created_date, s.id) >= (b.lo_date, b.lo_id)
       ) END AS row_count
FROM bounded b
CROSS JOIN last_row l
ORDER BY b.seq
