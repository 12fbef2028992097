/** The e2e data set (schema bench_e2e, seeded by bench/e2e.ts), shared by the benchmarks that use it. */

/**
 * Makes every subscription of the e2e data set eligible again (version 1) and rewrites the
 * table, so that each measurement starts from the same compact table, not from the bloat the
 * previous full-table update left behind.
 */
export async function resetSubscriptions(db: { query(sql: string): Promise<unknown> }): Promise<void> {
  await db.query('UPDATE subscriptions SET product_version = 1 WHERE product_version <> 1');
  await db.query('VACUUM (FULL, ANALYZE) subscriptions');
  await db.query('VACUUM (ANALYZE) subscriptions');
}
