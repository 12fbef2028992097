/**
 * Time from SIGKILL of an instance in the middle of partitions to those partitions running
 * again on another instance, with the default HEARTBEAT_TIMEOUT_MS (10 s), HEARTBEAT_INTERVAL_MS
 * (2 s) and POLL_INTERVAL_MS (2 s), and the update records produced twice because of it
 * (counted on the topic). Prints figures; never fails on speed.
 *
 *   node bench/kill-recovery.ts [--kills 1]
 *
 * Two `tranche serve` processes: the victim (2 worker slots) and the survivor (4 slots, so a
 * slot is free for each task it has to take over). A throttle keeps the partitions going long
 * enough. Its own schema, Redis prefix, topics and consumer group, dropped at the end.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';
import { wholeFlag } from '../src/cli/parse.ts';
import { loadConfig } from '../src/config.ts';
import { createCoordination } from '../src/coordination/redis.ts';
import { createDb } from '../src/db.ts';
import { startManualRun } from '../src/identification/identify.ts';
import { silentLogger } from '../src/logger.ts';
import { migrateToLatest } from '../src/migrate.ts';
import { FIXTURE_DEFINITION, FIXTURE_MIGRATION, seed } from '../src/seed.ts';
import { loadDefinitions } from '../src/definitions/load.ts';
import { ensureTopics } from '../src/service.ts';
import { createStreamClient } from '../src/stream/kafka.ts';
import { benchArgs } from './args.ts';
import { addSummaryRow } from './summary.ts';

// This benchmark's own topic reader loads kafkajs without the patches of src/stream, whose
// request queues arm timers with negative delays (harmless; Node 23+ warns about them).
process.removeAllListeners('warning');
process.on('warning', (w) => {
  if (w.name !== 'TimeoutNegativeWarning') process.stderr.write(`${w.name}: ${w.message}\n`);
});

const args = benchArgs(import.meta.url, { kills: { type: 'string', default: '1' } });
const kills = wholeFlag('kills', args.kills, 1);
const BIN = fileURLToPath(new URL('../bin/tranche.js', import.meta.url));
const id = randomBytes(4).toString('hex');
const env: Record<string, string> = {
  TRANCHE_DEFINITIONS: FIXTURE_DEFINITION,
  DB_SCHEMA: `bench_kill_${id}`,
  REDIS_PREFIX: `bench-kill-${id}`,
  KAFKA_GROUP_ID: `bench-kill-${id}`,
  TOPIC_UPDATES: `bench-kill-${id}.updates`,
  TOPIC_DEAD_LETTERS: `bench-kill-${id}.dead-letters`,
  TOPIC_RUN_EVENTS: `bench-kill-${id}.run-events`,
  CRON_ENABLED: 'false',
  HTTP_PORT: '0',
  THROTTLE_ROWS_PER_SECOND: '1500',
};
for (const key of ['DATABASE_URL', 'REDIS_URL', 'KAFKA_BROKERS']) if (process.env[key]) env[key] = process.env[key]!;
const config = loadConfig(env);
const log = silentLogger();
const db = createDb({ ...config, dbPoolSize: 5 });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function serve(instanceId: string, concurrency: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'serve'], {
    env: { ...process.env, ...env, INSTANCE_ID: instanceId, WORKER_CONCURRENCY: String(concurrency), LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let output = '';
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d) => {
      output += d;
      if (output.includes('"msg":"service started"')) resolve(child);
    });
    child.once('exit', () => reject(new Error(`${instanceId} exited:\n${output}`)));
  });
}

async function owned(runId: number): Promise<{ partition: number; by: string; offset: number | null; produced: number; rows: number }[]> {
  const { rows } = await db.pool.query(
    `SELECT p.id AS partition, t.picked_by AS by, p.offset_key AS offset, p.rows_produced AS produced, p.row_count AS rows
     FROM scheduled_tasks t JOIN partitions p ON p.id = t.task_instance::bigint WHERE t.picked AND p.run_id = $1`,
    [runId],
  );
  return rows;
}

async function recordsByPartition(): Promise<Map<number, { records: number; rows: Set<number> }>> {
  const kafka = new Kafka({ brokers: [...config.kafkaBrokers], clientId: 'bench-reader', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(config.topicUpdates);
  await admin.disconnect();
  const total = offsets.reduce((sum, o) => sum + Number(o.high) - Number(o.low), 0);
  const consumer = kafka.consumer({ groupId: `bench-reader-${randomBytes(4).toString('hex')}` });
  const result = new Map<number, { records: number; rows: Set<number> }>();
  let seen = 0;
  await consumer.connect();
  await consumer.subscribe({ topic: config.topicUpdates, fromBeginning: true });
  await new Promise<void>((resolve) => {
    void consumer.run({
      eachMessage: async ({ message }) => {
        const r = JSON.parse(message.value!.toString()) as { partitionId: number; id: number };
        const entry = result.get(r.partitionId) ?? { records: 0, rows: new Set<number>() };
        entry.records++;
        entry.rows.add(r.id);
        result.set(r.partitionId, entry);
        if (++seen >= total) resolve();
      },
    });
  });
  await consumer.disconnect();
  return result;
}

const children: ChildProcess[] = [];
// Interrupted: take the instances down with us.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const child of children) child.kill('SIGKILL');
    process.exit(130);
  });
}
const stream = createStreamClient({ brokers: config.kafkaBrokers, clientId: 'bench-kill' }, log);
try {
  await migrateToLatest(db);
  await ensureTopics(stream, config);
  await seed(db, { rows: 40_000, groups: 1, changed: 1 });
  const measurements: { recoveryMs: number; tasks: number; twice: number }[] = [];
  for (let k = 1; k <= kills; k++) {
    if (k > 1) await db.pool.query('UPDATE products SET product_version = product_version + 1');
    const victim = await serve(`victim-${k}`, 2);
    children.push(victim);
    const co = createCoordination({ redisUrl: config.redisUrl, prefix: config.redisPrefix }, log);
    const run = await startManualRun(
      { db, coordination: co, log, instanceId: 'bench', leaseMs: 10_000, definitions: await loadDefinitions(db.pool, config.definitions) },
      { migration: FIXTURE_MIGRATION, partitionSize: 10_000, maxPartitions: 100 },
    );
    await co.close();
    // The victim takes two partitions; the survivor (started next) the other two, with two slots to spare.
    while ((await owned(run.runId)).filter((o) => o.by === `victim-${k}` && o.offset !== null).length < 2) await sleep(20);
    const survivor = await serve(`survivor-${k}`, 4);
    children.push(survivor);
    const lost = (await owned(run.runId)).filter((o) => o.by === `victim-${k}`);
    const killedAt = Date.now();
    victim.kill('SIGKILL');
    for (;;) {
      const now = await owned(run.runId);
      const back = lost.every((l) => now.some((o) => o.partition === l.partition && o.by === `survivor-${k}`));
      if (back) break;
      await sleep(20);
    }
    const recoveryMs = Date.now() - killedAt;
    while ((await db.pool.query(`SELECT status FROM migration_runs WHERE id = $1`, [run.runId])).rows[0].status !== 'completed') await sleep(200);
    survivor.kill('SIGTERM');
    const records = await recordsByPartition();
    const twice = lost.reduce((sum, l) => {
      const r = records.get(l.partition);
      return sum + (r ? r.records - r.rows.size : 0);
    }, 0);
    measurements.push({ recoveryMs, tasks: lost.length, twice });
    console.log(`kill ${k}: ${lost.length} partitions of the killed instance running again after ${(recoveryMs / 1000).toFixed(1)} s; ${twice} records produced twice (page size ${config.pageSize})`);
  }
  const worst = Math.max(...measurements.map((m) => m.recoveryMs));
  const bound = config.heartbeatTimeoutMs + config.pollIntervalMs;
  addSummaryRow({
    section: 'kill recovery',
    what: 'SIGKILL to partition running elsewhere, worst',
    figure: `${(worst / 1000).toFixed(1)} s`,
    baseline: `bound: heartbeat timeout + poll ${(bound / 1000).toFixed(1)} s`,
    ratio: `${(worst / bound).toFixed(2)}x`,
  });
  console.log(
    `SIGKILL recovery with HEARTBEAT_TIMEOUT_MS=${config.heartbeatTimeoutMs}, HEARTBEAT_INTERVAL_MS=${config.heartbeatIntervalMs}, POLL_INTERVAL_MS=${config.pollIntervalMs}: ` +
      `worst ${(worst / 1000).toFixed(1)} s (bound: timeout + poll = ${((config.heartbeatTimeoutMs + config.pollIntervalMs) / 1000).toFixed(1)} s)`,
  );
} finally {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await stream.deleteTopics([config.topicUpdates, config.topicDeadLetters, config.topicRunEvents]).catch(() => {});
  await stream.disconnect();
  await db.pool.query(`DROP SCHEMA IF EXISTS "${config.dbSchema}" CASCADE`).catch(() => {});
  await db.close();
}
