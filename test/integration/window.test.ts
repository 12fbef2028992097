/**
 * Work windows end to end: a run stops producing at the end of its window (tasks released
 * with their offsets, shown as `paused (window)`), goes on by itself when the next window
 * opens and completes, every row produced once; pages are adaptive meanwhile. A run that
 * ignores the window keeps running. The window is evaluated on a clock the test moves.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCoordination } from '../../src/coordination/redis.ts';
import { type HealthMonitor, startHealthMonitor } from '../../src/health/monitor.ts';
import { parseWindows } from '../../src/health/window.ts';
import { getRunStatus } from '../../src/runs/run-store.ts';
import { countEligible, seed } from '../../src/seed.ts';
import type { Service } from '../../src/service.ts';
import { runCli } from '../support/cli.ts';
import { createTestEnv, quietLog, type TestEnv, waitFor } from '../support/env.ts';
import { startTestRun } from '../support/runs.ts';
import { deleteTestTopics, startInstances, stopAll } from '../support/services.ts';

describe('work windows', () => {
  let env: TestEnv;
  let services: Service[] = [];
  let monitor: HealthMonitor | undefined;
  const coordination = () => createCoordination({ redisUrl: env.config.redisUrl, prefix: env.config.redisPrefix }, quietLog);
  let co: ReturnType<typeof coordination>;
  beforeAll(async () => {
    // Slow enough to stop half-way: 1,500 rows/s for the whole run, pages of 50 to 200 rows.
    env = await createTestEnv({ THROTTLE_ROWS_PER_SECOND: '1500', PAGE_SIZE: '100', PAGE_SIZE_ADAPTIVE: 'true', PAGE_SIZE_MIN: '50', PAGE_SIZE_MAX: '200', WORKER_CONCURRENCY: '2' });
    co = coordination();
  });
  afterAll(async () => {
    await monitor?.stop();
    await stopAll(services);
    await co.client.del(`${env.config.redisPrefix}:health:state`, `${env.config.redisPrefix}:health:lease`, `${env.config.redisPrefix}:throttle`).catch(() => {});
    await co.close();
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('pauses at the end of the window, keeps offsets, goes on in the next one and produces every row once', async () => {
    const seeded = await seed(env.db, { rows: 12_000, groups: 6, changed: 3 });
    services = await startInstances(env, 2, {}, { health: false });
    let clock = new Date('2026-12-06T02:00:00Z'); // inside 01:00-05:00
    monitor = startHealthMonitor({
      db: env.db,
      coordination: co,
      log: quietLog,
      instanceId: 'window-test',
      prefix: env.config.redisPrefix,
      settings: { ...env.config, healthIntervalMs: 200, window: parseWindows('01:00-05:00', 'UTC') },
      now: async () => clock,
    });
    const runId = await startTestRun(env, 1000, { coordination: services[0]!.coordination });
    const produced = async () =>
      (await env.db.pool.query<{ n: number }>('SELECT coalesce(sum(rows_produced), 0)::int AS n FROM partitions WHERE run_id = $1', [runId])).rows[0]!.n;
    await waitFor(async () => (await produced()) >= 1500, 30_000, 'a part of the run to be produced');

    // A run started by hand with --ignore-window is left alone.
    const { rows: manual } = await env.db.pool.query<{ id: number }>(
      `INSERT INTO migration_runs (migration, trigger, status, partition_size, max_partitions, ignore_window)
       VALUES ('subscriptions', 'manual', 'running', 1000, 10, true) RETURNING id`,
    );

    clock = new Date('2026-12-06T05:00:00Z'); // the window ends
    const closedAt = performance.now();
    await waitFor(async () => (await getRunStatus(env.db.pool, runId))?.status === 'paused', 10_000, 'the run to pause');
    // Every task given back within seconds, parked, offsets kept.
    await waitFor(async () => {
      const { rows } = await env.db.pool.query(`SELECT count(*)::int AS n FROM scheduled_tasks WHERE task_name = 'partition' AND picked`);
      return rows[0].n === 0;
    }, 10_000, 'every task to be released');
    expect(performance.now() - closedAt).toBeLessThan(10_000);
    const atPause = await produced();
    expect(atPause).toBeLessThan(seeded.eligible);
    const reason = await env.db.pool.query('SELECT pause_reason FROM migration_runs WHERE id = $1', [runId]);
    expect(reason.rows[0].pause_reason).toBe('window');
    // (It has no partitions, so the reconciler may complete it meanwhile; it is never paused.)
    const manualStatus = await env.db.pool.query('SELECT status, pause_reason FROM migration_runs WHERE id = $1', [manual[0]!.id]);
    expect(manualStatus.rows[0]).toMatchObject({ pause_reason: null });
    expect(['running', 'completed']).toContain(manualStatus.rows[0].status);
    await env.db.pool.query(`UPDATE migration_runs SET status = 'cancelled' WHERE id = $1 AND status = 'running'`, [manual[0]!.id]);
    const status = await runCli(['status', String(runId), '--no-watch'], env.env);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain(`run ${runId}  paused (window)`);
    expect(status.stdout).toMatch(/window 01:00-05:00 UTC closed/);

    // While closed, nothing more is produced over several evaluations.
    for (let i = 0; i < 3; i++) expect((await monitor.evaluate())?.window).toMatchObject({ open: false, nextChange: '2026-12-07T01:00:00.000Z' });
    expect(await produced()).toBe(atPause);

    clock = new Date('2026-12-07T01:00:00Z'); // the next window opens
    const done = await waitFor(async () => {
      const s = await getRunStatus(env.db.pool, runId);
      return s?.status === 'completed' ? s : null;
    }, 60_000, 'the run to complete in the next window');
    expect(done.rows).toMatchObject({ total: seeded.eligible, applied: seeded.eligible });
    expect(await countEligible(env.db)).toBe(0);
    // Offsets were kept: the pause and the resume produced no row a second time.
    expect(await produced()).toBe(seeded.eligible);
  }, 90_000);
});
