/**
 * Singleton identification with takeover: `tranche identify` is killed (SIGKILL) in the middle
 * of a run's products; a service instance takes the run over once the lease expires, and
 * finishes it without duplicating partitions or tasks; the partitions still cover exactly the
 * eligible rows (I1) and the run completes.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getRunStatus } from '../../src/runs/run-store.ts';
import { countEligible, seed } from '../../src/seed.ts';
import type { Service } from '../../src/service.ts';
import { createTestEnv, type TestEnv, waitFor } from '../support/env.ts';
import { deleteTestTopics, startInstances, stopAll } from '../support/services.ts';

const BIN = fileURLToPath(new URL('../../bin/tranche.js', import.meta.url));
const PRODUCTS = 12;
const PER_PRODUCT = 500;
const PARTITION_SIZE = 100;
/** The product whose run_groups row the test holds locked, so the identifier stops there. */
const BLOCKED_AT = 9;

describe('identification takeover after the identifying process dies', () => {
  let env: TestEnv;
  let services: Service[] = [];
  beforeAll(async () => {
    env = await createTestEnv({ IDENTIFY_LEASE_MS: '2000', RECONCILE_INTERVAL_MS: '300', PAGE_SIZE: '100' });
  });
  afterAll(async () => {
    await stopAll(services);
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('another instance takes over after the lease expires and finishes, exactly', async () => {
    const seeded = await seed(env.db, { rows: PRODUCTS * PER_PRODUCT * 2, groups: PRODUCTS * 2, changed: PRODUCTS });
    expect(seeded.changedGroups).toHaveLength(PRODUCTS);
    const pool = env.db.pool;

    const child = spawn(process.execPath, [BIN, 'identify', '--partition-size', String(PARTITION_SIZE), '--json'], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env.env, INSTANCE_ID: 'doomed' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));

    // As soon as the run exists, hold the row of a later product locked: the identifier
    // finishes the products before it and then blocks inside that product's transaction,
    // which holds the run row's lease lock, so no other product can commit after it. Products
    // are identified two at a time (IDENTIFY_CONCURRENCY), so the one beside the blocked
    // product may be left waiting on that lease lock: at least BLOCKED_AT - 2 products end up
    // identified, never the blocked one.
    const runId = await waitFor(
      async () => (await pool.query<{ id: number }>('SELECT id FROM migration_runs')).rows[0]?.id,
      30_000,
      `the run to be created (${output})`,
      5,
    );
    const blocked = seeded.changedGroups[BLOCKED_AT - 1]!;
    const lock = await pool.connect();
    let identifiedBeforeKill: number;
    try {
      await lock.query('BEGIN');
      const held = await lock.query<{ identified: boolean }>(
        'SELECT identified FROM run_groups WHERE run_id = $1 AND group_key = $2 FOR UPDATE',
        [runId, blocked],
      );
      expect(held.rows[0]?.identified, 'the identifier was too fast to be interrupted').toBe(false);
      const lockPid = (await lock.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await waitFor(
        async () => {
          const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))', [lockPid]);
          return rows[0]!.n > 0;
        },
        30_000,
        `the identifier to block on product ${BLOCKED_AT} (${output})`,
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

    // What the dead identifier left: the first products, each with its partitions and one
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

    const run = await pool.query('SELECT identify_owner FROM migration_runs WHERE id = $1', [runId]);
    expect(run.rows[0].identify_owner).toBe(services[0]!.instanceId);
    expect(done.partitions).toMatchObject({ total: PRODUCTS * perProduct, completed: PRODUCTS * perProduct, failed: 0 });
    expect(done.rows).toMatchObject({ total: PRODUCTS * PER_PRODUCT, applied: PRODUCTS * PER_PRODUCT });

    // Every product identified once: its partitions are seq 1..n with nothing twice.
    const products = await pool.query(
      `SELECT rp.group_key, rp.identified, rp.partitions, rp.rows_total,
              count(p.id)::int AS actual, count(DISTINCT p.seq)::int AS seqs, max(p.seq) AS max_seq,
              coalesce(sum(p.row_count), 0)::bigint AS rows
       FROM run_groups rp LEFT JOIN partitions p ON p.run_id = rp.run_id AND p.group_key = rp.group_key
       WHERE rp.run_id = $1 GROUP BY 1, 2, 3, 4 ORDER BY 1`,
      [runId],
    );
    expect(products.rows).toEqual(
      seeded.changedGroups.map((key) => ({
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
    // products lies in exactly one partition (checked against the data as identified, i.e.
    // every subscription of a changed product, now migrated to the target version).
    const cover = await pool.query(
      `SELECT s.id, count(p.id) AS covering
       FROM subscriptions s
       JOIN run_groups rp ON rp.run_id = $1 AND rp.group_key = s.product_key
       LEFT JOIN partitions p ON p.run_id = $1 AND p.group_key = s.product_key
         AND (s.created_date, s.id) BETWEEN (p.lower_pos::timestamptz, p.lower_key::bigint) AND (p.upper_pos::timestamptz, p.upper_key::bigint)
       GROUP BY s.id HAVING count(p.id) <> 1`,
      [runId],
    );
    expect(cover.rows, 'every row of a changed product in exactly one partition').toEqual([]);
    const overlaps = await pool.query(
      `SELECT a.id, b.id FROM partitions a JOIN partitions b
         ON a.run_id = b.run_id AND a.group_key = b.group_key AND a.id < b.id
        AND (a.lower_pos::timestamptz, a.lower_key::bigint) <= (b.upper_pos::timestamptz, b.upper_key::bigint)
        AND (b.lower_pos::timestamptz, b.lower_key::bigint) <= (a.upper_pos::timestamptz, a.upper_key::bigint)
       WHERE a.run_id = $1`,
      [runId],
    );
    expect(overlaps.rows, 'no two partitions overlap').toEqual([]);
    expect(await countEligible(env.db)).toBe(0);
  });
});
