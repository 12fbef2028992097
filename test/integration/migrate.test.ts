/**
 * Schema migrations: applied once per schema, serialised between instances starting together,
 * all or nothing, and blind to other schemas of the same database (tests and other
 * deployments create and drop theirs at any moment).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { createDb, type Db } from '../../src/db.ts';
import { migrateToLatest } from '../../src/migrate.ts';
import { isolatedEnvironment } from '../support/env.ts';

const MIGRATIONS = fileURLToPath(new URL('../../migrations/', import.meta.url));
const opened: Db[] = [];
const migrationFiles = async () => (await readdir(MIGRATIONS)).filter((f) => f.endsWith('.sql')).sort();

function openSchema(schema = `t_${randomBytes(4).toString('hex')}`): Db {
  const config = loadConfig(isolatedEnvironment({ DB_SCHEMA: schema }));
  const db = createDb({ ...config, dbPoolSize: 4 });
  opened.push(db);
  return db;
}

async function tablesOf(db: Db): Promise<string[]> {
  const { rows } = await db.pool.query('SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1', [db.schema]);
  return rows.map((r) => r.tablename);
}

afterAll(async () => {
  for (const db of opened) {
    await db.pool.query(`DROP SCHEMA IF EXISTS "${db.schema}" CASCADE`).catch(() => {});
    await db.close();
  }
});

describe('migrateToLatest', () => {
  it('applies every migration once, in order, and then nothing', async () => {
    const db = openSchema();
    const files = (await migrationFiles()).map((f) => f.replace(/\.sql$/, ''));
    expect(await migrateToLatest(db)).toEqual(files);
    expect(await migrateToLatest(db)).toEqual([]);
    const { rows } = await db.pool.query('SELECT name FROM kysely_migration ORDER BY name');
    expect(rows.map((r) => r.name)).toEqual(files);
    expect(await tablesOf(db)).toEqual(expect.arrayContaining(['subscriptions', 'partitions', 'migration_runs']));
  });

  it('lets instances starting together apply each migration exactly once', async () => {
    const schema = `t_${randomBytes(4).toString('hex')}`;
    const instances = [openSchema(schema), openSchema(schema), openSchema(schema), openSchema(schema)];
    const results = await Promise.all(instances.map((db) => migrateToLatest(db)));
    const all = results.flat();
    expect(new Set(all).size).toBe(all.length);
    expect(results.filter((r) => r.length > 0)).toHaveLength(1);
  });

  it('never fails because another schema is being created and dropped', async () => {
    const db = openSchema();
    await migrateToLatest(db);
    let stop = false;
    let churned = 0;
    const churn = async () => {
      while (!stop) {
        const other = openSchema();
        await migrateToLatest(other);
        await other.pool.query(`DROP SCHEMA "${other.schema}" CASCADE`);
        churned++;
      }
    };
    const churners = [churn(), churn()];
    try {
      // Each call must look only at its own schema: no error, however the others move.
      for (let i = 0; i < 150; i++) expect(await migrateToLatest(db)).toEqual([]);
    } finally {
      stop = true;
      await Promise.all(churners);
    }
    expect(churned).toBeGreaterThan(0);
  });

  it('rolls back a failing migration entirely and names it', async () => {
    const dir = await mkdtemp(`${tmpdir()}/tranche-migrations-`);
    try {
      const [first] = await migrationFiles();
      await copyFile(`${MIGRATIONS}${first}`, `${dir}/${first}`);
      await writeFile(`${dir}/9999_broken.sql`, 'CREATE TABLE half_done (id int);\nSELECT no_such_function();\n');
      const db = openSchema();
      await expect(migrateToLatest(db, `${dir}/`)).rejects.toThrow(/migration 9999_broken failed: function no_such_function\(\) does not exist/);
      expect(await tablesOf(db)).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a schema migrated by a newer version and changes nothing', async () => {
    const db = openSchema();
    await migrateToLatest(db);
    await db.pool.query(`INSERT INTO kysely_migration (name, timestamp) VALUES ('9000_from_the_future', now()::text)`);
    const before = await tablesOf(db);
    await expect(migrateToLatest(db)).rejects.toThrow(/does not know: 9000_from_the_future.*newer version/);
    expect(await tablesOf(db)).toEqual(before);
  });
});
