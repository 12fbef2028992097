/**
 * What a chaos run migrates: a definition, the tables it needs (created by the run, as a user
 * would before pointing tranche at them) and the SQL the invariant checks read, written here
 * independently of the statements tranche generates from the definition.
 */
import type { Db } from '../../src/db.ts';
import { FIXTURE_DEFINITION, FIXTURE_MIGRATION, seed } from '../../src/seed.ts';
import { createOrders, ORDER_TOTALS } from '../support/fixtures.ts';

export interface ChaosWorkload {
  /** The definition's file and migration name. */
  definition: string;
  migration: string;
  /** Creates the tables and rows in the schema on the search path, `eligible` of them eligible. */
  prepare(db: Db, eligible: number, seed: number): Promise<void>;
  /**
   * The eligible rows, as `g` (the group key as text, '' without groups), `pos` (the partition
   * column, in its own type) and `k` (the key, in its own type).
   */
  eligibleRows: string;
  /** Rows that have not reached their target: 0 after a completed run. */
  notDone: string;
  /** One value for the migrated columns of the whole table: equal again after an undo. */
  state: string;
}

export const WORKLOADS: Record<string, ChaosWorkload> = {
  // The reference: ten products, each with a new version; uuid-free, bigint key, timestamp position.
  [FIXTURE_MIGRATION]: {
    definition: FIXTURE_DEFINITION,
    migration: FIXTURE_MIGRATION,
    prepare: async (db, eligible, randomSeed) => {
      await seed(db, { rows: eligible, groups: 10, changed: 10, reset: true, randomSeed });
    },
    eligibleRows: `SELECT s.product_key::text AS g, s.created_date AS pos, s.id AS k
                   FROM subscriptions s JOIN products p USING (product_key) WHERE s.product_version < p.product_version`,
    notDone: `SELECT count(*)::int AS n FROM subscriptions s JOIN products p USING (product_key) WHERE s.product_version < p.product_version`,
    state: `SELECT md5(string_agg(id::text || ':' || product_version, ',' ORDER BY id)) AS v FROM subscriptions`,
  },
  // A backfill without groups: uuid key, an integer position with a third of the rows on one value.
  'order-totals': {
    definition: ORDER_TOTALS,
    migration: 'order-totals',
    prepare: (db, eligible) => createOrders(db, { orders: Math.round(eligible * 1.25), eligible }),
    eligibleRows: `SELECT ''::text AS g, placed_day AS pos, id AS k FROM orders WHERE total_cents IS NULL`,
    notDone: `SELECT count(*)::int AS n FROM orders o
              WHERE o.total_cents IS DISTINCT FROM -1
                AND o.total_cents IS DISTINCT FROM (SELECT coalesce(sum(cents), 0) FROM order_lines l WHERE l.order_id = o.id)`,
    state: `SELECT md5(string_agg(id::text || ':' || coalesce(total_cents::text, '-'), ',' ORDER BY id)) AS v FROM orders`,
  },
};
