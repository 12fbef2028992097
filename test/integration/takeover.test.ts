/**
 * Singleton identification with takeover: `tranche identify` is killed (SIGKILL) in the middle
 * of a run's groups; a service instance takes the run over once the lease expires, and
 * finishes it without duplicating partitions or tasks; the partitions still cover exactly the
 * eligible rows (I1) and the run completes. For two definitions that differ in key type and
 * column names: the reference one (bigint key, groups by product) and account-policy (text key
 * "Account Code", quoted identifiers, groups by "Region").
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getRunStatus } from '../../src/runs/run-store.ts';
import { countEligible, seed } from '../../src/seed.ts';
import type { Service } from '../../src/service.ts';
import { createTestEnv, type TestEnv, waitFor } from '../support/env.ts';
import { ACCOUNT_POLICY, createAccounts } from '../support/fixtures.ts';
import { deleteTestTopics, startInstances, stopAll } from '../support/services.ts';

const BIN = fileURLToPath(new URL('../../bin/tranche.js', import.meta.url));
const PRODUCTS = 12;
const PER_PRODUCT = 500;
const PARTITION_SIZE = 100;
/** The group (in the identifier's order, by group key) whose run_groups row the test holds locked, so the identifier stops there. */
const BLOCKED_AT = 9;

/**
 * A definition under test and its table, named for the test's own SQL: `table`, its unique
 * `key`, the `position` the work is partitioned on and the `group` column (quoted as needed),
 * with the types the partitions' text bounds are cast to.
 */
interface Case {
  migration: string;
  definitions?: string;
  table: string;
  key: string;
  keyType: string;
  position: string;
  positionType: string;
  group: string;
  /** Creates PRODUCTS groups with PER_PRODUCT eligible rows each; returns their keys. */
  setup(env: TestEnv): Promise<string[]>;
  /** Rows still eligible. */
  eligible(env: TestEnv): Promise<number>;
}

const CASES: Case[] = [
  {
    migration: 'subscription-version',
    table: 'subscriptions',
    key: 'id',
    keyType: 'bigint',
    position: 'created_date',
    positionType: 'timestamptz',
    group: 'product_key',
    setup: async (env) => (await seed(env.db, { rows: PRODUCTS * PER_PRODUCT * 2, groups: PRODUCTS * 2, changed: PRODUCTS })).changedGroups,
    eligible: (env) => countEligible(env.db),
  },
  {
    migration: 'account-policy',
    definitions: ACCOUNT_POLICY,
    table: '"Accounts"',
    key: '"Account Code"',
    keyType: 'text',
    position: '"Signed Up"',
    positionType: 'timestamptz',
    group: '"Region"',
    setup: async (env) => {
      await createAccounts(env.db, { accounts: PRODUCTS * PER_PRODUCT, regions: PRODUCTS });
      return (await env.db.pool.query<{ r: string }>(`SELECT "Region" AS r FROM "Region Policies"`)).rows.map((r) => r.r);
    },
    eligible: async (env) => {
      const { rows } = await env.db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "Accounts" a JOIN "Region Policies" r USING ("Region") WHERE a."Policy Version" < r."Policy Version"`,
      );
      return rows[0]!.n;
    },
  },
];

describe.each(CASES)('identification takeover after the identifying process dies ($migration)', (c) => {
  let env: TestEnv;
  let services: Service[] = [];
  beforeAll(async () => {
    env = await createTestEnv({
      IDENTIFY_LEASE_MS: '2000',
      RECONCILE_INTERVAL_MS: '300',
      PAGE_SIZE: '100',
      ...(c.definitions ? { TRANCHE_DEFINITIONS: c.definitions } : {}),
    });
  });
  afterAll(async () => {
    await stopAll(services);
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('another instance takes over after the lease expires and finishes, exactly', async () => {
    const changedGroups = await c.setup(env);
    expect(changedGroups).toHaveLength(PRODUCTS);
    expect(await c.eligible(env)).toBe(PRODUCTS * PER_PRODUCT);
    const pool = env.db.pool;

    const child = spawn(process.execPath, [BIN, 'identify', '--migration', c.migration, '--partition-size', String(PARTITION_SIZE), '--json'], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env.env, INSTANCE_ID: 'doomed' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));

    // As soon as the run exists, hold the row of a later group locked: the identifier
    // finishes the groups before it and then blocks inside that group's transaction,
    // which holds the run row's lease lock, so no other group can commit after it. Groups
    // are identified two at a time (IDENTIFY_CONCURRENCY), so the one beside the blocked
    // group may be left waiting on that lease lock: at least BLOCKED_AT - 2 groups end up
    // identified, never the blocked one. The identifier takes the groups in group_key order.
    const runId = await waitFor(
      async () => (await pool.query<{ id: number }>('SELECT id FROM migration_runs')).rows[0]?.id,
      30_000,
      `the run to be created (${output})`,
      5,
    );
    const lock = await pool.connect();
    let identifiedBeforeKill: number;
    try {
      await lock.query('BEGIN');
      const held = await lock.query<{ identified: boolean }>(
        // Only that row: FOR UPDATE over an OFFSET would lock the rows it skips too.
        `SELECT identified FROM run_groups WHERE run_id = $1
           AND group_key = (SELECT group_key FROM run_groups WHERE run_id = $1 ORDER BY group_key OFFSET $2 LIMIT 1) FOR UPDATE`,
        [runId, BLOCKED_AT - 1],
      );
      expect(held.rows[0]?.identified, 'the identifier was too fast to be interrupted').toBe(false);
      const lockPid = (await lock.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await waitFor(
        async () => {
          const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))', [lockPid]);
          return rows[0]!.n > 0;
        },
        30_000,
        `the identifier to block on group ${BLOCKED_AT} (${output})`,
      );
      const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM run_groups WHERE run_id = $1 AND identified', [runId]);
      identifiedBeforeKill = rows[0]!.n;
      expect(identifiedBeforeKill).toBeGreaterThanOrEqual(BLOCKED_AT - 2);
      // Groups after the blocked one may have been identified by the other worker before the
      // blocked group's transaction took the lease lock (a slow boundary query on a loaded
      // machine); the blocked group itself never is.
      expect(identifiedBeforeKill).toBeLessThanOrEqual(PRODUCTS - 1);
      child.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');
    } finally {
      await lock.query('ROLLBACK');
      lock.release();
    }

    // What the dead identifier left: the first groups, each with its partitions and one
    // task per partition, the run still identifying and leased to the dead instance.
    const left = await pool.query(
      `SELECT (SELECT count(*)::int FROM run_groups WHERE run_id = $1 AND identified) AS identified,
              (SELECT count(*)::int FROM partitions WHERE run_id = $1) AS partitions,
              (SELECT count(*)::int FROM scheduled_tasks WHERE (task_data->>'runId')::bigint = $1) AS tasks,
              (SELECT status FROM migration_runs WHERE id = $1) AS status,
              (SELECT identify_owner FROM migration_runs WHERE id = $1) AS owner`,
      [runId],
    );
    const perProduct = PER_PRODUCT / PARTITION_SIZE;
    expect(left.rows[0]).toEqual({
      identified: identifiedBeforeKill,
      partitions: identifiedBeforeKill * perProduct,
      tasks: identifiedBeforeKill * perProduct,
      status: 'identifying',
      owner: 'doomed',
    });

    services = await startInstances(env, 1);
    const done = await waitFor(
      async () => {
        const s = await getRunStatus(pool, runId);
        return s?.status === 'completed' ? s : null;
      },
      60_000,
      'the run to complete after the takeover',
    );

    const run = await pool.query('SELECT migration, identify_owner FROM migration_runs WHERE id = $1', [runId]);
    expect(run.rows[0]).toEqual({ migration: c.migration, identify_owner: services[0]!.instanceId });
    expect(done.partitions).toMatchObject({ total: PRODUCTS * perProduct, completed: PRODUCTS * perProduct, failed: 0 });
    expect(done.rows).toMatchObject({ total: PRODUCTS * PER_PRODUCT, applied: PRODUCTS * PER_PRODUCT });

    // Every group identified once: its partitions are seq 1..n with nothing twice.
    const groups = await pool.query(
      `SELECT rg.group_key, rg.identified, rg.partitions, rg.rows_total,
              count(p.id)::int AS actual, count(DISTINCT p.seq)::int AS seqs, max(p.seq) AS max_seq,
              coalesce(sum(p.row_count), 0)::bigint AS rows
       FROM run_groups rg LEFT JOIN partitions p ON p.run_id = rg.run_id AND p.group_key = rg.group_key
       WHERE rg.run_id = $1 GROUP BY 1, 2, 3, 4 ORDER BY rg.group_key COLLATE "C"`,
      [runId],
    );
    expect(groups.rows).toEqual(
      [...changedGroups].sort().map((key) => ({
        group_key: key,
        identified: true,
        partitions: perProduct,
        rows_total: PER_PRODUCT,
        actual: perProduct,
        seqs: perProduct,
        max_seq: perProduct,
        rows: PER_PRODUCT,
      })),
    );

    // I1, with SQL independent of the partition query: each eligible row of the run's
    // groups lies in exactly one partition (checked against the data as identified, i.e.
    // every row of a changed group, now migrated to its target), and no two partitions
    // overlap. Bounds are text, cast to the columns' types.
    const pos = (side: 'lower' | 'upper', p: string) => `(${p}.${side}_pos::${c.positionType}, ${p}.${side}_key::${c.keyType})`;
    const cover = await pool.query(
      `SELECT count(*) FILTER (WHERE covering = 1)::int AS once, count(*) FILTER (WHERE covering <> 1)::int AS otherwise
       FROM (SELECT t.${c.key}, count(p.id) AS covering
             FROM ${c.table} t
             JOIN run_groups rg ON rg.run_id = $1 AND rg.group_key = t.${c.group}::text
             LEFT JOIN partitions p ON p.run_id = $1 AND p.group_key = t.${c.group}::text
               AND (t.${c.position}, t.${c.key}) BETWEEN ${pos('lower', 'p')} AND ${pos('upper', 'p')}
             GROUP BY 1) rows`,
      [runId],
    );
    expect(cover.rows[0], 'every row of a changed group in exactly one partition').toEqual({ once: PRODUCTS * PER_PRODUCT, otherwise: 0 });
    const overlaps = await pool.query(
      `SELECT a.id, b.id FROM partitions a JOIN partitions b
         ON a.run_id = b.run_id AND a.group_key = b.group_key AND a.id < b.id
        AND ${pos('lower', 'a')} <= ${pos('upper', 'b')} AND ${pos('lower', 'b')} <= ${pos('upper', 'a')}
       WHERE a.run_id = $1`,
      [runId],
    );
    expect(overlaps.rows, 'no two partitions overlap').toEqual([]);
    expect(await c.eligible(env)).toBe(0);
  });
});
