/**
 * One-time tasks and the partition worker against the real Postgres and Kafka: lock-and-fetch
 * claiming, dead-execution detection on the database clock, fencing of a stale owner,
 * retries to failure, the global throttle and Redis wake-ups.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCoordination } from '../../src/coordination/redis.ts';
import { setThrottleLimit } from '../../src/coordination/throttle.ts';
import { FencedError } from '../../src/errors.ts';
import { getRunStatus } from '../../src/runs/run-store.ts';
import { seed } from '../../src/seed.ts';
import { ensureTopics, type Service } from '../../src/service.ts';
import { createStreamClient, type StreamClient } from '../../src/stream/kafka.ts';
import {
  type ClaimedTask,
  claimDueTasks,
  completeTask,
  heartbeat,
  releaseTask,
  rescheduleAfterFailure,
  scheduleTasks,
} from '../../src/tasks/task-store.ts';
import { loadSql } from '../../src/sql.ts';
import { advanceOffset, completePartition, processPartition } from '../../src/worker/partition-worker.ts';
import { SUBSCRIPTION_WITH_REF } from '../support/fixtures.ts';
import { createTestEnv, testDefinitions, quietLog, type TestEnv, waitFor } from '../support/env.ts';
import { startTestRun } from '../support/runs.ts';
import { deleteTestTopics, startInstances, stopAll } from '../support/services.ts';
import { readTopic } from '../support/topics.ts';


const partitionRow = async (env: TestEnv, id: number) =>
  (
    await env.db.pool.query(
      'SELECT id, state, offset_key, rows_produced, row_count, completed, attempts, last_error, started_at, updated_at FROM partitions WHERE id = $1',
      [id],
    )
  ).rows[0];

describe('one-time tasks (Postgres)', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => {
    await env.cleanup();
  });

  it('gives concurrent claimers disjoint batches (FOR UPDATE SKIP LOCKED)', async () => {
    const total = 60;
    await scheduleTasks(
      env.db.pool,
      Array.from({ length: total }, (_, i) => ({ taskName: 'disjoint', taskInstance: String(i), data: {} })),
    );
    const seen = new Map<string, string>();
    let rounds = 0;
    while (seen.size < total && rounds++ < 20) {
      const batches = await Promise.all(
        Array.from({ length: 6 }, (_, c) => claimDueTasks(env.db.pool, { instanceId: `claimer-${c}`, limit: 7, deadAfterMs: 60_000 })),
      );
      batches.forEach((batch, c) => {
        for (const task of batch) {
          const key = task.taskInstance;
          expect(seen.get(key), `task ${key} claimed by ${seen.get(key)} and claimer-${c}`).toBeUndefined();
          seen.set(key, `claimer-${c}`);
        }
      });
    }
    expect(seen.size).toBe(total);
    // The table agrees: each task is picked by the claimer that got it, with version 2.
    const { rows } = await env.db.pool.query(`SELECT task_instance, picked_by, version FROM scheduled_tasks WHERE task_name = 'disjoint'`);
    for (const row of rows) {
      expect(row.picked_by).toBe(seen.get(row.task_instance));
      expect(row.version).toBe(2);
    }
    await env.db.pool.query(`DELETE FROM scheduled_tasks WHERE task_name = 'disjoint'`);
  });

  it('reclaims a task only once its heartbeat is stale on the database clock', async () => {
    await scheduleTasks(env.db.pool, [{ taskName: 'dead', taskInstance: '1', data: {} }]);
    const [a] = await claimDueTasks(env.db.pool, { instanceId: 'a', limit: 1, deadAfterMs: 1000 });
    expect(a).toBeDefined();
    // While a heartbeats, b finds nothing to claim, well past the 1 s limit.
    const until = Date.now() + 1600;
    while (Date.now() < until) {
      expect(await heartbeat(env.db.pool, a!, 'a')).toBe(true);
      const stolen = await claimDueTasks(env.db.pool, { instanceId: 'b', limit: 1, deadAfterMs: 1000 });
      expect(stolen.filter((t) => t.taskName === 'dead')).toEqual([]);
      await new Promise((r) => setTimeout(r, 200));
    }
    // a froze: its heartbeat is one hour old by the database's clock, so b takes the task now.
    await env.db.pool.query(`UPDATE scheduled_tasks SET last_heartbeat = now() - interval '1 hour' WHERE task_name = 'dead'`);
    const [b] = await claimDueTasks(env.db.pool, { instanceId: 'b', limit: 1, deadAfterMs: 1000 });
    expect(b).toMatchObject({ taskName: 'dead', taskInstance: '1', version: a!.version + 1 });
    // a's token is now worthless for every state change.
    expect(await heartbeat(env.db.pool, a!, 'a')).toBe(false);
    expect(await completeTask(env.db.pool, a!, 'a')).toBe(false);
    expect(await releaseTask(env.db.pool, a!, 'a')).toBe(false);
    expect(await rescheduleAfterFailure(env.db.pool, a!, 'a', 0)).toBe(false);
    const row = (await env.db.pool.query(`SELECT picked, picked_by, version FROM scheduled_tasks WHERE task_name = 'dead'`)).rows[0];
    expect(row).toEqual({ picked: true, picked_by: 'b', version: b!.version });
  });

  it('claims from a large backlog by reading its indexes in order, not by sorting every due task', async () => {
    const backlog = 5000;
    for (let from = 0; from < backlog; from += 1000) {
      await scheduleTasks(
        env.db.pool,
        Array.from({ length: 1000 }, (_, i) => ({ taskName: 'backlog', taskInstance: String(from + i), data: {} })),
      );
    }
    await env.db.pool.query('ANALYZE scheduled_tasks');
    const client = await env.db.pool.connect();
    try {
      await client.query('BEGIN');
      const { rows } = await client.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${loadSql('claim-due-tasks')}`, ['plan', 3, 60_000]);
      await client.query('ROLLBACK');
      type PlanNode = { 'Node Type': string; 'Actual Rows': number; 'Index Name'?: string; Plans?: PlanNode[] };
      const nodes: PlanNode[] = [];
      const walk = (n: PlanNode) => {
        nodes.push(n);
        for (const c of n.Plans ?? []) walk(c);
      };
      walk(rows[0]['QUERY PLAN'][0].Plan as PlanNode);
      expect(nodes.filter((n) => n['Node Type'] === 'Sort' || n['Node Type'] === 'Seq Scan')).toEqual([]);
      expect(nodes.map((n) => n['Index Name'])).toEqual(expect.arrayContaining(['scheduled_tasks_due', 'scheduled_tasks_heartbeat']));
      // No node reads more than a handful of rows although 5,000 tasks are due.
      expect(Math.max(...nodes.map((n) => n['Actual Rows']))).toBeLessThanOrEqual(3);
    } finally {
      client.release();
    }
    await env.db.pool.query(`DELETE FROM scheduled_tasks WHERE task_name = 'backlog'`);
  });
});

describe('partition worker fencing (Postgres + Kafka)', () => {
  let env: TestEnv;
  let stream: StreamClient;
  beforeAll(async () => {
    env = await createTestEnv({ PAGE_SIZE: '100' });
    stream = createStreamClient({ brokers: env.config.kafkaBrokers, clientId: 'test' }, quietLog);
    await ensureTopics(stream, env.config);
    await seed(env.db, { rows: 2000, groups: 2, changed: 1 });
  });
  afterAll(async () => {
    await stream.disconnect();
    await deleteTestTopics(env);
    await env.cleanup();
  });

  /**
   * The update records the workers handed to Kafka, in order. The fencing tests count these:
   * kafkajs may deliver a record twice when it retries a produce request (the design allows
   * it, application is idempotent), so counting on the topic would measure kafkajs, not the
   * worker.
   */
  const sent: { id: string; partitionId: number }[] = [];
  const recordingStream = (): StreamClient => ({
    ...stream,
    async send(topic, messages) {
      for (const m of messages) {
        const r = JSON.parse(m.value);
        sent.push({ id: r.k, partitionId: r.p });
      }
      return stream.send(topic, messages);
    },
  });
  const deps = async (instanceId: string, throttle?: (rows: number) => Promise<boolean>) => ({
    db: env.db,
    definitions: await testDefinitions(env),
    stream: recordingStream(),
    log: quietLog,
    instanceId,
    pageSize: 100,
    topicUpdates: env.config.topicUpdates,
    runStatus: async () => 'running' as const,
    throttle,
  });
  const claimAs = async (instanceId: string): Promise<ClaimedTask> => {
    const [task] = await claimDueTasks(env.db.pool, { instanceId, limit: 1, deadAfterMs: 60_000 });
    if (!task) throw new Error(`${instanceId} claimed nothing`);
    return task;
  };
  const makeStale = (task: ClaimedTask) =>
    env.db.pool.query(`UPDATE scheduled_tasks SET last_heartbeat = now() - interval '1 hour' WHERE task_name = $1 AND task_instance = $2`, [
      task.taskName,
      task.taskInstance,
    ]);

  it('a stale owner cannot advance the offset, complete the partition or delete the task', async () => {
    const runId = await startTestRun(env, 500); // two partitions, one per test
    const a = await claimAs('a');
    await env.db.pool.query(`UPDATE scheduled_tasks SET execution_time = 'infinity' WHERE NOT picked`); // the other one waits
    const partitionId = Number(a.data.partitionId);
    // a produces two pages, then freezes before the third; meanwhile its task goes stale and
    // b claims it. (The throttle hook is where a worker waits before each page.)
    let b: ClaimedTask | undefined;
    let pages = 0;
    const freezeBeforeThirdPage = async () => {
      if (++pages === 3) {
        await makeStale(a);
        b = await claimAs('b');
      }
      return true;
    };
    await expect(processPartition(await deps('a', freezeBeforeThirdPage), a, { lost: false, stopping: false })).rejects.toBeInstanceOf(FencedError);
    expect(b).toBeDefined();
    const afterA = await partitionRow(env, partitionId);
    expect(afterA).toMatchObject({ rows_produced: 200, completed: false });
    const offsetOfA = afterA.offset_key;

    // Every write through a's token is refused and changes nothing.
    await expect(advanceOffset(env.db.pool, a, 'a', { partitionId, lastPos: '2100-01-01 00:00:00+00', lastKey: '1', rows: 5 })).rejects.toBeInstanceOf(FencedError);
    await expect(completePartition(env.db, a, 'a', partitionId)).rejects.toBeInstanceOf(FencedError);
    expect(await completeTask(env.db.pool, a, 'a')).toBe(false);
    expect(await partitionRow(env, partitionId)).toMatchObject({ offset_key: offsetOfA, rows_produced: 200, completed: false });
    expect((await env.db.pool.query(`SELECT picked_by FROM scheduled_tasks WHERE task_instance = $1`, [String(partitionId)])).rows).toEqual([
      { picked_by: 'b' },
    ]);

    // b resumes from a's offset and finishes: a's third page is the only one produced twice.
    expect(await processPartition(await deps('b'), b!, { lost: false, stopping: false })).toBe('completed');
    const done = await partitionRow(env, partitionId);
    expect(done).toMatchObject({ completed: true, state: 'completed', rows_produced: done.row_count });
    const mine = sent.filter((r) => r.partitionId === partitionId);
    expect(mine).toHaveLength(done.row_count + 100);
    expect(new Set(mine.map((r) => r.id)).size).toBe(done.row_count);
    // And Kafka holds every row's record (at least once).
    const records = await readTopic(env.config.kafkaBrokers, env.config.topicUpdates, done.row_count);
    const delivered = new Set(records.map((r) => JSON.parse(r.value!)).filter((r) => r.p === partitionId).map((r) => r.k));
    expect(delivered).toEqual(new Set(mine.map((r) => r.id)));
    expect(runId).toBeGreaterThan(0);
  });

  it('an offset write delayed by a lock cannot land after another instance claimed the task', async () => {
    await env.db.pool.query(`UPDATE scheduled_tasks SET execution_time = now() WHERE NOT picked`);
    const a = await claimAs('a');
    const partitionId = Number(a.data.partitionId);
    await makeStale(a); // a froze: by the database clock its claim is dead
    // Someone (an applier updating rows_applied) holds the partition row; a's write waits on it.
    const holder = await env.db.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT id FROM partitions WHERE id = $1 FOR NO KEY UPDATE', [partitionId]);
      const write = advanceOffset(env.db.pool, a, 'a', { partitionId, lastPos: '2000-01-01 00:00:00+00', lastKey: '1', rows: 1 }).then(
        () => 'written',
        (error: unknown) => (error instanceof FencedError ? 'fenced' : String(error)),
      );
      await waitFor(
        async () =>
          (await env.db.pool.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE partitions SET offset_pos%'`))
            .rowCount === 1,
        5000,
        "a's offset write to wait on the lock",
        20,
      );
      // Meanwhile b tries to take the dead task.
      const stolen = await claimDueTasks(env.db.pool, { instanceId: 'b', limit: 10, deadAfterMs: 60_000 });
      const bGotIt = stolen.some((t) => t.taskInstance === a.taskInstance);
      await holder.query('COMMIT');
      const outcome = await write;
      // Either b's claim waited for a's write (b then reads a's offset), or a's write is refused.
      expect(bGotIt && outcome === 'written', `b claimed the task while a's stale write was pending, and the write landed`).toBe(false);
      for (const t of stolen) await releaseTask(env.db.pool, t, 'b');
    } finally {
      holder.release();
    }
  });
});

describe('retries, failure and the throttle (in-process instances)', () => {
  let env: TestEnv;
  let services: Service[] = [];
  beforeAll(async () => {
    env = await createTestEnv({ PAGE_SIZE: '50', MAX_ATTEMPTS: '3', RETRY_BASE_MS: '100', WORKER_CONCURRENCY: '3', TRANCHE_DEFINITIONS: SUBSCRIPTION_WITH_REF });
  });
  afterAll(async () => {
    await stopAll(services);
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('retries a poison partition with backoff, then marks it and its run failed; the rest is throttled', async () => {
    await seed(env.db, { rows: 4000, groups: 2, changed: 1 });
    // A poison row: its customer_ref (carried by the test's definition) is larger than a
    // Kafka record may be.
    const poison = (
      await env.db.pool.query(
        `UPDATE subscriptions SET customer_ref = repeat('x', 1100000)
         WHERE id = (SELECT id FROM subscriptions WHERE product_key = 'product-001' ORDER BY created_date, id LIMIT 1)
         RETURNING id`,
      )
    ).rows[0].id as number;
    services = await startInstances(env, 2);
    // 2000 rows at 500 rows/s: the healthy partitions end well after the poison one failed,
    // so the run must turn failed when the last of them completes.
    await setThrottleLimit(services[0]!.coordination.client, env.config.redisPrefix, 500);
    const started = Date.now();
    const runId = await startTestRun(env, 400);
    await services[0]!.coordination.wake();

    const status = await waitFor(async () => {
      const s = await getRunStatus(env.db.pool, runId);
      return s?.status === 'failed' ? s : null;
    }, 30_000, 'the run to fail');
    const elapsed = (Date.now() - started) / 1000;
    expect(status.partitions).toMatchObject({ total: 5, completed: 4, failed: 1, pending: 0, running: 0 });
    expect(status.lastError).toMatch(/partitions failed/);
    const failed = (await env.db.pool.query(`SELECT id, attempts, last_error, started_at, updated_at FROM partitions WHERE state = 'failed'`)).rows[0];
    expect(failed.attempts).toBe(3);
    expect(failed.last_error).toContain(`row ${poison} cannot become an update record`);
    expect((await env.db.pool.query('SELECT count(*)::int AS n FROM scheduled_tasks')).rows[0].n).toBe(0);
    // Two backoffs of at least 50 and 100 ms separate the three attempts (database clock).
    const spent = await env.db.pool.query(`SELECT extract(epoch FROM updated_at - started_at)::float8 AS s FROM partitions WHERE id = $1`, [failed.id]);
    expect(spent.rows[0].s).toBeGreaterThanOrEqual(0.15);
    // Throttle: the healthy partitions' 1600 rows, at 500 rows/s with one second of burst,
    // take at least 2.2 s from the first start to the last completion (database clock).
    const span = (
      await env.db.pool.query(
        `SELECT extract(epoch FROM max(completed_at) - min(started_at))::float8 AS s, sum(rows_produced)::int AS rows
         FROM partitions WHERE run_id = $1 AND state = 'completed'`,
        [runId],
      )
    ).rows[0];
    expect(span.rows).toBe(1600);
    expect(span.s).toBeGreaterThanOrEqual(((span.rows - 500) / 500) * 0.9);
    expect(elapsed).toBeGreaterThan(span.s);
  });
});

describe('wake-ups', () => {
  let env: TestEnv;
  let services: Service[] = [];
  beforeAll(async () => {
    env = await createTestEnv({ POLL_INTERVAL_MS: '30000', PAGE_SIZE: '500' });
  });
  afterAll(async () => {
    await stopAll(services);
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('idle instances claim newly scheduled tasks when woken, long before their 30 s poll', async () => {
    await seed(env.db, { rows: 2000, groups: 2, changed: 2 });
    services = await startInstances(env, 2);
    // Both instances made their start-up claim (nothing was due) and now sleep for 30 s.
    const co = createCoordination({ redisUrl: env.config.redisUrl, prefix: env.config.redisPrefix }, quietLog);
    let runId: number;
    try {
      // Identification publishes a wake-up after each product's tasks are committed.
      runId = await startTestRun(env, 500, { coordination: co });
    } finally {
      await co.close();
    }
    const claimed = await waitFor(
      async () => {
        const { rows } = await env.db.pool.query(
          `SELECT extract(epoch FROM min(p.started_at) - r.identified_at)::float8 AS first_claim_s
           FROM partitions p JOIN migration_runs r ON r.id = p.run_id WHERE p.run_id = $1 AND p.started_at IS NOT NULL GROUP BY r.identified_at`,
          [runId],
        );
        return rows[0] ?? null;
      },
      10_000,
      'a partition to start',
      20,
    );
    expect(claimed.first_claim_s).toBeLessThan(5);
    await waitFor(async () => (await getRunStatus(env.db.pool, runId))?.status === 'completed', 20_000, 'the run to complete');
  });
});
