/**
 * The health-driven throttle against the real services: each signal throttles and releases
 * (tranche's lock waits, the probe query, a real hot standby's replay lag), the hard stop
 * pauses a run and says why, two instances share one state evaluated by one of them (each
 * signal is seen by two instances' workers, each through its own Redis connection), and each
 * signal's reason, and its release, shows in `tranche status --json` and /metrics.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCoordination } from '../../src/coordination/redis.ts';
import { createThrottle } from '../../src/coordination/throttle.ts';
import { type HealthMonitor, type HealthSettings, startHealthMonitor } from '../../src/health/monitor.ts';
import { createHealthGate, type HealthGate, type HealthState, readHealthState } from '../../src/health/state.ts';
import { createMetrics } from '../../src/http/metrics.ts';
import { runCli } from '../support/cli.ts';
import { createTestEnv, quietLog, type TestEnv, waitFor } from '../support/env.ts';

const STACK = fileURLToPath(new URL('../../scripts/stack.sh', import.meta.url));

describe('health-driven throttle', () => {
  let env: TestEnv;
  const coordinations: ReturnType<typeof createCoordination>[] = [];
  const monitors: HealthMonitor[] = [];
  const clients: pg.Client[] = [];
  const co = () => {
    const c = createCoordination({ redisUrl: env.config.redisUrl, prefix: env.config.redisPrefix }, quietLog);
    coordinations.push(c);
    return c;
  };
  const settings = (over: Partial<HealthSettings>): HealthSettings => ({
    healthIntervalMs: 200,
    healthMaxReplicaLagMs: null,
    healthSlots: [],
    healthMaxSlotLagBytes: null,
    healthMaxLockWaitMs: null,
    healthMaxActiveBackends: null,
    healthProbeQuery: null,
    healthProbeMaxMs: 150,
    healthCriticalFactor: null,
    window: null,
    ...over,
  });
  const monitor = (instanceId: string, s: HealthSettings) => {
    const m = startHealthMonitor({ db: env.db, coordination: co(), log: quietLog, instanceId, prefix: env.config.redisPrefix, settings: s });
    monitors.push(m);
    return m;
  };
  const state = () => readHealthState(coordinations[0]!.client, env.config.redisPrefix);
  const until = (what: string, check: (s: HealthState) => boolean, timeoutMs = 20_000) =>
    waitFor(async () => {
      const s = await state();
      return s && check(s) ? s : null;
    }, timeoutMs, what);
  const connect = async (applicationName: string) => {
    const client = new pg.Client({ connectionString: env.config.databaseUrl, application_name: applicationName, options: `-c search_path=${env.config.dbSchema}` });
    await client.connect();
    clients.push(client);
    return client;
  };

  /** /metrics of an instance reading the shared state. */
  const metricsText = () =>
    createMetrics({
      db: env.db,
      instanceId: 'metrics',
      activeTasks: () => 0,
      consumerLag: async () => [],
      health: () => readHealthState(coordinations[0]!.client, env.config.redisPrefix),
    }).registry.metrics();
  /** Two instances' workers, each asking through its own Redis connection (made in beforeAll). */
  let gates: HealthGate[] = [];
  const gatesBlocked = () => Promise.all(gates.map((g) => g.blocked()));
  /** The state as an operator sees it: `tranche status RUN --json` of a running run, and /metrics. */
  const shown = async (runId: number) => {
    const status = await runCli(['status', String(runId), '--json'], env.env);
    expect(status.code, status.stderr).toBe(0);
    const protection = (JSON.parse(status.stdout) as { protection: HealthState | null }).protection;
    const throttled = /tranche_throttle_state\{signal="(\w*)",instance_id="metrics"\} (\d)/.exec(await metricsText());
    return { status: protection?.state, reason: protection?.reason?.name ?? null, metric: throttled ? `${throttled[1]}=${throttled[2]}` : null };
  };
  const runningRun = async () =>
    (await env.db.pool.query<{ id: number }>(
      `INSERT INTO migration_runs (migration, trigger, status, partition_size, max_partitions)
       VALUES ('subscriptions', 'manual', 'running', 1000, 10) RETURNING id`,
    )).rows[0]!.id;

  beforeAll(async () => {
    env = await createTestEnv();
    co(); // coordinations[0]: the reader
    const gateConnections = [co(), co()];
    // Commands fail at once while a connection is not ready (no offline queue).
    await waitFor(async () => gateConnections.every((c) => c.client.status === 'ready'), 10_000, 'Redis connections');
    gates = gateConnections.map((c) => createHealthGate(c.client, env.config.redisPrefix, 0));
    await env.db.pool.query(`CREATE TABLE lock_target (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
      INSERT INTO lock_target VALUES (1, 0);
      CREATE TABLE probe_flag (slow boolean NOT NULL); INSERT INTO probe_flag VALUES (false);
      CREATE TABLE wal_writes (id serial PRIMARY KEY, at timestamptz DEFAULT now());`);
  });
  afterAll(async () => {
    await Promise.all(monitors.map((m) => m.stop()));
    for (const c of clients) await c.end().catch(() => {});
    await coordinations[0]?.client.del(`${env.config.redisPrefix}:health:state`, `${env.config.redisPrefix}:health:lease`).catch(() => {});
    for (const c of coordinations) await c.close();
    await env.cleanup();
  });

  it('throttles on lock waits caused by tranche and on a slow probe, one state for two instances, workers waiting meanwhile', async () => {
    const probe = `SELECT pg_sleep(CASE WHEN (SELECT slow FROM "${env.config.dbSchema}".probe_flag) THEN 0.4 ELSE 0 END)`;
    const s = settings({ healthMaxLockWaitMs: 300, healthProbeQuery: probe });
    monitor('inst-a', s);
    monitor('inst-b', s);
    const first = await until('a published state', (x) => x.state === 'running');
    expect(first.signals.map((r) => r.name)).toEqual(['lock_wait', 'probe']);
    // One evaluator at a time: over a few evaluations the state comes from the same instance.
    const evaluators = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const at = (await state())!.at;
      evaluators.add((await until('a newer evaluation', (x) => x.at > at)).evaluatedBy);
    }
    expect(evaluators.size).toBe(1);

    // Instances' workers ask through their own Redis connection: both see the same state.
    const metrics = createMetrics({
      db: env.db,
      instanceId: 'metrics',
      activeTasks: () => 0,
      consumerLag: async () => [],
      health: () => readHealthState(coordinations[0]!.client, env.config.redisPrefix),
    });

    // A session of tranche holds a row lock, the application waits on it.
    const holder = await connect(`tranche:${env.id}-holder`);
    const app = await connect('application');
    await holder.query('BEGIN');
    await holder.query('SELECT * FROM lock_target WHERE id = 1 FOR UPDATE');
    const waiting = app.query('UPDATE lock_target SET n = n + 1 WHERE id = 1');
    const throttled = await until('lock waits to throttle', (x) => x.state === 'throttled' && x.reason?.name === 'lock_wait');
    expect(throttled.reason!.value).toBeGreaterThan(300);
    expect(await gatesBlocked()).toEqual([true, true]);
    expect(await metrics.registry.metrics()).toMatch(/tranche_throttle_state\{signal="lock_wait",instance_id="metrics"\} 1/);
    expect(await shown(await runningRun())).toEqual({ status: 'throttled', reason: 'lock_wait', metric: 'lock_wait=1' });
    expect(await metrics.registry.metrics()).toMatch(/tranche_health_signal_value\{signal="lock_wait",unit="ms",instance_id="metrics"\} \d+/);

    // A worker asking for its next page waits while throttled, and goes on once released.
    const throttle = createThrottle({ redis: coordinations[0]!.client, prefix: env.config.redisPrefix, defaultLimit: 0, log: quietLog, health: gates[0] });
    let granted = false;
    const acquiring = throttle.acquire(100).then((ok) => (granted = ok));
    const at = (await state())!.at;
    await until('another evaluation while throttled', (x) => x.at > at && x.state === 'throttled');
    expect(granted).toBe(false);
    await holder.query('ROLLBACK');
    await waiting;
    await until('lock waits to release', (x) => x.state === 'running');
    await waitFor(async () => granted, 5000, 'the waiting worker to go on');
    await acquiring;
    expect(await metrics.registry.metrics()).toMatch(/tranche_throttle_state\{signal="",instance_id="metrics"\} 0/);

    // The probe: slow, then fast again.
    await env.db.pool.query('UPDATE probe_flag SET slow = true');
    const slow = await until('the slow probe to throttle', (x) => x.reason?.name === 'probe');
    expect(slow).toMatchObject({ state: 'throttled', reason: { name: 'probe', limit: 150, unit: 'ms' } });
    expect(await gatesBlocked()).toEqual([true, true]);
    const runId = await runningRun();
    expect(await shown(runId)).toEqual({ status: 'throttled', reason: 'probe', metric: 'probe=1' });
    await env.db.pool.query('UPDATE probe_flag SET slow = false');
    await until('the fast probe to release', (x) => x.state === 'running');
    expect(await shown(runId)).toEqual({ status: 'running', reason: null, metric: '=0' });
    expect(await gatesBlocked()).toEqual([false, false]);

    // The evaluator goes away: the other instance takes over within its lease.
    const before = (await state())!.evaluatedBy;
    await monitors[before === 'inst-a' ? 0 : 1]!.stop();
    await until('the other instance to evaluate', (x) => x.evaluatedBy !== before, 10_000);
    await Promise.all(monitors.splice(0).map((m) => m.stop()));
  }, 80_000);

  it('stops hard at a critical value: pauses running runs and says why in status', async () => {
    const probe = `SELECT pg_sleep(CASE WHEN (SELECT slow FROM "${env.config.dbSchema}".probe_flag) THEN 0.4 ELSE 0 END)`;
    monitor('inst-c', settings({ healthProbeQuery: probe, healthCriticalFactor: 2 }));
    const runId = await runningRun();
    await until('a running state', (x) => x.state === 'running');
    await env.db.pool.query('UPDATE probe_flag SET slow = true');
    await until('the hard stop', (x) => x.state === 'critical');
    const paused = await waitFor(async () => {
      const r = await env.db.pool.query<{ status: string; pause_reason: string | null }>('SELECT status, pause_reason FROM migration_runs WHERE id = $1', [runId]);
      return r.rows[0]?.status === 'paused' ? r.rows[0] : null;
    }, 10_000, 'the run to be paused');
    expect(paused.pause_reason).toMatch(/^critical: probe \d[\d,]* ms > 150 ms$/);
    const status = await runCli(['status', String(runId), '--no-watch'], env.env);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain(`run ${runId}  paused (critical: probe`);
    expect(status.stdout).toMatch(/protection {2}critical: probe [\d,]+ ms > limit 150 ms/);
    expect(await shown(runId)).toEqual({ status: 'critical', reason: 'probe', metric: 'probe=2' });
    // Back under: the state runs again, but the run stays paused until an operator resumes it.
    await env.db.pool.query('UPDATE probe_flag SET slow = false');
    await until('running again', (x) => x.state === 'running');
    const after = await env.db.pool.query('SELECT status FROM migration_runs WHERE id = $1', [runId]);
    expect(after.rows[0].status).toBe('paused');
    await Promise.all(monitors.splice(0).map((m) => m.stop()));
  }, 60_000);

  it("throttles on a real hot standby's replay lag and releases when it catches up", async () => {
    execFileSync('bash', [STACK, 'replica-up'], { stdio: 'pipe', timeout: 60_000 });
    const standby = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5433/postgres' });
    try {
      await standby.connect();
      monitor('inst-r1', settings({ healthMaxReplicaLagMs: 500 }));
      monitor('inst-r2', settings({ healthMaxReplicaLagMs: 500 }));
      await until('a running state', (x) => x.state === 'running' && x.signals[0]?.name === 'replica_lag');
      const runId = await runningRun();
      await standby.query('SELECT pg_wal_replay_pause()');
      // WAL keeps coming (as an application's writes would) while replay stands still.
      const lagging = await waitFor(async () => {
        await env.db.pool.query('INSERT INTO wal_writes DEFAULT VALUES');
        const s = await state();
        return s?.reason?.name === 'replica_lag' ? s : null;
      }, 30_000, 'the replay lag to throttle');
      expect(lagging.state).toBe('throttled');
      expect(lagging.reason!.value).toBeGreaterThan(500);
      expect(await gatesBlocked()).toEqual([true, true]);
      expect(await shown(runId)).toEqual({ status: 'throttled', reason: 'replica_lag', metric: 'replica_lag=1' });
      await standby.query('SELECT pg_wal_replay_resume()');
      await waitFor(async () => {
        await env.db.pool.query('INSERT INTO wal_writes DEFAULT VALUES');
        return (await state())?.state === 'running';
      }, 30_000, 'the replica to catch up and release');
      // Each look at the released state comes with a write, as the lag is only measured on WAL.
      await waitFor(async () => {
        await env.db.pool.query('INSERT INTO wal_writes DEFAULT VALUES');
        const seen = await shown(runId);
        return seen.status === 'running' && seen.reason === null && seen.metric === '=0' && !(await gatesBlocked()).includes(true);
      }, 30_000, 'status, /metrics and both instances to show the release');
    } finally {
      await standby.query('SELECT pg_wal_replay_resume()').catch(() => {});
      await standby.end().catch(() => {});
      await Promise.all(monitors.splice(0).map((m) => m.stop()));
      execFileSync('bash', [STACK, 'replica-down'], { stdio: 'pipe', timeout: 60_000 });
    }
  }, 90_000);
});
