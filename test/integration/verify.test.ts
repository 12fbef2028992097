/**
 * `tranche verify` against the real services: a completed run verifies clean; external
 * writes into three partitions' ranges (a row set back below the target, a row deleted, a
 * row moved past it) are named with their counts; `--repair` reruns only the first kind,
 * through the ordinary tasks, and leaves the other two alone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getRunStatus } from '../../src/runs/run-store.ts';
import { seed } from '../../src/seed.ts';
import type { Service } from '../../src/service.ts';
import { verifyRun } from '../../src/verify/verify.ts';
import { definitionsOf } from '../../src/definitions/load.ts';
import { resolveDefinition } from '../../src/definitions/resolve.ts';
import reference from '../../examples/subscription-version.ts';
import { runCli } from '../support/cli.ts';
import { createTestEnv, type TestEnv, testDefinitions, waitFor } from '../support/env.ts';
import { startTestRun } from '../support/runs.ts';
import { deleteTestTopics, startInstances, stopAll } from '../support/services.ts';

/** The first row (by key) of a partition's range. */
async function rowOf(env: TestEnv, partitionId: number): Promise<number> {
  const { rows } = await env.db.pool.query<{ id: number }>(
    `SELECT min(s.id)::int AS id FROM subscriptions s JOIN partitions p ON p.id = $1 AND s.product_key = p.group_key
     WHERE (s.created_date, s.id) BETWEEN (p.lower_pos::timestamptz, p.lower_key::bigint) AND (p.upper_pos::timestamptz, p.upper_key::bigint)`,
    [partitionId],
  );
  return rows[0]!.id;
}

describe('tranche verify', () => {
  let env: TestEnv;
  let services: Service[] = [];
  beforeAll(async () => {
    env = await createTestEnv({ PAGE_SIZE: '200' });
  });
  afterAll(async () => {
    await stopAll(services);
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('verifies a completed run clean, names the partitions written since, and repairs only the eligible ones', async () => {
    await seed(env.db, { rows: 4000, groups: 4, changed: 2 });
    services = await startInstances(env, 1);
    const runId = await startTestRun(env, 500, { coordination: services[0]!.coordination });
    await waitFor(async () => (await getRunStatus(env.db.pool, runId))?.verdict, 60_000, 'the run to complete and be verified');
    const completed = await getRunStatus(env.db.pool, runId);
    expect(completed).toMatchObject({ status: 'completed', verdict: 'holds' });
    const status = await runCli(['status', String(runId), '--no-watch'], env.env);
    expect(status.stdout).toContain('  verified    holds');

    const clean = await runCli(['verify', String(runId), '--json'], env.env);
    expect(clean.stderr).toBe('');
    expect(clean.code).toBe(0);
    const cleanResult = JSON.parse(clean.stdout);
    expect(cleanResult).toMatchObject({ holds: true, failing: [], reachedChecked: true });
    expect(cleanResult.partitions).toHaveLength(4);
    for (const p of cleanResult.partitions) expect(p).toMatchObject({ eligible: 0, vanished: 0, beyondSince: 0, changedSince: false, reached: p.cut });

    // The application writes into three partitions' ranges.
    const { rows: parts } = await env.db.pool.query<{ id: number }>('SELECT id::int FROM partitions WHERE run_id = $1 ORDER BY id', [runId]);
    const [setBack, deleted, beyond, untouched] = parts.map((p) => p.id) as [number, number, number, number];
    const setBackRow = await rowOf(env, setBack);
    const beyondRow = await rowOf(env, beyond);
    await env.db.pool.query('UPDATE subscriptions SET product_version = 1 WHERE id = $1', [setBackRow]);
    await env.db.pool.query('DELETE FROM subscriptions WHERE id = $1', [await rowOf(env, deleted)]);
    await env.db.pool.query('UPDATE subscriptions SET product_version = 9 WHERE id = $1', [beyondRow]);

    const named = await runCli(['verify', String(runId), '--json'], env.env);
    expect(named.code).toBe(1);
    const result = JSON.parse(named.stdout);
    expect(result.failing).toEqual([setBack, deleted, beyond]);
    const byId = new Map(result.partitions.map((p: { partitionId: number }) => [p.partitionId, p]));
    expect(byId.get(setBack)).toMatchObject({ eligible: 1, vanished: 0, beyondSince: 0, changedSince: true, holds: false });
    expect(byId.get(deleted)).toMatchObject({ eligible: 0, vanished: 1, beyondSince: 0, changedSince: true, holds: false });
    expect(byId.get(beyond)).toMatchObject({ eligible: 0, vanished: 0, beyondSince: 1, changedSince: true, holds: false });
    expect(byId.get(untouched)).toMatchObject({ holds: true });
    const table = await runCli(['verify', String(runId)], env.env);
    expect(table.code).toBe(1);
    expect(table.stdout).toContain(`partitions ${setBack}, ${deleted}, ${beyond} do not hold`);

    const repair = await runCli(['verify', String(runId), '--repair', '--json'], env.env);
    expect(repair.code).toBe(1);
    expect(JSON.parse(repair.stdout).repaired).toEqual([setBack]);
    // The rerun partition goes through the ordinary tasks; the run completes again.
    const after = await waitFor(
      async () => {
        const status = await getRunStatus(env.db.pool, runId);
        if (status?.status !== 'completed') return null;
        const v = await verifyRun(env.db.pool, await testDefinitions(env), runId);
        return v.failing.includes(setBack) ? null : v;
      },
      60_000,
      'the repaired partition to verify clean',
    );
    expect(after.failing).toEqual([deleted, beyond]);
    const afterById = new Map(after.partitions.map((p) => [p.partitionId, p]));
    expect(afterById.get(setBack)).toMatchObject({ eligible: 0, holds: true });
    expect(afterById.get(deleted)).toMatchObject({ vanished: 1, holds: false });
    expect(afterById.get(beyond)).toMatchObject({ beyondSince: 1, holds: false });
    // The application's rows are left as it wrote them.
    const { rows } = await env.db.pool.query('SELECT id::int, product_version FROM subscriptions WHERE id = ANY ($1::bigint[]) ORDER BY id', [[setBackRow, beyondRow]]);
    expect(rows).toEqual([
      { id: Math.min(setBackRow, beyondRow), product_version: setBackRow < beyondRow ? 2 : 9 },
      { id: Math.max(setBackRow, beyondRow), product_version: setBackRow < beyondRow ? 9 : 2 },
    ]);
    expect((await getRunStatus(env.db.pool, runId))?.verdict).toBe(`partitions ${deleted}, ${beyond} do not hold`);

    // The reference's checksum covers product_version only (verify.checksum: its index holds
    // it). The same definition with the default list (every `set` column, updated_at too)
    // finds baselines over other columns: it takes new ones and calls nothing changed; then a
    // write to updated_at alone is seen by it, and not by the reference's own checksum.
    const { checksum: _checksum, ...verifyDefault } = reference.verify!;
    const wide = definitionsOf([await resolveDefinition(env.db.pool, { ...reference, verify: verifyDefault })]);
    const rebased = await verifyRun(env.db.pool, wide, runId);
    expect(rebased.partitions.map((p) => p.changedSince)).toEqual([false, false, false, false]);
    await env.db.pool.query(`UPDATE subscriptions SET updated_at = updated_at + interval '1 second' WHERE id = $1`, [await rowOf(env, untouched)]);
    const touched = await verifyRun(env.db.pool, wide, runId);
    expect(touched.partitions.find((p) => p.partitionId === untouched)).toMatchObject({ changedSince: true, holds: false });
    // Back to the reference: its baselines are taken again (first verify), and a later write
    // to updated_at alone goes unseen by them (second).
    const definitions = await testDefinitions(env);
    expect((await verifyRun(env.db.pool, definitions, runId)).partitions.map((p) => p.changedSince)).toEqual([false, false, false, false]);
    await env.db.pool.query(`UPDATE subscriptions SET updated_at = updated_at + interval '1 second' WHERE id = $1`, [await rowOf(env, untouched)]);
    const narrow = await verifyRun(env.db.pool, definitions, runId);
    expect(narrow.partitions.find((p) => p.partitionId === untouched)).toMatchObject({ changedSince: false, holds: true });
    await env.db.pool.query('UPDATE subscriptions SET product_version = 2 WHERE id = $1', [beyondRow]);
    expect((await verifyRun(env.db.pool, definitions, runId)).partitions.find((p) => p.partitionId === beyond)).toMatchObject({ changedSince: true });

    const unknown = await runCli(['verify', '999999'], env.env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toBe('tranche: run 999999 does not exist\n');
  }, 90_000);
});
