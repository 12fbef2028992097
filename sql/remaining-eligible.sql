-- remaining-eligible: does any row of a run's partitions still wait for its update?
--   $1 run_id  bigint
-- Every partition is probed (counters cannot prove a range is done: after a crash a page's
-- rows may be applied before its offset was recorded); EXISTS stops at the first eligible row.
SELECT EXISTS (
  SELECT 1
  FROM partitions p
  WHERE p.run_id = $1
    AND EXISTS (
      SELECT 1 FROM subscriptions s
      WHERE s.product_key = p.product_key
        AND (s.created_date, s.id) >= (p.min_created_date, p.min_id)
        AND (s.created_date, s.id) <= (p.max_created_date, p.max_id)
        AND s.product_version < p.product_version
    )
) AS remaining
