/**
 * One tranche service instance: the task executor (partition workers), the update consumer,
 * the reconciler, identification takeover, the nightly trigger and the HTTP endpoints.
 * Every instance is identical; run as many as you like.
 *
 * @example
 *   const service = await startService(loadConfig(), log);
 *   process.on('SIGTERM', () => service.stop());
 */
import { getHeapStatistics } from 'node:v8';
import { CompletionTracker } from './coordination/completion.ts';
import { type Coordination, createCoordination } from './coordination/redis.ts';
import { createThrottle, getThrottleLimit } from './coordination/throttle.ts';
import { startHealthMonitor } from './health/monitor.ts';
import { createHealthGate, readHealthState } from './health/state.ts';
import { adaptivePageSize, applyChunk, applyRates, type PageSizer } from './worker/page-size.ts';
import type { Config } from './config.ts';
import { createApplier } from './consumer/update-consumer.ts';
import { startNightly } from './cron/nightly.ts';
import { createDb, type Db } from './db.ts';
import { type Definitions, loadDefinitions } from './definitions/load.ts';
import { ServiceUnavailableError } from './errors.ts';
import { createMetrics, type Metrics } from './http/metrics.ts';
import { type HttpServer, startHttpServer } from './http/server.ts';
import { identifyDepsFrom, identifyRun, takeOverExpiredIdentifications } from './identification/identify.ts';
import type { Logger } from './logger.ts';
import { migrateToLatest } from './migrate.ts';
import { addThrottledTime, startProgressSampler } from './runs/run-progress.ts';
import type { RunStatus } from './schema.ts';
import { type ConsumerHandle, createStreamClient, kafkajsPatched, type StreamClient } from './stream/kafka.ts';
import { TaskExecutor } from './tasks/executor.ts';
import { recordPartitionFailure } from './worker/partition-failure.ts';
import { processPartition } from './worker/partition-worker.ts';

export interface ServiceOptions {
  /** Fire the nightly trigger (default: config.cronEnabled). */
  cron?: boolean;
  /** Serve HTTP (default: config.httpPort > 0). */
  http?: boolean;
  /** Port for HTTP when `http` is set; 0 picks a free one (default: config.httpPort). */
  httpPort?: number;
  /** Apply pending schema migrations at start (default true). */
  migrate?: boolean;
  /** Evaluate the health signals and the work window in this instance (default true). */
  health?: boolean;
}

export interface Service {
  readonly instanceId: string;
  readonly db: Db;
  readonly stream: StreamClient;
  readonly coordination: Coordination;
  readonly definitions: Definitions;
  readonly completion: CompletionTracker;
  readonly executor: TaskExecutor;
  /** The port HTTP listens on, or null when HTTP is off. */
  readonly httpPort: number | null;
  readonly metrics: Metrics;
  /** Identifies a run created by this instance (manual or cron), in the background. */
  identify(runId: number): Promise<void>;
  /** Graceful stop: stop claiming, checkpoint and release tasks, leave the group. */
  stop(graceMs?: number): Promise<boolean>;
}

const STATUS_CACHE_MS = 500;

export async function ensureTopics(stream: StreamClient, config: Config): Promise<void> {
  await stream.ensureTopics(
    [config.topicUpdates, config.topicDeadLetters, config.topicRunEvents].map((topic) => ({
      topic,
      partitions: topic === config.topicUpdates ? config.kafkaTopicPartitions : Math.min(3, config.kafkaTopicPartitions),
      replication: config.kafkaReplicationFactor,
    })),
  );
}

export async function startService(config: Config, log: Logger, options: ServiceOptions = {}): Promise<Service> {
  const db = createDb({ ...config, applicationName: `tranche:${config.instanceId}` });
  const coordination = createCoordination({ redisUrl: config.redisUrl, prefix: config.redisPrefix }, log);
  const stream = createStreamClient({ brokers: config.kafkaBrokers, clientId: config.kafkaClientId }, log);
  try {
    await db.pool.query('SELECT 1');
  } catch (error) {
    await db.close();
    throw new ServiceUnavailableError(`cannot reach Postgres: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  let definitions: Definitions;
  try {
    if (options.migrate !== false) await migrateToLatest(db);
    definitions = await loadDefinitions(db.pool, config.definitions);
  } catch (error) {
    await Promise.allSettled([stream.disconnect(), coordination.close(), db.close()]);
    throw error;
  }
  if (definitions.all.length === 0) log.warn('no migration definitions loaded (TRANCHE_DEFINITIONS is empty): this instance can run no migration');
  try {
    await ensureTopics(stream, config);
  } catch (error) {
    await Promise.allSettled([stream.disconnect(), coordination.close(), db.close()]);
    throw new ServiceUnavailableError(
      `cannot reach Kafka at ${config.kafkaBrokers.join(',')}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }

  const statusCache = new Map<number, { status: RunStatus | null; at: number }>();
  const runStatus = async (runId: number): Promise<RunStatus | null> => {
    const hit = statusCache.get(runId);
    if (hit && Date.now() - hit.at < STATUS_CACHE_MS) return hit.status;
    const { rows } = await db.pool.query<{ status: RunStatus }>('SELECT status FROM migration_runs WHERE id = $1', [runId]);
    const status = rows[0]?.status ?? null;
    statusCache.set(runId, { status, at: Date.now() });
    return status;
  };

  /** Update records the applier group has not committed yet, over every topic partition. */
  const updatesLag = async () => (await stream.lag(config.kafkaGroupId, config.topicUpdates)).reduce((sum, p) => sum + p.lag, 0);
  const metrics = createMetrics({
    db,
    instanceId: config.instanceId,
    // Called at scrape time only, after the executor below exists.
    activeTasks: () => executor.activeTasks,
    consumerLag: () => stream.lag(config.kafkaGroupId, config.topicUpdates),
    consumerJoined: () => consumer.joined(),
    stalledRuns: () => completion.stalledRuns(),
    health: () => readHealthState(coordination.client, config.redisPrefix),
    throttleLimit: async () => (await getThrottleLimit(coordination.client, config.redisPrefix)) ?? config.throttleRowsPerSecond,
  });
  // The migration of a run, for the `migration` label of per-run counters.
  const migrations = new Map<number, Promise<string>>();
  const migrationOf = (runId: number): Promise<string> => {
    let m = migrations.get(runId);
    if (!m) {
      m = db.pool.query<{ migration: string }>('SELECT migration FROM migration_runs WHERE id = $1', [runId]).then((r) => r.rows[0]?.migration ?? 'unknown', () => 'unknown');
      migrations.set(runId, m);
    }
    return m;
  };
  const sampler = startProgressSampler({
    db,
    redis: coordination.client,
    prefix: config.redisPrefix,
    intervalMs: Math.max(1000, config.reconcileIntervalMs),
    log,
    totalLag: updatesLag,
  });

  const health = createHealthGate(coordination.client, config.redisPrefix);
  const throttle = createThrottle({ redis: coordination.client, prefix: config.redisPrefix, defaultLimit: config.throttleRowsPerSecond, log, health });
  // Adaptive pages: one controller per migration, following its pages' time and the rate at
  // which this instance's consumer applies its records.
  const applied = applyRates();
  const sizers = new Map<string, PageSizer>();
  const pageSize = !config.pageSizeAdaptive
    ? config.pageSize
    : (migration: string): PageSizer => {
        let sizer = sizers.get(migration);
        if (!sizer) {
          sizer = adaptivePageSize({
            initial: config.pageSize, targetMs: config.pageTargetMs, min: config.pageSizeMin, max: config.pageSizeMax,
            applyRowsPerMs: () => applied.rowsPerMs(migration),
          });
          sizers.set(migration, sizer);
        }
        return sizer;
      };

  const completion = new CompletionTracker({
    db,
    stream,
    coordination,
    log,
    topicRunEvents: config.topicRunEvents,
    instanceId: config.instanceId,
    definitions,
    stallAfterMs: config.runStallAfterMs,
    updatesLag,
  });

  const executor = new TaskExecutor({
    db,
    log,
    instanceId: config.instanceId,
    concurrency: config.workerConcurrency,
    pollIntervalMs: config.pollIntervalMs,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    heartbeatTimeoutMs: config.heartbeatTimeoutMs,
    onClaim: (task) => {
      metrics.taskClaims.inc();
      metrics.claimDelay.observe(task.claimDelayMs / 1000);
    },
    handler: async (task, control) => {
      const outcome = await processPartition(
        {
          db, stream, log, definitions, instanceId: config.instanceId, pageSize, topicUpdates: config.topicUpdates, runStatus,
          throttle: (rows, shouldStop) => throttle.acquire(rows, shouldStop, (ms) => {
            const runId = Number(task.data.runId);
            void migrationOf(runId).then((migration) => metrics.throttledSeconds.inc({ migration }, ms / 1000));
            void addThrottledTime(coordination.client, config.redisPrefix, runId, ms);
          }),
          onPage: (e) => metrics.rowsProduced.inc({ migration: e.migration }, e.rows),
        },
        task,
        control,
      );
      // A task given back at shutdown is due now: wake an idle instance to take it at once.
      if (outcome === 'released') await coordination.wake();
      return outcome;
    },
    onFailure: (task, error) =>
      recordPartitionFailure({ db, log, instanceId: config.instanceId, maxAttempts: config.maxAttempts, retryBaseMs: config.retryBaseMs }, task, error),
  });

  await coordination.subscribe({
    onWake: () => executor.wake(),
    onSignal: (_action, runId) => {
      statusCache.delete(runId);
      executor.wake();
    },
  });

  // Partition work starts before the consumer joins its group: after a crash, the join waits
  // for the dead member's session to expire (about 10 s), and claiming need not wait for it.
  executor.start();

  // The update consumer: the stream module keeps it alive (a crashed consumer is stopped and
  // a new one rejoins the group, with backoff, until stop()); here it is watched.
  let stopping = false;
  let downAlerted = false;
  const consumer: ConsumerHandle = await stream.consume({
    groupId: config.kafkaGroupId,
    topic: config.topicUpdates,
    concurrency: config.consumerConcurrency,
    maxBytes: config.consumerFetchMaxBytes,
    sessionTimeoutMs: config.kafkaSessionTimeoutMs,
    handle: createApplier({
      db,
      stream,
      coordination,
      log,
      definitions,
      topicDeadLetters: config.topicDeadLetters,
      // With adaptive pages, a backlog is applied in statements of about the target time too
      // (row locks held no longer than a page's), between the page floor and 5,000.
      chunkSize: config.pageSizeAdaptive ? (migration) => applyChunk(applied.rowsPerMs(migration), config) : undefined,
      onApplied: (e) => {
        applied.observe(e.migration, e.records, e.applyMs);
        metrics.rowsApplied.inc(e.changed);
        if (e.deadLetters > 0) metrics.deadLetters.inc(e.deadLetters);
      },
      onRunMaybeDone: (runId) => {
        void completion.maybeComplete(runId);
      },
    }),
    onCrash: (error, restartInMs) => {
      if (!stopping) log.warn({ err: `${error.name}: ${error.message}`, restartInMs }, 'update consumer failed (crashed or could not start) and was stopped; a new one joins the group after restartInMs');
    },
    onRestart: () => metrics.consumerRestarts.inc(),
  });
  // A consumer out of its group for longer than CONSUMER_DOWN_ALERT_MS: one error line per
  // outage, and one info line when it is back.
  const watchConsumer = setInterval(() => {
    const since = consumer.downSince();
    if (since === null) {
      if (downAlerted) log.info('update consumer back in its group');
      downAlerted = false;
      return;
    }
    if (downAlerted || stopping) return;
    const downMs = Date.now() - since;
    if (downMs < config.consumerDownAlertMs) return;
    downAlerted = true;
    log.error({ downMs, restarts: consumer.restarts() }, `update consumer out of its group for ${Math.round(downMs / 1000)} s: no update record is applied by this instance`);
  }, Math.min(1000, config.consumerDownAlertMs));
  watchConsumer.unref();

  const identifying = new Set<number>();
  const identify = async (runId: number): Promise<void> => {
    if (identifying.has(runId)) return;
    identifying.add(runId);
    try {
      await identifyRun(identifyDepsFrom(config, db, coordination, log, definitions), runId);
    } finally {
      identifying.delete(runId);
    }
  };

  let ticking = false;
  const tick = async () => {
    if (ticking) return;
    ticking = true;
    try {
      for (const runId of await takeOverExpiredIdentifications(db.pool, config.instanceId, config.identifyLeaseMs)) {
        log.warn({ runId }, 'taking over identification: the previous owner lost its lease');
        identify(runId).catch((error: unknown) => log.error({ runId, err: String(error) }, 'identification failed'));
      }
      await completion.reconcile();
    } catch (error) {
      log.warn({ err: String(error) }, 'reconciliation failed');
    } finally {
      ticking = false;
    }
  };
  const reconciler = setInterval(() => void tick(), config.reconcileIntervalMs);
  const monitor = options.health === false ? null : startHealthMonitor({ db, coordination, log, instanceId: config.instanceId, prefix: config.redisPrefix, settings: config });

  // One nightly trigger per definition with a schedule (its own, or CRON_SCHEDULE).
  const nightly = (options.cron ?? config.cronEnabled)
    ? definitions.all
        .filter((definition) => definition.definition.schedule !== null)
        .map((definition) =>
          startNightly({
            db,
            log,
            instanceId: config.instanceId,
            definition,
            schedule: definition.definition.schedule ?? config.cronSchedule,
            timezone: config.cronTimezone,
            missed: config.cronMissed,
            partitionSize: definition.definition.defaults?.partitionSize ?? config.partitionSize,
            maxPartitions: definition.definition.defaults?.maxPartitions ?? config.maxPartitions,
            leaseMs: config.identifyLeaseMs,
            identify,
          }),
        )
    : [];

  let server: HttpServer | null = null;
  if (options.http ?? config.httpPort > 0) {
    server = await startHttpServer(
      {
        db,
        log,
        metrics,
        control: { coordination, redisPrefix: config.redisPrefix, adminToken: config.adminToken, defaultThrottle: config.throttleRowsPerSecond },
        readiness: async () => ({
          postgres: await db.pool.query('SELECT 1').then(() => true, () => false),
          redis: await coordination.ping(),
          kafka: consumer.joined(),
        }),
      },
      options.httpPort ?? config.httpPort,
    );
  }
  const heapLimitMb = Math.round(getHeapStatistics().heap_size_limit / 1048576);
  log.info({ concurrency: config.workerConcurrency, httpPort: server?.port ?? null, heapLimitMb, kafkajsPatched }, 'service started');

  let stopped: Promise<boolean> | undefined;
  return {
    instanceId: config.instanceId,
    db,
    stream,
    coordination,
    definitions,
    completion,
    executor,
    httpPort: server?.port ?? null,
    metrics,
    identify,
    stop(graceMs = config.shutdownGraceMs) {
      stopped ??= (async () => {
        log.info('stopping: no new claims, releasing tasks');
        clearInterval(reconciler);
        sampler.stop();
        await monitor?.stop();
        await Promise.all(nightly.map((n) => n.stop()));
        stopping = true;
        clearInterval(watchConsumer);
        const drained = await executor.stop(graceMs);
        await consumer.stop().catch(() => {});
        await stream.disconnect();
        await coordination.close();
        await server?.close();
        await db.close();
        log.info({ drained }, 'stopped');
        return drained;
      })();
      return stopped;
    },
  };
}
