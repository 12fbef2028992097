-- partition-boundaries: the partitions of one product's eligible subscriptions, in ONE statement.
--   $1 product_key     text     the product
--   $2 target_version  integer  rows with product_version < $2 are eligible
--   $3 partition_size  integer  rows per partition (the last one may hold fewer)
--   $4 max_partitions  integer  cap: the last partition runs to the end once it is reached
-- Returns one row per partition, in (created_date, id) order:
--   seq, min_created_date, min_id, max_created_date, max_id, row_count
-- Bounds are inclusive and taken from real rows. The work is done by the function
-- tranche_partition_boundaries (migrations/0002_partition_boundaries_function.sql): one
-- cursor reads the index subscriptions (product_key, created_date, id) INCLUDE
-- (product_version) once, stepping over each partition's entries with MOVE, so the cost is
-- one index-only pass over the product's eligible entries, a short last partition included.
-- (sql/partition-boundaries-walk.sql is the recursive-CTE form: the same result, each probe
-- descending the index again and a short last partition read twice.)
SELECT b.seq, b.min_created_date, b.min_id, b.max_created_date, b.max_id, b.row_count
FROM tranche_partition_boundaries($1::text, $2::integer, $3::integer, $4::integer) AS b
ORDER BY b.seq
