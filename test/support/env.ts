/**
 * Isolation for integration tests: each call gives a fresh schema, Redis prefix, topic names
 * and consumer group on the real local services, and a cleanup that removes them.
 */
import { randomBytes } from 'node:crypto';
import { type Config, type ConfigOverrides, loadConfig } from '../../src/config.ts';
import { createDb, type Db } from '../../src/db.ts';
import { type Definitions, loadDefinitions } from '../../src/definitions/load.ts';
import { silentLogger } from '../../src/logger.ts';
import { migrateToLatest } from '../../src/migrate.ts';
import { FIXTURE_DEFINITION } from '../../src/seed.ts';

export interface TestEnv {
  id: string;
  config: Config;
  /** The environment a subprocess needs to see the same isolated services. */
  env: Record<string, string>;
  db: Db;
  cleanup(): Promise<void>;
}

export function isolatedEnvironment(overrides: Record<string, string> = {}): Record<string, string> {
  const id = randomBytes(4).toString('hex');
  const base: Record<string, string> = {
    TRANCHE_DEFINITIONS: FIXTURE_DEFINITION,
    DB_SCHEMA: `t_${id}`,
    REDIS_PREFIX: `t-${id}`,
    KAFKA_GROUP_ID: `t-${id}-appliers`,
    TOPIC_UPDATES: `t-${id}.updates`,
    TOPIC_DEAD_LETTERS: `t-${id}.dead-letters`,
    TOPIC_RUN_EVENTS: `t-${id}.run-events`,
    KAFKA_TOPIC_PARTITIONS: '3',
    CRON_ENABLED: 'false',
    HTTP_PORT: '0',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    POLL_INTERVAL_MS: '1000',
    HEARTBEAT_INTERVAL_MS: '300',
    HEARTBEAT_TIMEOUT_MS: '2000',
    RECONCILE_INTERVAL_MS: '500',
    RETRY_BASE_MS: '100',
    IDENTIFY_LEASE_MS: '2000',
    SHUTDOWN_GRACE_MS: '5000',
  };
  for (const key of ['DATABASE_URL', 'REDIS_URL', 'KAFKA_BROKERS']) {
    const value = process.env[key];
    if (value) base[key] = value;
  }
  return { ...base, ...overrides };
}

/** Creates an isolated environment with its schema migrated. */
export async function createTestEnv(overrides: Record<string, string> = {}, flags: ConfigOverrides = {}): Promise<TestEnv> {
  const env = isolatedEnvironment(overrides);
  const config = loadConfig(env, flags);
  const db = createDb({ ...config, dbPoolSize: 5 });
  await migrateToLatest(db);
  return {
    id: config.dbSchema,
    config,
    env,
    db,
    async cleanup() {
      await db.pool.query(`DROP SCHEMA IF EXISTS "${config.dbSchema}" CASCADE`).catch(() => {});
      await db.close();
    },
  };
}

export const quietLog = silentLogger();

/** The definitions of TRANCHE_DEFINITIONS, checked against the test's schema. */
export function testDefinitions(env: TestEnv): Promise<Definitions> {
  return loadDefinitions(env.db.pool, env.config.definitions);
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(check: () => Promise<T | null | undefined | false>, timeoutMs: number, what: string, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
}
