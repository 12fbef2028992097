-- find-missing-rows: which of these subscription ids no longer exist.
--   $1 ids  bigint[]
SELECT r.id
FROM unnest($1::bigint[]) AS r(id)
WHERE NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.id = r.id)
