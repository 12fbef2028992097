/**
 * Generates a data set for demos, tests and benchmarks, set-based in Postgres
 * (a million rows in seconds): `products` products, `changed` of them with a new version,
 * and `subscriptions` subscriptions spread over them.
 *
 * `created_date` is realistic: denser in recent years (a quadratic skew over five years),
 * microsecond precision, and a share of rows on exactly the same instant (batch imports),
 * which is what makes partitioning by date alone unsafe.
 *
 * @example
 *   await seed(db, { subscriptions: 200_000, products: 20, changed: 5, reset: true });
 */
import { fileURLToPath } from 'node:url';
import { type Db, inTransaction } from './db.ts';
import { UserError } from './errors.ts';

/** The example definition that migrates this fixture, and its name. */
export const FIXTURE_DEFINITION = fileURLToPath(new URL('../examples/subscription-version.ts', import.meta.url));
export const FIXTURE_MIGRATION = 'subscription-version';

/** One line on what a seed made, for the demo and `tranche seed`. */
export function describeSeed(result: SeedResult, seconds?: number): string {
  const fmt = (n: number) => n.toLocaleString('en-US');
  return (
    `seeded ${fmt(result.rows)} subscriptions over ${result.groups} products${seconds === undefined ? '' : ` in ${seconds.toFixed(1)} s`}; ` +
    `${result.changedGroups.length} products have a new version, ${fmt(result.eligible)} subscriptions to migrate`
  );
}

/** The SQL a user can run to check that no eligible subscription is left. */
export function eligibleCheckSql(schema: string): string {
  return `SELECT count(*) FROM ${schema}.subscriptions s JOIN ${schema}.products p USING (product_key) WHERE s.product_version < p.product_version`;
}

export interface SeedOptions {
  /** Subscriptions to create. */
  rows: number;
  /** Products to create. */
  groups: number;
  /** Products that get a new version. */
  changed: number;
  /** Delete existing products, subscriptions and runs first. */
  reset?: boolean;
  /** Fraction of rows that share one of a few import instants (0..1). */
  tieShare?: number;
  /** Makes the data set reproducible. */
  randomSeed?: number;
  /**
   * Drop the secondary indexes of `subscriptions` before the bulk insert and rebuild them
   * from their own definitions afterwards (much faster for millions of rows). The rebuild
   * runs after the commit, so a failure in between leaves the table without them.
   */
  deferIndexes?: boolean;
  /**
   * Where rows lie. `shuffled` (default): `created_date` is drawn independently of the row's
   * id and place in the table, so the rows of one partition are spread over the whole table,
   * the worst case for updating them by id. `chronological`: rows are inserted in
   * `created_date` order, so ids and table order follow it, as in a table filled over time.
   */
  layout?: SeedLayout;
}

export type SeedLayout = 'shuffled' | 'chronological';

export interface SeedResult {
  /** Products. */
  groups: number;
  /** The products with a new version. */
  changedGroups: string[];
  /** Subscriptions. */
  rows: number;
  eligible: number;
}

export function productKey(n: number): string {
  return `product-${String(n).padStart(3, '0')}`;
}

export async function seed(db: Db, options: SeedOptions): Promise<SeedResult> {
  const { rows: subscriptions, groups: products, changed } = options;
  if (!Number.isSafeInteger(subscriptions) || subscriptions < 0) throw new UserError('--rows must be a whole number, 0 or more');
  if (!Number.isSafeInteger(products) || products < 1) throw new UserError('--groups must be a whole number, 1 or more');
  if (!Number.isSafeInteger(changed) || changed < 0 || changed > products) {
    throw new UserError(`--changed must be a whole number from 0 to --groups (${products})`);
  }
  const tieShare = options.tieShare ?? 0.15;
  let deferred: { indexname: string; indexdef: string }[] = [];
  await inTransaction(db.pool, async (client) => {
    if (options.reset) {
      await client.query(
        'TRUNCATE subscriptions, products, partition_checks, applied_batches, applied_rows, run_events, partitions, run_groups, group_progress, scheduled_tasks, cron_slots, dead_letters, migration_runs RESTART IDENTITY CASCADE',
      );
    }
    if (options.deferIndexes) {
      deferred = await client.query<{ indexname: string; indexdef: string }>(
        `SELECT i.indexname, i.indexdef FROM pg_indexes i
         WHERE i.schemaname = current_schema() AND i.tablename = 'subscriptions'
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname AND c.connamespace = current_schema()::regnamespace)`,
      ).then((r) => r.rows);
      for (const index of deferred) await client.query(`DROP INDEX "${index.indexname.replaceAll('"', '""')}"`);
    }
    await client.query('SELECT setseed($1)', [((options.randomSeed ?? 42) % 1000) / 1000]);
    const keys = Array.from({ length: products }, (_, i) => productKey(i + 1));
    // Changed products are spread over the list: every k-th one.
    const changedKeys = new Set(
      Array.from({ length: changed }, (_, i) => keys[Math.floor((i * products) / Math.max(changed, 1))]!),
    );
    await client.query(
      `INSERT INTO products (product_key, product_version, name)
       SELECT k, v, 'Product ' || k FROM unnest($1::text[], $2::integer[]) AS t(k, v)
       ON CONFLICT (product_key) DO UPDATE SET product_version = EXCLUDED.product_version, updated_at = now()`,
      [keys, keys.map((k) => (changedKeys.has(k) ? 2 : 1))],
    );
    // Every product was last migrated to version 1: identification then skips the unchanged
    // ones without reading their subscriptions.
    await client.query(
      `INSERT INTO group_progress (migration, group_key, target) SELECT $1, k, '1' FROM unnest($2::text[]) AS t(k)
       ON CONFLICT (migration, group_key) DO UPDATE SET target = '1', updated_at = now()`,
      [FIXTURE_MIGRATION, keys],
    );
    const rowsSql = `SELECT ($2::text[])[1 + (g % $3)] AS product_key,
              CASE WHEN random() < $4
                THEN timestamptz '2024-03-01 00:00:00.000001+00' + (g % 3) * interval '1 day'
                ELSE now() - power(random(), 2) * interval '5 years'
              END AS created_date,
              'cust-' || g AS customer_ref
       FROM generate_series(1, $1::bigint) AS g`;
    // Identity values are drawn in the order the rows reach the insert.
    const order = options.layout === 'chronological' ? 'ORDER BY created_date' : '';
    await client.query(
      `INSERT INTO subscriptions (product_key, product_version, created_date, customer_ref)
       SELECT product_key, 1, created_date, customer_ref FROM (${rowsSql}) AS r ${order}`,
      [subscriptions, keys, products, tieShare],
    );
  });
  if (deferred.length > 0) {
    const builder = await db.pool.connect();
    try {
      await builder.query("SET maintenance_work_mem = '512MB'");
      for (const index of deferred) await builder.query(index.indexdef);
    } finally {
      await builder.query('RESET maintenance_work_mem').catch(() => {});
      builder.release();
    }
  }
  // Index-only scans need the visibility map; planner needs statistics.
  await db.pool.query('VACUUM (ANALYZE) subscriptions');
  await db.pool.query('ANALYZE products');
  const { rows } = await db.pool.query<{ total: number; eligible: number }>(
    `SELECT count(*) AS total,
            count(*) FILTER (WHERE s.product_version < p.product_version) AS eligible
     FROM subscriptions s JOIN products p USING (product_key)`,
  );
  const changedProducts = await db.pool.query<{ product_key: string }>(
    `SELECT p.product_key FROM products p
     WHERE NOT EXISTS (SELECT 1 FROM group_progress g WHERE g.migration = $1 AND g.group_key = p.product_key AND g.target = p.product_version::text)
     ORDER BY 1`,
    [FIXTURE_MIGRATION],
  );
  return {
    groups: products,
    changedGroups: changedProducts.rows.map((r) => r.product_key),
    rows: rows[0]?.total ?? 0,
    eligible: rows[0]?.eligible ?? 0,
  };
}

/** Eligible subscriptions left anywhere: the check that a migration left nothing behind. */
export async function countEligible(db: Db): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `SELECT count(*) AS n FROM subscriptions s JOIN products p USING (product_key)
     WHERE s.product_version < p.product_version`,
  );
  return rows[0]?.n ?? 0;
}

/**
 * The layout of the subscriptions table (SeedOptions.layout): chronological when no row's
 * created_date is earlier than that of the row before it by id, shuffled otherwise. Reads
 * and sorts the whole table.
 */
export async function seededLayout(db: Db): Promise<SeedLayout> {
  const { rows } = await db.pool.query<{ back: number }>(
    `SELECT count(*) FILTER (WHERE back)::int AS back
     FROM (SELECT created_date < lag(created_date) OVER (ORDER BY id) AS back FROM subscriptions) t`,
  );
  return rows[0]?.back === 0 ? 'chronological' : 'shuffled';
}
