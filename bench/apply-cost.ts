/**
 * What one row's update costs Postgres when the applier does it, beside the bulk UPDATE doing
 * the same change, in the same table state: the CPU seconds of the Postgres backend per row.
 * Every chunk here commits, as the applier's do,
 * so the table, its indexes and the buffer pool go through what a real run does to them.
 *
 *   node bench/apply-cost.ts [--chunks 5000] [--order random,ids] [--rounds 2]
 *
 * Works on the e2e data set (schema bench_e2e; seed it with `node bench/e2e.ts --instances 1`).
 * Per round and per chunk setting: the table is reset (every row back to version 1, CLUSTER,
 * CHECKPOINT); then one half of the products is updated by the applier's statement (generated from
 * examples/subscription-version.ts) in committed
 * chunks, and the other half by one bulk `UPDATE … WHERE product_key = ANY(…)`. The halves
 * and which side goes first swap from one round to the next.
 *
 * `--order random`: each chunk holds rows drawn at random from the half, sorted by id (what
 * the applier gets: a partition's rows lie all over the table, and the applier sorts each
 * chunk). `--order ids`: consecutive rows of the half in id order (what it would get if a
 * chunk's rows shared heap pages): the part of the cost that is locality.
 *
 * Linux only (reads /proc/<backend pid>/stat). Prints figures; nothing fails on speed.
 */
import pg from 'pg';
import { wholeFlag } from '../src/cli/parse.ts';
import { importDefinitions } from '../src/definitions/load.ts';
import { resolveDefinition } from '../src/definitions/resolve.ts';
import { FIXTURE_DEFINITION } from '../src/seed.ts';
import { shuffled } from '../test/support/prng.ts';
import { benchArgs } from './args.ts';
import { resetSubscriptions } from './data-set.ts';
import { processCpu } from './proc.ts';

const args = benchArgs(import.meta.url, {
  chunks: { type: 'string', default: '5000' },
  order: { type: 'string', default: 'random,ids' },
  rounds: { type: 'string', default: '2' },
});
const chunkSizes = String(args.chunks)
  .split(',')
  .map((s) => wholeFlag('chunks', s.trim(), 1));
const orders = String(args.order).split(',').map((s) => s.trim());
for (const order of orders) {
  if (order !== 'random' && order !== 'ids') {
    console.error(`--order takes random, ids or both (got "${order}")`);
    process.exit(2);
  }
}
const rounds = wholeFlag('rounds', args.rounds, 1);

const client = new pg.Client({
  connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  options: '-c search_path=bench_e2e',
});
await client.connect();
const { rows: present } = await client.query<{ n: string }>(
  "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'bench_e2e' AND tablename = 'subscriptions'",
);
if (present[0]?.n !== '1' || (await client.query('SELECT 1 FROM subscriptions LIMIT 1')).rowCount === 0) {
  console.error('no e2e data set: run `node bench/e2e.ts --instances 1` first (it seeds schema bench_e2e)');
  process.exit(2);
}

const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
if (processCpu(pid) === null) {
  console.error(`cannot read the CPU time of Postgres backend ${pid} from /proc: Postgres must run on this machine (Linux)`);
  process.exit(2);
}
const backendCpu = () => processCpu(pid) ?? Number.NaN;

async function reset(): Promise<void> {
  await resetSubscriptions(client);
  await client.query('CHECKPOINT');
}

const keys = (await client.query<{ k: string }>('SELECT DISTINCT product_key AS k FROM subscriptions ORDER BY 1')).rows.map((r) => r.k);
if (keys.length < 2) {
  console.error('the e2e data set needs at least two products');
  process.exit(2);
}
const halves = [keys.slice(0, Math.floor(keys.length / 2)), keys.slice(Math.floor(keys.length / 2))] as const;
// Any existing partition: the statement then locks it and counts on it as in a run (its
// rows_applied grows; bench/e2e.ts empties the partitions table before each measurement).
const partitionId = (await client.query<{ id: string | null }>('SELECT min(id)::text AS id FROM partitions')).rows[0]?.id ?? '1';
// The statement the applier runs: generated from the reference definition.
const apply = (await resolveDefinition(client, (await importDefinitions([FIXTURE_DEFINITION]))[0]!)).statements.apply;

interface Cost {
  rows: number;
  cpu: number;
  wall: number;
}

async function bulk(half: readonly string[]): Promise<Cost> {
  const t = performance.now();
  const c = backendCpu();
  const r = await client.query(
    'UPDATE subscriptions s SET product_version = 2, updated_at = now() WHERE s.product_key = ANY ($1) AND s.product_version < 2',
    [half],
  );
  return { rows: r.rowCount ?? 0, cpu: backendCpu() - c, wall: (performance.now() - t) / 1000 };
}

async function applied(half: readonly string[], chunkSize: number, order: string): Promise<Cost> {
  const inOrder = (await client.query<{ id: string }>('SELECT id FROM subscriptions WHERE product_key = ANY ($1) ORDER BY id', [half])).rows.map((r) =>
    Number(r.id),
  );
  const ids = order === 'random' ? shuffled(inOrder, Math.random) : inOrder;
  const t = performance.now();
  const c = backendCpu();
  let rows = 0;
  for (let start = 0; start < ids.length; start += chunkSize) {
    const chunk = ids.slice(start, start + chunkSize).sort((a, b) => a - b);
    const same = (v: string) => `{${chunk.map(() => v).join(',')}}`;
    const r = await client.query<{ n: string }>(apply, [`{${chunk.join(',')}}`, same('2'), same('1'), same(partitionId), same('1')]);
    for (const row of r.rows) rows += Number(row.n);
  }
  return { rows, cpu: backendCpu() - c, wall: (performance.now() - t) / 1000 };
}

const perRow = (cost: Cost, of: 'cpu' | 'wall') => (cost[of] / cost.rows) * 1e6;
const results: { what: string; apply: Cost; bulk: Cost }[] = [];
console.log(`apply statement against the bulk UPDATE, ${rounds} round(s), products ${halves[0].length} + ${halves[1].length}`);
for (const chunkSize of chunkSizes) {
  for (const order of orders) {
    for (let round = 0; round < rounds; round++) {
      await reset();
      // Even rounds: the first half applied, then the second in bulk; odd rounds the reverse.
      let applyCost: Cost;
      let b: Cost;
      if (round % 2 === 0) {
        applyCost = await applied(halves[0], chunkSize, order);
        b = await bulk(halves[1]);
      } else {
        b = await bulk(halves[0]);
        applyCost = await applied(halves[1], chunkSize, order);
      }
      const what = `chunks of ${chunkSize}, ${order === 'random' ? 'random rows' : 'consecutive ids'}`;
      results.push({ what, apply: applyCost, bulk: b });
      console.log(
        `  ${what}, round ${round + 1}: apply ${perRow(applyCost, 'cpu').toFixed(1)} µs/row CPU (${applyCost.rows} rows), ` +
          `bulk ${perRow(b, 'cpu').toFixed(1)} µs/row CPU (${b.rows} rows), ratio ${(perRow(applyCost, 'cpu') / perRow(b, 'cpu')).toFixed(2)}x`,
      );
    }
  }
}
await reset();
await client.end();

console.log('\nPostgres backend CPU per row (µs), summed over the rounds');
console.log(`${'apply statement'.padEnd(38)} ${'apply'.padStart(7)} ${'bulk'.padStart(7)}  ratio  (wall µs/row: apply, bulk)`);
const groups = new Map<string, { apply: Cost; bulk: Cost }>();
for (const r of results) {
  const g = groups.get(r.what) ?? { apply: { rows: 0, cpu: 0, wall: 0 }, bulk: { rows: 0, cpu: 0, wall: 0 } };
  for (const side of ['apply', 'bulk'] as const) {
    g[side].rows += r[side].rows;
    g[side].cpu += r[side].cpu;
    g[side].wall += r[side].wall;
  }
  groups.set(r.what, g);
}
for (const [what, g] of groups) {
  const a = perRow(g.apply, 'cpu');
  const b = perRow(g.bulk, 'cpu');
  console.log(
    `${what.padEnd(38)} ${a.toFixed(1).padStart(7)} ${b.toFixed(1).padStart(7)}  ${(a / b).toFixed(2)}x  (${perRow(g.apply, 'wall').toFixed(1)}, ${perRow(g.bulk, 'wall').toFixed(1)})`,
  );
}
