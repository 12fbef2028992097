import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.ts';
import { identifyRun } from '../../src/identification/identify.ts';
import type { Definitions } from '../../src/definitions/load.ts';
import { createRun } from '../../src/runs/run-store.ts';
import { FIXTURE_MIGRATION } from '../../src/seed.ts';
import { createTestEnv, quietLog, type TestEnv, testDefinitions } from '../support/env.ts';
import { prng } from '../support/prng.ts';

const HOSTILE_KEYS = [
  `'; DROP TABLE subscriptions; --`,
  'ünïcødé-产品-🚀',
  `quote"double'single\\backslash`,
  'x'.repeat(2000),
  ' leading and trailing ',
  '$1',
];

interface Dataset {
  products: { key: string; version: number; rows: number; tieShare: number; migratedShare: number }[];
}

function makeDataset(seed: number): Dataset {
  const rnd = prng(seed);
  const products: Dataset['products'] = [
    { key: 'single-row', version: 2, rows: 1, tieShare: 0, migratedShare: 0 },
    { key: 'empty', version: 2, rows: 0, tieShare: 0, migratedShare: 0 },
    { key: 'all-migrated', version: 2, rows: 50, tieShare: 0.5, migratedShare: 1 },
    { key: 'all-ties', version: 3, rows: 700 + Math.floor(rnd() * 500), tieShare: 1, migratedShare: 0.1 },
  ];
  for (const key of HOSTILE_KEYS) {
    products.push({ key, version: 2, rows: Math.floor(rnd() * 900), tieShare: rnd(), migratedShare: rnd() * 0.5 });
  }
  return { products };
}

async function load(env: TestEnv, data: Dataset, seed: number): Promise<void> {
  const rnd = prng(seed * 7 + 1);
  const keys: string[] = [];
  const versions: number[] = [];
  const dates: string[] = [];
  for (const p of data.products) {
    for (let i = 0; i < p.rows; i++) {
      keys.push(p.key);
      versions.push(rnd() < p.migratedShare ? p.version : p.version - 1);
      // Ties: one instant shared to the microsecond; otherwise microsecond-precise spread.
      const micros = rnd() < p.tieShare ? 123_456 : Math.floor(rnd() * 5_000_000_000);
      const ms = Date.UTC(2025, 0, 1) + Math.floor(micros / 1000);
      const seconds = new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
      dates.push(`${seconds}.${String(micros % 1_000_000).padStart(6, '0')}+00`);
    }
  }
  await env.db.pool.query(
    'INSERT INTO products (product_key, product_version) SELECT k, v FROM unnest($1::text[], $2::integer[]) AS t(k, v)',
    [data.products.map((p) => p.key), data.products.map((p) => p.version)],
  );
  await env.db.pool.query(
    `INSERT INTO subscriptions (product_key, product_version, created_date)
     SELECT k, v, d FROM unnest($1::text[], $2::integer[], $3::timestamptz[]) AS t(k, v, d)`,
    [keys, versions, dates],
  );
  await env.db.pool.query('ANALYZE subscriptions');
}

/** I1, checked by SQL that shares nothing with the partition query. */
async function checkExactCover(env: TestEnv, runId: number): Promise<void> {
  const q = env.db.pool;
  const uncovered = await q.query(
    `SELECT s.id, count(p.id) AS covering
     FROM subscriptions s
     JOIN products pr ON pr.product_key = s.product_key
     LEFT JOIN partitions p ON p.run_id = $1 AND p.group_key = s.product_key
       AND (s.created_date, s.id) BETWEEN (p.lower_pos::timestamptz, p.lower_key::bigint) AND (p.upper_pos::timestamptz, p.upper_key::bigint)
     WHERE s.product_version < pr.product_version
     GROUP BY s.id
     HAVING count(p.id) <> 1`,
    [runId],
  );
  expect(uncovered.rows, 'every eligible row in exactly one partition').toEqual([]);
  const counts = await q.query(
    `SELECT p.id, p.row_count,
            (SELECT count(*) FROM subscriptions s
             WHERE s.product_key = p.group_key AND s.product_version < p.target::int
               AND (s.created_date, s.id) BETWEEN (p.lower_pos::timestamptz, p.lower_key::bigint) AND (p.upper_pos::timestamptz, p.upper_key::bigint)
            ) AS actual
     FROM partitions p WHERE p.run_id = $1`,
    [runId],
  );
  for (const row of counts.rows) expect(row.row_count, `row_count of partition ${row.id}`).toBe(row.actual);
  const bounds = await q.query(
    `SELECT p.id FROM partitions p
     WHERE p.run_id = $1 AND NOT EXISTS (
       SELECT 1 FROM subscriptions s WHERE s.id::text = p.lower_key AND s.created_date::text = p.lower_pos AND s.product_key = p.group_key)`,
    [runId],
  );
  expect(bounds.rows, 'bounds are real rows at full precision').toEqual([]);
}

describe('identification', () => {
  let env: TestEnv;
  let definitions: Definitions;
  beforeAll(async () => {
    env = await createTestEnv();
    definitions = await testDefinitions(env);
  });
  afterAll(async () => {
    await env.cleanup();
  });

  for (const seed of [1, 2, 3, 4, 5]) {
    it(`partitions cover exactly the eligible rows (I1), data set seed ${seed}`, async () => {
      await env.db.pool.query('TRUNCATE subscriptions, products, partitions, run_groups, group_progress, scheduled_tasks, migration_runs RESTART IDENTITY CASCADE');
      const data = makeDataset(seed);
      await load(env, data, seed);
      const size = [50, 97, 200, 333, 1000][seed - 1]!;
      const run = await createRun(env.db, definitions.require(FIXTURE_MIGRATION), { trigger: 'manual',
        partitionSize: size,
        maxPartitions: 1000,
        instanceId: 'test',
        leaseMs: 10_000,
      });
      await identifyRun({ db: env.db, coordination: null, log: quietLog, instanceId: 'test', leaseMs: 10_000, definitions }, run.runId);
      await checkExactCover(env, run.runId);

      const products = new Set(run.groups.map((g) => g.groupKey));
      expect(products.has('empty')).toBe(false);
      expect(products.has('all-migrated')).toBe(false);
      expect(products.has('single-row')).toBe(true);
      // Sizes: every partition but each product's last holds exactly the target.
      const { rows } = await env.db.pool.query(
        `SELECT group_key, seq, row_count, max(seq) OVER (PARTITION BY group_key) AS last FROM partitions WHERE run_id = $1`,
        [run.runId],
      );
      for (const p of rows) {
        if (p.seq < p.last) expect(Math.abs(p.row_count - size)).toBeLessThanOrEqual(size * 0.1);
        else expect(p.row_count).toBeLessThanOrEqual(size * 1.1);
        expect(p.row_count).toBeGreaterThan(0);
      }
      // One task per partition.
      const tasks = await env.db.pool.query(`SELECT count(*) AS n FROM scheduled_tasks WHERE task_data->>'runId' = $1`, [String(run.runId)]);
      expect(tasks.rows[0].n).toBe(rows.length);
    });
  }

  it('ends exactly on the last row when the eligible rows are a multiple of the size, or one more', async () => {
    await env.db.pool.query('TRUNCATE subscriptions, products, partitions, run_groups, group_progress, scheduled_tasks, migration_runs RESTART IDENTITY CASCADE');
    await load(env, { products: [
      { key: 'exact', version: 2, rows: 300, tieShare: 0.5, migratedShare: 0 },
      { key: 'one-more', version: 2, rows: 301, tieShare: 0.5, migratedShare: 0 },
    ] }, 13);
    const run = await createRun(env.db, definitions.require(FIXTURE_MIGRATION), { trigger: 'manual', partitionSize: 100, maxPartitions: 3, instanceId: 'test', leaseMs: 10_000,
    });
    await identifyRun({ db: env.db, coordination: null, log: quietLog, instanceId: 'test', leaseMs: 10_000, definitions }, run.runId);
    const { rows } = await env.db.pool.query('SELECT group_key, row_count FROM partitions WHERE run_id = $1 ORDER BY group_key, seq', [run.runId]);
    // 'one-more' hits the cap of 3: its last partition runs to the end (101 rows, within +10%).
    expect(rows.map((r) => `${r.group_key}:${r.row_count}`)).toEqual(['exact:100', 'exact:100', 'exact:100', 'one-more:100', 'one-more:100', 'one-more:101']);
    await checkExactCover(env, run.runId);
  });

  it('respects the partition cap by growing the partition size', async () => {
    await env.db.pool.query('TRUNCATE subscriptions, products, partitions, run_groups, group_progress, scheduled_tasks, migration_runs RESTART IDENTITY CASCADE');
    await load(env, { products: [{ key: 'capped', version: 2, rows: 1000, tieShare: 0.3, migratedShare: 0 }] }, 9);
    const run = await createRun(env.db, definitions.require(FIXTURE_MIGRATION), { trigger: 'manual', partitionSize: 10, maxPartitions: 4, instanceId: 'test', leaseMs: 10_000,
    });
    await identifyRun({ db: env.db, coordination: null, log: quietLog, instanceId: 'test', leaseMs: 10_000, definitions }, run.runId);
    const { rows } = await env.db.pool.query('SELECT row_count FROM partitions WHERE run_id = $1 ORDER BY seq', [run.runId]);
    expect(rows.map((r) => r.row_count)).toEqual([250, 250, 250, 250]);
    await checkExactCover(env, run.runId);
  });

  it('refuses a second start while a run is active, and --force skips its products', async () => {
    await env.db.pool.query('TRUNCATE subscriptions, products, partitions, run_groups, group_progress, scheduled_tasks, migration_runs RESTART IDENTITY CASCADE');
    await load(env, { products: [
      { key: 'a', version: 2, rows: 20, tieShare: 0, migratedShare: 0 },
      { key: 'b', version: 2, rows: 20, tieShare: 0, migratedShare: 0 },
    ] }, 11);
    const fixture = definitions.require(FIXTURE_MIGRATION);
    const base = { trigger: 'manual' as const, partitionSize: 10, maxPartitions: 100, instanceId: 'test', leaseMs: 10_000 };
    const first = await createRun(env.db, fixture, { ...base, groupFilter: ['a'] });
    await expect(createRun(env.db, fixture, base)).rejects.toThrow(UserError);
    const runsBefore = await env.db.pool.query('SELECT count(*) AS n FROM migration_runs');
    expect(runsBefore.rows[0].n).toBe(1);
    const forced = await createRun(env.db, fixture, { ...base, force: true });
    expect(forced.groups.map((g) => g.groupKey)).toEqual(['b']);
    expect(first.groups.map((g) => g.groupKey)).toEqual(['a']);
  });

  it('rejects an unknown product filter and writes nothing', async () => {
    const before = await env.db.pool.query('SELECT count(*) AS n FROM migration_runs');
    await expect(
      createRun(env.db, definitions.require(FIXTURE_MIGRATION), { trigger: 'manual', partitionSize: 10, maxPartitions: 10, instanceId: 't', leaseMs: 1000, groupFilter: ['nope'] }),
    ).rejects.toThrow(/unknown group of subscription-version: "nope"/);
    const after = await env.db.pool.query('SELECT count(*) AS n FROM migration_runs');
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });
});
