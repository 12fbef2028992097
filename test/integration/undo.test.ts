/**
 * `tranche undo` against the real services: a completed run of the reference migration is
 * undone while the application writes some of its rows; every row tranche changed and nobody
 * touched since goes back, the touched ones stay as the application wrote them, the undo
 * completes exactly once (one completion event); undoing the undo restores the migrated state.
 * Refusals go through the CLI.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setThrottleLimit } from '../../src/coordination/throttle.ts';
import { createRun, getRunStatus } from '../../src/runs/run-store.ts';
import { seed } from '../../src/seed.ts';
import type { Service } from '../../src/service.ts';
import { startUndoRun } from '../../src/undo/undo.ts';
import { repairRun } from '../../src/verify/verify.ts';
import { runCli } from '../support/cli.ts';
import { createTestEnv, type TestEnv, testDefinitions, waitFor } from '../support/env.ts';
import { SUBSCRIPTION_NO_UNDO } from '../support/fixtures.ts';
import { runUid, startTestRun } from '../support/runs.ts';
import { deleteTestTopics, startInstances, stopAll } from '../support/services.ts';
import { type ServeProcess, startServe } from '../support/serve.ts';
import { replayTopic } from '../support/replay.ts';
import { readTopic } from '../support/topics.ts';
import { FIXTURE_DEFINITION } from '../../src/seed.ts';

async function versions(env: TestEnv): Promise<Map<number, number>> {
  const { rows } = await env.db.pool.query<{ id: number; v: number }>('SELECT id::int, product_version AS v FROM subscriptions');
  return new Map(rows.map((r) => [r.id, r.v]));
}

async function completed(env: TestEnv, runId: number): Promise<void> {
  await waitFor(async () => (await getRunStatus(env.db.pool, runId))?.verdict, 60_000, `run ${runId} to complete and be verified`);
  expect(await getRunStatus(env.db.pool, runId)).toMatchObject({ status: 'completed', verdict: 'holds' });
}


describe('tranche undo', () => {
  let env: TestEnv;
  let services: Service[] = [];
  beforeAll(async () => {
    env = await createTestEnv({ PAGE_SIZE: '100', TRANCHE_DEFINITIONS: `${FIXTURE_DEFINITION},${SUBSCRIPTION_NO_UNDO}` });
  });
  afterAll(async () => {
    await stopAll(services);
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('moves back exactly the rows it changed that nobody touched since, once; undoing the undo restores them', async () => {
    await seed(env.db, { rows: 6000, groups: 4, changed: 2 });
    const before = await versions(env);
    services = await startInstances(env, 2);
    const co = services[0]!.coordination;
    const forward = await startTestRun(env, 400, { coordination: co });
    await completed(env, forward);
    const migrated = await versions(env);
    const changed = [...migrated.keys()].filter((id) => migrated.get(id) !== before.get(id)).sort((a, b) => a - b);
    expect(changed).toHaveLength(3000);

    // The application writes 20 of the changed rows before the undo starts, 40 while it runs.
    const touchedBefore = changed.filter((_, i) => i % 150 === 0).slice(0, 20);
    const touchedDuring = changed.filter((_, i) => i % 75 === 1).slice(0, 40);
    await env.db.pool.query('UPDATE subscriptions SET product_version = 7 WHERE id = ANY ($1::bigint[])', [touchedBefore]);
    const definitions = await testDefinitions(env);
    // Throttled, the undo takes a few seconds: the application's writes land while it runs.
    await setThrottleLimit(co.client, env.config.redisPrefix, 1000);
    const undo = await startUndoRun(env.db, co, definitions, forward);
    expect(undo).toMatchObject({ undoOf: forward, migration: 'subscription-version.undo', rows: 3000 - touchedBefore.length, skipped: touchedBefore.length });
    await waitFor(async () => ((await getRunStatus(env.db.pool, undo.runId))?.rows.applied ?? 0) > 0, 30_000, 'the undo to move its first rows back');
    for (let i = 0; i < touchedDuring.length; i += 10) {
      await env.db.pool.query('UPDATE subscriptions SET product_version = 5, updated_at = now() WHERE id = ANY ($1::bigint[])', [touchedDuring.slice(i, i + 10)]);
    }
    const during = await getRunStatus(env.db.pool, undo.runId);
    expect(during?.status).toBe('running');
    expect(during!.rows.applied).toBeLessThan(during!.rows.total);
    await setThrottleLimit(co.client, env.config.redisPrefix, null);
    await completed(env, undo.runId);
    expect((await getRunStatus(env.db.pool, undo.runId))?.undoOf).toBe(forward);
    const undone = await versions(env);
    const touched = new Set([...touchedBefore, ...touchedDuring]);
    for (const [id, v] of undone) {
      if (touchedBefore.includes(id)) expect(v, `row ${id}`).toBe(7);
      else if (touchedDuring.includes(id)) expect(v, `row ${id}`).toBe(5);
      else expect(v, `row ${id}`).toBe(before.get(id));
    }
    expect(touched.size).toBe(60);
    // Exactly one completion event per run: the forward run's and the undo's.
    const events = await readTopic(env.config.kafkaBrokers, env.config.topicRunEvents, 2);
    const undoUid = await runUid(env, undo.runId);
    expect(events.filter((e) => e.key === undoUid)).toHaveLength(1);
    expect(events).toHaveLength(2);

    // Undoing the undo is a redo: the rows it moved back go forward again, the touched ones stay.
    // Rows the undo moved back before the application wrote them no longer hold what it wrote.
    const { rows: overwritten } = await env.db.pool.query<{ n: number }>(
      'SELECT count(DISTINCT k)::int AS n FROM applied_batches b CROSS JOIN unnest(b.keys) AS k WHERE b.run_id = $1 AND k = ANY ($2::text[])',
      [undo.runId, touchedDuring.map(String)],
    );
    const redo = await startUndoRun(env.db, co, definitions, undo.runId);
    expect(redo).toMatchObject({ undoOf: undo.runId, migration: 'subscription-version', skipped: overwritten[0]!.n, rows: 3000 - 60 });
    await completed(env, redo.runId);
    const redone = await versions(env);
    for (const [id, v] of redone) {
      if (touchedBefore.includes(id)) expect(v).toBe(7);
      else if (touchedDuring.includes(id)) expect(v).toBe(5);
      else expect(v, `row ${id}`).toBe(migrated.get(id));
    }
    // Records of an undone run are never applied again: the forward run's records replayed
    // now would redo, the undo's would undo. The whole topic replayed changes nothing.
    expect(await replayTopic(env)).toBe(0);
    expect(await versions(env)).toEqual(redone);
    const { rows: dead } = await env.db.pool.query('SELECT count(*)::int AS n FROM dead_letters');
    expect(dead[0].n).toBe(0);
  }, 90_000);

  it('refuses an unknown run, a run still identifying and a definition without undo, in one line (exit 2)', async () => {
    const unknown = await runCli(['undo', '999999'], env.env);
    expect(unknown).toMatchObject({ code: 2, stdout: '', stderr: 'tranche: run 999999 does not exist\n' });

    const definitions = await testDefinitions(env);
    const identifying = await createRun(env.db, definitions.require('subscription-version'), {
      trigger: 'manual', partitionSize: 100, maxPartitions: 10, instanceId: 'elsewhere', leaseMs: 600_000, force: true,
    });
    const still = await runCli(['undo', String(identifying.runId)], env.env);
    expect(still).toMatchObject({ code: 2, stdout: '', stderr: `tranche: run ${identifying.runId} is still identifying; undo it once it has completed (or cancel it first)\n` });
    await env.db.pool.query("UPDATE migration_runs SET status = 'cancelled' WHERE id = $1", [identifying.runId]);

    const plain = await startTestRun(env, 100, { migration: 'subscription-no-undo' });
    const refused = await runCli(['undo', String(plain)], env.env);
    expect(refused).toMatchObject({
      code: 2,
      stdout: '',
      stderr: `tranche: subscription-no-undo declares no undo, so run ${plain} cannot be undone (add undo: { set, guard } to the definition)\n`,
    });
    // `tranche definitions` says which definitions can be undone.
    const listed = await runCli(['definitions'], env.env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('  verify       reached and beyond; undo subscription-version.undo (runs keep an applied log)');
    expect(listed.stdout).toContain('  verify       reached and beyond; undo not declared');
    // Nothing was started.
    const { rows } = await env.db.pool.query('SELECT count(*)::int AS n FROM migration_runs WHERE undo_of IN ($1, $2)', [identifying.runId, plain]);
    expect(rows[0].n).toBe(0);
  }, 60_000);
});

describe('an undo run survives an instance killed mid-way (I3, I4, I5, I6 for undo runs)', () => {
  let env: TestEnv;
  const instances: ServeProcess[] = [];
  beforeAll(async () => {
    env = await createTestEnv({ PAGE_SIZE: '100' });
  });
  afterAll(async () => {
    await Promise.all(instances.map((i) => i.stop()));
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('is finished by the instance left, every row moved back once, completed once', async () => {
    await seed(env.db, { rows: 6000, groups: 4, changed: 2 });
    const before = await versions(env);
    instances.push(await startServe(env.env, `${env.id}-a`), await startServe(env.env, `${env.id}-b`));
    const forward = await startTestRun(env, 300);
    await completed(env, forward);
    // Throttled, so that the kill lands in the middle of the undo.
    expect((await runCli(['throttle', '800'], env.env)).code).toBe(0);
    const started = await runCli(['undo', String(forward), '--json'], env.env);
    expect(started.code, started.stderr).toBe(0);
    const undo = JSON.parse(started.stdout) as { runId: number; rows: number; skipped: number };
    expect(undo).toMatchObject({ rows: 3000, skipped: 0 });
    // A second undo of the same run while this one goes on is refused, and writes no run.
    const runsBefore = (await env.db.pool.query('SELECT count(*)::int AS n FROM migration_runs')).rows[0].n;
    const twice = await runCli(['undo', String(forward)], env.env);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toBe(`tranche: run ${undo.runId} is already undoing run ${forward}; wait for it or cancel it\n`);
    expect((await env.db.pool.query('SELECT count(*)::int AS n FROM migration_runs')).rows[0].n).toBe(runsBefore);
    await waitFor(async () => ((await getRunStatus(env.db.pool, undo.runId))?.rows.applied ?? 0) >= 400, 30_000, 'the undo to be under way');
    instances[0]!.child.kill('SIGKILL');
    const mid = await getRunStatus(env.db.pool, undo.runId);
    expect(mid?.rows.applied).toBeLessThan(3000);
    expect((await runCli(['throttle', '--reset'], env.env)).code).toBe(0);
    await completed(env, undo.runId);

    expect(await versions(env)).toEqual(before);
    const { rows: parts } = await env.db.pool.query<{ n: number; applied: number; left: number }>(
      `SELECT count(*)::int AS n, sum(rows_applied)::int AS applied, count(*) FILTER (WHERE NOT completed)::int AS left FROM partitions WHERE run_id = $1`,
      [undo.runId],
    );
    // One partition per partition of the run undone, each counted once whatever was replayed.
    expect(parts[0]).toEqual({ n: (await getRunStatus(env.db.pool, forward))!.partitions.total, applied: 3000, left: 0 });
    const undoUid = await runUid(env, undo.runId);
    const events = await readTopic(env.config.kafkaBrokers, env.config.topicRunEvents, 2);
    expect(events.filter((e) => e.key === undoUid)).toHaveLength(1);
    expect(events).toHaveLength(2);
    const { rows: dead } = await env.db.pool.query('SELECT count(*)::int AS n FROM dead_letters');
    expect(dead[0].n).toBe(0);
  }, 90_000);
});

describe('a run that changed some rows twice (repaired), undone', () => {
  let env: TestEnv;
  let services: Service[] = [];
  beforeAll(async () => {
    env = await createTestEnv({ PAGE_SIZE: '100' });
  });
  afterAll(async () => {
    await stopAll(services);
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('moves them back by their latest applied-log entry', async () => {
    await seed(env.db, { rows: 2000, groups: 2, changed: 1 });
    const before = await versions(env);
    services = await startInstances(env, 1);
    const co = services[0]!.coordination;
    const forward = await startTestRun(env, 250, { coordination: co });
    await completed(env, forward);
    const migrated = await versions(env);
    const changed = [...migrated.keys()].filter((id) => migrated.get(id) !== before.get(id));
    // The application sets 30 rows back; the repair changes them again, later, in the same run:
    // two entries in its applied log, the second with what the row holds now.
    const setBack = changed.filter((_, i) => i % 25 === 0).slice(0, 30);
    await env.db.pool.query('UPDATE subscriptions SET product_version = 1, updated_at = now() - interval \'1 day\' WHERE id = ANY ($1::bigint[])', [setBack]);
    const definitions = await testDefinitions(env);
    const { rerun } = await repairRun(env.db, co, definitions, forward);
    expect(rerun.length).toBeGreaterThan(0);
    await waitFor(async () => (await getRunStatus(env.db.pool, forward))?.status === 'completed' && (await versions(env)), 60_000, 'the repair');
    expect([...(await versions(env)).entries()].filter(([id, v]) => v !== migrated.get(id))).toEqual([]);
    const { rows: twice } = await env.db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM (SELECT k FROM applied_batches b CROSS JOIN unnest(b.keys) AS k WHERE b.run_id = $1 GROUP BY k HAVING count(*) = 2) x`,
      [forward],
    );
    expect(twice[0]!.n).toBe(setBack.length);

    // With the older entry, these rows would not hold what it says the run wrote: left alone.
    const undo = await startUndoRun(env.db, co, definitions, forward);
    expect(undo).toMatchObject({ rows: changed.length, skipped: 0 });
    await completed(env, undo.runId);
    expect(await versions(env)).toEqual(before);
  }, 90_000);
});
