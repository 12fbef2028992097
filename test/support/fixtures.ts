/**
 * The tables of the example definitions other than the reference one (examples/), created
 * in a test's own schema: tranche never creates a user's table, so the tests do, as a user
 * would before pointing a definition at it.
 */
import { fileURLToPath } from 'node:url';
import type { Db } from '../../src/db.ts';

export const ORDER_TOTALS = fileURLToPath(new URL('../../examples/order-totals.ts', import.meta.url));
export const SUBSCRIPTION_WITH_REF = fileURLToPath(new URL('./definitions/subscription-with-ref.ts', import.meta.url));
export const ACCOUNT_POLICY = fileURLToPath(new URL('../../examples/account-policy.ts', import.meta.url));

/**
 * `orders` keyed by uuid, partitioned by an integer day with heavy ties (a third of the
 * orders on one day), `total_cents` NULL for `eligible` of them, each with 1-3 lines.
 */
export async function createOrders(db: Db, options: { orders: number; eligible: number }): Promise<void> {
  await db.pool.query(`
    CREATE TABLE orders (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      placed_day integer NOT NULL,
      total_cents bigint
    );
    CREATE TABLE order_lines (order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE, cents integer NOT NULL);
    CREATE INDEX order_lines_order ON order_lines (order_id);
    CREATE INDEX orders_day_id ON orders (placed_day, id);`);
  await db.pool.query(
    `INSERT INTO orders (placed_day, total_cents)
     SELECT CASE WHEN g % 3 = 0 THEN 20000 ELSE 19000 + (g::bigint * 7919) % 1000 END,
            CASE WHEN g <= $2 THEN NULL ELSE -1 END
     FROM generate_series(1, $1::int) AS g`,
    [options.orders, options.eligible],
  );
  await db.pool.query(
    `INSERT INTO order_lines (order_id, cents)
     SELECT o.id, 100 * l FROM orders o CROSS JOIN LATERAL generate_series(1, 1 + abs(hashtext(o.id::text)) % 3) AS l`,
  );
  await db.pool.query('ANALYZE orders; ANALYZE order_lines');
}

/** Orders whose total is wrong: NULL, or not the sum of their lines (the -1 of untouched rows excluded). */
export async function wrongTotals(db: Db): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM orders o
     WHERE o.total_cents IS DISTINCT FROM -1
       AND o.total_cents IS DISTINCT FROM (SELECT coalesce(sum(cents), 0) FROM order_lines l WHERE l.order_id = o.id)`,
  );
  return rows[0]!.n;
}

/**
 * "Accounts" with a text key "Account Code" and a timestamp "Signed Up" (many ties), grouped
 * by "Region", whose target is "Region Policies"."Policy Version". By default three regions,
 * 'eu "west"' (target 3), 'us-east' (2) and 'ap' (1, nothing to do); with `regions: n`, n
 * regions 'zone "01"', 'zone "02"', … all with target 2, the accounts spread evenly over them.
 */
export async function createAccounts(db: Db, options: { accounts: number; regions?: number }): Promise<void> {
  const regions: [string, number][] = options.regions === undefined
    ? [['eu "west"', 3], ['us-east', 2], ['ap', 1]]
    : Array.from({ length: options.regions }, (_, i) => [`zone "${String(i + 1).padStart(2, '0')}"`, 2]);
  await db.pool.query(`
    CREATE TABLE "Region Policies" ("Region" text PRIMARY KEY, "Policy Version" integer NOT NULL);
    CREATE TABLE "Accounts" (
      "Account Code" text PRIMARY KEY,
      "Region" text NOT NULL,
      "Signed Up" timestamptz NOT NULL,
      "Policy Version" integer NOT NULL,
      "Previous Version" integer
    );
    CREATE INDEX "Accounts by region" ON "Accounts" ("Region", "Signed Up", "Account Code");`);
  const names = regions.map(([r]) => r);
  await db.pool.query(`INSERT INTO "Region Policies" SELECT * FROM unnest($1::text[], $2::int[])`, [names, regions.map(([, v]) => v)]);
  await db.pool.query(
    `INSERT INTO "Accounts" ("Account Code", "Region", "Signed Up", "Policy Version")
     SELECT 'acct ''' || g || ' "x"', ($2::text[])[1 + g % cardinality($2::text[])],
            timestamptz '2025-01-01 00:00:00.000001+00' + (g % 5) * interval '1 microsecond', 1
     FROM generate_series(1, $1::int) AS g`,
    [options.accounts, names],
  );
  await db.pool.query('ANALYZE "Accounts"');
}

/** The reference definition without `undo` (test/support/definitions/subscription-no-undo.ts). */
export const SUBSCRIPTION_NO_UNDO = fileURLToPath(new URL('./definitions/subscription-no-undo.ts', import.meta.url));
