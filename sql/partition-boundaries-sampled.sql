-- partition-boundaries-sampled: exact-cover, approximate-size partitions of several products'
-- eligible subscriptions, from ONE page sample of the table, in ONE statement.
--   $1 product_keys     text[]     the products
--   $2 target_versions  integer[]  per product: rows with product_version below it are eligible
--   $3 partition_size   integer    target rows per partition
--   $4 max_partitions   integer    cap on partitions per product
--   $5 sample_percent   float4     share of the table's pages read (TABLESAMPLE SYSTEM), 0 < p <= 100
-- Returns one row per partition, in (product_key, created_date, id) order:
--   product_key, seq, min_created_date, min_id, max_created_date, max_id,
--   sampled (rows of the sample inside the partition), row_count (an ESTIMATE: sampled / fraction)
-- How: within each product, every k-th sampled row (k = partition_size * fraction, grown to
-- respect the cap) starts a partition. Sampled rows are real eligible rows, so every lower
-- bound is a real row; each upper bound is the eligible row just before the next lower bound,
-- found with one backward index probe, and the last one is the product's last eligible row.
-- Consecutive partitions therefore touch with nothing between them: the cover is exact
-- whatever the sample; only the sizes are approximate.
WITH target AS (
  SELECT t.product_key, t.target_version
  FROM unnest($1::text[], $2::integer[]) AS t(product_key, target_version)
),
sample AS (
  SELECT s.product_key, s.created_date, s.id,
         row_number() OVER (PARTITION BY s.product_key ORDER BY s.created_date, s.id) AS rn,
         count(*) OVER (PARTITION BY s.product_key) AS n
  FROM subscriptions s TABLESAMPLE SYSTEM ($5)
  JOIN target t ON t.product_key = s.product_key AND s.product_version < t.target_version
),
step AS (
  SELECT t.product_key, t.target_version,
         greatest(1, round($3 * $5 / 100.0)::bigint, ceil(coalesce(max(sm.n), 0)::numeric / $4)::bigint) AS k,
         coalesce(max(sm.n), 0) AS n
  FROM target t LEFT JOIN sample sm ON sm.product_key = t.product_key
  GROUP BY t.product_key, t.target_version
),
ends AS (
  SELECT st.product_key, st.target_version, st.k, st.n,
         f.created_date AS first_date, f.id AS first_id, l.created_date AS last_date, l.id AS last_id
  FROM step st
  CROSS JOIN LATERAL (
    SELECT s.created_date, s.id FROM subscriptions s
    WHERE s.product_key = st.product_key AND s.product_version < st.target_version
    ORDER BY s.created_date, s.id LIMIT 1
  ) f
  CROSS JOIN LATERAL (
    SELECT s.created_date, s.id FROM subscriptions s
    WHERE s.product_key = st.product_key AND s.product_version < st.target_version
    ORDER BY s.created_date DESC, s.id DESC LIMIT 1
  ) l
),
-- Lower bounds: the first eligible row, then sampled rows k + 1, 2k + 1, ... (so each full
-- partition holds k sampled rows), at most cap - 1 of them.
starts AS (
  SELECT e.product_key, 0::bigint AS rn, e.first_date AS created_date, e.first_id AS id FROM ends e
  UNION ALL
  SELECT sm.product_key, sm.rn, sm.created_date, sm.id
  FROM sample sm JOIN ends e ON e.product_key = sm.product_key
  WHERE sm.rn > 1 AND (sm.rn - 1) % e.k = 0 AND sm.rn - 1 <= ($4 - 1) * e.k
    AND (sm.created_date, sm.id) > (e.first_date, e.first_id)
),
numbered AS (
  SELECT st.product_key, st.rn, st.created_date, st.id,
         row_number() OVER w AS seq,
         lead(st.created_date) OVER w AS next_date,
         lead(st.id) OVER w AS next_id,
         lead(st.rn) OVER w AS next_rn
  FROM starts st
  WINDOW w AS (PARTITION BY st.product_key ORDER BY st.created_date, st.id)
)
SELECT nb.product_key, nb.seq::integer AS seq,
       nb.created_date AS min_created_date, nb.id AS min_id,
       coalesce(prev.created_date, e.last_date) AS max_created_date,
       coalesce(prev.id, e.last_id) AS max_id,
       coalesce(nb.next_rn, e.n + 1) - greatest(nb.rn, 1) AS sampled,
       round((coalesce(nb.next_rn, e.n + 1) - greatest(nb.rn, 1)) * 100.0 / $5)::bigint AS row_count
FROM numbered nb
JOIN ends e ON e.product_key = nb.product_key
LEFT JOIN LATERAL (
  SELECT s.created_date, s.id
  FROM subscriptions s
  WHERE nb.next_id IS NOT NULL
    AND s.product_key = nb.product_key AND s.product_version < e.target_version
    AND (s.created_date, s.id) < (nb.next_date, nb.next_id)
  ORDER BY s.created_date DESC, s.id DESC
  LIMIT 1
) prev ON true
ORDER BY nb.product_key, nb.seq
