/**
 * Identification benchmark: how long cutting every changed group of the reference
 * definition (examples/subscription-version.ts) into partitions takes, compared with one
 * index-only scan that counts the same eligible rows, in the same run on the same machine.
 * Prints both times, the ratio, the peak RSS of this process and, with --explain, the plan of
 * the boundary walk for one group.
 *
 *   node bench/identify.ts [--rows 2000000] [--products 50] [--changed 20]
 *                          [--partition-size 10000] [--repeat 5] [--schema tranche_bench]
 *                          [--reuse] [--explain]
 *
 * It works in its own schema (default `tranche_bench`), never touching other data. `--reuse`
 * keeps a data set of the same shape from an earlier run (seeding 10M rows takes minutes).
 * Speed never fails anything: this prints figures, see docs/identification.md.
 */
import { wholeFlag } from '../src/cli/parse.ts';
import { loadConfig } from '../src/config.ts';
import { createDb, type Db } from '../src/db.ts';
import { type Definitions, loadDefinitions } from '../src/definitions/load.ts';
import type { ResolvedDefinition } from '../src/definitions/resolve.ts';
import { computeBoundaries, startManualRun } from '../src/identification/identify.ts';
import { silentLogger } from '../src/logger.ts';
import { migrateToLatest } from '../src/migrate.ts';
import { FIXTURE_DEFINITION, FIXTURE_MIGRATION, seed } from '../src/seed.ts';
import { addSummaryRow } from './summary.ts';
import { benchArgs } from './args.ts';
import { processCpu } from './proc.ts';

const args = benchArgs(import.meta.url, {
  rows: { type: 'string', default: '2000000' },
  products: { type: 'string', default: '50' },
  changed: { type: 'string', default: '20' },
  'partition-size': { type: 'string', default: '10000' },
  repeat: { type: 'string', default: '5' },
  schema: { type: 'string', default: 'tranche_bench' },
  reuse: { type: 'boolean', default: false },
  explain: { type: 'boolean', default: false },
});

const rows = wholeFlag('rows', args.rows, 1);
const products = wholeFlag('products', args.products, 1);
const changed = wholeFlag('changed', args.changed, 1);
const partitionSize = wholeFlag('partition-size', args['partition-size'], 1);
const repeat = wholeFlag('repeat', args.repeat, 1);
if (!/^[a-z_][a-z0-9_]{0,62}$/.test(args.schema)) {
  console.error('--schema must be a lower-case SQL identifier');
  process.exit(2);
}

const fmt = (n: number) => n.toLocaleString('en-US');
const secs = (ms: number) => `${(ms / 1000).toFixed(3)} s`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const best = (xs: number[]) => Math.min(...xs);

const APP = `tranche:bench-${process.pid}`;

/**
 * CPU seconds used so far by this benchmark's Postgres backends (read from /proc, so only
 * when Postgres runs on this machine; null otherwise). Wall-clock times suffer when other
 * work shares the cores; backend CPU time does not, so the ratios are printed for both.
 */
async function backendCpu(db: Db): Promise<number | null> {
  const { rows } = await db.pool.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [APP]);
  let sum = 0;
  for (const { pid } of rows) {
    const cpu = processCpu(pid);
    if (cpu === null) return null;
    sum += cpu;
  }
  return sum;
}

/** Runs `fn` and returns its result with the backend CPU seconds it used. */
async function withCpu<T>(db: Db, fn: () => Promise<T>): Promise<T & { cpu: number | null }> {
  const before = await backendCpu(db);
  const result = await fn();
  const after = await backendCpu(db);
  return { ...result, cpu: before === null || after === null ? null : after - before };
}

interface Changed {
  group_key: string;
  target: string | null;
}

async function prepare(db: Db, definition: ResolvedDefinition): Promise<Changed[]> {
  const shape = await db.pool.query<{ subs: number; products: number }>(
    'SELECT (SELECT count(*) FROM subscriptions) AS subs, (SELECT count(*) FROM products) AS products',
  );
  const have = shape.rows[0]!;
  const list = async () => (await db.pool.query<Changed>(definition.statements.changedGroups, [null, null, definition.name])).rows;
  if (args.reuse && have.subs === rows && have.products === products && (await list()).length === changed) {
    // An earlier run may have been stopped before its VACUUM: index-only scans need it.
    await db.pool.query('VACUUM (ANALYZE) subscriptions');
    console.log(`reusing the data set in schema ${args.schema}: ${fmt(rows)} subscriptions (vacuumed)`);
  } else {
    const started = performance.now();
    const result = await seed(db, { rows, groups: products, changed, reset: true, deferIndexes: true });
    console.log(
      `seeded ${fmt(result.rows)} subscriptions over ${products} products (${changed} changed, ` +
        `${fmt(result.eligible)} eligible) in ${secs(performance.now() - started)} ` +
        '(indexes rebuilt after the insert, VACUUM ANALYZE)',
    );
  }
  return list();
}

const COUNT_ELIGIBLE = `SELECT sum(c.n)::bigint AS n
  FROM products p
  CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM subscriptions s
    WHERE s.product_key = p.product_key AND s.product_version < p.product_version
  ) c
  WHERE p.product_key = ANY ($1::text[])`;

/**
 * (a) The baseline: an index-only scan per changed product counting its eligible rows, in
 * one statement; `serial` forbids parallel workers (the walk cannot use them).
 */
async function countEligible(db: Db, serial: boolean, list: Changed[]): Promise<{ ms: number; rows: number }> {
  const client = await db.pool.connect();
  try {
    await client.query(`SET max_parallel_workers_per_gather = ${serial ? 0 : 2}`);
    const started = performance.now();
    const { rows: result } = await client.query<{ n: number }>(COUNT_ELIGIBLE, [list.map((g) => g.group_key)]);
    const ms = performance.now() - started;
    await client.query('RESET max_parallel_workers_per_gather');
    return { ms, rows: result[0]?.n ?? 0 };
  } finally {
    client.release();
  }
}

/**
 * (b) Identification's boundary walks: one statement per group, as identifyRun runs them
 * (`concurrency` 1), or several groups at once on as many connections.
 */
async function identifyExact(
  db: Db,
  definition: ResolvedDefinition,
  list: Changed[],
  concurrency = 1,
): Promise<{ ms: number; rows: number; partitions: number }> {
  const started = performance.now();
  let partitions = 0;
  let total = 0;
  let next = 0;
  const worker = async () => {
    while (next < list.length) {
      const g = list[next++]!;
      const bounds = await computeBoundaries(db.pool, definition, { key: g.group_key, target: g.target }, partitionSize, 1_000_000);
      partitions += bounds.length;
      total += bounds.reduce((sum, b) => sum + b.rowCount, 0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { ms: performance.now() - started, rows: total, partitions };
}

/**
 * (d) The whole identification as `tranche identify` runs it: a run is created, then every
 * changed product's partitions and tasks are computed and written (identifyRun, products two
 * at a time by default). Earlier runs are removed first, so every repetition starts alike.
 */
async function identifyFull(db: Db, definitions: Definitions): Promise<{ ms: number; rows: number; partitions: number }> {
  await db.pool.query('TRUNCATE partitions, run_groups, scheduled_tasks, cron_slots, migration_runs RESTART IDENTITY CASCADE');
  const started = performance.now();
  const result = await startManualRun(
    { db, coordination: null, log: silentLogger(), instanceId: 'bench', leaseMs: 60_000, definitions },
    { migration: FIXTURE_MIGRATION, partitionSize, maxPartitions: 1_000_000 },
  );
  return { ms: performance.now() - started, rows: result.rows, partitions: result.partitions };
}

/**
 * The plan of one group's boundary walk, with actual rows and buffers: the walk runs inside
 * tranche_boundaries, so its cursor's plan comes from auto_explain (nested statements, sent
 * to this client as notices).
 */
async function explainOneGroup(db: Db, definition: ResolvedDefinition, group: Changed): Promise<void> {
  const client = await db.pool.connect();
  const notices: string[] = [];
  const onNotice = (n: { message?: string }) => notices.push(n.message ?? '');
  client.on('notice', onNotice);
  try {
    await client.query(`LOAD 'auto_explain'`);
    for (const setting of ['log_min_duration = 0', 'log_nested_statements = on', 'log_analyze = on', 'log_buffers = on', 'log_level = notice']) {
      await client.query(`SET auto_explain.${setting}`);
    }
    await computeBoundaries(client, definition, { key: group.group_key, target: group.target }, partitionSize, 1_000_000);
    await client.query('SET auto_explain.log_min_duration = -1');
    console.log(`\nboundary walk for ${group.group_key} (auto_explain of the statements inside tranche_boundaries):`);
    for (const n of notices) console.log(n.replace(/^duration: /, '-- duration: '));
  } finally {
    client.off('notice', onNotice);
    client.release(true); // auto_explain stays loaded in this session: do not reuse it
  }
}

async function main(): Promise<void> {
  const config = loadConfig(process.env, { DB_SCHEMA: args.schema });
  const db = createDb({ ...config, dbPoolSize: 4, applicationName: APP });
  try {
    const server = await db.pool.query<{ v: string }>(`SELECT current_setting('server_version') AS v`);
    console.log(
      `identification benchmark: ${fmt(rows)} subscriptions, ${products} products (${changed} changed), ` +
        `partition size ${fmt(partitionSize)}; PostgreSQL ${server.rows[0]?.v}, Node ${process.version}, ` +
        `${(await import('node:os')).availableParallelism()} cores`,
    );
    await migrateToLatest(db);
    const definitions = await loadDefinitions(db.pool, [FIXTURE_DEFINITION]);
    const definition = definitions.require(FIXTURE_MIGRATION);
    const list = await prepare(db, definition);
    const plan = await db.pool.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN SELECT count(*) FROM subscriptions s JOIN products p USING (product_key) WHERE s.product_key = $1 AND s.product_version < p.product_version`,
      [list[0]!.group_key],
    );
    console.log(`count plan for one product (parallel allowed): ${plan.rows.map((r) => r['QUERY PLAN'].trim()).join(' | ')}`);

    // Warm the cache once with each, then alternate so that none gets a warmer cache.
    await countEligible(db, false, list);
    await identifyExact(db, definition, list);
    // Both connections of the pool open, so that CPU accounting sees every backend.
    await Promise.all([1, 2].map(() => db.pool.query('SELECT pg_sleep(0.05)')));
    const times = { parallel: [] as number[], serial: [] as number[], walk: [] as number[], walk2: [] as number[], full: [] as number[] };
    const cpu = { serial: [] as number[], walk: [] as number[] };
    const keepCpu = (xs: number[], value: number | null) => {
      if (value !== null) xs.push(value);
    };
    let eligible = 0;
    let exact = { rows: 0, partitions: 0 };
    for (let i = 0; i < repeat; i++) {
      const c = await countEligible(db, false, list);
      times.parallel.push(c.ms);
      eligible = c.rows;
      const cs = await withCpu(db, () => countEligible(db, true, list));
      times.serial.push(cs.ms);
      keepCpu(cpu.serial, cs.cpu);
      const w = await withCpu(db, () => identifyExact(db, definition, list));
      times.walk.push(w.ms);
      keepCpu(cpu.walk, w.cpu);
      exact = w;
      times.walk2.push((await identifyExact(db, definition, list, 2)).ms);
      const full = await identifyFull(db, definitions);
      if (full.rows !== w.rows || full.partitions !== w.partitions) throw new Error('identifyRun and the boundary walks disagree');
      times.full.push(full.ms);
    }
    if (exact.rows !== eligible) throw new Error(`the partitions hold ${exact.rows} rows, the count says ${eligible}`);
    const line = (label: string, xs: number[]) =>
      console.log(`${label.padEnd(72)} median ${secs(median(xs)).padStart(9)}, best ${secs(best(xs)).padStart(9)}   (${xs.map((t) => secs(t)).join(', ')})`);
    const ratio = (x: number[], y: number[]) => `${(median(x) / median(y)).toFixed(2)}x (best/best ${(best(x) / best(y)).toFixed(2)}x)`;
    console.log('');
    line(`(a)  index-only count of ${fmt(eligible)} eligible rows`, times.parallel);
    line(`(a') the same count, no parallel workers`, times.serial);
    line(`(b)  boundary walks, one group at a time, ${fmt(exact.partitions)} partitions`, times.walk);
    line(`(b') the same, two groups at a time (the default, IDENTIFY_CONCURRENCY=2)`, times.walk2);
    line(`(d)  whole identification (tranche identify: run, partitions, tasks)`, times.full);
    console.log(`     ratio (b)/(a) = ${ratio(times.walk, times.parallel)}   (b)/(a') = ${ratio(times.walk, times.serial)}`);
    console.log(`     ratio (b')/(a) = ${ratio(times.walk2, times.parallel)}   (b')/(a') = ${ratio(times.walk2, times.serial)}`);
    console.log(`     ratio (d)/(a) = ${ratio(times.full, times.parallel)}   (d)/(a') = ${ratio(times.full, times.serial)}   <- the figure the target is about`);
    addSummaryRow({
      section: 'identification',
      what: `whole identification, ${fmt(eligible)} eligible rows`,
      figure: secs(median(times.full)),
      baseline: `index-only count ${secs(median(times.parallel))}`,
      ratio: `${(median(times.full) / median(times.parallel)).toFixed(2)}x`,
    });
    if (cpu.serial.length === repeat) {
      console.log(
        `     Postgres backend CPU time (median): (a') ${median(cpu.serial).toFixed(2)} s, (b) ${median(cpu.walk).toFixed(2)} s;` +
          ` (b)/(a') = ${(median(cpu.walk) / median(cpu.serial)).toFixed(2)}x`,
      );
    }

    if (args.explain) await explainOneGroup(db, definition, list[0]!);
  } finally {
    await db.close();
  }
  const rssMb = process.resourceUsage().maxRSS / 1024;
  console.log(`\npeak RSS of this process: ${rssMb.toFixed(0)} MB (target < 200 MB)`);
}

await main();
