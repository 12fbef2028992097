import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getRunStatus, tryCompleteRun } from '../../src/runs/run-store.ts';
import { countEligible, seed, FIXTURE_MIGRATION } from '../../src/seed.ts';
import { createTestEnv, testDefinitions, type TestEnv } from '../support/env.ts';
import { startTestRun } from '../support/runs.ts';

interface PlanNode {
  'Relation Name'?: string;
  'Actual Loops'?: number;
  Plans?: PlanNode[];
}

/** Times the subscriptions table was probed by one execution of remaining-eligible. */
async function subscriptionProbes(env: TestEnv, runId: number): Promise<number> {
  const { statements } = (await testDefinitions(env)).require(FIXTURE_MIGRATION);
  const { rows } = await env.db.pool.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${statements.remaining}`, [runId]);
  let loops = 0;
  const walk = (node: PlanNode) => {
    if (node['Relation Name'] === 'subscriptions') loops += node['Actual Loops'] ?? 0;
    for (const child of node.Plans ?? []) walk(child);
  };
  walk(rows[0]['QUERY PLAN'][0].Plan);
  return loops;
}

describe('completion check', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => {
    await env.cleanup();
  });

  it('probes only partitions whose applied count is below their identified count, and completes once', async () => {
    await seed(env.db, { rows: 3000, groups: 3, changed: 3 });
    const runId = await startTestRun(env, 250);
    const { rows: partitions } = await env.db.pool.query<{ id: number; row_count: number }>(
      'SELECT id, row_count FROM partitions WHERE run_id = $1 ORDER BY id',
      [runId],
    );
    expect(partitions.length).toBeGreaterThan(5);
    const held = partitions[0];
    // Every partition produced; every row applied but one row of the first partition, as the
    // applier would count them (the held partition one short).
    const { rows: heldRow } = await env.db.pool.query<{ id: number }>(
      `SELECT s.id FROM subscriptions s JOIN partitions p ON p.id = $1
       WHERE s.product_key = p.group_key AND (s.created_date, s.id) >= (p.lower_pos::timestamptz, p.lower_key::bigint)
         AND (s.created_date, s.id) <= (p.upper_pos::timestamptz, p.upper_key::bigint)
       ORDER BY s.created_date, s.id LIMIT 1`,
      [held!.id],
    );
    await env.db.pool.query(
      `UPDATE subscriptions s SET product_version = p.product_version FROM products p
       WHERE s.product_key = p.product_key AND s.id <> $1`,
      [heldRow[0]!.id],
    );
    await env.db.pool.query(
      `UPDATE partitions SET completed = true, state = 'completed',
              rows_applied = CASE WHEN id = $2 THEN row_count - 1 ELSE row_count END
       WHERE run_id = $1`,
      [runId, held!.id],
    );
    expect(await countEligible(env.db)).toBe(1);

    expect(await tryCompleteRun(env.db, await testDefinitions(env), runId)).toBe(false);

    // The last row changes some other way (or was deleted): the probe finds nothing left.
    // Only the partition one short was probed; the others' counts vouch for them.
    await env.db.pool.query('UPDATE subscriptions SET product_version = product_version + 1 WHERE id = $1', [heldRow[0]!.id]);
    expect(await countEligible(env.db)).toBe(0);
    expect(await subscriptionProbes(env, runId)).toBe(1);
    expect(await tryCompleteRun(env.db, await testDefinitions(env), runId)).toBe(true);
    expect(await tryCompleteRun(env.db, await testDefinitions(env), runId)).toBe(false);
    expect((await getRunStatus(env.db.pool, runId))?.status).toBe('completed');
  });
});
