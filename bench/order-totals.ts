/**
 * The second definition's benchmark (examples/order-totals.ts: no groups, a uuid key, an
 * integer partition column, a `set` that reads another table): rows per second of one tranche
 * instance (identification start to run completed) beside one bulk statement doing the same
 * change, measured in the same run on the same data, alternating `--repeat` times.
 *
 *   node bench/order-totals.ts [--orders 300000] [--eligible 0.75] [--repeat 2]
 *                              [--partition-size 20000] [--reuse]
 *
 * It works in its own schema (`bench_orders`), Redis prefix, topics and consumer group, and
 * creates its tables itself (test/support/fixtures.ts), as a user's would exist. Speed never
 * fails anything: this prints figures, see docs/benchmarks.md.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { wholeFlag } from '../src/cli/parse.ts';
import { loadConfig } from '../src/config.ts';
import { createCoordination } from '../src/coordination/redis.ts';
import { createDb } from '../src/db.ts';
import { loadDefinitions } from '../src/definitions/load.ts';
import { startManualRun } from '../src/identification/identify.ts';
import { silentLogger } from '../src/logger.ts';
import { migrateToLatest } from '../src/migrate.ts';
import { getRunStatus } from '../src/runs/run-store.ts';
import { ensureTopics } from '../src/service.ts';
import { createStreamClient } from '../src/stream/kafka.ts';
import { createOrders, ORDER_TOTALS, wrongTotals } from '../test/support/fixtures.ts';
import { benchArgs } from './args.ts';

const args = benchArgs(import.meta.url, {
  orders: { type: 'string', default: '300000' },
  eligible: { type: 'string', default: '0.75' },
  repeat: { type: 'string', default: '2' },
  'partition-size': { type: 'string', default: '20000' },
  reuse: { type: 'boolean', default: false },
});
const orders = wholeFlag('orders', args.orders, 1);
const share = Number(args.eligible);
if (!(share > 0 && share <= 1)) {
  console.error(`--eligible must be a share of the orders in (0, 1] (got "${args.eligible}")`);
  process.exit(2);
}
const eligible = Math.round(orders * share);
const repeat = wholeFlag('repeat', args.repeat, 1);
const partitionSize = wholeFlag('partition-size', args['partition-size'], 1);

const BIN = fileURLToPath(new URL('../bin/tranche.js', import.meta.url));
const PORT = 18_790;
const env: Record<string, string> = {
  TRANCHE_DEFINITIONS: ORDER_TOTALS,
  DB_SCHEMA: 'bench_orders',
  REDIS_PREFIX: 'tranche-bench-orders',
  KAFKA_GROUP_ID: 'tranche-bench-orders-appliers',
  TOPIC_UPDATES: 'tranche-bench-orders.updates',
  TOPIC_DEAD_LETTERS: 'tranche-bench-orders.dead-letters',
  TOPIC_RUN_EVENTS: 'tranche-bench-orders.run-events',
  CRON_ENABLED: 'false',
  LOG_LEVEL: 'warn',
};
for (const key of ['DATABASE_URL', 'REDIS_URL', 'KAFKA_BROKERS']) if (process.env[key]) env[key] = process.env[key]!;
const config = loadConfig(env, { INSTANCE_ID: 'bench-orders' });
const db = createDb({ ...config, dbPoolSize: 4 });
const log = silentLogger();
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

/** Every order the fixture made eligible is NULL again; the table rewritten in key order. */
async function reset(): Promise<void> {
  await db.pool.query('UPDATE orders SET total_cents = NULL WHERE total_cents IS DISTINCT FROM -1');
  await db.pool.query('TRUNCATE partitions, run_groups, group_progress, scheduled_tasks, cron_slots, dead_letters, migration_runs RESTART IDENTITY CASCADE');
  await db.pool.query('CLUSTER orders USING orders_pkey');
  await db.pool.query('VACUUM (ANALYZE) orders');
}

async function bulk(): Promise<number> {
  const t = performance.now();
  const r = await db.pool.query(
    'UPDATE orders t SET total_cents = (SELECT coalesce(sum(l.cents), 0) FROM order_lines l WHERE l.order_id = t.id) WHERE total_cents IS NULL',
  );
  if (r.rowCount !== eligible) throw new Error(`the bulk statement changed ${r.rowCount} rows, not ${eligible}`);
  return (performance.now() - t) / 1000;
}

async function tranche(): Promise<number> {
  const child: ChildProcess = spawn(process.execPath, [BIN, 'serve'], {
    env: { ...process.env, ...env, INSTANCE_ID: 'bench-orders-1', HTTP_PORT: String(PORT) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    const deadline = Date.now() + 120_000;
    while (!(await fetch(`http://127.0.0.1:${PORT}/readyz`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false))) {
      if (child.exitCode !== null) throw new Error('the instance exited while starting');
      if (Date.now() > deadline) throw new Error('the instance was not ready in 120 s');
      await new Promise((r) => setTimeout(r, 250));
    }
    const co = createCoordination({ redisUrl: config.redisUrl, prefix: config.redisPrefix }, log);
    const t = performance.now();
    const run = await startManualRun(
      { db, coordination: co, log, instanceId: 'bench-orders', leaseMs: 15_000, definitions: await loadDefinitions(db.pool, config.definitions) },
      { migration: 'order-totals', partitionSize, maxPartitions: 1000 },
    );
    await co.close();
    for (;;) {
      const s = await getRunStatus(db.pool, run.runId);
      if (s?.status === 'completed') break;
      if (s?.status !== 'running' || child.exitCode !== null) throw new Error(`run ${run.runId} is ${s?.status}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return (performance.now() - t) / 1000;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

try {
  await migrateToLatest(db);
  const have = await db.pool.query<{ n: number; e: number }>(
    `SELECT (SELECT count(*) FROM orders)::int AS n, (SELECT count(*) FROM orders WHERE total_cents IS DISTINCT FROM -1)::int AS e`,
  ).catch(() => null);
  if (!(args.reuse && have?.rows[0]?.n === orders && have.rows[0].e === eligible)) {
    await db.pool.query('DROP TABLE IF EXISTS order_lines, orders');
    const t = performance.now();
    await createOrders(db, { orders, eligible });
    console.log(`created ${fmt(orders)} orders (${fmt(eligible)} eligible) with their lines in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }
  const stream = createStreamClient({ brokers: config.kafkaBrokers, clientId: 'bench-orders' }, log);
  await stream.deleteTopics([config.topicUpdates, config.topicDeadLetters, config.topicRunEvents]).catch(() => {});
  await ensureTopics(stream, config);
  await stream.disconnect();
  console.log(`order-totals benchmark: ${fmt(eligible)} eligible orders of ${fmt(orders)}, partitions of ${fmt(partitionSize)}, one instance`);
  const rows: { what: string; seconds: number }[] = [];
  for (let i = 0; i < repeat; i++) {
    await reset();
    rows.push({ what: '(a) one bulk UPDATE', seconds: await bulk() });
    await reset();
    rows.push({ what: 'tranche, 1 instance', seconds: await tranche() });
    if ((await wrongTotals(db)) !== 0) throw new Error('tranche left orders with a wrong total');
  }
  console.log(`\n${'what'.padEnd(24)} ${'seconds'.padStart(8)} ${'rows/s'.padStart(9)}  vs (a) of the same pass`);
  for (let i = 0; i < rows.length; i += 2) {
    const a = rows[i]!;
    const b = rows[i + 1]!;
    console.log(`${a.what.padEnd(24)} ${a.seconds.toFixed(1).padStart(8)} ${fmt(eligible / a.seconds).padStart(9)}  1.00x`);
    console.log(`${b.what.padEnd(24)} ${b.seconds.toFixed(1).padStart(8)} ${fmt(eligible / b.seconds).padStart(9)}  ${(a.seconds / b.seconds).toFixed(2)}x`);
  }
} finally {
  await db.close();
}
