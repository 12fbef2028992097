/**
 * A backfill: every order whose `total_cents` is still NULL gets the sum of its lines. No
 * groups (the whole table is one), a uuid key, and an integer partition column. Its tables
 * are created by test/support/fixtures.ts (tests) and bench/order-totals.ts (benchmark).
 */
import { defineMigration } from 'tranche';

export default defineMigration({
  name: 'order-totals',
  table: 'orders',
  key: 'id',
  partitionBy: 'placed_day',
  eligible: 'total_cents IS NULL',
  set: { total_cents: '(SELECT coalesce(sum(l.cents), 0) FROM order_lines l WHERE l.order_id = t.id)' },
  schedule: null,
  defaults: { partitionSize: 5000 },
});
