/**
 * End-to-end benchmark: rows per second of a whole run (identification start to run
 * completed) with 1, 2, 3… service instances, each printed beside two baselines measured in
 * the same run on the same data:
 *   (a) one bulk `UPDATE subscriptions … FROM products`, the physical limit of Postgres here;
 *   (b) one process walking the table with a keyset cursor and updating page by page, no
 *       Kafka: the single-process design that partitioning replaces.
 * Also the peak RSS (VmHWM) of every instance, and the CPU seconds spent by the instances,
 * Postgres and the Kafka broker during each run (where the time goes on a shared machine).
 *
 *   node bench/e2e.ts [--rows 1000000] [--instances 1,2,3] [--products 20]
 *                     [--partition-size 20000] [--page-size N] [--memory-rows 100000]
 *                     [--reuse] [--skip-baselines] [--serve-bin PATH] [--env KEY=VALUE]...
 *                     [--label NAME] [--timeout 900] [--profile]
 *                     [--layout shuffled|chronological]
 *
 * `--page-size` defaults to the service's `PAGE_SIZE` default; the keyset loop (b) uses the same.
 *
 * `--layout` (src/seed.ts): `shuffled` (default, and the data set of every figure recorded
 * before this option existed) draws each row's created_date independently of its id and
 * place in the table, so a partition's rows lie all over it: the worst case for updates by
 * id. `chronological` inserts rows in created_date order, as a table filled over time holds
 * them.
 *
 * Every row is eligible (every product has a new version). Between measurements every
 * subscription goes back to version 1 and the table is rewritten in id order (CLUSTER, as
 * seeded), so each figure starts from the same state. `--memory-rows N` (0 to skip) adds one
 * 1-instance run on a data set of N rows, for peak RSS at two sizes. `--serve-bin` and `--env`
 * run the instances from another copy of the code or with other settings (experiments); the
 * results go to bench/results/ (git-ignored) as JSON and SVG. `--profile` loads
 * bench/profile-hooks.mjs into every instance (time per query, per Kafka send, per consumed
 * batch; written next to the instance logs). Speed never fails anything: this prints figures,
 * see docs/benchmarks.md.
 *
 * It works in its own schema (`bench_e2e`), Redis prefix, topics and consumer group.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { wholeFlag } from '../src/cli/parse.ts';
import { createContext } from '../src/cli/context.ts';
import { loadConfig } from '../src/config.ts';
import type { Db } from '../src/db.ts';
import { startManualRun } from '../src/identification/identify.ts';
import { getRunStatus } from '../src/runs/run-store.ts';
import { FIXTURE_DEFINITION, FIXTURE_MIGRATION, type SeedLayout, seed, seededLayout } from '../src/seed.ts';
import { ensureTopics } from '../src/service.ts';
import { createStreamClient } from '../src/stream/kafka.ts';
import { renderChart } from './chart.ts';
import { addSummaryRow } from './summary.ts';
import { benchArgs, envPairs } from './args.ts';
import { resetSubscriptions } from './data-set.ts';
import { CLK_TCK, parseStat } from './proc.ts';

const args = benchArgs(import.meta.url, {
  rows: { type: 'string', default: '1000000' },
  instances: { type: 'string', default: '1,2,3' },
  products: { type: 'string', default: '20' },
  'partition-size': { type: 'string', default: '20000' },
  'page-size': { type: 'string', default: String(loadConfig({}).pageSize) }, // PAGE_SIZE's default
  'memory-rows': { type: 'string', default: '100000' },
  reuse: { type: 'boolean', default: false },
  layout: { type: 'string', default: 'shuffled' },
  'skip-baselines': { type: 'boolean', default: false },
  'serve-bin': { type: 'string' },
  profile: { type: 'boolean', default: false },
  env: { type: 'string', multiple: true, default: [] },
  label: { type: 'string', default: '' },
  timeout: { type: 'string', default: '900' },
});

const rows = wholeFlag('rows', args.rows, 1);
const products = wholeFlag('products', args.products, 1);
const partitionSize = wholeFlag('partition-size', args['partition-size'], 1);
const pageSize = wholeFlag('page-size', args['page-size'], 1);
const memoryRows = wholeFlag('memory-rows', args['memory-rows'], 0);
const timeoutS = wholeFlag('timeout', args.timeout, 1);
if (args.layout !== 'shuffled' && args.layout !== 'chronological') {
  console.error(`--layout must be shuffled or chronological (got "${args.layout}")`);
  process.exit(2);
}
const layout: SeedLayout = args.layout;
const instanceCounts = String(args.instances)
  .split(',')
  .map((s) => wholeFlag('instances', s.trim(), 1));
const extraEnv = envPairs(args.env);

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const BIN = args['serve-bin'] ? String(args['serve-bin']) : `${ROOT}bin/tranche.js`;
const RESULTS = `${ROOT}bench/results/`;
const BENCH_ENV = {
  TRANCHE_DEFINITIONS: FIXTURE_DEFINITION,
  DB_SCHEMA: 'bench_e2e',
  REDIS_PREFIX: 'tranche-bench-e2e',
  KAFKA_GROUP_ID: 'tranche-bench-e2e-appliers',
  TOPIC_UPDATES: 'tranche-bench-e2e.subscription-updates',
  TOPIC_DEAD_LETTERS: 'tranche-bench-e2e.dead-letters',
  TOPIC_RUN_EVENTS: 'tranche-bench-e2e.run-events',
  PAGE_SIZE: String(pageSize),
  PARTITION_SIZE: String(partitionSize),
  CRON_ENABLED: 'false',
} as const;

const env: NodeJS.ProcessEnv = { ...process.env, ...BENCH_ENV, ...extraEnv, INSTANCE_ID: 'bench-e2e', LOG_LEVEL: process.env.LOG_LEVEL || 'warn' };
const ctx = createContext({}, env);
let co: ReturnType<typeof ctx.openCoordination> | undefined;
async function coordination() {
  co ??= ctx.openCoordination();
  if (co.client.status !== 'ready') await new Promise((r) => co?.client.once('ready', r));
  return co;
}
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const out = (line = '') => console.log(line);

// ---------------------------------------------------------------------------------------------
// /proc readings: peak memory of a process, CPU seconds per program name.

function procStatus(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system) of every live process, by pid, with its program name. */
function cpuByPid(): Map<number, { comm: string; cpu: number }> {
  const result = new Map<number, { comm: string; cpu: number }>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      result.set(Number(entry), parseStat(readFileSync(`/proc/${entry}/stat`, 'utf8')));
    } catch {
      // the process ended meanwhile
    }
  }
  return result;
}

/** Busy and total CPU seconds of the whole machine. */
function machineCpu(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  const total = line.reduce((a, b) => a + b, 0) / CLK_TCK;
  const idle = ((line[3] ?? 0) + (line[4] ?? 0)) / CLK_TCK;
  return { busy: total - idle, total };
}

interface CpuSnapshot {
  pids: Map<number, { comm: string; cpu: number }>;
  machine: { busy: number; total: number };
}

const snapshot = (): CpuSnapshot => ({ pids: cpuByPid(), machine: machineCpu() });

/** CPU seconds spent between two snapshots: by the given pids, by postgres, by java (Kafka), and by the machine. */
function cpuSpent(a: CpuSnapshot, b: CpuSnapshot, instancePids: number[], backendPids: number[]) {
  const delta = (filter: (pid: number, comm: string) => boolean) => {
    let sum = 0;
    for (const [pid, now] of b.pids) {
      if (!filter(pid, now.comm)) continue;
      sum += now.cpu - (a.pids.get(pid)?.cpu ?? 0);
    }
    return sum;
  };
  return {
    instances: delta((pid) => instancePids.includes(pid)),
    postgres: delta((_pid, comm) => comm === 'postgres'),
    postgresOurs: delta((pid) => backendPids.includes(pid)),
    kafka: delta((_pid, comm) => comm === 'java'),
    bench: delta((pid) => pid === process.pid),
    machineBusy: b.machine.busy - a.machine.busy,
    machineTotal: b.machine.total - a.machine.total,
  };
}

// ---------------------------------------------------------------------------------------------
// Data: seed once, reset to "every row eligible" before each measurement.

async function reset(db: Db): Promise<void> {
  await db.pool.query('TRUNCATE partitions, run_groups, scheduled_tasks, cron_slots, dead_letters, migration_runs RESTART IDENTITY CASCADE');
  await db.pool.query('UPDATE products SET product_version = 2');
  await resetSubscriptions(db.pool);
  await db.pool.query('VACUUM (ANALYZE) products, partitions, scheduled_tasks');
  await db.pool.query('CHECKPOINT');
  const co = await coordination();
  // Old counters of runs with the same ids (identities restart) must not survive.
  const keys = await co.client.keys(`${env.REDIS_PREFIX}:*`);
  if (keys.length > 0) await co.client.del(...keys);
}

async function eligible(db: Db): Promise<number> {
  const { rows: r } = await db.pool.query<{ n: number }>(
    'SELECT count(*)::bigint AS n FROM subscriptions s JOIN products p USING (product_key) WHERE s.product_version < p.product_version',
  );
  return r[0]?.n ?? 0;
}

async function dataSet(db: Db, n: number, reuse: boolean): Promise<void> {
  if (reuse) {
    const { rows: r } = await db.pool.query<{ n: number; p: number }>(
      'SELECT (SELECT count(*) FROM subscriptions)::bigint AS n, (SELECT count(*) FROM products)::bigint AS p',
    );
    if (r[0]?.n === n && r[0]?.p === products && (await seededLayout(db)) === layout) {
      out(`reusing ${fmt(n)} subscriptions over ${products} products (${layout}) in schema ${env.DB_SCHEMA}`);
      return;
    }
  }
  const t = performance.now();
  await seed(db, { rows: n, groups: products, changed: products, reset: true, deferIndexes: n >= 200_000, layout });
  out(`seeded ${fmt(n)} subscriptions over ${products} products, ${layout}, in ${((performance.now() - t) / 1000).toFixed(1)} s (all eligible)`);
}

// ---------------------------------------------------------------------------------------------
// Baselines.

/** (a) one bulk statement doing the same change as the pipeline (version and updated_at). */
async function bulkUpdate(db: Db): Promise<{ seconds: number; changed: number }> {
  const t = performance.now();
  const r = await db.pool.query(
    `UPDATE subscriptions s SET product_version = p.product_version, updated_at = now()
     FROM products p WHERE s.product_key = p.product_key AND s.product_version < p.product_version`,
  );
  return { seconds: (performance.now() - t) / 1000, changed: r.rowCount ?? 0 };
}

/** (b) one process, one connection, keyset pages by product and (created_date, id), one UPDATE per page. */
async function keysetLoop(db: Db): Promise<{ seconds: number; changed: number }> {
  const t = performance.now();
  const client = await db.pool.connect();
  let changed = 0;
  try {
    const { rows: prods } = await client.query<{ product_key: string; product_version: number }>(
      'SELECT product_key, product_version FROM products ORDER BY product_key',
    );
    for (const p of prods) {
      let afterDate = '-infinity';
      let afterId = 0;
      for (;;) {
        const page = await client.query<{ id: number; created_date: string }>(
          `SELECT s.id, s.created_date FROM subscriptions s
           WHERE s.product_key = $1 AND (s.created_date, s.id) > ($2::timestamptz, $3::bigint) AND s.product_version < $4
           ORDER BY s.created_date, s.id LIMIT $5`,
          [p.product_key, afterDate, afterId, p.product_version, pageSize],
        );
        if (page.rows.length === 0) break;
        const r = await client.query(
          'UPDATE subscriptions SET product_version = $2, updated_at = now() WHERE id = ANY ($1::bigint[]) AND product_version < $2',
          [page.rows.map((x) => x.id), p.product_version],
        );
        changed += r.rowCount ?? 0;
        const last = page.rows[page.rows.length - 1]!;
        afterDate = last.created_date;
        afterId = last.id;
        if (page.rows.length < pageSize) break;
      }
    }
  } finally {
    client.release();
  }
  return { seconds: (performance.now() - t) / 1000, changed };
}

// ---------------------------------------------------------------------------------------------
// The pipeline: N `serve` processes, one run.

interface Instance {
  child: ChildProcess;
  port: number;
  logFile: string;
  peakRss: number;
}

function startInstance(index: number, logDir: string): Instance {
  const port = 18_700 + index;
  const logFile = `${logDir}instance-${index}.log`;
  const logStream = createWriteStream(logFile);
  const nodeArgs = args.profile ? ['--import', `${ROOT}bench/profile-hooks.mjs`] : [];
  if (process.env.BENCH_CPU_PROF && index === 1) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${logDir}`);
  const child = spawn(process.execPath, [...nodeArgs, BIN, 'serve'], {
    env: { ...env, BENCH_PROFILE_DIR: logDir, INSTANCE_ID: `bench-e2e-${index}`, HTTP_PORT: String(port), LOG_LEVEL: process.env.LOG_LEVEL || 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.pipe(logStream);
  child.stderr?.pipe(logStream);
  return { child, port, logFile, peakRss: 0 };
}

const alive = (i: Instance) => i.child.exitCode === null && i.child.signalCode === null;

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function waitReady(instances: Instance[], deadlineMs: number): Promise<void> {
  for (;;) {
    const ready = await Promise.all(
      instances.map((i) =>
        fetch(`http://127.0.0.1:${i.port}/readyz`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false),
      ),
    );
    if (ready.every(Boolean)) return;
    const dead = instances.find((i) => !alive(i));
    if (dead) throw new Error(`an instance exited while starting; its log ends with:\n${tail(dead.logFile)}`);
    if (Date.now() > deadlineMs) throw new Error('instances not ready in time');
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function stopInstances(instances: Instance[]): Promise<void> {
  await Promise.all(
    instances.map(
      (i) =>
        new Promise<void>((resolve) => {
          if (!alive(i)) return resolve();
          const timer = setTimeout(() => i.child.kill('SIGKILL'), 20_000);
          i.child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          i.child.kill('SIGTERM');
        }),
    ),
  );
}

interface PipelineResult {
  instances: number;
  rows: number;
  seconds: number;
  rowsPerSecond: number;
  identifySeconds: number;
  peakRssMb: number[];
  cpu: ReturnType<typeof cpuSpent>;
}

async function pipeline(db: Db, n: number, expectedRows: number): Promise<PipelineResult> {
  const logDir = `${RESULTS}logs-${n}/`;
  mkdirSync(logDir, { recursive: true });
  const instances: Instance[] = [];
  for (let i = 1; i <= n; i++) instances.push(startInstance(i, logDir));
  const memTimer = setInterval(() => {
    for (const i of instances) i.peakRss = Math.max(i.peakRss, procStatus(i.child.pid ?? 0, 'VmRSS'));
  }, 250);
  try {
    await waitReady(instances, Date.now() + 120_000);
    // Let the group settle after the last join (each join is a rebalance).
    await new Promise((r) => setTimeout(r, 3000));
    const co = await coordination();
    for (const i of instances) if (args.profile) i.child.kill('SIGUSR2');
    const before = snapshot();
    const run = await startManualRun(
      { db, coordination: co, log: ctx.log, instanceId: 'bench-e2e', leaseMs: ctx.config.identifyLeaseMs, definitions: await ctx.openDefinitions(db) },
      { migration: FIXTURE_MIGRATION, partitionSize, maxPartitions: ctx.config.maxPartitions },
    );
    const deadline = Date.now() + timeoutS * 1000;
    let report = await getRunStatus(db.pool, run.runId);
    while (report && !['completed', 'failed', 'cancelled'].includes(report.status)) {
      const dead = instances.find((i) => !alive(i));
      if (dead) throw new Error(`an instance exited during the run; its log ends with:\n${tail(dead.logFile)}`);
      if (Date.now() > deadline) throw new Error(`run ${run.runId} not done after ${timeoutS} s (${report.status}, ${report.rows.applied}/${report.rows.total})`);
      await new Promise((r) => setTimeout(r, 200));
      report = await getRunStatus(db.pool, run.runId);
    }
    const after = snapshot();
    for (const i of instances) if (args.profile) i.child.kill('SIGUSR2');
    const { rows: backends } = await db.pool.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'tranche:bench-e2e-%'",
    );
    if (report?.status !== 'completed') throw new Error(`run ${run.runId} ended ${report?.status}`);
    const { rows: t } = await db.pool.query<{ seconds: number; identify: number }>(
      `SELECT extract(epoch FROM completed_at - created_at)::float8 AS seconds,
              extract(epoch FROM identified_at - created_at)::float8 AS identify
       FROM migration_runs WHERE id = $1`,
      [run.runId],
    );
    const seconds = t[0]?.seconds ?? Number.NaN;
    if (run.rows !== expectedRows) throw new Error(`run identified ${run.rows} rows, expected ${expectedRows}`);
    const left = await eligible(db);
    if (left !== 0) throw new Error(`run completed with ${left} eligible rows left`);
    for (const i of instances) i.peakRss = Math.max(i.peakRss, procStatus(i.child.pid ?? 0, 'VmHWM'));
    return {
      instances: n,
      rows: run.rows,
      seconds,
      rowsPerSecond: run.rows / seconds,
      identifySeconds: t[0]?.identify ?? Number.NaN,
      peakRssMb: instances.map((i) => i.peakRss / 1024 / 1024),
      cpu: cpuSpent(before, after, instances.map((i) => i.child.pid ?? 0), backends.map((x) => x.pid)),
    };
  } finally {
    clearInterval(memTimer);
    await stopInstances(instances);
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  mkdirSync(RESULTS, { recursive: true });
  const db = await ctx.openDb();
  out(`tranche e2e benchmark: ${fmt(rows)} rows (${layout}), ${products} products, partitions of ${fmt(partitionSize)}, pages of ${fmt(pageSize)}, instances ${instanceCounts.join(',')}`);
  // The Postgres settings that move both the baselines and tranche the most (docs/benchmarks.md).
  const { rows: pgSettings } = await db.pool.query<{ name: string; setting: string }>(
    `SELECT name, current_setting(name) AS setting FROM pg_settings
     WHERE name IN ('shared_buffers', 'max_wal_size', 'synchronous_commit', 'autovacuum') ORDER BY name`,
  );
  const postgresSettings = Object.fromEntries(pgSettings.map((r) => [r.name, r.setting]));
  out(`postgres: ${pgSettings.map((r) => `${r.name} ${r.setting}`).join(', ')}`);
  if (Object.keys(extraEnv).length > 0 || args['serve-bin']) out(`instances run ${BIN} with ${JSON.stringify(extraEnv)}`);
  const stream = createStreamClient({ brokers: ctx.config.kafkaBrokers, clientId: 'tranche-bench-e2e' }, ctx.log);
  // Fresh topics: no backlog from an earlier, interrupted run.
  await stream.deleteTopics([ctx.config.topicUpdates, ctx.config.topicDeadLetters, ctx.config.topicRunEvents]).catch(() => {});
  await new Promise((r) => setTimeout(r, 2000));
  await ensureTopics(stream, ctx.config);
  await stream.disconnect();

  await dataSet(db, rows, args.reuse);
  const baselines: { name: string; seconds: number; rowsPerSecond: number }[] = [];
  if (!args['skip-baselines']) {
    await reset(db);
    const a = await bulkUpdate(db);
    if (a.changed !== rows) throw new Error(`bulk update changed ${a.changed} rows, expected ${rows}`);
    baselines.push({ name: '(a) one bulk UPDATE … FROM products', seconds: a.seconds, rowsPerSecond: a.changed / a.seconds });
    out(`(a) bulk UPDATE: ${a.seconds.toFixed(1)} s, ${fmt(a.changed / a.seconds)} rows/s`);
    await reset(db);
    const b = await keysetLoop(db);
    if (b.changed !== rows) throw new Error(`keyset loop changed ${b.changed} rows, expected ${rows}`);
    baselines.push({ name: `(b) keyset loop, pages of ${fmt(pageSize)}, no Kafka`, seconds: b.seconds, rowsPerSecond: b.changed / b.seconds });
    out(`(b) keyset loop: ${b.seconds.toFixed(1)} s, ${fmt(b.changed / b.seconds)} rows/s`);
  }

  const results: PipelineResult[] = [];
  for (const n of instanceCounts) {
    await reset(db);
    const r = await pipeline(db, n, rows);
    results.push(r);
    out(`tranche, ${n} instance${n > 1 ? 's' : ''}: ${r.seconds.toFixed(1)} s, ${fmt(r.rowsPerSecond)} rows/s, peak RSS ${r.peakRssMb.map((m) => m.toFixed(0)).join('/')} MB`);
  }

  let memory: PipelineResult | null = null;
  if (memoryRows > 0 && memoryRows !== rows) {
    await dataSet(db, memoryRows, false);
    await reset(db);
    memory = await pipeline(db, 1, memoryRows);
    out(`memory check, ${fmt(memoryRows)} rows, 1 instance: peak RSS ${memory.peakRssMb[0]?.toFixed(0)} MB`);
  }

  // The table.
  const a = baselines[0]?.rowsPerSecond;
  const b = baselines[1]?.rowsPerSecond;
  const ratio = (x: number, base: number | undefined) => (base ? `${(x / base).toFixed(2)}x` : '-');
  const cores = availableParallelism();
  out('');
  out(`end to end, ${fmt(rows)} eligible rows (identification start to run completed)`);
  out(`${'what'.padEnd(46)}${'seconds'.padStart(9)}${'rows/s'.padStart(10)}${'vs (a)'.padStart(8)}${'vs (b)'.padStart(8)}${'identify s'.padStart(12)}  peak RSS per instance`);
  for (const base of baselines) {
    out(`${base.name.padEnd(46)}${base.seconds.toFixed(1).padStart(9)}${fmt(base.rowsPerSecond).padStart(10)}${ratio(base.rowsPerSecond, a).padStart(8)}${ratio(base.rowsPerSecond, b).padStart(8)}`);
  }
  for (const r of results) {
    const name = `tranche, ${r.instances} instance${r.instances > 1 ? 's' : ''}`;
    out(
      `${name.padEnd(46)}${r.seconds.toFixed(1).padStart(9)}${fmt(r.rowsPerSecond).padStart(10)}${ratio(r.rowsPerSecond, a).padStart(8)}${ratio(r.rowsPerSecond, b).padStart(8)}${r.identifySeconds.toFixed(1).padStart(12)}  ${r.peakRssMb.map((m) => `${m.toFixed(0)} MB`).join(', ')}`,
    );
  }
  out('');
  out(`CPU seconds during each tranche run (${cores} cores = ${cores} s per wall second)`);
  out(`${'instances'.padEnd(12)}${'wall s'.padStart(8)}${'tranche'.padStart(9)}${'pg (ours)'.padStart(10)}${'postgres'.padStart(10)}${'kafka'.padStart(8)}${'bench'.padStart(7)}${'machine'.padStart(9)}${'other'.padStart(7)}${'ceiling vs (a)'.padStart(16)}`);
  for (const r of results) {
    const c = r.cpu;
    const other = c.machineBusy - c.instances - c.postgres - c.kafka - c.bench;
    // The fastest this run could have been with every core busy on its own work only.
    const ceiling = a === undefined ? '-' : ratio(r.rows / ((c.instances + c.postgres + c.kafka) / cores), a);
    out(
      `${String(r.instances).padEnd(12)}${r.seconds.toFixed(1).padStart(8)}${c.instances.toFixed(1).padStart(9)}${c.postgresOurs.toFixed(1).padStart(10)}${c.postgres.toFixed(1).padStart(10)}${c.kafka.toFixed(1).padStart(8)}${c.bench.toFixed(1).padStart(7)}${c.machineBusy.toFixed(1).padStart(9)}${other.toFixed(1).padStart(7)}${ceiling.padStart(16)}`,
    );
  }
  out('ceiling vs (a): the rate had the instances, Postgres and Kafka kept every core busy (their CPU');
  out('seconds divided by the cores), against (a). A run near its ceiling is bound by CPU.');
  if (memory) {
    out('');
    const big = results.find((r) => r.instances === 1);
    out('peak RSS of one instance (VmHWM)');
    out(`  ${fmt(memoryRows).padStart(11)} rows  ${memory.peakRssMb[0]?.toFixed(0)} MB`);
    if (big) out(`  ${fmt(rows).padStart(11)} rows  ${big.peakRssMb[0]?.toFixed(0)} MB`);
  }

  const section = `end to end, ${fmt(rows)} rows${layout === 'chronological' ? ' (chronological)' : ''}`;
  if (b !== undefined && a !== undefined) {
    addSummaryRow({ section, what: baselines[1]!.name, figure: `${fmt(b)} rows/s`, baseline: `(a) bulk UPDATE ${fmt(a)} rows/s`, ratio: ratio(b, a) });
  }
  for (const r of results) {
    addSummaryRow({
      section,
      what: `tranche, ${r.instances} instance${r.instances > 1 ? 's' : ''}`,
      figure: `${fmt(r.rowsPerSecond)} rows/s`,
      baseline: a === undefined ? 'baselines skipped' : `(a) bulk UPDATE ${fmt(a)} rows/s`,
      ratio: ratio(r.rowsPerSecond, a),
    });
  }
  const one = results.find((r) => r.instances === 1)?.peakRssMb[0];
  if (memory && one !== undefined) {
    const small = memory.peakRssMb[0]!;
    addSummaryRow({
      section: 'memory',
      what: `peak RSS of one instance, ${fmt(rows)} rows`,
      figure: `${one.toFixed(0)} MB`,
      baseline: `${fmt(memoryRows)} rows ${small.toFixed(0)} MB`,
      ratio: `${(one / small).toFixed(2)}x`,
    });
  }

  const stamp = new Date().toISOString().replaceAll(':', '-').replace(/\..*/, '');
  const name = `e2e-${stamp}${args.label ? `-${args.label}` : ''}`;
  const record = {
    at: new Date().toISOString(),
    label: args.label,
    machine: { cores, node: process.version, postgres: postgresSettings },
    options: { rows, layout, products, partitionSize, pageSize, instances: instanceCounts, env: extraEnv, bin: BIN },
    baselines,
    results,
    memory: memory ? { rows: memoryRows, peakRssMb: memory.peakRssMb } : null,
  };
  writeFileSync(`${RESULTS}${name}.json`, `${JSON.stringify(record, null, 2)}\n`);
  writeFileSync(
    `${RESULTS}${name}.svg`,
    renderChart({
      title: `tranche end to end, ${fmt(rows)} rows, ${cores} cores`,
      points: results.map((r) => ({ instances: r.instances, rowsPerSecond: r.rowsPerSecond })),
      baselines: baselines.map((x, i) => ({ name: i === 0 ? '(a) bulk UPDATE' : '(b) keyset loop', rowsPerSecond: x.rowsPerSecond })),
    }),
  );
  out('');
  out(`results: bench/results/${name}.json and .svg`);
  return 0;
}

main()
  .then(
    (code) => code,
    (error: unknown) => {
      console.error(error instanceof Error ? error.message : String(error));
      return 1;
    },
  )
  .then(async (code) => {
    await ctx.close();
    process.exit(code);
  });
