/**
 * A chaos run: a real migration with several `serve` processes while faults are injected at
 * moments drawn from a seed (SIGKILL of an instance then a restart, a Kafka broker restart,
 * a Kafka broker hang longer than the consumer session timeout, a Redis restart with its data
 * gone, a PostgreSQL restart), then every invariant of
 * ../shared/DESIGN.md checked with SQL and the topics' contents.
 *
 * It restarts shared services, so it must run alone: `npm run chaos`, or the reduced version
 * that `npm test` runs after the main suite (vitest.chaos.config.ts).
 */
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/config.ts';
import { createCoordination } from '../../src/coordination/redis.ts';
import { setThrottleLimit } from '../../src/coordination/throttle.ts';
import { createDb } from '../../src/db.ts';
import { startManualRun } from '../../src/identification/identify.ts';
import { silentLogger } from '../../src/logger.ts';
import { migrateToLatest } from '../../src/migrate.ts';
import { getRunStatus } from '../../src/runs/run-store.ts';
import { countEligible, FIXTURE_DEFINITION, FIXTURE_MIGRATION, seed } from '../../src/seed.ts';
import { loadDefinitions } from '../../src/definitions/load.ts';
import { ensureTopics } from '../../src/service.ts';
import { createStreamClient } from '../../src/stream/kafka.ts';
import { hasExited, type Instance, startInstance, stopInstances, tailLog } from '../../src/cli/instances.ts';
import { prng, shuffled } from '../support/prng.ts';
import { FaultUnavailable, type KafkaControl, restartPostgres, restartRedis, stackKafka } from './faults.ts';
import { checkInvariants, type InvariantCheck } from './invariants.ts';

/**
 * kill: SIGKILL of an instance, then a new one; kafka: broker stopped and started again;
 * hang: broker frozen (SIGSTOP) for `hangMs`, then resumed (SIGCONT); redis: restarted with
 * its data gone; postgres: restarted, connections cut.
 */
export type FaultKind = 'kill' | 'kafka' | 'hang' | 'redis' | 'postgres';
export const ALL_FAULTS: FaultKind[] = ['kill', 'kafka', 'hang', 'redis', 'postgres'];

/** Default length of a broker hang: past the consumer session timeout (10 s) and kafkajs's request timeout (30 s). */
export const DEFAULT_HANG_MS = 40_000;

export interface ChaosOptions {
  /** Eligible rows to migrate. */
  rows: number;
  instances: number;
  seed: number;
  /** Faults to inject, in the order the seed shuffles them into. */
  faults: FaultKind[];
  partitionSize: number;
  pageSize: number;
  timeoutSeconds: number;
  /**
   * Global rows/s limit (THROTTLE_ROWS_PER_SECOND), so that a small run lasts long enough for
   * its faults; 0 = none. Lifted once every fault has been injected, so a low limit costs time
   * only while faults are still to come.
   */
  throttle?: number;
  /** How long a "hang" fault freezes the broker; must exceed the session timeout (default DEFAULT_HANG_MS). */
  hangMs?: number;
  /** The broker the kafka and hang faults act on (default: the local stack's, scripts/stack.sh). */
  kafka?: KafkaControl;
  log(line: string): void;
}

export interface ChaosReport {
  seed: number;
  runId: number;
  seconds: number;
  injected: { at: number; fault: FaultKind; detail: string; ok: boolean }[];
  checks: InvariantCheck[];
  ok: boolean;
}

const LOG_DIR = fileURLToPath(new URL('../../.cache/chaos/', import.meta.url));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const rnd = prng(options.seed);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TRANCHE_DEFINITIONS: FIXTURE_DEFINITION,
    DB_SCHEMA: 'tranche_chaos',
    REDIS_PREFIX: 'tranche-chaos',
    KAFKA_GROUP_ID: 'tranche-chaos-appliers',
    TOPIC_UPDATES: 'tranche-chaos.updates',
    TOPIC_DEAD_LETTERS: 'tranche-chaos.dead-letters',
    TOPIC_RUN_EVENTS: 'tranche-chaos.run-events',
    KAFKA_TOPIC_PARTITIONS: '6',
    PAGE_SIZE: String(options.pageSize),
    HEARTBEAT_INTERVAL_MS: '1000',
    HEARTBEAT_TIMEOUT_MS: '4000',
    POLL_INTERVAL_MS: '1000',
    RECONCILE_INTERVAL_MS: '1000',
    RETRY_BASE_MS: '300',
    MAX_ATTEMPTS: '30',
    SHUTDOWN_GRACE_MS: '5000',
    THROTTLE_ROWS_PER_SECOND: String(options.throttle ?? 0),
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
  };
  const config = loadConfig(env, { INSTANCE_ID: 'chaos-runner' });
  const hangMs = options.hangMs ?? DEFAULT_HANG_MS;
  if (options.faults.includes('hang') && hangMs <= config.kafkaSessionTimeoutMs) {
    throw new Error(`a broker hang of ${hangMs} ms would not outlast the consumer session timeout (KAFKA_SESSION_TIMEOUT_MS=${config.kafkaSessionTimeoutMs})`);
  }
  const log = silentLogger();
  const db = createDb({ ...config, dbPoolSize: 4 });
  const co = createCoordination({ redisUrl: config.redisUrl, prefix: config.redisPrefix }, log);
  const stream = createStreamClient({ brokers: config.kafkaBrokers, clientId: 'tranche-chaos' }, log);
  const instances: Instance[] = [];
  const injected: ChaosReport['injected'] = [];
  const started = Date.now();
  const elapsed = () => Math.round((Date.now() - started) / 100) / 10;
  try {
    options.log(`chaos: seed ${options.seed}; ${options.rows.toLocaleString('en-US')} rows, ${options.instances} instances, faults ${options.faults.join(', ')}`);
    await migrateToLatest(db);
    await stream.deleteTopics([config.topicUpdates, config.topicDeadLetters, config.topicRunEvents]);
    await ensureTopics(stream, config);
    await co.client.eval("for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 1", 0, `${config.redisPrefix}:*`);
    const products = 10;
    const seeded = await seed(db, { rows: options.rows, groups: products, changed: products, reset: true, randomSeed: options.seed });
    options.log(`chaos: seeded ${seeded.eligible.toLocaleString('en-US')} eligible subscriptions`);

    mkdirSync(LOG_DIR, { recursive: true });
    for (let i = 1; i <= options.instances; i++) instances.push(startInstance(env, `chaos-${i}`, LOG_DIR));
    const run = await startManualRun(
      { db, coordination: co, log, instanceId: config.instanceId, leaseMs: config.identifyLeaseMs, definitions: await loadDefinitions(db.pool, config.definitions) },
      { migration: FIXTURE_MIGRATION, partitionSize: options.partitionSize, maxPartitions: 1000 },
    );
    options.log(`chaos: run ${run.runId} identified`);

    // The seed orders the faults and picks when they hit and which instance dies.
    const plan = shuffled(options.faults, rnd);
    const done = async () => (await getRunStatus(db.pool, run.runId).catch(() => null))?.status === 'completed';
    for (const fault of plan) {
      await sleep(1000 + rnd() * 3000);
      if (await done()) {
        options.log(`chaos: run finished before "${fault}" could be injected`);
        break;
      }
      const at = elapsed();
      try {
        let detail: string;
        if (fault === 'kill') {
          const index = Math.floor(rnd() * instances.length);
          const victim = instances[index]!;
          victim.child.kill('SIGKILL');
          await sleep(500 + rnd() * 1500);
          instances[index] = startInstance(env, `${victim.id.split('-r')[0]}-r${Date.now() % 100000}`, LOG_DIR);
          detail = `SIGKILL ${victim.id} (pid ${victim.child.pid}), restarted as ${instances[index]!.id}`;
        } else if (fault === 'kafka') detail = await (options.kafka ?? stackKafka).restart();
        else if (fault === 'hang') detail = await (options.kafka ?? stackKafka).hang(hangMs);
        else if (fault === 'redis') detail = await restartRedis();
        else detail = await restartPostgres();
        injected.push({ at, fault, detail, ok: true });
        options.log(`chaos: t=${at}s ${fault}: ${detail}`);
      } catch (error) {
        const detail = error instanceof FaultUnavailable ? `not injected: ${error.message}` : `failed: ${String(error)}`;
        injected.push({ at, fault, detail, ok: false });
        options.log(`chaos: t=${at}s ${fault}: ${detail}`);
      }
    }

    if ((options.throttle ?? 0) > 0) {
      await setThrottleLimit(co.client, config.redisPrefix, 0)
        .then(() => options.log(`chaos: t=${elapsed()}s faults done, throttle lifted`))
        .catch((error: unknown) => options.log(`chaos: could not lift the throttle (${String(error)})`));
    }

    const deadline = Date.now() + options.timeoutSeconds * 1000;
    let last = '';
    for (;;) {
      const status = await getRunStatus(db.pool, run.runId).catch(() => null);
      if (status?.status === 'completed') break;
      if (status && ['failed', 'cancelled'].includes(status.status)) {
        options.log(`chaos: run ended ${status.status}`);
        break;
      }
      const line = status ? `${status.status}: ${status.rows.applied}/${status.rows.total} applied, ${status.partitions.completed}/${status.partitions.total} partitions` : 'status unavailable';
      if (line !== last) options.log(`chaos: t=${elapsed()}s ${line}`);
      last = line;
      for (const [i, instance] of instances.entries()) {
        if (hasExited(instance)) {
          options.log(`chaos: ${instance.id} exited (${instance.child.exitCode ?? instance.child.signalCode}); log ends:\n${tailLog(instance.logFile, 8)}`);
          instances[i] = startInstance(env, `${instance.id.split('-r')[0]}-r${Date.now() % 100000}`, LOG_DIR);
        }
      }
      if (Date.now() > deadline) {
        options.log(`chaos: timed out after ${options.timeoutSeconds}s`);
        break;
      }
      await sleep(500);
    }
    const seconds = elapsed();
    await stopInstances(instances, 10_000);
    const checks = await checkInvariants({ db, config, runId: run.runId, pageSize: options.pageSize, faults: injected.filter((f) => f.ok).length, eligibleAtStart: seeded.eligible, leftEligible: await countEligible(db) });
    for (const check of checks) options.log(`${check.ok ? 'ok  ' : 'FAIL'} ${check.name}: ${check.detail}`);
    const ok = checks.every((c) => c.ok);
    options.log(`chaos: ${ok ? 'every invariant held' : 'INVARIANT BREACHED'} (seed ${options.seed}, ${seconds}s)`);
    return { seed: options.seed, runId: run.runId, seconds, injected, checks, ok };
  } finally {
    await stopInstances(instances, 5000);
    await stream.disconnect();
    await co.close();
    await db.close();
  }
}
