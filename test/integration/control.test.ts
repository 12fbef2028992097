/**
 * Operator control against in-process instances on the real services: rerun of one failed
 * partition and of every failed partition, pause, resume, cancel, and refusals.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setThrottleLimit } from '../../src/coordination/throttle.ts';
import { UserError } from '../../src/errors.ts';
import { cancelRun, pauseRun, rerunFailed, rerunPartition, resumeRun } from '../../src/runs/run-control.ts';
import { getRunStatus } from '../../src/runs/run-store.ts';
import type { RunStatus } from '../../src/schema.ts';
import { countEligible, seed } from '../../src/seed.ts';
import type { Service } from '../../src/service.ts';
import { SUBSCRIPTION_WITH_REF } from '../support/fixtures.ts';
import { createTestEnv, type TestEnv, waitFor } from '../support/env.ts';
import { startTestRun } from '../support/runs.ts';
import { deleteTestTopics, startInstances, stopAll } from '../support/services.ts';


const statusIs = (env: TestEnv, runId: number, wanted: RunStatus) => async () => {
  const s = await getRunStatus(env.db.pool, runId);
  return s?.status === wanted ? s : null;
};

/**
 * Makes a row of `productKey` poison: the `nth` eligible row in partition order gets a
 * customer_ref larger than a Kafka record may be (the test's definition carries it).
 */
async function poisonRow(env: TestEnv, productKey: string, nth: number): Promise<number> {
  const { rows } = await env.db.pool.query(
    `UPDATE subscriptions SET customer_ref = repeat('x', 1100000)
     WHERE id = (SELECT id FROM subscriptions WHERE product_key = $1 ORDER BY created_date, id OFFSET $2 LIMIT 1)
     RETURNING id`,
    [productKey, nth],
  );
  return rows[0].id;
}

describe('rerun of failed partitions', () => {
  let env: TestEnv;
  let services: Service[] = [];
  beforeAll(async () => {
    env = await createTestEnv({ PAGE_SIZE: '50', MAX_ATTEMPTS: '2', RETRY_BASE_MS: '50', TRANCHE_DEFINITIONS: SUBSCRIPTION_WITH_REF });
  });
  afterAll(async () => {
    await stopAll(services);
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('rerun --partition resets one failed partition; rerun --failed the rest; then the run completes', async () => {
    await seed(env.db, { rows: 2000, groups: 2, changed: 2 });
    // Poison rows in the middle of the first partition of each product: a few pages go out
    // (the offset moves) before the partition fails.
    const poisonA = await poisonRow(env, 'product-001', 120);
    const poisonB = await poisonRow(env, 'product-002', 120);
    services = await startInstances(env, 2);
    const runId = await startTestRun(env, 500, { coordination: services[0]!.coordination });
    const failed = await waitFor(statusIs(env, runId, 'failed'), 30_000, 'the run to fail');
    expect(failed.partitions).toMatchObject({ total: 4, completed: 2, failed: 2 });
    const failedParts = (
      await env.db.pool.query(`SELECT id, offset_key, rows_produced, row_count, last_error FROM partitions WHERE state = 'failed' ORDER BY group_key`)
    ).rows;
    expect(failedParts.map((p) => p.last_error)).toEqual([
      expect.stringContaining(`row ${poisonA} `),
      expect.stringContaining(`row ${poisonB} `),
    ]);
    for (const p of failedParts) expect(p.offset_key).not.toBeNull(); // pages before the poison row went out

    // The operator fixes the first row and reruns its partition: the run runs again...
    await env.db.pool.query(`UPDATE subscriptions SET customer_ref = 'fixed' WHERE id = $1`, [poisonA]);
    // (and the partition's very first row, applied long ago, was set back meanwhile: only a
    // walk from the lower bound, not from the old offset, migrates it again)
    const first = await env.db.pool.query(
      `UPDATE subscriptions s SET product_version = 1 FROM partitions p
       WHERE p.id = $1 AND s.product_key = p.group_key AND (s.created_date, s.id) = (p.lower_pos::timestamptz, p.lower_key::bigint) RETURNING s.id`,
      [failedParts[0].id],
    );
    expect(first.rowCount).toBe(1);
    const eligibleInPartition = (
      await env.db.pool.query(
        `SELECT count(*)::int AS n FROM subscriptions s JOIN partitions p ON s.product_key = p.group_key
         WHERE p.id = $1 AND (s.created_date, s.id) BETWEEN (p.lower_pos::timestamptz, p.lower_key::bigint) AND (p.upper_pos::timestamptz, p.upper_key::bigint)
           AND s.product_version < p.target::int`,
        [failedParts[0].id],
      )
    ).rows[0].n as number;
    expect(await rerunPartition(env.db, services[0]!.coordination, failedParts[0].id)).toEqual({ runId });
    // ...the partition is produced again from its lower bound, and the run is failed again
    // because the other partition still is.
    await waitFor(async () => (await env.db.pool.query(`SELECT 1 FROM partitions WHERE id = $1 AND state = 'completed'`, [failedParts[0].id])).rowCount === 1, 20_000, 'the rerun partition to complete');
    const rerunOne = (await env.db.pool.query('SELECT rows_produced FROM partitions WHERE id = $1', [failedParts[0].id])).rows[0];
    expect(rerunOne.rows_produced).toBe(eligibleInPartition);
    expect((await env.db.pool.query('SELECT product_version FROM subscriptions WHERE id = $1', [first.rows[0].id])).rows[0].product_version).toBe(2);
    await waitFor(statusIs(env, runId, 'failed'), 10_000, 'the run to be failed again');

    // Fix the other row; rerun every failed partition of the run.
    await env.db.pool.query(`UPDATE subscriptions SET customer_ref = 'fixed' WHERE id = $1`, [poisonB]);
    expect(await rerunFailed(env.db, services[0]!.coordination, runId)).toEqual([failedParts[1].id]);
    const done = await waitFor(statusIs(env, runId, 'completed'), 30_000, 'the run to complete');
    expect(done.partitions).toMatchObject({ total: 4, completed: 4, failed: 0 });
    expect(done.rows.applied).toBe(done.rows.total);
    expect(await countEligible(env.db)).toBe(0);
  });
});

describe('pause, resume and cancel', () => {
  let env: TestEnv;
  let services: Service[] = [];
  beforeAll(async () => {
    env = await createTestEnv({ PAGE_SIZE: '50', WORKER_CONCURRENCY: '2', POLL_INTERVAL_MS: '5000' });
    await seed(env.db, { rows: 8000, groups: 2, changed: 2 });
    services = await startInstances(env, 2);
    // Slow enough that the run is still going when the operator acts.
    await setThrottleLimit(services[0]!.coordination.client, env.config.redisPrefix, 1500);
  });
  afterAll(async () => {
    await stopAll(services);
    await deleteTestTopics(env);
    await env.cleanup();
  });

  const produced = async (runId: number) =>
    (await env.db.pool.query('SELECT coalesce(sum(rows_produced), 0)::int AS n FROM partitions WHERE run_id = $1', [runId])).rows[0].n as number;
  const idle = () => services.every((s) => s.executor.activeTasks === 0);

  it('pause parks every task and stops every worker within a second; resume goes on from the offsets', async () => {
    const runId = await startTestRun(env, 1000, { coordination: services[0]!.coordination });
    await waitFor(async () => (await produced(runId)) >= 1000, 20_000, 'the run to be under way');
    const pausedAt = Date.now();
    await pauseRun(env.db, services[0]!.coordination, runId);
    // Within a second: no instance runs a task of the run, and every task is parked.
    await waitFor(
      async () => {
        if (!idle()) return false;
        const { rows } = await env.db.pool.query(
          `SELECT count(*) FILTER (WHERE picked OR execution_time <> 'infinity')::int AS live, count(*)::int AS total FROM scheduled_tasks`,
        );
        return rows[0].live === 0 && rows[0].total > 0;
      },
      1000,
      'every worker to stop and every task to be parked',
      20,
    );
    expect(Date.now() - pausedAt).toBeLessThan(1000);
    expect((await getRunStatus(env.db.pool, runId))?.status).toBe('paused');
    const atPause = await produced(runId);
    expect(atPause).toBeLessThan(8000 / 2);

    await resumeRun(env.db, services[0]!.coordination, runId);
    const done = await waitFor(statusIs(env, runId, 'completed'), 30_000, 'the resumed run to complete');
    // Pausing checkpoints after a page: nothing was produced twice, nothing restarted from scratch.
    expect(await produced(runId)).toBe(done.rows.total);
    expect(done.rows.applied).toBe(done.rows.total);
  });

  it('cancel stops every worker within a second; rerun of a cancelled run is refused', async () => {
    await env.db.pool.query('UPDATE products SET product_version = product_version + 1');
    const runId = await startTestRun(env, 1000, { coordination: services[0]!.coordination });
    await waitFor(async () => (await produced(runId)) >= 500, 20_000, 'the run to be under way');
    const cancelledAt = Date.now();
    await cancelRun(env.db, services[0]!.coordination, runId);
    await waitFor(async () => idle(), 1000, 'every worker to stop', 20);
    expect(Date.now() - cancelledAt).toBeLessThan(1000);
    expect((await env.db.pool.query('SELECT count(*)::int AS n FROM scheduled_tasks')).rows[0].n).toBe(0);
    expect((await getRunStatus(env.db.pool, runId))?.status).toBe('cancelled');
    const partition = (await env.db.pool.query('SELECT id FROM partitions WHERE run_id = $1 LIMIT 1', [runId])).rows[0].id;
    await expect(rerunPartition(env.db, null, partition)).rejects.toThrow(UserError);
    await expect(rerunPartition(env.db, null, partition)).rejects.toThrow(/is cancelled/);
    await expect(rerunFailed(env.db, null, runId)).rejects.toThrow(/is cancelled/);
    await expect(rerunFailed(env.db, null, 999_999)).rejects.toThrow(/does not exist/);
    expect((await env.db.pool.query('SELECT count(*)::int AS n FROM scheduled_tasks')).rows[0].n).toBe(0);
  });
});
