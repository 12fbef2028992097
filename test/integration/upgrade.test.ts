/**
 * A database deployed before migration definitions (migrations 0001-0002 only) upgrades in
 * place with `tranche migrate`, and a run started before the upgrade (its partitions in the
 * old layout, half applied, records of version 1 on the topic) is finished by the reference
 * definition of the same name; a completed old run can be re-run.
 */
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type Db } from '../../src/db.ts';
import { migrateToLatest } from '../../src/migrate.ts';
import { getRunStatus } from '../../src/runs/run-store.ts';
import { countEligible } from '../../src/seed.ts';
import { createStreamClient } from '../../src/stream/kafka.ts';
import { ensureTopics } from '../../src/service.ts';
import { runCli } from '../support/cli.ts';
import { isolatedEnvironment, quietLog, waitFor } from '../support/env.ts';
import { loadConfig } from '../../src/config.ts';
import { deleteTestTopics, startInstances, stopAll } from '../support/services.ts';

const MIGRATIONS = fileURLToPath(new URL('../../migrations/', import.meta.url));

describe('upgrading a schema deployed before migration definitions', () => {
  const envVars = isolatedEnvironment();
  const config = loadConfig(envVars);
  let db: Db;
  beforeAll(async () => {
    db = createDb({ ...config, dbPoolSize: 5 });
    const old = mkdtempSync(join(tmpdir(), 'tranche-old-migrations-'));
    for (const f of ['0001_initial.sql', '0002_partition_boundaries_function.sql']) cpSync(join(MIGRATIONS, f), join(old, f));
    expect(await migrateToLatest(db, `${old}/`)).toEqual(['0001_initial', '0002_partition_boundaries_function']);
  });
  afterAll(async () => {
    await deleteTestTopics({ config } as never);
    await db.pool.query(`DROP SCHEMA IF EXISTS "${config.dbSchema}" CASCADE`).catch(() => {});
    await db.close();
  });

  it('keeps a running run and finishes it, with records of version 1 applied; product progress carries over', async () => {
    // The old layout, as the previous version wrote it: two products, one run of the reference
    // migration in progress with two partitions, the first one produced and half applied.
    await db.pool.query(`
      INSERT INTO products (product_key, product_version, migrated_version) VALUES ('gold', 2, 1), ('tin', 1, 1);
      INSERT INTO subscriptions (product_key, product_version, created_date)
        SELECT CASE WHEN g <= 400 THEN 'gold' ELSE 'tin' END, 1, timestamptz '2024-01-01 00:00:00.000001+00' + (g % 7) * interval '1 microsecond'
        FROM generate_series(1, 500) g;
      INSERT INTO migration_runs (migration, trigger, status, partition_size, max_partitions, identified_at)
        VALUES ('subscription-version', 'manual', 'running', 200, 100, now());
      INSERT INTO run_products (run_id, product_key, product_version, identified, partitions, rows_total) VALUES (1, 'gold', 2, true, 2, 400);`);
    const bounds = (await db.pool.query<{ d: string; id: number }>(
      `SELECT created_date::text AS d, id FROM subscriptions WHERE product_key = 'gold' ORDER BY created_date, id`,
    )).rows;
    const first = bounds.slice(0, 200);
    const second = bounds.slice(200);
    await db.pool.query(
      `INSERT INTO partitions (run_id, product_key, product_version, seq, min_created_date, min_id, max_created_date, max_id,
                               offset_date, offset_id, row_count, rows_produced, rows_applied, completed, state)
       VALUES (1, 'gold', 2, 1, $1, $2, $3, $4, $3, $4, 200, 200, 100, true, 'completed'),
              (1, 'gold', 2, 2, $5, $6, $7, $8, NULL, NULL, 200, 0, 0, false, 'pending')`,
      [first[0]!.d, first[0]!.id, first.at(-1)!.d, first.at(-1)!.id, second[0]!.d, second[0]!.id, second.at(-1)!.d, second.at(-1)!.id],
    );
    // Half of the first partition was applied before the upgrade; its other half waits on
    // the topic as records of version 1.
    await db.pool.query(`UPDATE subscriptions SET product_version = 2 WHERE id = ANY ($1::bigint[])`, [first.slice(0, 100).map((r) => r.id)]);
    await db.pool.query(
      `INSERT INTO scheduled_tasks (task_name, task_instance, task_data, execution_time) VALUES ('partition', '2', '{"runId":1,"partitionId":2}', now())`,
    );
    const stream = createStreamClient({ brokers: config.kafkaBrokers, clientId: 'upgrade-test' }, quietLog);
    await ensureTopics(stream, config);
    await stream.send(
      config.topicUpdates,
      first.slice(100).map((r) => ({
        key: String(r.id),
        value: JSON.stringify({ v: 1, runId: 1, partitionId: 1, id: r.id, productKey: 'gold', fromVersion: 1, toVersion: 2 }),
      })),
    );
    await stream.disconnect();

    // tranche migrate, as a user runs it.
    const migrated = await runCli(['migrate'], envVars);
    expect(migrated.code, migrated.stderr).toBe(0);
    const layout = await db.pool.query(`SELECT group_key, target, lower_key, upper_key, offset_key FROM partitions ORDER BY id`);
    expect(layout.rows).toEqual([
      { group_key: 'gold', target: '2', lower_key: String(first[0]!.id), upper_key: String(first.at(-1)!.id), offset_key: String(first.at(-1)!.id) },
      { group_key: 'gold', target: '2', lower_key: String(second[0]!.id), upper_key: String(second.at(-1)!.id), offset_key: null },
    ]);
    expect((await db.pool.query(`SELECT group_key, target FROM group_progress ORDER BY 1`)).rows).toEqual([
      { group_key: 'gold', target: '1' },
      { group_key: 'tin', target: '1' },
    ]);

    const services = await startInstances({ env: envVars, id: config.dbSchema } as never, 1);
    try {
      const done = await waitFor(async () => {
        const s = await getRunStatus(db.pool, 1);
        return s?.status === 'completed' ? s : null;
      }, 60_000, 'the old run to complete');
      expect(done).toMatchObject({ migration: 'subscription-version', deadLetters: 0, rows: { total: 400, applied: 400 } });
      expect(await countEligible(db)).toBe(0);
      expect((await db.pool.query(`SELECT target FROM group_progress WHERE group_key = 'gold'`)).rows[0].target).toBe('2');
      // A new run finds nothing to do; a rerun of a partition of the old run is refused
      // only because the run is completed, as before the upgrade.
      const again = await runCli(['identify', '--json'], envVars);
      expect(again.code, again.stderr).toBe(0);
      expect(JSON.parse(again.stdout)).toMatchObject({ groups: 0, partitions: 0 });
    } finally {
      await stopAll(services);
    }
  });
});
