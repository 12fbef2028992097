/**
 * What a command needs: the resolved configuration and, on demand, connections.
 * Opening Postgres checks it is reachable so that a stopped database gives one clear line.
 */
import { type Config, type ConfigOverrides, loadConfig, processEnv } from '../config.ts';
import { type ConsumerLag, consumerLag } from '../consumer/lag.ts';
import { type Coordination, createCoordination } from '../coordination/redis.ts';
import { createDb, type Db } from '../db.ts';
import { type Definitions, loadDefinitions } from '../definitions/load.ts';
import { ServiceUnavailableError } from '../errors.ts';
import { createLogger, type Logger } from '../logger.ts';
import { migrateToLatest } from '../migrate.ts';

export interface CommandContext {
  config: Config;
  log: Logger;
  /** Opens Postgres (and applies migrations unless told not to). */
  openDb(options?: { migrate?: boolean }): Promise<Db>;
  /** Loads and checks the definitions of TRANCHE_DEFINITIONS against this database. */
  openDefinitions(db: Db): Promise<Definitions>;
  openCoordination(): Coordination;
  /** Lag of the applier consumer group on the updates topic. */
  consumerLag(): Promise<ConsumerLag>;
  close(): Promise<void>;
}

function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '5432'}${u.pathname}`;
  } catch {
    return url;
  }
}

export function createContext(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = processEnv()): CommandContext {
  const config = loadConfig(env, overrides);
  const log = createLogger({ level: config.logLevel, instanceId: config.instanceId });
  const closers: (() => Promise<void>)[] = [];
  return {
    config,
    log,
    async openDb(options = {}) {
      const db = createDb({ ...config, dbPoolSize: Math.min(config.dbPoolSize, 5) });
      closers.push(() => db.close());
      try {
        await db.pool.query('SELECT 1');
      } catch (error) {
        throw new ServiceUnavailableError(
          `cannot reach Postgres at ${describeUrl(config.databaseUrl)}: ${error instanceof Error ? error.message : String(error)} (is it running? try: npm run stack:up)`,
          { cause: error },
        );
      }
      if (options.migrate !== false) await migrateToLatest(db);
      return db;
    },
    openDefinitions(db) {
      return loadDefinitions(db.pool, config.definitions);
    },
    openCoordination() {
      const co = createCoordination({ redisUrl: config.redisUrl, prefix: config.redisPrefix }, log);
      closers.push(() => co.close());
      return co;
    },
    consumerLag() {
      return consumerLag(config, { log });
    },
    async close() {
      for (const close of closers.reverse()) await close().catch(() => {});
      log.flush?.();
    },
  };
}
