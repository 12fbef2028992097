/**
 * Identification benchmark: how long cutting every changed product into partitions takes,
 * compared with one index-only scan that counts the same eligible rows, in the same run on
 * the same machine. Prints both times, the ratio, the peak RSS of this process and the
 * plan of the boundary query for one product.
 *
 *   node bench/identify.ts [--rows 2000000] [--products 50] [--changed 20]
 *                          [--partition-size 10000] [--repeat 5] [--schema tranche_bench]
 *                          [--reuse] [--explain] [--sample-percent P]
 *
 * It works in its own schema (default `tranche_bench`), never touching other data. `--reuse`
 * keeps a data set of the same shape from an earlier run (seeding 10M rows takes minutes).
 * `--sample-percent` sets the share of rows sampled for the boundaries (default: the service's
 * choice for the partition size).
 * Speed never fails anything: this prints figures, see docs/identification.md.
 */
import { wholeFlag } from '../src/cli/parse.ts';
import { loadConfig } from '../src/config.ts';
import { createDb, type Db } from '../src/db.ts';
import { computeBoundaries, type PartitionBounds, startManualRun } from '../src/identification/identify.ts';
import { silentLogger } from '../src/logger.ts';
import { computeSampledBoundaries, samplePercentFor, type SampledPartitionBounds } from '../src/identification/sampled-boundaries.ts';
import { migrateToLatest } from '../src/migrate.ts';
import { seed } from '../src/seed.ts';
import { loadSql } from '../src/sql.ts';
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
  'sample-percent': { type: 'string' },
});

const rows = wholeFlag('rows', args.rows, 1);
const products = wholeFlag('products', args.products, 1);
const changed = wholeFlag('changed', args.changed, 1);
const partitionSize = wholeFlag('partition-size', args['partition-size'], 1);
const repeat = wholeFlag('repeat', args.repeat, 1);
const samplePercent = args['sample-percent'] === undefined ? samplePercentFor(partitionSize) : Number(args['sample-percent']);
if (!(samplePercent > 0 && samplePercent <= 100)) {
  console.error(`--sample-percent must be a number in (0, 100] (got "${args['sample-percent']}")`);
  process.exit(2);
}
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
  product_key: string;
  product_version: number;
}

async function prepare(db: Db): Promise<Changed[]> {
  await migrateToLatest(db);
  const shape = await db.pool.query<{ subs: number; products: number; changed: number }>(
    `SELECT (SELECT count(*) FROM subscriptions) AS subs, (SELECT count(*) FROM products) AS products,
            (SELECT count(*) FROM products WHERE product_version > coalesce(migrated_version, -1)) AS changed`,
  );
  const have = shape.rows[0]!;
  if (args.reuse && have.subs === rows && have.products === products && have.changed === changed) {
    // An earlier run may have been stopped before its VACUUM: index-only scans need it.
    await db.pool.query('VACUUM (ANALYZE) subscriptions');
    console.log(`reusing the data set in schema ${args.schema}: ${fmt(rows)} subscriptions (vacuumed)`);
  } else {
    const started = performance.now();
    const result = await seed(db, { subscriptions: rows, products, changed, reset: true, deferIndexes: true });
    console.log(
      `seeded ${fmt(result.subscriptions)} subscriptions over ${products} products (${changed} changed, ` +
        `${fmt(result.eligible)} eligible) in ${secs(performance.now() - started)} ` +
        '(indexes rebuilt after the insert, VACUUM ANALYZE)',
    );
  }
  const { rows: list } = await db.pool.query<Changed>(loadSql('changed-products'), [null, null]);
  return list;
}

const COUNT_ELIGIBLE = `SELECT sum(c.n)::bigint AS n
  FROM products p
  CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM subscriptions s
    WHERE s.product_key = p.product_key AND s.product_version < p.product_version
  ) c
  WHERE p.migrated_version IS NULL OR p.migrated_version < p.product_version`;

/**
 * (a) The baseline: an index-only scan per changed product counting its eligible rows, in
 * one statement; `serial` forbids parallel workers (the walk cannot use them).
 */
async function countEligible(db: Db, serial: boolean): Promise<{ ms: number; rows: number }> {
  const client = await db.pool.connect();
  try {
    await client.query(`SET max_parallel_workers_per_gather = ${serial ? 0 : 2}`);
    const started = performance.now();
    const { rows: result } = await client.query<{ n: number }>(COUNT_ELIGIBLE);
    const ms = performance.now() - started;
    await client.query('RESET max_parallel_workers_per_gather');
    return { ms, rows: result[0]?.n ?? 0 };
  } finally {
    client.release();
  }
}

/** (c) Sampled boundaries: one page sample for all products, one probe per boundary. */
async function identifySampled(db: Db, list: Changed[]): Promise<{ ms: number; bounds: SampledPartitionBounds[] }> {
  const started = performance.now();
  const bounds = await computeSampledBoundaries(
    db.pool,
    list.map((p) => ({ productKey: p.product_key, targetVersion: p.product_version })),
    partitionSize,
    1_000_000,
    samplePercent,
  );
  return { ms: performance.now() - started, bounds };
}

/** Counts the rows of every sampled partition (untimed) and checks the cover and the sizes. */
async function checkSampled(db: Db, list: Changed[], bounds: SampledPartitionBounds[], eligible: number): Promise<string[]> {
  const { rows } = await db.pool.query<{ product_key: string; seq: number; actual: number; gap: number }>(
    `SELECT b.product_key, b.seq,
            (SELECT count(*) FROM subscriptions s
             WHERE s.product_key = b.product_key AND s.product_version < t.v
               AND (s.created_date, s.id) >= (b.min_d, b.min_i) AND (s.created_date, s.id) <= (b.max_d, b.max_i)) AS actual,
            (SELECT count(*) FROM subscriptions s
             WHERE s.product_key = b.product_key AND s.product_version < t.v
               AND (s.created_date, s.id) > (b.max_d, b.max_i) AND (s.created_date, s.id) < (b.next_d, b.next_i)) AS gap
     FROM (SELECT *, lead(min_d) OVER w AS next_d, lead(min_i) OVER w AS next_i
           FROM unnest($1::text[], $2::integer[], $3::timestamptz[], $4::bigint[], $5::timestamptz[], $6::bigint[])
             AS u(product_key, seq, min_d, min_i, max_d, max_i)
           WINDOW w AS (PARTITION BY product_key ORDER BY seq)) b
     JOIN unnest($7::text[], $8::integer[]) AS t(k, v) ON t.k = b.product_key
     ORDER BY b.product_key, b.seq`,
    [
      bounds.map((b) => b.productKey),
      bounds.map((b) => b.seq),
      bounds.map((b) => b.minCreatedDate),
      bounds.map((b) => b.minId),
      bounds.map((b) => b.maxCreatedDate),
      bounds.map((b) => b.maxId),
      list.map((p) => p.product_key),
      list.map((p) => p.product_version),
    ],
  );
  const last = new Map<string, number>();
  for (const r of rows) last.set(r.product_key, Math.max(last.get(r.product_key) ?? 0, r.seq));
  const total = rows.reduce((sum, r) => sum + r.actual, 0);
  const gaps = rows.reduce((sum, r) => sum + r.gap, 0);
  const full = rows.filter((r) => r.seq < last.get(r.product_key)!);
  const deviation = full.map((r) => (r.actual - partitionSize) / partitionSize);
  const worst = deviation.reduce((m, d) => Math.max(m, Math.abs(d)), 0);
  const outside = deviation.filter((d) => Math.abs(d) > 0.1).length;
  const lastOver = rows.filter((r) => r.seq === last.get(r.product_key) && r.actual > partitionSize * 1.1).length;
  return [
    `cover: ${fmt(total)} rows in ${fmt(rows.length)} partitions, ${fmt(eligible)} eligible, ${fmt(gaps)} rows between partitions` +
      (total === eligible && gaps === 0 ? ' (exact)' : ' (NOT EXACT)'),
    `sizes: worst deviation of a non-last partition ${(worst * 100).toFixed(1)}%, ` +
      `${outside} of ${full.length} outside ±10%, ${lastOver} last partitions above +10%`,
  ];
}

/**
 * (b) Identification with exact boundaries: one boundary query per product, as identifyRun
 * does (`concurrency` 1), or several products at once on as many connections; with the
 * single-pass cursor (the default) or the recursive walk.
 */
async function identifyExact(
  db: Db,
  list: Changed[],
  concurrency = 1,
  statement: 'partition-boundaries' | 'partition-boundaries-walk' = 'partition-boundaries',
): Promise<{ ms: number; rows: number; partitions: number; bounds: PartitionBounds[][] }> {
  const started = performance.now();
  const bounds: PartitionBounds[][] = [];
  let next = 0;
  const worker = async () => {
    while (next < list.length) {
      const i = next++;
      const p = list[i]!;
      bounds[i] = await computeBoundaries(db.pool, p.product_key, p.product_version, partitionSize, 1_000_000, statement);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const ms = performance.now() - started;
  const flat = bounds.flat();
  return { ms, rows: flat.reduce((s, b) => s + b.rowCount, 0), partitions: flat.length, bounds };
}

/**
 * (d) The whole identification as `tranche identify` runs it: a run is created, then every
 * changed product's partitions and tasks are computed and written (identifyRun, products two
 * at a time by default). Earlier runs are removed first, so every repetition starts alike.
 */
async function identifyFull(db: Db): Promise<{ ms: number; rows: number; partitions: number }> {
  await db.pool.query('TRUNCATE partitions, run_products, scheduled_tasks, cron_slots, migration_runs RESTART IDENTITY CASCADE');
  const started = performance.now();
  const result = await startManualRun(
    { db, coordination: null, log: silentLogger(), instanceId: 'bench', leaseMs: 60_000 },
    { partitionSize, maxPartitions: 1_000_000 },
  );
  return { ms: performance.now() - started, rows: result.rows, partitions: result.partitions };
}

/**
 * The plans of one product's boundary statements, with actual rows and buffers. The single
 * pass runs inside a function, so its cursor's plan comes from auto_explain (nested
 * statements, sent to this client as notices); the recursive walk is one EXPLAIN.
 */
async function explainOneProduct(db: Db, product: Changed): Promise<void> {
  const params = [product.product_key, product.product_version, partitionSize, 1_000_000];
  const client = await db.pool.connect();
  const notices: string[] = [];
  const onNotice = (n: { message?: string }) => notices.push(n.message ?? '');
  client.on('notice', onNotice);
  try {
    await client.query(`LOAD 'auto_explain'`);
    for (const setting of ['log_min_duration = 0', 'log_nested_statements = on', 'log_analyze = on', 'log_buffers = on', 'log_level = notice']) {
      await client.query(`SET auto_explain.${setting}`);
    }
    await client.query(loadSql('partition-boundaries'), params);
    await client.query('SET auto_explain.log_min_duration = -1');
    console.log(`\nsingle pass for ${product.product_key} (auto_explain of the statements inside tranche_partition_boundaries):`);
    for (const n of notices) console.log(n.replace(/^duration: /, '-- duration: '));
    const walk = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${loadSql('partition-boundaries-walk')}`, params);
    console.log(`\nrecursive walk for ${product.product_key}, EXPLAIN (ANALYZE, BUFFERS):`);
    for (const r of walk.rows) console.log(r['QUERY PLAN']);
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
    const list = await prepare(db);
    const plan = await db.pool.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN SELECT count(*) FROM subscriptions s WHERE s.product_key = $1 AND s.product_version < $2`,
      [list[0]!.product_key, list[0]!.product_version],
    );
    console.log(`count plan for one product (parallel allowed): ${plan.rows.map((r) => r['QUERY PLAN'].trim()).join(' | ')}`);

    // Warm the cache once with each, then alternate so that none gets a warmer cache.
    await countEligible(db, false);
    await identifyExact(db, list);
    await identifyExact(db, list, 1, 'partition-boundaries-walk');
    await identifySampled(db, list);
    // Both connections of the pool open, so that CPU accounting sees every backend.
    await Promise.all([1, 2].map(() => db.pool.query('SELECT pg_sleep(0.05)')));
    const times = { parallel: [] as number[], serial: [] as number[], walk: [] as number[], walk2: [] as number[], recursive: [] as number[], sampled: [] as number[], full: [] as number[] };
    const cpu = { serial: [] as number[], walk: [] as number[], recursive: [] as number[], sampled: [] as number[] };
    const keepCpu = (list: number[], value: number | null) => {
      if (value !== null) list.push(value);
    };
    let eligible = 0;
    let exact = { rows: 0, partitions: 0 };
    let sampled: SampledPartitionBounds[] = [];
    for (let i = 0; i < repeat; i++) {
      const c = await countEligible(db, false);
      times.parallel.push(c.ms);
      eligible = c.rows;
      const cs = await withCpu(db, () => countEligible(db, true));
      times.serial.push(cs.ms);
      keepCpu(cpu.serial, cs.cpu);
      const w = await withCpu(db, () => identifyExact(db, list));
      times.walk.push(w.ms);
      keepCpu(cpu.walk, w.cpu);
      exact = w;
      times.walk2.push((await identifyExact(db, list, 2)).ms);
      const full = await identifyFull(db);
      if (full.rows !== w.rows || full.partitions !== w.partitions) throw new Error('identifyRun and the boundary queries disagree');
      times.full.push(full.ms);
      const r = await withCpu(db, () => identifyExact(db, list, 1, 'partition-boundaries-walk'));
      times.recursive.push(r.ms);
      keepCpu(cpu.recursive, r.cpu);
      if (r.rows !== w.rows || JSON.stringify(r.bounds) !== JSON.stringify(w.bounds)) throw new Error('the recursive walk and the single pass disagree');
      const sm = await withCpu(db, () => identifySampled(db, list));
      times.sampled.push(sm.ms);
      keepCpu(cpu.sampled, sm.cpu);
      sampled = sm.bounds;
    }
    if (exact.rows !== eligible) throw new Error(`the partitions hold ${exact.rows} rows, the count says ${eligible}`);
    const line = (label: string, xs: number[]) =>
      console.log(`${label.padEnd(72)} median ${secs(median(xs)).padStart(9)}, best ${secs(best(xs)).padStart(9)}   (${xs.map((t) => secs(t)).join(', ')})`);
    const ratio = (x: number[], y: number[]) => `${(median(x) / median(y)).toFixed(2)}x (best/best ${(best(x) / best(y)).toFixed(2)}x)`;
    console.log('');
    line(`(a)  index-only count of ${fmt(eligible)} eligible rows`, times.parallel);
    line(`(a') the same count, no parallel workers`, times.serial);
    line(`(b)  exact, single pass, one product at a time, ${fmt(exact.partitions)} partitions`, times.walk);
    line(`(b') the same, two products at a time (the default, IDENTIFY_CONCURRENCY=2)`, times.walk2);
    line(`(b2) exact, recursive walk (the previous query)`, times.recursive);
    line(`(d)  whole identification (tranche identify: run, partitions, tasks)`, times.full);
    line(`(c)  sampled boundaries (SYSTEM ${samplePercent.toFixed(2)}%), ${fmt(sampled.length)} partitions`, times.sampled);
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
    console.log(`     ratio (b2)/(a) = ${ratio(times.recursive, times.parallel)}   (b2)/(a') = ${ratio(times.recursive, times.serial)}`);
    console.log(`     ratio (c)/(a) = ${ratio(times.sampled, times.parallel)}   (c)/(a') = ${ratio(times.sampled, times.serial)}`);
    if (cpu.serial.length === repeat) {
      const c = (xs: number[]) => `${median(xs).toFixed(2)} s`;
      console.log(
        `     Postgres backend CPU time (median): (a') ${c(cpu.serial)}, (b) ${c(cpu.walk)}, (b2) ${c(cpu.recursive)}, (c) ${c(cpu.sampled)};` +
          ` (b)/(a') = ${(median(cpu.walk) / median(cpu.serial)).toFixed(2)}x, (b2)/(a') = ${(median(cpu.recursive) / median(cpu.serial)).toFixed(2)}x,` +
          ` (c)/(a') = ${(median(cpu.sampled) / median(cpu.serial)).toFixed(2)}x`,
      );
    }
    for (const l of await checkSampled(db, list, sampled, eligible)) console.log(`     (c) ${l}`);

    if (args.explain) await explainOneProduct(db, list[0]!);
  } finally {
    await db.close();
  }
  const rssMb = process.resourceUsage().maxRSS / 1024;
  console.log(`\npeak RSS of this process: ${rssMb.toFixed(0)} MB (target < 200 MB)`);
}

await main();
