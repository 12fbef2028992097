-- changed-products: the products a new run covers, with their target version.
--   $1 product_filter  text[]  only these products, or NULL for all
--   $2 skip_run_ids    bigint[] products already in these (active) runs are left out
-- A product is a candidate when its version is above the version its subscriptions were
-- last migrated to (migrated_version; NULL = unknown) and it has an eligible subscription.
SELECT p.product_key, p.product_version
FROM products p
WHERE ($1::text[] IS NULL OR p.product_key = ANY ($1::text[]))
  AND (p.migrated_version IS NULL OR p.migrated_version < p.product_version)
  AND NOT EXISTS (
    SELECT 1 FROM run_products rp
    WHERE rp.run_id = ANY (coalesce($2::bigint[], '{}')) AND rp.product_key = p.product_key
  )
  AND EXISTS (
    SELECT 1 FROM subscriptions s
    WHERE s.product_key = p.product_key AND s.product_version < p.product_version
  )
ORDER BY p.product_key
