-- partition-boundaries: the partitions of one product's eligible subscriptions, in ONE statement.
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
bounded AS (
  SELECT w.seq, w.lo_date, w.lo_id,
         (w.ids[2] IS NOT NULL AND w.seq < $4) AS full_size,
         CASE WHEN w.ids[2] IS NOT NULL AND w.seq < $4 THEN w.dates[1] ELSE l.created_date END AS hi_date,
         CASE WHEN w.ids[2] IS NOT NULL AND w.seq < $4 THEN w.ids[1] ELSE l.id END AS hi_id
  FROM walk w CROSS JOIN last_row l
)
SELECT b.seq,
       b.lo_date AS min_created_date, b.lo_id AS min_id,
       b.hi_date AS max_created_date, b.hi_id AS max_id,
       CASE WHEN b.full_size THEN $3::bigint ELSE (
         SELECT count(*)
         FROM subscriptions s
         WHERE s.product_key = $1 AND s.product_version < $2
           AND (s.created_date, s.id) >= (b.lo_date, b.lo_id)
           AND (s.created_date, s.id) <= (b.hi_date, b.hi_id)
       ) END AS row_count
FROM bounded b
ORDER BY b.seq
