/**
 * The Postgres handle: one pg pool, wrapped by kysely. Every connection runs with
 * `TimeZone=UTC` and the configured `search_path`.
 *
 * Timestamps are never turned into JS `Date`s (that drops microseconds): `timestamptz`
 * values come back as Postgres' own text and go back in as text, at full precision.
 *
 * @example
 *   const db = createDb({ databaseUrl, dbSchema: 'public', dbPoolSize: 5 });
 *   const rows = await db.kysely.selectFrom('products').selectAll().execute();
 *   await db.close();
 */
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.ts';

const { Pool, types } = pg;
const TIMESTAMPTZ = 1184;
const TIMESTAMP = 1114;
const INT8 = 20;

function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new RangeError(`bigint ${text} exceeds JavaScript's safe integer range`);
  return n;
}

const typeParsers = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === TIMESTAMPTZ || oid === TIMESTAMP) return (value: string) => value;
    if (oid === INT8) return parseInt8;
    return types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

export interface Db {
  readonly pool: pg.Pool;
  readonly kysely: Kysely<Database>;
  readonly schema: string;
  close(): Promise<void>;
}

export function createDb(options: { databaseUrl: string; dbSchema: string; dbPoolSize: number; applicationName?: string }): Db {
  const pool = new Pool({
    connectionString: options.databaseUrl,
    max: options.dbPoolSize,
    types: typeParsers,
    options: `-c search_path=${options.dbSchema} -c TimeZone=UTC`,
    application_name: options.applicationName ?? 'tranche',
    connectionTimeoutMillis: 10_000,
  });
  // An idle client that loses its connection (Postgres restart) must not crash the process.
  pool.on('error', () => {});
  const kysely = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  let closed = false;
  return {
    pool,
    kysely,
    schema: options.dbSchema,
    async close() {
      if (closed) return;
      closed = true;
      await kysely.destroy();
    },
  };
}

/** Runs `fn` in a transaction on one pooled client. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/** The subset of pg's client that SQL helpers need: a pool or a transaction's client. */
export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;
