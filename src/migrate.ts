/**
 * Applies the numbered `.sql` files of `migrations/` to the configured schema, in name order,
 * in one transaction that holds an advisory lock on that schema, so instances starting
 * together is harmless: the first applies, the others wait and then find nothing to do.
 *
 * Applied migrations are recorded in `<schema>.kysely_migration (name, timestamp)`, the table
 * and format of kysely's Migrator, which earlier versions used. kysely's Migrator is not used:
 * it looks for its tables by introspecting every table of every schema in the database, which
 * fails (42P01, 42703, 3F000) when another schema's tables are dropped at that moment, and
 * grows with the size of the database. This only ever looks inside its own schema.
 *
 * @example
 *   const applied = await migrateToLatest(db);   // ['0001_initial', …] the first time, then []
 */
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { type Db, inTransaction } from './db.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations/', import.meta.url));
const MIGRATION_FILE = /^\d{4}_[\w-]+\.sql$/;

interface MigrationFile {
  name: string;
  text: string;
}

async function migrationFiles(dir: string): Promise<MigrationFile[]> {
  const files = (await readdir(dir)).filter((f) => MIGRATION_FILE.test(f)).sort();
  return Promise.all(files.map(async (f) => ({ name: f.replace(/\.sql$/, ''), text: await readFile(`${dir}${f}`, 'utf8') })));
}

/** Creates the schema if needed and applies pending migrations; returns their names. */
export async function migrateToLatest(db: Db, dir = MIGRATIONS_DIR): Promise<string[]> {
  const migrations = await migrationFiles(dir);
  const schema = `"${db.schema}"`;
  return inTransaction(db.pool, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`tranche migrations ${db.schema}`]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${schema}.kysely_migration (name varchar(255) NOT NULL PRIMARY KEY, timestamp varchar(255) NOT NULL)`,
    );
    const { rows } = await client.query<{ name: string }>(`SELECT name FROM ${schema}.kysely_migration ORDER BY name`);
    const applied = rows.map((r) => r.name);
    const appliedNames = new Set(applied);
    const known = new Set(migrations.map((m) => m.name));
    const unknown = applied.filter((name) => !known.has(name));
    if (unknown.length > 0) {
      throw new Error(
        `schema "${db.schema}" has migrations this version of tranche does not know: ${unknown.join(', ')} (was it migrated by a newer version?)`,
      );
    }
    const pending = migrations.filter((m) => !appliedNames.has(m.name));
    const last = applied.at(-1);
    const outOfOrder = last === undefined ? undefined : pending.find((m) => m.name < last);
    if (outOfOrder) {
      throw new Error(`migration ${outOfOrder.name} is older than the last applied one (${last}); migrations are append-only`);
    }
    await client.query(`SET LOCAL search_path TO ${schema}`);
    for (const migration of pending) {
      try {
        await client.query(migration.text);
      } catch (error) {
        throw new Error(`migration ${migration.name} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
      }
      await client.query(`INSERT INTO ${schema}.kysely_migration (name, timestamp) VALUES ($1, $2)`, [migration.name, new Date().toISOString()]);
    }
    return pending.map((m) => m.name);
  });
}
