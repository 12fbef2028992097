/**
 * The one place that reads `process.env`. Settings resolve as
 * flags (overrides) > environment > defaults into one frozen, validated object.
 *
 * @example
 *   const config = loadConfig(process.env, { partitionSize: 5000 });
 */
import { hostname } from 'node:os';
import cron from 'node-cron';
import { ConfigError } from './errors.ts';
import { parseWindows, WindowError, type WorkWindows } from './health/window.ts';

export type MissedSlotPolicy = 'catch-up' | 'skip';

export interface Config {
  /** DATABASE_URL: Postgres connection string. */
  readonly databaseUrl: string;
  /**
   * TRANCHE_DEFINITIONS: the migration definition files, comma-separated paths or glob
   * patterns (relative to the working directory), e.g. `./migrations/tranche/*.ts`.
   */
  readonly definitions: readonly string[];
  /** DB_SCHEMA: schema holding tranche's own tables (first on the search_path). */
  readonly dbSchema: string;
  /** DB_POOL_SIZE: connections per instance. */
  readonly dbPoolSize: number;
  /** REDIS_URL: Redis connection string. */
  readonly redisUrl: string;
  /** REDIS_PREFIX: prefix of every Redis key and channel. */
  readonly redisPrefix: string;
  /** KAFKA_BROKERS: comma-separated host:port list. */
  readonly kafkaBrokers: readonly string[];
  /** KAFKA_CLIENT_ID */
  readonly kafkaClientId: string;
  /** KAFKA_GROUP_ID: the consumer group that applies update records. */
  readonly kafkaGroupId: string;
  /** TOPIC_UPDATES */
  readonly topicUpdates: string;
  /** TOPIC_DEAD_LETTERS */
  readonly topicDeadLetters: string;
  /** TOPIC_RUN_EVENTS */
  readonly topicRunEvents: string;
  /** KAFKA_TOPIC_PARTITIONS: partitions of topics tranche creates. */
  readonly kafkaTopicPartitions: number;
  /**
   * CONSUMER_CONCURRENCY: topic partitions whose batches one instance applies at once. Each
   * is one Postgres transaction at a time. Fewer and larger ones cost Postgres less CPU per
   * row; too few leave cores idle once the partitions are all produced. 3 was the fastest
   * of 1, 2, 3, 4 and 6 with one instance (docs/benchmarks.md).
   */
  readonly consumerConcurrency: number;
  /**
   * CONSUMER_FETCH_MAX_BYTES: most bytes of update records one instance fetches at once, over
   * all its topic partitions. Bounds the records an instance holds while applying them, so its
   * memory stays flat however far behind the consumer is.
   */
  readonly consumerFetchMaxBytes: number;
  /** KAFKA_REPLICATION_FACTOR: replication of topics tranche creates. */
  readonly kafkaReplicationFactor: number;
  /**
   * KAFKA_SESSION_TIMEOUT_MS: session timeout of the update consumer's group membership. A
   * member the broker has not heard from for this long is dropped from the group (its
   * partitions go to the others); after a crash, the group waits this long for the dead
   * member. Must lie within the broker's group.min/max.session.timeout.ms (6 s to 30 min).
   */
  readonly kafkaSessionTimeoutMs: number;
  /**
   * CONSUMER_DOWN_ALERT_MS: an update consumer out of its group (crashed and restarting,
   * or not joined yet) for longer than this is logged as an error, once per outage.
   */
  readonly consumerDownAlertMs: number;
  /**
   * RUN_STALL_AFTER_MS: a running run whose partitions are all produced is reported stalled
   * (status, an error log line, the tranche_run_stalled gauge) when neither its applied rows
   * nor its outstanding counter moved for this long while update records wait on the topic.
   */
  readonly runStallAfterMs: number;
  /** CRON_ENABLED: whether `serve` fires the nightly trigger. */
  readonly cronEnabled: boolean;
  /** CRON_SCHEDULE: node-cron expression (5 or 6 fields; seconds first when 6). */
  readonly cronSchedule: string;
  /** CRON_TIMEZONE: IANA time zone of the schedule. */
  readonly cronTimezone: string;
  /** CRON_MISSED: what a starting instance does with a slot missed while all were down. */
  readonly cronMissed: MissedSlotPolicy;
  /** PARTITION_SIZE: target rows per partition. */
  readonly partitionSize: number;
  /** MAX_PARTITIONS: cap on partitions per group; the partition size grows to respect it. */
  readonly maxPartitions: number;
  /**
   * PAGE_SIZE: rows per keyset page. A worker sends a page to Kafka, then saves the partition's
   * offset, so a crash produces at most one page again. Each page costs a query, a send and an
   * offset update whatever its size: larger pages ran one instance faster than 1000, and
   * 2500 kept its peak memory as low as 1000 did (docs/benchmarks.md).
   */
  readonly pageSize: number;
  /** WORKER_CONCURRENCY: partition tasks one instance runs at once. */
  readonly workerConcurrency: number;
  /** POLL_INTERVAL_MS: fallback polling for due tasks when no wake-up arrives. */
  readonly pollIntervalMs: number;
  /** HEARTBEAT_INTERVAL_MS: how often a running task heartbeats. */
  readonly heartbeatIntervalMs: number;
  /** HEARTBEAT_TIMEOUT_MS: a task whose heartbeat is older is dead and claimable again. */
  readonly heartbeatTimeoutMs: number;
  /** MAX_ATTEMPTS: attempts of a partition before it is marked failed. */
  readonly maxAttempts: number;
  /** RETRY_BASE_MS: first retry delay; doubles per attempt, with jitter. */
  readonly retryBaseMs: number;
  /**
   * THROTTLE_ROWS_PER_SECOND: global limit on rows produced per second, shared by every
   * instance through Redis; 0 means unlimited. A limit set at run time in Redis overrides it.
   */
  readonly throttleRowsPerSecond: number;
  /** IDENTIFY_CONCURRENCY: groups whose partitions are computed at once during identification. */
  readonly identifyConcurrency: number;
  /** IDENTIFY_LEASE_MS: lease of the identifying instance; another takes over after it. */
  readonly identifyLeaseMs: number;
  /** RECONCILE_INTERVAL_MS: how often counters and completion are checked against Postgres. */
  readonly reconcileIntervalMs: number;
  /** SHUTDOWN_GRACE_MS: time allowed for a graceful stop. */
  readonly shutdownGraceMs: number;
  /** HTTP_PORT: health and status endpoints of `serve` (0 disables). */
  readonly httpPort: number;
  /** LOG_LEVEL: trace, debug, info, warn, error, fatal or silent. */
  readonly logLevel: string;
  /** INSTANCE_ID: name of this instance in tasks and logs. */
  readonly instanceId: string;
  /**
   * ADMIN_TOKEN: the operator token that the dashboard's actions (pause, resume, cancel,
   * re-run, throttle) must carry in a header (`Authorization: Bearer …` or `X-Tranche-Token`).
   * Unset (the default): the dashboard and the API are read-only. At least 16 characters.
   */
  readonly adminToken: string | null;

  // Protection (docs/operations.md "Protecting the database"). A limit of `off` turns its
  // signal off; the state is evaluated by one instance at a time and shared through Redis.
  /** HEALTH_INTERVAL_MS: how often the health signals are read (1000). */
  readonly healthIntervalMs: number;
  /** HEALTH_MAX_REPLICA_LAG_MS: most replay lag of any streaming replica, pg_stat_replication (1000). */
  readonly healthMaxReplicaLagMs: number | null;
  /** HEALTH_SLOTS: comma-separated logical replication slots to watch (none). */
  readonly healthSlots: readonly string[];
  /** HEALTH_MAX_SLOT_LAG_BYTES: most WAL bytes one of HEALTH_SLOTS may retain (1 GiB). */
  readonly healthMaxSlotLagBytes: number | null;
  /** HEALTH_MAX_LOCK_WAIT_MS: longest wait of another session on a lock held by tranche (100). */
  readonly healthMaxLockWaitMs: number | null;
  /** HEALTH_MAX_ACTIVE_BACKENDS: most active backends of the database, tranche's excluded (off). */
  readonly healthMaxActiveBackends: number | null;
  /** HEALTH_PROBE_QUERY: a SELECT whose latency is watched (none). */
  readonly healthProbeQuery: string | null;
  /** HEALTH_PROBE_MAX_MS: most latency of HEALTH_PROBE_QUERY (50). */
  readonly healthProbeMaxMs: number;
  /**
   * HEALTH_CRITICAL_FACTOR: a signal at this many times its limit pauses every running run
   * (the hard stop, gh-ost's --critical-load); an operator resumes it (off).
   */
  readonly healthCriticalFactor: number | null;
  /**
   * PAGE_SIZE_ADAPTIVE: pages grow or shrink toward PAGE_TARGET_MS between PAGE_SIZE_MIN and
   * PAGE_SIZE_MAX, starting at PAGE_SIZE; a crash then produces at most one page of up to
   * PAGE_SIZE_MAX rows again. Off: every page is PAGE_SIZE (false).
   */
  readonly pageSizeAdaptive: boolean;
  /** PAGE_TARGET_MS: the time an adaptive page aims at, for the worker to produce it and for the applier to apply it (50; docs/operations.md says why). */
  readonly pageTargetMs: number;
  /** PAGE_SIZE_MIN: smallest adaptive page (100). */
  readonly pageSizeMin: number;
  /** PAGE_SIZE_MAX: largest adaptive page (10000). */
  readonly pageSizeMax: number;
  /**
   * WINDOW: times of day when runs may work, `HH:MM-HH:MM[,…]` in WINDOW_TIMEZONE (none:
   * always). Outside it running runs pause, shown as `paused (window)`, and resume at its start.
   */
  readonly window: WorkWindows | null;
}

type Raw = Record<string, string | undefined>;

const DEFAULTS = {
  TRANCHE_DEFINITIONS: '',
  DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres',
  DB_SCHEMA: 'public',
  DB_POOL_SIZE: '10',
  REDIS_URL: 'redis://127.0.0.1:6379',
  REDIS_PREFIX: 'tranche',
  KAFKA_BROKERS: '127.0.0.1:9092',
  KAFKA_CLIENT_ID: 'tranche',
  KAFKA_GROUP_ID: 'tranche-appliers',
  TOPIC_UPDATES: 'tranche.updates',
  TOPIC_DEAD_LETTERS: 'tranche.dead-letters',
  TOPIC_RUN_EVENTS: 'tranche.run-events',
  KAFKA_TOPIC_PARTITIONS: '6',
  KAFKA_REPLICATION_FACTOR: '1',
  KAFKA_SESSION_TIMEOUT_MS: '10000',
  CONSUMER_DOWN_ALERT_MS: '60000',
  RUN_STALL_AFTER_MS: '60000',
  CONSUMER_CONCURRENCY: '3',
  CONSUMER_FETCH_MAX_BYTES: '3145728',
  CRON_ENABLED: 'true',
  CRON_SCHEDULE: '0 2 * * *',
  CRON_TIMEZONE: 'UTC',
  CRON_MISSED: 'catch-up',
  PARTITION_SIZE: '10000',
  MAX_PARTITIONS: '1000',
  PAGE_SIZE: '2500',
  WORKER_CONCURRENCY: '2',
  POLL_INTERVAL_MS: '2000',
  HEARTBEAT_INTERVAL_MS: '2000',
  HEARTBEAT_TIMEOUT_MS: '10000',
  MAX_ATTEMPTS: '5',
  RETRY_BASE_MS: '1000',
  THROTTLE_ROWS_PER_SECOND: '0',
  IDENTIFY_LEASE_MS: '15000',
  IDENTIFY_CONCURRENCY: '2',
  RECONCILE_INTERVAL_MS: '3000',
  SHUTDOWN_GRACE_MS: '20000',
  HTTP_PORT: '8080',
  LOG_LEVEL: 'info',
  ADMIN_TOKEN: '',
  HEALTH_INTERVAL_MS: '1000',
  HEALTH_MAX_REPLICA_LAG_MS: '1000',
  HEALTH_SLOTS: '',
  HEALTH_MAX_SLOT_LAG_BYTES: '1073741824',
  HEALTH_MAX_LOCK_WAIT_MS: '100',
  HEALTH_MAX_ACTIVE_BACKENDS: 'off',
  HEALTH_PROBE_QUERY: '',
  HEALTH_PROBE_MAX_MS: '50',
  HEALTH_CRITICAL_FACTOR: 'off',
  PAGE_SIZE_ADAPTIVE: 'false',
  PAGE_TARGET_MS: '50',
  PAGE_SIZE_MIN: '100',
  PAGE_SIZE_MAX: '10000',
  WINDOW: '',
  WINDOW_TIMEZONE: 'UTC',
} as const satisfies Raw;

export type ConfigVariable = keyof typeof DEFAULTS | 'INSTANCE_ID';

/** Flag-level overrides, keyed by environment variable name. */
export type ConfigOverrides = Partial<Record<ConfigVariable, string | number | boolean>>;

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Resolves and validates the configuration.
 * Throws {@link ConfigError} naming the first bad variable.
 */
export function loadConfig(env: Raw = process.env, overrides: ConfigOverrides = {}): Config {
  // The cap was named after the one migration's groups before definitions.
  const renamed = Object.keys(env).find((name) => name.startsWith('MAX_PARTITIONS_PER_') && env[name]);
  if (renamed) throw new ConfigError(renamed, 'was renamed MAX_PARTITIONS (per group of any definition); set that instead');
  const pick = (name: ConfigVariable): string => {
    const flag = overrides[name];
    if (flag !== undefined) return String(flag);
    const value = env[name];
    if (value !== undefined && value !== '') return value;
    return name === 'INSTANCE_ID' ? `${hostname()}-${process.pid}` : DEFAULTS[name];
  };
  const int = (name: ConfigVariable, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const raw = pick(name);
    const n = /^-?\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new ConfigError(name, `must be an integer from ${min} to ${max} (got "${raw}")`);
    }
    return n;
  };
  const bool = (name: ConfigVariable): boolean => {
    const raw = pick(name).toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(raw)) return true;
    if (['false', '0', 'no', 'off'].includes(raw)) return false;
    throw new ConfigError(name, `must be true or false (got "${raw}")`);
  };
  const url = (name: ConfigVariable, protocols: string[]): string => {
    const raw = pick(name);
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      throw new ConfigError(name, `is not a valid URL (got "${raw}")`);
    }
    if (!protocols.includes(parsed.protocol)) {
      throw new ConfigError(name, `must start with ${protocols.join(' or ')} (got "${raw}")`);
    }
    return raw;
  };
  const topic = (name: ConfigVariable): string => {
    const raw = pick(name);
    if (!/^[A-Za-z0-9._-]{1,249}$/.test(raw)) {
      throw new ConfigError(name, `must be a Kafka topic name of letters, digits, ".", "_" or "-" (got "${raw}")`);
    }
    return raw;
  };

  const brokersRaw = pick('KAFKA_BROKERS');
  const kafkaBrokers = brokersRaw.split(',').map((b) => b.trim()).filter(Boolean);
  if (kafkaBrokers.length === 0 || kafkaBrokers.some((b) => !/^[^\s:]+:\d{1,5}$/.test(b))) {
    throw new ConfigError('KAFKA_BROKERS', `must be a comma-separated list of host:port (got "${brokersRaw}")`);
  }
  const dbSchema = pick('DB_SCHEMA');
  if (!IDENT.test(dbSchema)) {
    throw new ConfigError('DB_SCHEMA', `must be a lower-case SQL identifier (got "${dbSchema}")`);
  }
  const cronTimezone = pick('CRON_TIMEZONE');
  assertTimezone(cronTimezone);
  const cronSchedule = pick('CRON_SCHEDULE');
  assertCronExpression(cronSchedule);
  const cronMissed = pick('CRON_MISSED');
  if (cronMissed !== 'catch-up' && cronMissed !== 'skip') {
    throw new ConfigError('CRON_MISSED', `must be catch-up or skip (got "${cronMissed}")`);
  }
  const logLevel = pick('LOG_LEVEL').toLowerCase();
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`);
  }
  const redisPrefix = pick('REDIS_PREFIX');
  if (!/^[A-Za-z0-9:._-]{1,100}$/.test(redisPrefix)) {
    throw new ConfigError('REDIS_PREFIX', `must be 1-100 letters, digits, ":", ".", "_" or "-" (got "${redisPrefix}")`);
  }
  const heartbeatIntervalMs = int('HEARTBEAT_INTERVAL_MS', 100, 3_600_000);
  const heartbeatTimeoutMs = int('HEARTBEAT_TIMEOUT_MS', 500, 86_400_000);
  if (heartbeatTimeoutMs < 2 * heartbeatIntervalMs) {
    throw new ConfigError('HEARTBEAT_TIMEOUT_MS', `must be at least twice HEARTBEAT_INTERVAL_MS (${heartbeatIntervalMs})`);
  }
  const optionalInt = (name: ConfigVariable, min: number, max = Number.MAX_SAFE_INTEGER): number | null =>
    pick(name).trim().toLowerCase() === 'off' ? null : int(name, min, max);
  const protection = protectionSettings(pick, int, optionalInt);
  const pageSize = int('PAGE_SIZE', 1, 100_000);
  const pageSizeMin = int('PAGE_SIZE_MIN', 1, 100_000);
  const pageSizeMax = int('PAGE_SIZE_MAX', 1, 1_000_000);
  if (pageSizeMax < pageSizeMin) throw new ConfigError('PAGE_SIZE_MAX', `must be at least PAGE_SIZE_MIN (${pageSizeMin})`);
  const instanceId = pick('INSTANCE_ID');
  if (!/^[\w.:@-]{1,200}$/.test(instanceId)) {
    throw new ConfigError('INSTANCE_ID', `must be 1-200 letters, digits, ".", ":", "@", "_" or "-" (got "${instanceId}")`);
  }

  const definitions = pick('TRANCHE_DEFINITIONS').split(',').map((d) => d.trim()).filter(Boolean);
  const adminToken = pick('ADMIN_TOKEN');
  if (adminToken !== '' && !/^[\x21-\x7e]{16,200}$/.test(adminToken)) {
    throw new ConfigError('ADMIN_TOKEN', 'must be 16-200 printable characters without spaces');
  }

  return Object.freeze({
    definitions: Object.freeze(definitions),
    databaseUrl: url('DATABASE_URL', ['postgres:', 'postgresql:']),
    dbSchema,
    dbPoolSize: int('DB_POOL_SIZE', 2, 1000),
    redisUrl: url('REDIS_URL', ['redis:', 'rediss:']),
    redisPrefix,
    kafkaBrokers: Object.freeze(kafkaBrokers),
    kafkaClientId: pick('KAFKA_CLIENT_ID'),
    kafkaGroupId: pick('KAFKA_GROUP_ID'),
    topicUpdates: topic('TOPIC_UPDATES'),
    topicDeadLetters: topic('TOPIC_DEAD_LETTERS'),
    topicRunEvents: topic('TOPIC_RUN_EVENTS'),
    kafkaTopicPartitions: int('KAFKA_TOPIC_PARTITIONS', 1, 10_000),
    kafkaReplicationFactor: int('KAFKA_REPLICATION_FACTOR', 1, 100),
    kafkaSessionTimeoutMs: int('KAFKA_SESSION_TIMEOUT_MS', 1000, 1_800_000),
    consumerDownAlertMs: int('CONSUMER_DOWN_ALERT_MS', 1000, 86_400_000),
    runStallAfterMs: int('RUN_STALL_AFTER_MS', 1000, 86_400_000),
    consumerConcurrency: int('CONSUMER_CONCURRENCY', 1, 10_000),
    consumerFetchMaxBytes: int('CONSUMER_FETCH_MAX_BYTES', 65_536, 1_073_741_824),
    cronEnabled: bool('CRON_ENABLED'),
    cronSchedule,
    cronTimezone,
    cronMissed,
    partitionSize: int('PARTITION_SIZE', 1, 100_000_000),
    maxPartitions: int('MAX_PARTITIONS', 1, 1_000_000),
    pageSize,
    workerConcurrency: int('WORKER_CONCURRENCY', 1, 1000),
    pollIntervalMs: int('POLL_INTERVAL_MS', 10, 3_600_000),
    heartbeatIntervalMs,
    heartbeatTimeoutMs,
    maxAttempts: int('MAX_ATTEMPTS', 1, 1000),
    retryBaseMs: int('RETRY_BASE_MS', 0, 3_600_000),
    throttleRowsPerSecond: int('THROTTLE_ROWS_PER_SECOND', 0, 1_000_000_000),
    identifyLeaseMs: int('IDENTIFY_LEASE_MS', 1000, 3_600_000),
    identifyConcurrency: int('IDENTIFY_CONCURRENCY', 1, 64),
    reconcileIntervalMs: int('RECONCILE_INTERVAL_MS', 100, 3_600_000),
    shutdownGraceMs: int('SHUTDOWN_GRACE_MS', 100, 3_600_000),
    httpPort: int('HTTP_PORT', 0, 65_535),
    logLevel,
    instanceId,
    adminToken: adminToken === '' ? null : adminToken,
    ...protection,
    pageSizeAdaptive: bool('PAGE_SIZE_ADAPTIVE'),
    pageTargetMs: int('PAGE_TARGET_MS', 1, 3_600_000),
    pageSizeMin,
    pageSizeMax,
  });
}

type Pick = (name: ConfigVariable) => string;
type IntOf = (name: ConfigVariable, min: number, max?: number) => number;
type OptionalIntOf = (name: ConfigVariable, min: number, max?: number) => number | null;

/** The health signals and the work window, validated (see the fields of {@link Config}). */
function protectionSettings(pick: Pick, int: IntOf, optionalInt: OptionalIntOf) {
  const probe = pick('HEALTH_PROBE_QUERY').trim();
  if (probe !== '' && (!/^(select|with)\b/i.test(probe) || /;\s*\S/.test(probe))) {
    throw new ConfigError('HEALTH_PROBE_QUERY', `must be one SELECT statement (got "${probe}")`);
  }
  const slotsRaw = pick('HEALTH_SLOTS');
  const healthSlots = slotsRaw.split(',').map((s) => s.trim()).filter(Boolean);
  if (healthSlots.some((s) => !/^[a-z0-9_]{1,63}$/.test(s))) {
    throw new ConfigError('HEALTH_SLOTS', `must be comma-separated replication slot names (got "${slotsRaw}")`);
  }
  const criticalRaw = pick('HEALTH_CRITICAL_FACTOR').trim();
  let healthCriticalFactor: number | null = null;
  if (criticalRaw.toLowerCase() !== 'off') {
    healthCriticalFactor = /^\d+(\.\d+)?$/.test(criticalRaw) ? Number(criticalRaw) : Number.NaN;
    if (!(healthCriticalFactor >= 1 && healthCriticalFactor <= 1000)) {
      throw new ConfigError('HEALTH_CRITICAL_FACTOR', `must be off or a number from 1 to 1000 (got "${criticalRaw}")`);
    }
  }
  const windowTimezone = pick('WINDOW_TIMEZONE');
  assertTimezone(windowTimezone, 'WINDOW_TIMEZONE');
  const windowText = pick('WINDOW').trim();
  let window: WorkWindows | null = null;
  if (windowText !== '') {
    try {
      window = parseWindows(windowText, windowTimezone);
    } catch (error) {
      if (error instanceof WindowError) throw new ConfigError('WINDOW', error.message);
      throw error;
    }
  }
  return {
    healthIntervalMs: int('HEALTH_INTERVAL_MS', 100, 600_000),
    healthMaxReplicaLagMs: optionalInt('HEALTH_MAX_REPLICA_LAG_MS', 1, 86_400_000),
    healthSlots: Object.freeze(healthSlots),
    healthMaxSlotLagBytes: optionalInt('HEALTH_MAX_SLOT_LAG_BYTES', 1),
    healthMaxLockWaitMs: optionalInt('HEALTH_MAX_LOCK_WAIT_MS', 1, 86_400_000),
    healthMaxActiveBackends: optionalInt('HEALTH_MAX_ACTIVE_BACKENDS', 1, 1_000_000),
    healthProbeQuery: probe === '' ? null : probe,
    healthProbeMaxMs: int('HEALTH_PROBE_MAX_MS', 1, 3_600_000),
    healthCriticalFactor,
    window,
  };
}

/**
 * A copy of the process environment: the one way the rest of the code gets at it (to hand
 * to {@link loadConfig}, or to pass on to child processes).
 */
export function processEnv(): NodeJS.ProcessEnv {
  return { ...process.env };
}

/** Throws a ConfigError unless `expression` is a valid node-cron expression. */
export function assertCronExpression(expression: string, variable = 'CRON_SCHEDULE'): void {
  const fields = expression.trim().split(/\s+/);
  if ((fields.length !== 5 && fields.length !== 6) || !cron.validate(expression)) {
    throw new ConfigError(variable, `is not a valid cron expression of 5 or 6 fields (got "${expression}")`);
  }
}

/** Throws a ConfigError unless `zone` is an IANA time zone this runtime knows. */
export function assertTimezone(zone: string, variable = 'CRON_TIMEZONE'): void {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
  } catch {
    throw new ConfigError(variable, `is not an IANA time zone (got "${zone}")`);
  }
}
