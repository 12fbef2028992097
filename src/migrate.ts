/**
 * Applies the numbered `.sql` files of `migrations/` with kysely's Migrator, which holds a
 * Postgres advisory lock and runs each migration in a transaction, so instances starting
 * together is harmless.
 *
 * @example
 *   const applied = await migrateToLatest(db);   // ['0001_initial']
 */
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { type Migration, type MigrationProvider, Migrator, sql } from 'kysely';
import type { Db } from './db.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations/', import.meta.url));

class SqlFileMigrationProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f)).sort();
    const migrations: Record<string, Migration> = {};
    for (const file of files) {
      const text = await readFile(`${MIGRATIONS_DIR}${file}`, 'utf8');
      migrations[file.replace(/\.sql$/, '')] = {
        async up(db) {
          await sql.raw(text).execute(db);
        },
      };
    }
    return migrations;
  }
}

/** Creates the schema if needed and applies pending migrations; returns their names. */
export async function migrateToLatest(db: Db): Promise<string[]> {
  await sql.raw(`CREATE SCHEMA IF NOT EXISTS "${db.schema}"`).execute(db.kysely);
  const migrator = new Migrator({
    db: db.kysely,
    provider: new SqlFileMigrationProvider(),
    migrationTableSchema: db.schema,
  });
  // kysely's Migrator looks for its tables across every schema the role can see; a schema
  // dropped by someone else at that moment makes the lookup fail with 3F000 (invalid schema
  // name). That is not our schema's problem: try again, a few times.
  for (let attempt = 1; ; attempt++) {
    const { error, results } = await migrator.migrateToLatest();
    if (!error) return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
    const code = (error as { code?: string }).code;
    const message = error instanceof Error ? error.message : String(error);
    if (code === '3F000' && !message.includes(`"${db.schema}"`) && attempt < 5) continue;
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new Error(`migration ${failed} failed: ${message}`, { cause: error });
  }
}
