/**
 * A chaos run: a real migration with several `serve` processes while faults are injected at
 * moments drawn from a seed (SIGKILL of an instance then a restart, a Kafka broker restart,
 * a Kafka broker hang longer than the consumer session timeout, a Redis restart with its data
 * gone, a PostgreSQL restart), then every invariant of ../shared/DESIGN.md checked with SQL and
 * the topics' contents. It runs any definition of test/chaos/workloads.ts and, when asked,
 * undoes the run with faults of its own and checks the undo run the same way.
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
import { startUndoRun } from '../../src/undo/undo.ts';
import { quoteIdent } from '../../src/definitions/resolve.ts';
import { FIXTURE_MIGRATION } from '../../src/seed.ts';
import { loadDefinitions } from '../../src/definitions/load.ts';
import { ensureTopics } from '../../src/service.ts';
import { createStreamClient } from '../../src/stream/kafka.ts';
import { hasExited, type Instance, startInstance, stopInstances, tailLog } from '../../src/cli/instances.ts';
import { prng, shuffled } from '../support/prng.ts';
import { FaultUnavailable, type KafkaControl, restartPostgres, restartRedis, stackKafka } from './faults.ts';
import { checkInvariants, type InvariantCheck, SNAPSHOT } from './invariants.ts';
import { type ChaosWorkload, WORKLOADS } from './workloads.ts';

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
  /** What to migrate (default: the reference definition). */
  workload?: ChaosWorkload;
  /** Eligible rows to migrate. */
  rows: number;
  instances: number;
  seed: number;
  /** Faults to inject during the run, in the order the seed shuffles them into. */
  faults: FaultKind[];
  /**
   * When set, the completed run is undone (`tranche undo`) and these faults hit the undo run,
   * which is then checked like the run (the rows must be back where the run found them).
   */
  undoFaults?: FaultKind[];
  partitionSize: number;
  pageSize: number;
  /** Per run: give up waiting for its completion after this long. */
  timeoutSeconds: number;
  /**
   * Global rows/s limit (THROTTLE_ROWS_PER_SECOND), so that a small run lasts long enough for
   * its faults; 0 = none. Lifted once every fault of a run has been injected, so a low limit
   * costs time only while faults are still to come (set again for an undo run with faults).
   */
  throttle?: number;
  /** How long a "hang" fault freezes the broker; must exceed the session timeout (default DEFAULT_HANG_MS). */
  hangMs?: number;
  /** The broker the kafka and hang faults act on (default: the local stack's, scripts/stack.sh). */
  kafka?: KafkaControl;
  log(line: string): void;
}

export interface Injected {
  at: number;
  fault: FaultKind;
  detail: string;
  ok: boolean;
}

export interface ChaosReport {
  seed: number;
  runId: number;
  /** The undo run, when one was asked for. */
  undoRunId?: number;
  seconds: number;
  /** Every fault, the undo run's last. */
  injected: Injected[];
  /** Every check, the undo run's named "undo: ...". */
  checks: InvariantCheck[];
  ok: boolean;
}

const LOG_DIR = fileURLToPath(new URL('../../.cache/chaos/', import.meta.url));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const workload = options.workload ?? WORKLOADS[FIXTURE_MIGRATION]!;
  const rnd = prng(options.seed);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TRANCHE_DEFINITIONS: workload.definition,
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
  if ([...options.faults, ...(options.undoFaults ?? [])].includes('hang') && hangMs <= config.kafkaSessionTimeoutMs) {
    throw new Error(`a broker hang of ${hangMs} ms would not outlast the consumer session timeout (KAFKA_SESSION_TIMEOUT_MS=${config.kafkaSessionTimeoutMs})`);
  }
  const log = silentLogger();
  const db = createDb({ ...config, dbPoolSize: 4 });
  const co = createCoordination({ redisUrl: config.redisUrl, prefix: config.redisPrefix }, log);
  const stream = createStreamClient({ brokers: config.kafkaBrokers, clientId: 'tranche-chaos' }, log);
  const instances: Instance[] = [];
  const started = Date.now();
  const elapsed = () => Math.round((Date.now() - started) / 100) / 10;
  const throttle = (limit: number) =>
    setThrottleLimit(co.client, config.redisPrefix, limit).catch((error: unknown) => options.log(`chaos: could not set the throttle to ${limit} (${String(error)})`));
  const restart = (instance: Instance) => startInstance(env, `${instance.id.split('-r')[0]}-r${Date.now() % 100000}`, LOG_DIR);

  /** Injects `faults` (in the seed's order) while run `runId` goes on, then waits for its end. */
  async function underFaults(runId: number, faults: FaultKind[]): Promise<Injected[]> {
    const injected: Injected[] = [];
    const done = async () => (await getRunStatus(db.pool, runId).catch(() => null))?.status === 'completed';
    for (const fault of shuffled(faults, rnd)) {
      await sleep(1000 + rnd() * 3000);
      if (await done()) {
        options.log(`chaos: run ${runId} finished before "${fault}" could be injected`);
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
          instances[index] = restart(victim);
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
      await throttle(0);
      options.log(`chaos: t=${elapsed()}s faults done, throttle lifted`);
    }

    const deadline = Date.now() + options.timeoutSeconds * 1000;
    let last = '';
    for (;;) {
      const status = await getRunStatus(db.pool, runId).catch(() => null);
      if (status?.status === 'completed') break;
      if (status && ['failed', 'cancelled'].includes(status.status)) {
        options.log(`chaos: run ${runId} ended ${status.status}`);
        break;
      }
      const line = status ? `run ${runId} ${status.status}: ${status.rows.applied}/${status.rows.total} applied, ${status.partitions.completed}/${status.partitions.total} partitions` : 'status unavailable';
      if (line !== last) options.log(`chaos: t=${elapsed()}s ${line}`);
      last = line;
      for (const [i, instance] of instances.entries()) {
        if (hasExited(instance)) {
          options.log(`chaos: ${instance.id} exited (${instance.child.exitCode ?? instance.child.signalCode}); log ends:\n${tailLog(instance.logFile, 8)}`);
          instances[i] = restart(instance);
        }
      }
      if (Date.now() > deadline) {
        options.log(`chaos: run ${runId} timed out after ${options.timeoutSeconds}s`);
        break;
      }
      await sleep(500);
    }
    return injected;
  }

  const report = (checks: InvariantCheck[], prefix = '') => {
    for (const check of checks) options.log(`${check.ok ? 'ok  ' : 'FAIL'} ${prefix}${check.name}: ${check.detail}`);
    return checks.map((c) => ({ ...c, name: `${prefix}${c.name}` }));
  };
  const state = async () => (await db.pool.query<{ v: string | null }>(workload.state)).rows[0]?.v ?? null;

  try {
    options.log(`chaos: seed ${options.seed}; ${workload.migration}, ${options.rows.toLocaleString('en-US')} rows, ${options.instances} instances, faults ${options.faults.join(', ')}${options.undoFaults ? `; undo with faults ${options.undoFaults.join(', ') || 'none'}` : ''}`);
    // The chaos schema holds the workload's tables and tranche's: both start afresh.
    await db.pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(config.dbSchema)} CASCADE`);
    await migrateToLatest(db);
    await stream.deleteTopics([config.topicUpdates, config.topicDeadLetters, config.topicRunEvents]);
    await ensureTopics(stream, config);
    await co.client.eval("for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 1", 0, `${config.redisPrefix}:*`);
    await workload.prepare(db, options.rows, options.seed);
    await db.pool.query(`CREATE TABLE ${SNAPSHOT} AS ${workload.eligibleRows}`);
    const eligible = (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${SNAPSHOT}`)).rows[0]!.n;
    const before = await state();
    options.log(`chaos: ${eligible.toLocaleString('en-US')} eligible rows`);

    mkdirSync(LOG_DIR, { recursive: true });
    for (let i = 1; i <= options.instances; i++) instances.push(startInstance(env, `chaos-${i}`, LOG_DIR));
    const definitions = await loadDefinitions(db.pool, config.definitions);
    if (options.undoFaults && !definitions.get(workload.migration)?.inverse) throw new Error(`${workload.migration} declares no undo: a chaos run cannot undo it`);
    const run = await startManualRun(
      { db, coordination: co, log, instanceId: config.instanceId, leaseMs: config.identifyLeaseMs, definitions },
      { migration: workload.migration, partitionSize: options.partitionSize, maxPartitions: 1000 },
    );
    options.log(`chaos: run ${run.runId} identified`);
    const injected = await underFaults(run.runId, options.faults);
    const notDone = async () => (await db.pool.query<{ n: number }>(workload.notDone)).rows[0]!.n;
    const left = await notDone();
    const checks = report(await checkInvariants({
      db, config, runId: run.runId, pageSize: options.pageSize, faults: injected.filter((f) => f.ok).length, runs: 1,
      converged: { ok: left === 0, detail: `${left} rows not at their target` },
    }));

    let undoRunId: number | undefined;
    if (options.undoFaults) {
      if ((options.throttle ?? 0) > 0 && options.undoFaults.length > 0) await throttle(options.throttle!);
      const undo = await startUndoRun(db, co, definitions, run.runId);
      undoRunId = undo.runId;
      options.log(`chaos: t=${elapsed()}s run ${undo.runId} undoes run ${run.runId}: ${undo.rows} rows in ${undo.partitions} partitions`);
      const undoInjected = await underFaults(undo.runId, options.undoFaults);
      injected.push(...undoInjected);
      const back = (await state()) === before;
      checks.push(...report(await checkInvariants({
        db, config, runId: undo.runId, pageSize: options.pageSize, faults: undoInjected.filter((f) => f.ok).length, runs: 2,
        converged: { ok: back, detail: back ? 'every row back where the run found it' : 'the table differs from before the run' },
      }), 'undo: '));
    }
    const seconds = elapsed();
    await stopInstances(instances, 10_000);
    const ok = checks.every((c) => c.ok);
    options.log(`chaos: ${ok ? 'every invariant held' : 'INVARIANT BREACHED'} (seed ${options.seed}, ${seconds}s)`);
    return { seed: options.seed, runId: run.runId, undoRunId, seconds, injected, checks, ok };
  } finally {
    await stopInstances(instances, 5000);
    await stream.disconnect();
    await co.close();
    await db.close();
  }
}
