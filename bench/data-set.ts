/** The e2e data set (schema bench_e2e, seeded by bench/e2e.ts), shared by the benchmarks that use it. */

/**
 * Makes every subscription of the e2e data set eligible again (version 1, no group progress) and rewrites the
 * table in id order, so that each measurement starts from the table as it was seeded: compact
 * (not the bloat the previous full-table update left behind) and in the same physical order.
 *
 * The order is why this is a CLUSTER and not a VACUUM FULL. VACUUM FULL keeps the order the
 * rows lie in, and an update moves every row it changes to where it put the new version: so
 * after a VACUUM FULL the table held its rows in the order the previous measurement updated
 * them. After the keyset loop or a tranche run that order groups each partition's rows
 * together, which made the next tranche run cheaper and the next bulk UPDATE dearer
 * (docs/benchmarks.md, "The reset that favoured tranche").
 */
export async function resetSubscriptions(db: { query(sql: string): Promise<unknown> }): Promise<void> {
  await db.query('UPDATE subscriptions SET product_version = 1 WHERE product_version <> 1');
  // No product was migrated: identification looks at every one again.
  await db.query('DELETE FROM group_progress');
  await db.query('CLUSTER subscriptions USING subscriptions_pkey');
  // CLUSTER leaves the visibility map empty: VACUUM sets it, for the index-only scans.
  await db.query('VACUUM (ANALYZE) subscriptions');
}
