/**
 * Live-traffic benchmark: what a migration costs the application. A pgbench load of
 * application transactions (each client updates one random subscription per transaction, the
 * rows being migrated) is measured four times on the same data, in the same run:
 *   idle       nothing else runs;
 *   bulk       one bulk `UPDATE subscriptions … FROM products` (the thing tranche replaces);
 *   tranche    one instance, unthrottled: health signals and adaptive pages off;
 *   protected  one instance with the health throttle on its defaults and adaptive pages
 *              (PAGE_SIZE_ADAPTIVE=true) on their default target, floor and ceiling.
 * For each: application transactions/s, p50, p99, p99.9 and max latency (from pgbench's
 * per-transaction log), and the migration's rows/s, every figure beside its baselines.
 * The load runs in chunks of --chunk-seconds until the migration is over, so its window
 * holds the whole migration.
 *
 *   node bench/live-traffic.ts [--rows 1000000] [--products 20] [--clients 4]
 *                              [--idle-seconds 20] [--chunk-seconds 5] [--partition-size 20000]
 *                              [--reuse] [--timeout 900] [--env KEY=VALUE]...
 *                              [--replica] [--replay-share 0.2]
 * --env sets a setting of the protected phase only (e.g. PAGE_TARGET_MS=100), to try
 * protection other than the defaults.
 * --replica adds a fifth phase: the protected run again, with a streaming hot standby of the
 * local PostgreSQL (scripts/stack.sh replica-up) whose replay is slowed (paused, then resumed
 * for --replay-share of every 100 ms), its replay lag sampled every 100 ms on the primary
 * (pg_stat_replication, what the replica-lag signal reads) and printed against
 * HEALTH_MAX_REPLICA_LAG_MS; the standby is stopped afterwards.
 *
 * It works in its own schema (`bench_live`), Redis prefix, topics and consumer group. Speed
 * never fails anything: this prints figures (docs/benchmarks.md).
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { wholeFlag } from '../src/cli/parse.ts';
import { createContext } from '../src/cli/context.ts';
import type { Db } from '../src/db.ts';
import { startManualRun } from '../src/identification/identify.ts';
import { getRunStatus } from '../src/runs/run-store.ts';
import { FIXTURE_DEFINITION, FIXTURE_MIGRATION, seed } from '../src/seed.ts';
import { benchArgs, envPairs } from './args.ts';
import { resetSubscriptions } from './data-set.ts';

const args = benchArgs(import.meta.url, {
  rows: { type: 'string', default: '1000000' },
  products: { type: 'string', default: '20' },
  clients: { type: 'string', default: '4' },
  'idle-seconds': { type: 'string', default: '20' },
  'chunk-seconds': { type: 'string', default: '5' },
  'partition-size': { type: 'string', default: '20000' },
  reuse: { type: 'boolean', default: false },
  timeout: { type: 'string', default: '900' },
  env: { type: 'string', multiple: true, default: [] },
  replica: { type: 'boolean', default: false },
  'replay-share': { type: 'string', default: '0.2' },
});
const rows = wholeFlag('rows', args.rows, 1);
const products = wholeFlag('products', args.products, 1);
const clients = wholeFlag('clients', args.clients, 1);
const idleSeconds = wholeFlag('idle-seconds', args['idle-seconds'], 1);
const chunkSeconds = wholeFlag('chunk-seconds', args['chunk-seconds'], 1);
const partitionSize = wholeFlag('partition-size', args['partition-size'], 1);
const timeoutS = wholeFlag('timeout', args.timeout, 1);
const replayShare = Number(args['replay-share']);
if (!(replayShare > 0 && replayShare <= 1)) {
  console.error(`--replay-share takes a share of the time in (0, 1] (got "${args['replay-share']}")`);
  process.exit(2);
}

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const BENCH_ENV = {
  TRANCHE_DEFINITIONS: FIXTURE_DEFINITION,
  DB_SCHEMA: 'bench_live',
  REDIS_PREFIX: 'tranche-bench-live',
  KAFKA_GROUP_ID: 'tranche-bench-live-appliers',
  TOPIC_UPDATES: 'tranche-bench-live.subscription-updates',
  TOPIC_DEAD_LETTERS: 'tranche-bench-live.dead-letters',
  TOPIC_RUN_EVENTS: 'tranche-bench-live.run-events',
  PARTITION_SIZE: String(partitionSize),
  CRON_ENABLED: 'false',
} as const;
/** Protection off: the unthrottled tranche of the issue's table. */
const UNPROTECTED = {
  HEALTH_MAX_REPLICA_LAG_MS: 'off',
  HEALTH_MAX_LOCK_WAIT_MS: 'off',
  HEALTH_MAX_ACTIVE_BACKENDS: 'off',
  HEALTH_PROBE_QUERY: '',
  PAGE_SIZE_ADAPTIVE: 'false',
};
/** Protection on its defaults, with adaptive pages (off by default) turned on. */
const PROTECTED = { PAGE_SIZE_ADAPTIVE: 'true', ...envPairs(args.env) };
const env: NodeJS.ProcessEnv = { ...process.env, ...BENCH_ENV, INSTANCE_ID: 'bench-live', LOG_LEVEL: process.env.LOG_LEVEL || 'warn' };
const ctx = createContext({}, env);
const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const out = (line = '') => console.log(line);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// --- The application load: pgbench in chunks, per-transaction logs --------------------------------

interface Load {
  /** Stops after the chunk under way; resolves with every transaction's latency (µs) and the seconds covered. */
  stop(): Promise<{ latenciesUs: number[]; seconds: number }>;
}

function pgbenchConnection(): string[] {
  const url = new URL(ctx.config.databaseUrl);
  return ['-h', url.hostname, '-p', url.port || '5432', '-U', decodeURIComponent(url.username || 'postgres'), url.pathname.slice(1) || 'postgres'];
}

function startLoad(maxId: number, dir: string, label: string): Load {
  const script = `${dir}/app.sql`;
  writeFileSync(script, '\\set id random(1, :maxid)\nUPDATE subscriptions SET updated_at = now() WHERE id = :id;\n');
  let stopping = false;
  let chunk = 0;
  const started = performance.now();
  let current: ChildProcess | null = null;
  const loop = (async () => {
    while (!stopping) {
      chunk++;
      const child = spawn(
        'pgbench',
        ['-n', '-c', String(clients), '-j', String(Math.min(clients, 2)), '-T', String(chunkSeconds), '-f', script, '-D', `maxid=${maxId}`,
          '-l', `--log-prefix=${dir}/${label}-${chunk}`, ...pgbenchConnection()],
        { env: { ...process.env, PGOPTIONS: `-c search_path=${BENCH_ENV.DB_SCHEMA}` }, stdio: ['ignore', 'ignore', 'pipe'] },
      );
      current = child;
      let stderr = '';
      child.stderr?.on('data', (d) => (stderr += d));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      if (code !== 0) throw new Error(`pgbench exited ${code}: ${stderr.trim().split('\n').slice(-3).join(' ')}`);
    }
  })();
  return {
    async stop() {
      stopping = true;
      await loop;
      void current;
      const seconds = (performance.now() - started) / 1000;
      const latenciesUs: number[] = [];
      for (const file of readdirSync(dir).filter((f) => f.startsWith(`${label}-`))) {
        for (const line of readFileSync(`${dir}/${file}`, 'utf8').split('\n')) {
          const fields = line.split(' ');
          if (fields.length >= 6) latenciesUs.push(Number(fields[2]));
        }
      }
      return { latenciesUs, seconds };
    },
  };
}

interface AppFigures {
  tps: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
}

/** The q-quantile of ascending values (NaN for none). */
function quantile(sorted: ArrayLike<number>, q: number): number {
  return sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function figures(latenciesUs: number[], seconds: number): AppFigures {
  const sorted = Float64Array.from(latenciesUs).sort();
  const at = (q: number) => quantile(sorted, q) / 1000;
  return { tps: sorted.length / seconds, p50: at(0.5), p99: at(0.99), p999: at(0.999), max: sorted.length ? sorted[sorted.length - 1]! / 1000 : Number.NaN };
}

// --- Data ------------------------------------------------------------------------------------------

async function reset(db: Db): Promise<void> {
  await db.pool.query('TRUNCATE partitions, run_groups, scheduled_tasks, cron_slots, dead_letters, migration_runs RESTART IDENTITY CASCADE');
  await db.pool.query('UPDATE products SET product_version = 2');
  await resetSubscriptions(db.pool);
  await db.pool.query('CHECKPOINT');
  const co = ctx.openCoordination();
  if (co.client.status !== 'ready') await new Promise((r) => co.client.once('ready', r));
  const keys = await co.client.keys(`${BENCH_ENV.REDIS_PREFIX}:*`);
  if (keys.length > 0) await co.client.del(...keys);
}

async function dataSet(db: Db): Promise<number> {
  const { rows: r } = await db.pool.query<{ n: number; p: number; max: number | null }>(
    'SELECT (SELECT count(*) FROM subscriptions)::bigint AS n, (SELECT count(*) FROM products)::bigint AS p, (SELECT max(id) FROM subscriptions)::bigint AS max',
  );
  if (args.reuse && r[0]?.n === rows && r[0]?.p === products) {
    out(`reusing ${fmt(rows)} subscriptions over ${products} products in schema ${BENCH_ENV.DB_SCHEMA}`);
    return r[0].max ?? rows;
  }
  await seed(db, { rows, groups: products, changed: products, reset: true, deferIndexes: rows >= 200_000 });
  const { rows: m } = await db.pool.query<{ max: number }>('SELECT max(id)::bigint AS max FROM subscriptions');
  out(`seeded ${fmt(rows)} subscriptions over ${products} products (all eligible)`);
  return m[0]?.max ?? rows;
}

// --- The migrations --------------------------------------------------------------------------------

async function bulkUpdate(db: Db): Promise<number> {
  const t = performance.now();
  await db.pool.query(
    `UPDATE subscriptions s SET product_version = p.product_version, updated_at = now()
     FROM products p WHERE s.product_key = p.product_key AND s.product_version < p.product_version`,
  );
  return (performance.now() - t) / 1000;
}

async function trancheRun(db: Db, extraEnv: Record<string, string>, logFile: string): Promise<number> {
  const port = 18_790;
  const child = spawn(process.execPath, [`${ROOT}bin/tranche.js`, 'serve'], {
    env: { ...env, ...extraEnv, INSTANCE_ID: 'bench-live-1', HTTP_PORT: String(port), LOG_LEVEL: process.env.LOG_LEVEL || 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout?.on('data', (d) => (log += d));
  child.stderr?.on('data', (d) => (log += d));
  try {
    const ready = Date.now() + 120_000;
    while (!(await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false))) {
      if (child.exitCode !== null) throw new Error(`the instance exited while starting:\n${log.slice(-2000)}`);
      if (Date.now() > ready) throw new Error('the instance was not ready in 120 s');
      await sleep(250);
    }
    const co = ctx.openCoordination();
    const run = await startManualRun(
      { db, coordination: co, log: ctx.log, instanceId: 'bench-live', leaseMs: ctx.config.identifyLeaseMs, definitions: await ctx.openDefinitions(db) },
      { migration: FIXTURE_MIGRATION, partitionSize, maxPartitions: ctx.config.maxPartitions },
    );
    const deadline = Date.now() + timeoutS * 1000;
    let report = await getRunStatus(db.pool, run.runId);
    while (report && !['completed', 'failed', 'cancelled'].includes(report.status)) {
      if (child.exitCode !== null) throw new Error(`the instance exited during the run:\n${log.slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`run ${run.runId} not done after ${timeoutS} s`);
      await sleep(200);
      report = await getRunStatus(db.pool, run.runId);
    }
    if (report?.status !== 'completed') throw new Error(`run ${run.runId} ended ${report?.status}`);
    const { rows: t } = await db.pool.query<{ seconds: number }>(
      'SELECT extract(epoch FROM completed_at - created_at)::float8 AS seconds FROM migration_runs WHERE id = $1',
      [run.runId],
    );
    return t[0]?.seconds ?? Number.NaN;
  } finally {
    writeFileSync(logFile, log);
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  }
}

// --- A slow replica --------------------------------------------------------------------------------

const STACK = `${ROOT}scripts/stack.sh`;

interface SlowReplica {
  /** Stops slowing and sampling; the lag samples (ms) taken while the migration ran. */
  stop(): Promise<number[]>;
}

/**
 * Slows the standby's replay (paused, resumed for `replayShare` of every 100 ms) and samples
 * the primary's view of its replay lag every 100 ms.
 */
async function slowReplica(db: Db): Promise<SlowReplica> {
  const url = new URL(ctx.config.databaseUrl);
  const standby = new pg.Client({ host: url.hostname, port: Number(process.env.TRANCHE_REPLICA_PORT ?? 5433), user: decodeURIComponent(url.username || 'postgres'), database: url.pathname.slice(1) || 'postgres' });
  await standby.connect();
  let stopping = false;
  let failure: unknown = null;
  // A loop that fails stops both; stop() reports it (never an unhandled rejection mid-run).
  const failed = (error: unknown) => {
    failure ??= error;
    stopping = true;
  };
  const samples: number[] = [];
  // A statement on a standby can be cancelled by a recovery conflict (40001): asked again.
  const onStandby = async (text: string) => {
    for (;;) {
      try {
        return await standby.query(text);
      } catch (error) {
        if ((error as { code?: string }).code !== '40001') throw error;
      }
    }
  };
  const slowing = (async () => {
    while (!stopping) {
      await onStandby('SELECT pg_wal_replay_pause()');
      await sleep(100 * (1 - replayShare));
      await onStandby('SELECT pg_wal_replay_resume()');
      await sleep(100 * replayShare);
    }
  })().catch(failed);
  const sampling = (async () => {
    while (!stopping) {
      const { rows } = await db.pool.query<{ ms: number | null }>(
        `SELECT max(extract(epoch FROM replay_lag))::float8 * 1000 AS ms FROM pg_stat_replication WHERE application_name = 'tranche-replica'`,
      );
      samples.push(rows[0]?.ms ?? 0);
      await sleep(100);
    }
  })().catch(failed);
  return {
    async stop() {
      stopping = true;
      await Promise.all([slowing, sampling]);
      await onStandby('SELECT pg_wal_replay_resume()').catch(() => {});
      await standby.end();
      if (failure) throw failure;
      return samples;
    },
  };
}

// --- Main ------------------------------------------------------------------------------------------

interface Phase {
  name: string;
  app: AppFigures;
  migrationSeconds: number | null;
}

async function measure(db: Db, maxId: number, dir: string, name: string, migrate: (() => Promise<number>) | null): Promise<Phase> {
  if (migrate) await reset(db);
  const load = startLoad(maxId, dir, name);
  await sleep(1000); // the load is under way before the migration starts
  const migrationSeconds = migrate ? await migrate() : (await sleep(idleSeconds * 1000), null);
  const { latenciesUs, seconds } = await load.stop();
  const phase = { name, app: figures(latenciesUs, seconds), migrationSeconds };
  out(`  ${name}: ${fmt(phase.app.tps)} tx/s, p99 ${fmt(phase.app.p99, 1)} ms, max ${fmt(phase.app.max, 1)} ms` +
    (migrationSeconds === null ? '' : `, migration ${fmt(migrationSeconds, 1)} s`));
  return phase;
}

async function main(): Promise<number> {
  const version = spawnSync('pgbench', ['--version'], { encoding: 'utf8' });
  if (version.status !== 0) {
    console.error('pgbench is not installed (Debian: postgresql-contrib, or the postgresql package)');
    return 3;
  }
  const db = await ctx.openDb();
  const dir = mkdtempSync(`${tmpdir()}/tranche-live-`);
  const logs = `${ROOT}bench/results/live-traffic/`;
  mkdirSync(logs, { recursive: true });
  try {
    out(`tranche live-traffic benchmark: ${fmt(rows)} rows, ${products} products, ${clients} pgbench clients (${version.stdout.trim()})`);
    const maxId = await dataSet(db);
    await reset(db);
    const idle = await measure(db, maxId, dir, 'idle', null);
    const bulk = await measure(db, maxId, dir, 'bulk', () => bulkUpdate(db));
    const free = await measure(db, maxId, dir, 'tranche', () => trancheRun(db, UNPROTECTED, `${logs}tranche.log`));
    const safe = await measure(db, maxId, dir, 'protected', () => trancheRun(db, PROTECTED, `${logs}protected.log`));
    let lagged: { phase: Phase; lag: number[]; baseline: number[] } | null = null;
    if (args.replica) {
      execFileSync('bash', [STACK, 'replica-up'], { stdio: 'inherit', timeout: 600_000 });
      try {
        let baseline: number[] = [];
        let lag: number[] = [];
        // The baseline: the slowed replica's lag under the application's load alone.
        const alone = await slowReplica(db);
        try {
          await measure(db, maxId, dir, 'idle, slow replica', null);
        } finally {
          baseline = await alone.stop();
        }
        const phase = await measure(db, maxId, dir, 'protected, slow replica', async () => {
          const replica = await slowReplica(db);
          try {
            return await trancheRun(db, PROTECTED, `${logs}replica.log`);
          } finally {
            lag = await replica.stop();
          }
        });
        lagged = { phase, lag, baseline };
      } finally {
        execFileSync('bash', [STACK, 'replica-down'], { stdio: 'inherit', timeout: 120_000 });
      }
    }

    const x = (a: number, b: number) => `${fmt(a / b, 2)}x`;
    out('');
    out('| while | tx/s | p50 ms | p99 ms | p99.9 ms | max ms | migration rows/s |');
    out('| --- | --- | --- | --- | --- | --- | --- |');
    for (const p of [idle, bulk, free, safe, ...(lagged ? [lagged.phase] : [])]) {
      const a = p.app;
      const rate = p.migrationSeconds === null ? '' : fmt(rows / p.migrationSeconds);
      const vsIdle = p === idle ? '' : ` (${x(a.tps, idle.app.tps)})`;
      out(`| ${p.name} | ${fmt(a.tps)}${vsIdle} | ${fmt(a.p50, 2)} | ${fmt(a.p99, 2)}${p === idle ? '' : ` (${x(a.p99, idle.app.p99)})`} | ` +
        `${fmt(a.p999, 2)} | ${fmt(a.max, 1)} | ${rate}${p.migrationSeconds !== null && p !== bulk ? ` (${x(bulk.migrationSeconds! / p.migrationSeconds, 1)} of bulk)` : ''} |`);
    }
    out('');
    out('Targets with protection on (issue 20), this run:');
    out(`  app p99 at most 2x idle: ${fmt(safe.app.p99, 2)} ms against ${fmt(2 * idle.app.p99, 2)} ms (${x(safe.app.p99, idle.app.p99)} idle)`);
    out(`  app max under 100 ms: ${fmt(safe.app.max, 1)} ms`);
    out(`  tranche at least 0.5x its unthrottled rate: ${x(free.migrationSeconds! / safe.migrationSeconds!, 1)}`);
    if (lagged) {
      const limit = ctx.config.healthMaxReplicaLagMs;
      const describe = (samples: number[]) => {
        const sorted = [...samples].sort((a, b) => a - b);
        const over = limit === null ? 0 : samples.filter((ms) => ms > limit).length;
        return `max ${fmt(sorted.at(-1) ?? 0)} ms, p99 ${fmt(quantile(sorted, 0.99))} ms, median ${fmt(quantile(sorted, 0.5))} ms (${fmt(over)} of ${fmt(samples.length)} samples over the limit)`;
      };
      out(`  a replica replaying ${fmt(replayShare * 100)} % of the time, replay lag against the limit ${limit === null ? 'off' : `${fmt(limit)} ms`}:`);
      out(`    the application alone: ${describe(lagged.baseline)}`);
      out(`    the application and tranche protected: ${describe(lagged.lag)}; tranche ${x(free.migrationSeconds! / lagged.phase.migrationSeconds!, 1)} of its unthrottled rate`);
    }
    out(`  (instance logs in ${logs})`);
    return 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await ctx.close();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`live-traffic: ${error instanceof Error ? error.message : String(error)}`);
    void ctx.close().finally(() => process.exit(1));
  },
);
