/**
 * A database deployed before migration definitions (migrations 0001-0002 only) upgrades in
 * place with `tranche migrate`, and a run started before the upgrade (its partitions in the
 * old layout, half applied, records of version 1 on the topic) is finished by the reference
 * definition of the same name. A run that did not finish before the upgrade is re-run after it
 * with what the CLI offers: a failed one by `tranche rerun --run ID --failed`, a cancelled one
 * by a new `tranche identify` over what is left; either applies exactly the rows still
 * eligible and completes once.
 */
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Config, loadConfig } from '../../src/config.ts';
import { createDb, type Db } from '../../src/db.ts';
import { migrateToLatest } from '../../src/migrate.ts';
import { getRunStatus } from '../../src/runs/run-store.ts';
import { countEligible } from '../../src/seed.ts';
import { ensureTopics } from '../../src/service.ts';
import { createStreamClient } from '../../src/stream/kafka.ts';
import { runCli } from '../support/cli.ts';
import { isolatedEnvironment, quietLog, waitFor } from '../support/env.ts';
import { deleteTestTopics, startInstances, stopAll } from '../support/services.ts';
import { readTopic } from '../support/topics.ts';

const MIGRATIONS = fileURLToPath(new URL('../../migrations/', import.meta.url));
/** What the previous version set `updated_at` to: a row still holding it was not applied after the upgrade. */
const BEFORE_UPGRADE = '2000-01-01 00:00:00+00';

interface OldDatabase {
  envVars: Record<string, string>;
  config: Config;
  db: Db;
}

/** A schema of its own with migrations 0001-0002 applied: the database the previous version left. */
function preUpgradeDatabase(): OldDatabase {
  const envVars = isolatedEnvironment();
  const old = { envVars, config: loadConfig(envVars) } as OldDatabase;
  beforeAll(async () => {
    old.db = createDb({ ...old.config, dbPoolSize: 5 });
    const dir = mkdtempSync(join(tmpdir(), 'tranche-old-migrations-'));
    for (const f of ['0001_initial.sql', '0002_partition_boundaries_function.sql']) cpSync(join(MIGRATIONS, f), join(dir, f));
    expect(await migrateToLatest(old.db, `${dir}/`)).toEqual(['0001_initial', '0002_partition_boundaries_function']);
  });
  afterAll(async () => {
    await deleteTestTopics({ config: old.config } as never);
    await old.db.pool.query(`DROP SCHEMA IF EXISTS "${old.config.dbSchema}" CASCADE`).catch(() => {});
    await old.db.close();
  });
  return old;
}

interface Row {
  d: string;
  id: number;
}

/** One partition of run 1 in the old layout: its rows, how many were produced and applied. */
interface OldPartition {
  rows: Row[];
  produced: number;
  applied: number;
  state: 'pending' | 'completed' | 'failed';
  attempts?: number;
  lastError?: string;
}

/**
 * The old layout, as the previous version wrote it: two products, gold (version 2, last
 * migrated to 1) with 400 subscriptions of version 1 and tin (unchanged) with 100, and run 1
 * of the reference migration with status `status` over gold. Returns gold's subscriptions in
 * (created_date, id) order, in its two partitions of 200.
 */
async function oldRun(db: Db, status: 'running' | 'failed' | 'cancelled'): Promise<[Row[], Row[]]> {
  await db.pool.query(
    `INSERT INTO products (product_key, product_version, migrated_version) VALUES ('gold', 2, 1), ('tin', 1, 1);
     INSERT INTO subscriptions (product_key, product_version, created_date, updated_at)
       SELECT CASE WHEN g <= 400 THEN 'gold' ELSE 'tin' END, 1,
              timestamptz '2024-01-01 00:00:00.000001+00' + (g % 7) * interval '1 microsecond', '${BEFORE_UPGRADE}'
       FROM generate_series(1, 500) g;
     INSERT INTO migration_runs (migration, trigger, status, partition_size, max_partitions, identified_at, last_error)
       VALUES ('subscription-version', 'manual', '${status}', 200, 100, now(),
               ${status === 'failed' ? `'one or more partitions failed'` : 'NULL'});
     INSERT INTO run_products (run_id, product_key, product_version, identified, partitions, rows_total) VALUES (1, 'gold', 2, true, 2, 400);`,
  );
  const rows = (await db.pool.query<Row>(
    `SELECT created_date::text AS d, id FROM subscriptions WHERE product_key = 'gold' ORDER BY created_date, id`,
  )).rows;
  return [rows.slice(0, 200), rows.slice(200)];
}

/**
 * Run 1's partitions (seq 1, 2, …) in the old layout; the first `applied` rows of each were
 * moved to version 2 before the upgrade (keeping the old `updated_at`).
 */
async function oldPartitions(db: Db, partitions: OldPartition[]): Promise<void> {
  for (const [i, p] of partitions.entries()) {
    const offset = p.produced > 0 ? p.rows[p.produced - 1]! : null;
    await db.pool.query(
      `INSERT INTO partitions (run_id, product_key, product_version, seq, min_created_date, min_id, max_created_date, max_id,
                               offset_date, offset_id, row_count, rows_produced, rows_applied, completed, state, attempts, last_error)
       VALUES (1, 'gold', 2, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
      [i + 1, p.rows[0]!.d, p.rows[0]!.id, p.rows.at(-1)!.d, p.rows.at(-1)!.id, offset?.d ?? null, offset?.id ?? null,
        p.rows.length, p.produced, p.applied, p.state === 'completed', p.state, p.attempts ?? 0, p.lastError ?? null],
    );
    await db.pool.query(`UPDATE subscriptions SET product_version = 2 WHERE id = ANY ($1::bigint[])`, [p.rows.slice(0, p.applied).map((r) => r.id)]);
  }
}

/** `tranche migrate`, as a user runs it. */
async function upgrade(old: OldDatabase): Promise<void> {
  const migrated = await runCli(['migrate'], old.envVars);
  expect(migrated.code, migrated.stderr).toBe(0);
}

/**
 * Run 1, ended before the upgrade with `status`: its first partition completed and applied,
 * its second as `second` says. Upgrades, and returns the second partition's rows and the ids
 * of the subscriptions still eligible, in id order.
 */
async function upgradedUnfinishedRun(
  old: OldDatabase,
  status: 'failed' | 'cancelled',
  second: Omit<OldPartition, 'rows'>,
): Promise<{ first: Row[]; second: Row[]; left: number[] }> {
  const [firstRows, secondRows] = await oldRun(old.db, status);
  await oldPartitions(old.db, [
    { rows: firstRows, produced: 200, applied: 200, state: 'completed' },
    { rows: secondRows, ...second },
  ]);
  await upgrade(old);
  const { rows } = await old.db.pool.query<{ id: number }>(
    `SELECT s.id FROM subscriptions s JOIN products p USING (product_key) WHERE s.product_version < p.product_version ORDER BY s.id`,
  );
  return { first: firstRows, second: secondRows, left: rows.map((r) => Number(r.id)) };
}

/**
 * I1 over `partitionFilter` (a condition on partitions `p`), with plain SQL over the table and
 * the partitions' text bounds: the eligible rows are exactly `ids`, each in exactly one of those
 * partitions.
 */
async function expectExactCover(db: Db, partitionFilter: string, ids: number[]): Promise<void> {
  const { rows } = await db.pool.query<{ id: number; covering: number }>(
    `SELECT s.id, count(p.id)::int AS covering
     FROM subscriptions s JOIN products pr USING (product_key)
     LEFT JOIN partitions p ON ${partitionFilter} AND p.group_key = s.product_key
       AND (s.created_date, s.id) BETWEEN (p.lower_pos::timestamptz, p.lower_key::bigint) AND (p.upper_pos::timestamptz, p.upper_key::bigint)
     WHERE s.product_version < pr.product_version
     GROUP BY s.id ORDER BY s.id`,
  );
  expect(rows.map((r) => ({ id: Number(r.id), covering: r.covering }))).toEqual(ids.map((id) => ({ id, covering: 1 })));
}

/** Starts one service instance and waits for the run to complete; returns its status. */
async function finishRun(old: OldDatabase, runId: number): Promise<NonNullable<Awaited<ReturnType<typeof getRunStatus>>>> {
  const services = await startInstances({ env: old.envVars, id: old.config.dbSchema } as never, 1);
  try {
    return await waitFor(async () => {
      const s = await getRunStatus(old.db.pool, runId);
      return s?.status === 'completed' ? s : null;
    }, 60_000, `run ${runId} to complete`);
  } finally {
    await stopAll(services);
  }
}

/**
 * After a re-run: update records were produced for the rows eligible at the upgrade (`ids`)
 * and no other (a record may be sent twice: the producer is not idempotent, the apply is);
 * each of them reached version 2 after the upgrade, and no row applied before it was written
 * again; one completion event, of the run that re-ran them.
 */
async function expectReRun(old: OldDatabase, runId: number, ids: number[]): Promise<void> {
  const { db, config } = old;
  const records = await readTopic(config.kafkaBrokers, config.topicUpdates, ids.length);
  const keys = [...new Set(records.map((m) => Number(m.key)))].sort((a, b) => a - b);
  expect(keys, 'records of exactly the rows still eligible').toEqual(ids);
  expect(records.every((m) => JSON.parse(m.value!).run === runId)).toBe(true);
  expect(await countEligible(db)).toBe(0);
  const after = await db.pool.query<{ id: number }>(`SELECT id FROM subscriptions WHERE updated_at > $1 ORDER BY id`, [BEFORE_UPGRADE]);
  expect(after.rows.map((r) => Number(r.id)), 'written after the upgrade: exactly the rows still eligible').toEqual(ids);
  const uid = await waitFor(async () => {
    const { rows } = await db.pool.query<{ uid: string }>('SELECT uid FROM migration_runs WHERE id = $1 AND completion_published', [runId]);
    return rows[0]?.uid;
  }, 20_000, 'the completion event to be published');
  const events = (await readTopic(config.kafkaBrokers, config.topicRunEvents, 1)).map((m) => ({ key: m.key, ...JSON.parse(m.value!) }));
  expect(events).toHaveLength(1);
  expect(events[0]).toMatchObject({ key: uid, type: 'run.completed', runId, migration: 'subscription-version' });
  expect((await db.pool.query(`SELECT target FROM group_progress WHERE group_key = 'gold'`)).rows[0].target).toBe('2');
}

describe('upgrading a schema deployed before migration definitions', () => {
  const old = preUpgradeDatabase();

  it('keeps a running run and finishes it, with records of version 1 applied; product progress carries over', async () => {
    const { db, config, envVars } = old;
    // Run 1 in progress with two partitions, the first one produced and half applied: its
    // other half waits on the topic as records of version 1.
    const [first, second] = await oldRun(db, 'running');
    await oldPartitions(db, [
      { rows: first, produced: 200, applied: 100, state: 'completed' },
      { rows: second, produced: 0, applied: 0, state: 'pending' },
    ]);
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

    await upgrade(old);
    const layout = await db.pool.query(`SELECT group_key, target, lower_key, upper_key, offset_key FROM partitions ORDER BY id`);
    expect(layout.rows).toEqual([
      { group_key: 'gold', target: '2', lower_key: String(first[0]!.id), upper_key: String(first.at(-1)!.id), offset_key: String(first.at(-1)!.id) },
      { group_key: 'gold', target: '2', lower_key: String(second[0]!.id), upper_key: String(second.at(-1)!.id), offset_key: null },
    ]);
    expect((await db.pool.query(`SELECT group_key, target FROM group_progress ORDER BY 1`)).rows).toEqual([
      { group_key: 'gold', target: '1' },
      { group_key: 'tin', target: '1' },
    ]);

    const done = await finishRun(old, 1);
    expect(done).toMatchObject({ migration: 'subscription-version', deadLetters: 0, rows: { total: 400, applied: 400 } });
    expect(await countEligible(db)).toBe(0);
    expect((await db.pool.query(`SELECT target FROM group_progress WHERE group_key = 'gold'`)).rows[0].target).toBe('2');
    // A new run finds nothing to do; a rerun of a partition of the old run is refused only
    // because the run is completed, as before the upgrade.
    const again = await runCli(['identify', '--json'], envVars);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ groups: 0, partitions: 0 });
    const rerun = await runCli(['rerun', '--partition', '2'], envVars);
    expect(rerun.code).not.toBe(0);
    expect(rerun.stderr).toContain('run 1 is completed');
  });
});

describe('re-running, after the upgrade, a run that failed before it', () => {
  const old = preUpgradeDatabase();

  it('reruns its failed partition from the lower bound; exactly the rows still eligible are applied, once', async () => {
    const { db, envVars } = old;
    // Run 1 failed: its second partition failed for good after 120 of its rows were produced
    // and applied.
    const { first, second, left } = await upgradedUnfinishedRun(old, 'failed', {
      produced: 120, applied: 120, state: 'failed', attempts: 5, lastError: 'connection reset',
    });
    expect(left).toEqual(second.slice(120).map((r) => r.id).sort((a, b) => a - b));

    const rerun = await runCli(['rerun', '--run', '1', '--failed', '--json'], envVars);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(JSON.parse(rerun.stdout)).toEqual({ runId: 1, partitions: [2] });
    // The rescheduled work: partition 2 alone, from its lower bound, one task; it covers every
    // row still eligible, the completed partition none.
    expect((await db.pool.query(`SELECT id, state, offset_key, attempts FROM partitions ORDER BY id`)).rows).toEqual([
      { id: 1, state: 'completed', offset_key: String(first.at(-1)!.id), attempts: 0 },
      { id: 2, state: 'pending', offset_key: null, attempts: 0 },
    ]);
    expect((await db.pool.query(`SELECT task_instance, task_data FROM scheduled_tasks`)).rows).toEqual([
      { task_instance: '2', task_data: { runId: 1, partitionId: 2 } },
    ]);
    expect((await db.pool.query(`SELECT status FROM migration_runs WHERE id = 1`)).rows[0].status).toBe('running');
    await expectExactCover(db, `p.run_id = 1 AND p.state = 'pending'`, left);

    const done = await finishRun(old, 1);
    expect(done).toMatchObject({ deadLetters: 0, partitions: { total: 2, completed: 2, failed: 0 }, rows: { total: 400, produced: 200 + 80, applied: 400 } });
    await expectReRun(old, 1, left);
  });
});

describe('re-running, after the upgrade, a run that was cancelled before it', () => {
  const old = preUpgradeDatabase();

  it('a new identify run covers exactly the rows still eligible and completes once', async () => {
    const { db, envVars } = old;
    // Run 1 was cancelled (its tasks deleted) with its second partition half produced.
    const { second, left } = await upgradedUnfinishedRun(old, 'cancelled', { produced: 100, applied: 100, state: 'pending' });
    expect(left).toEqual(second.slice(100).map((r) => r.id).sort((a, b) => a - b));

    // A cancelled run cannot be rerun; a new run of the definition picks up what is left.
    const refused = await runCli(['rerun', '--run', '1', '--failed'], envVars);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('run 1 is cancelled');
    const identified = await runCli(['identify', '--migration', 'subscription-version', '--partition-size', '30', '--json'], envVars);
    expect(identified.code, identified.stderr).toBe(0);
    const { runId } = JSON.parse(identified.stdout) as { runId: number };
    expect(runId).toBe(2);
    expect(JSON.parse(identified.stdout)).toMatchObject({ groups: 1, partitions: 4 });
    await expectExactCover(db, `p.run_id = 2`, left);
    const counted = await db.pool.query(`SELECT sum(row_count)::int AS n FROM partitions WHERE run_id = 2`);
    expect(counted.rows[0].n, 'the new partitions count exactly the rows left').toBe(100);
    const tasks = await db.pool.query(`SELECT count(*)::int AS n FROM scheduled_tasks WHERE (task_data->>'runId')::bigint = 2`);
    expect(tasks.rows[0].n).toBe(4);

    const done = await finishRun(old, 2);
    expect(done).toMatchObject({ deadLetters: 0, partitions: { total: 4, completed: 4, failed: 0 }, rows: { total: 100, applied: 100 } });
    expect((await db.pool.query(`SELECT status FROM migration_runs WHERE id = 1`)).rows[0].status).toBe('cancelled');
    await expectReRun(old, 2, left);
  });
});
