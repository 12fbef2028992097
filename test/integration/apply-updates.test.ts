/**
 * The apply statement generated from the reference definition, against real Postgres: it changes rows and
 * counts them on their partitions in one statement, so many batches applied at once over the
 * same partitions must neither deadlock nor miscount, and a replay must count nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE_MIGRATION, seed } from '../../src/seed.ts';
import { createTestEnv, type TestEnv, testDefinitions } from '../support/env.ts';
import { prng, shuffled } from '../support/prng.ts';
import { startTestRun } from '../support/runs.ts';

interface Rec {
  id: number;
  toVersion: number;
  runId: number;
  partitionId: number;
}

describe('apply-updates statement', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => {
    await env.cleanup();
  });

  async function apply(batch: Rec[]): Promise<{ run_id: number; partition_id: number; n: number }[]> {
    const sorted = [...batch].sort((a, b) => a.id - b.id);
    const { statements } = (await testDefinitions(env)).require(FIXTURE_MIGRATION);
    const { rows } = await env.db.pool.query<{ run_id: number; partition_id: number; n: number }>(statements.apply, [
      sorted.map((r) => String(r.id)),
      sorted.map((r) => String(r.toVersion)),
      sorted.map((r) => r.runId),
      sorted.map((r) => r.partitionId),
      sorted.map(() => '1'),
    ]);
    return rows;
  }

  async function appliedCounts(runId: number): Promise<Map<number, { applied: number; identified: number }>> {
    const { rows } = await env.db.pool.query<{ id: number; rows_applied: number; row_count: number }>(
      'SELECT id, rows_applied, row_count FROM partitions WHERE run_id = $1 ORDER BY id',
      [runId],
    );
    return new Map(rows.map((r) => [r.id, { applied: r.rows_applied, identified: r.row_count }]));
  }

  it('applies batches concurrently over the same partitions without deadlock, counting each row once', async () => {
    await seed(env.db, { rows: 6000, groups: 3, changed: 3 });
    const runId = await startTestRun(env, 400);
    // Every eligible row as the producer would send it: its partition and target version.
    const { rows: records } = await env.db.pool.query<Rec>(
      `SELECT s.id, p.target::int AS "toVersion", p.run_id AS "runId", p.id AS "partitionId"
       FROM partitions p JOIN subscriptions s ON s.product_key = p.group_key
        AND (s.created_date, s.id) BETWEEN (p.lower_pos::timestamptz, p.lower_key::bigint) AND (p.upper_pos::timestamptz, p.upper_key::bigint)
       WHERE p.run_id = $1 AND s.product_version < p.target::int`,
      [runId],
    );
    const partitions = await appliedCounts(runId);
    expect(partitions.size).toBeGreaterThan(10);
    expect(records.length).toBe([...partitions.values()].reduce((sum, p) => sum + p.identified, 0));

    // 60 batches of 100 random rows: each batch touches most partitions, in a different order
    // from its neighbours, and eight of them run at once.
    const batches: Rec[][] = [];
    const mixed = shuffled(records, prng(7));
    for (let i = 0; i < mixed.length; i += 100) batches.push(mixed.slice(i, i + 100));
    const runAll = async (work: Rec[][]) => {
      const results: { run_id: number; partition_id: number; n: number }[][] = [];
      let next = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (next < work.length) {
            const batch = work[next++]!;
            results.push(await apply(batch));
          }
        }),
      );
      return results.flat();
    };
    const first = await runAll(batches);
    expect(first.reduce((sum, r) => sum + r.n, 0)).toBe(records.length);
    for (const [id, p] of await appliedCounts(runId)) expect(p.applied, `partition ${id}`).toBe(p.identified);

    // The same records again, in another order: nothing changes and nothing is counted.
    const replay = await runAll(shuffled(batches, prng(11)));
    expect(replay).toEqual([]);
    for (const [id, p] of await appliedCounts(runId)) expect(p.applied, `partition ${id} after the replay`).toBe(p.identified);
  });

  it('counts a row on its partition even when the record names another run for it', async () => {
    await seed(env.db, { rows: 500, groups: 1, changed: 1, reset: true });
    const runId = await startTestRun(env, 1000);
    const { rows } = await env.db.pool.query<Rec>(
      `SELECT s.id, p.target::int AS "toVersion", p.run_id AS "runId", p.id AS "partitionId"
       FROM partitions p JOIN subscriptions s ON s.product_key = p.group_key
       WHERE p.run_id = $1 ORDER BY s.id LIMIT 3`,
      [runId],
    );
    expect(rows).toHaveLength(3);
    // Two records as produced, one naming a run that is not its partition's.
    const batch = [rows[0]!, rows[1]!, { ...rows[2]!, runId: runId + 1000 }];
    const result = await apply(batch);
    expect(result.reduce((sum, r) => sum + r.n, 0)).toBe(3);
    const counts = await appliedCounts(runId);
    expect(counts.get(rows[0]!.partitionId)?.applied).toBe(3);
  });
});
