-- next-page: the next keyset page of a partition's eligible rows.
--   $1 product_key     text
--   $2 target_version  integer      rows with product_version < $2 are eligible
--   $3 after_date      timestamptz  cursor: the page starts strictly after (after_date, after_id)
--   $4 after_id        bigint
--   $5 max_date        timestamptz  the partition's inclusive upper bound
--   $6 max_id          bigint
--   $7 page_size       integer
-- The row comparisons become index bounds on (product_key, created_date, id).
SELECT s.id, s.created_date, s.product_version
FROM subscriptions s
WHERE s.product_key = $1
  AND (s.created_date, s.id) > ($3::timestamptz, $4::bigint)
  AND (s.created_date, s.id) <= ($5::timestamptz, $6::bigint)
  AND s.product_version < $2
ORDER BY s.created_date, s.id
LIMIT $7
