/**
 * The update stream against real Postgres, Redis and Kafka (issue 5): replaying the topic
 * changes nothing (I5) and completes nothing twice (I6); poison records reach the dead-letter
 * topic and table while the run goes on (I7); losing Redis's keys mid-run still ends in
 * exactly one completion; a consumer-group rebalance mid-run loses and doubles nothing.
 *
 * "Mid-run" is chosen by polling the applied-row count, and every test checks that the run
 * was indeed still running when the fault was injected, so a run that finished too early
 * fails the test instead of passing it vacuously.
 */
import { Kafka, logLevel } from 'kafkajs';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { CompletionTracker } from '../../src/coordination/completion.ts';
import { type Coordination, createCoordination } from '../../src/coordination/redis.ts';
import { consumerLag } from '../../src/consumer/lag.ts';
import { createApplier } from '../../src/consumer/update-consumer.ts';
import { getRunStatus, type RunStatusReport } from '../../src/runs/run-store.ts';
import { countEligible, FIXTURE_MIGRATION, seed } from '../../src/seed.ts';
import { type Service, startService } from '../../src/service.ts';
import { createStreamClient, type StreamClient } from '../../src/stream/kafka.ts';
import { createTestEnv, quietLog, type TestEnv, testDefinitions, waitFor } from '../support/env.ts';
import { runUid, startTestRun } from '../support/runs.ts';
import { deleteTestTopics, startInstances, stopAll } from '../support/services.ts';
import { readTopic } from '../support/topics.ts';

/** Everything a test started, torn down after it whatever happened. */
interface Fixture {
  env: TestEnv;
  services: Service[];
  streams: StreamClient[];
  coordinations: Coordination[];
}

let fixture: Fixture | null = null;

afterEach(async () => {
  if (!fixture) return;
  const { env, services, streams, coordinations } = fixture;
  fixture = null;
  await stopAll(services);
  await Promise.allSettled(streams.map((s) => s.disconnect()));
  await Promise.allSettled(coordinations.map((c) => c.close()));
  await deleteTestTopics(env);
  await env.cleanup();
});

async function setUp(overrides: Record<string, string>): Promise<Fixture> {
  const env = await createTestEnv({ WORKER_CONCURRENCY: '1', ...overrides });
  fixture = { env, services: [], streams: [], coordinations: [] };
  return fixture;
}

function streamFor(f: Fixture): StreamClient {
  const stream = createStreamClient({ brokers: f.env.config.kafkaBrokers, clientId: `${f.env.id}-test` }, quietLog);
  f.streams.push(stream);
  return stream;
}

async function coordinationFor(f: Fixture): Promise<Coordination> {
  const co = createCoordination({ redisUrl: f.env.config.redisUrl, prefix: f.env.config.redisPrefix }, quietLog);
  f.coordinations.push(co);
  await waitFor(() => co.ping(), 10_000, 'redis to be reachable');
  return co;
}

/** Starts one more instance with a name of its own (startInstances numbers from 1). */
async function startInstance(f: Fixture, name: string): Promise<Service> {
  const config = loadConfig({ ...f.env.env, INSTANCE_ID: `${f.env.id}-${name}` });
  const service = await startService(config, quietLog, { migrate: false });
  f.services.push(service);
  return service;
}


async function status(env: TestEnv, runId: number): Promise<RunStatusReport> {
  const s = await getRunStatus(env.db.pool, runId);
  if (!s) throw new Error(`run ${runId} not found`);
  return s;
}

/** Waits until at least `applied` rows are applied while the run is still running. */
async function waitMidRun(env: TestEnv, runId: number, applied: number): Promise<RunStatusReport> {
  const s = await waitFor(
    async () => {
      const s = await status(env, runId);
      return s.status === 'completed' || (s.status === 'running' && s.rows.applied >= applied) ? s : null;
    },
    30_000,
    `${applied} rows applied`,
    20,
  );
  if (s.status === 'completed') throw new Error(`run ${runId} completed before the fault could be injected; make it longer`);
  return s;
}

async function expectStillRunning(env: TestEnv, runId: number): Promise<void> {
  const s = await status(env, runId);
  expect(s.status, 'the fault must be injected before the run completes').toBe('running');
  expect(await countEligible(env.db), 'rows must still be waiting for their update').toBeGreaterThan(0);
}

async function waitCompletedAndPublished(env: TestEnv, runId: number): Promise<RunStatusReport> {
  await waitFor(
    async () => {
      const { rows } = await env.db.pool.query<{ ok: boolean }>(
        `SELECT status = 'completed' AND completion_published AS ok FROM migration_runs WHERE id = $1`,
        [runId],
      );
      return rows[0]?.ok;
    },
    40_000,
    `run ${runId} to complete and announce it`,
  );
  return status(env, runId);
}

/** Every run event on the topic (read with a plain kafkajs consumer). */
async function runEvents(env: TestEnv): Promise<{ key: string | null; value: string | null; headers: Record<string, string> }[]> {
  return readTopic(env.config.kafkaBrokers, env.config.topicRunEvents, 0);
}

/**
 * What the whole run must look like at the end: every eligible row migrated, and each
 * partition's `rows_applied` equal to the rows really migrated within its bounds, counted
 * here independently (not trusting identification's `row_count`): nothing lost, nothing
 * counted twice.
 */
async function expectExactlyMigrated(env: TestEnv, runId: number, eligible: number): Promise<void> {
  expect((await status(env, runId)).status).toBe('completed');
  expect(await countEligible(env.db)).toBe(0);
  const { rows } = await env.db.pool.query<{ id: number; rows_applied: number; migrated: number }>(
    `SELECT p.id, p.rows_applied,
            (SELECT count(*) FROM subscriptions s
             WHERE s.product_key = p.group_key AND s.product_version::text = p.target
               AND (s.created_date, s.id) BETWEEN (p.lower_pos::timestamptz, p.lower_key::bigint) AND (p.upper_pos::timestamptz, p.upper_key::bigint))::bigint AS migrated
     FROM partitions p WHERE p.run_id = $1 ORDER BY p.id`,
    [runId],
  );
  expect(rows.filter((r) => r.rows_applied !== r.migrated), 'rows_applied counts each migrated row exactly once').toEqual([]);
  expect(rows.reduce((sum, r) => sum + r.rows_applied, 0)).toBe(eligible);
}

async function expectOneCompletionEvent(env: TestEnv, runId: number): Promise<void> {
  const events = await runEvents(env);
  expect(events).toHaveLength(1);
  const uid = await runUid(env, runId);
  expect(events[0]!.key).toBe(uid);
  expect(events[0]!.headers['event-id']).toBe(`run-${uid}-completed`);
  const s = await status(env, runId);
  expect(JSON.parse(events[0]!.value!)).toEqual({
    type: 'run.completed',
    eventId: `run-${uid}-completed`,
    runId,
    runUid: uid,
    migration: FIXTURE_MIGRATION,
    completedAt: s.completedAt,
    rows: s.rows.total,
  });
}

/** A fingerprint of every subscription's state, including when it was last written. */
async function fingerprint(env: TestEnv): Promise<string> {
  const { rows } = await env.db.pool.query<{ f: string }>(
    `SELECT md5(string_agg(id || ':' || product_version || ':' || updated_at, ',' ORDER BY id)) AS f FROM subscriptions`,
  );
  return rows[0]!.f;
}

/** A subscription outside the run (its product did not change). */
async function untouchedRow(env: TestEnv, offset: number): Promise<{ id: number; product_key: string }> {
  const { rows } = await env.db.pool.query<{ id: number; product_key: string }>(
    `SELECT s.id, s.product_key FROM subscriptions s JOIN products p USING (product_key)
     WHERE p.product_version = s.product_version ORDER BY s.id OFFSET $1 LIMIT 1`,
    [offset],
  );
  return rows[0]!;
}

describe('update stream', () => {
  it('replaying the whole topic from offset 0 changes nothing and completes nothing twice', async () => {
    const f = await setUp({ PAGE_SIZE: '200' });
    const { env } = f;
    const seeded = await seed(env.db, { rows: 4000, groups: 4, changed: 2 });
    f.services.push(...(await startInstances(env, 2)));
    const runId = await startTestRun(env, 500, { coordination: f.services[0]!.coordination, maxPartitions: 100 });
    const done = await waitCompletedAndPublished(env, runId);
    const stream = streamFor(f);
    await waitFor(async () => (await consumerLag(env.config, { stream })).total === 0, 20_000, 'the applier group to commit everything');
    await stopAll(f.services.splice(0));
    await expectExactlyMigrated(env, runId, seeded.eligible);
    await expectOneCompletionEvent(env, runId);

    const before = {
      rows: await fingerprint(env),
      partitions: (await env.db.pool.query('SELECT id, rows_applied FROM partitions ORDER BY id')).rows,
      completedAt: done.completedAt,
    };
    // The counter was deleted at completion; a sentinel shows whether a replay decrements it.
    const co = await coordinationFor(f);
    await co.initOutstanding(runId, 1000);
    // A stale record (target below the row's version) arriving after the real one, in the
    // layout of version 1 (records produced before definitions are still applied).
    const migrated = await env.db.pool.query<{ id: number; product_key: string; partition_id: number }>(
      `SELECT s.id, s.product_key, p.id AS partition_id FROM subscriptions s JOIN partitions p
         ON p.group_key = s.product_key
        AND (s.created_date, s.id) BETWEEN (p.lower_pos::timestamptz, p.lower_key::bigint) AND (p.upper_pos::timestamptz, p.upper_key::bigint)
       WHERE p.run_id = $1 ORDER BY s.id LIMIT 1`,
      [runId],
    );
    const row = migrated.rows[0]!;
    await stream.send(env.config.topicUpdates, [
      {
        key: String(row.id),
        value: JSON.stringify({ v: 1, runId, partitionId: row.partition_id, id: row.id, productKey: row.product_key, fromVersion: 0, toVersion: 1 }),
      },
    ]);

    // Lag: the applier group consumed everything but the stale record; a new group has it all.
    const replayGroup = `${env.config.kafkaGroupId}-replay`;
    const onTopic = seeded.eligible + 1;
    expect((await consumerLag(env.config, { stream })).total).toBe(1);
    const fresh = await consumerLag({ ...env.config, kafkaGroupId: replayGroup });
    expect(fresh.total).toBe(onTopic);
    expect(fresh.partitions).toHaveLength(env.config.kafkaTopicPartitions);
    expect(fresh.partitions.every((p) => p.committed === -1)).toBe(true);

    // Replay: a second consumer group runs the same applier over the whole topic, with a
    // completion tracker that tries to complete the run whenever the applier asks, and once
    // more at the end. Its statements take at most 7 records (the chunk size adaptive pages
    // set from the apply rate, asked per migration and batch).
    const completion = new CompletionTracker({
      db: env.db,
      stream,
      coordination: co,
      log: quietLog,
      topicRunEvents: env.config.topicRunEvents,
      instanceId: 'replay',
      definitions: await testDefinitions(env),
    });
    const applied = { records: 0, changed: 0, largest: 0, asked: new Set<string>() };
    const consumer = await stream.consume({
      groupId: replayGroup,
      topic: env.config.topicUpdates,
      handle: createApplier({
        db: env.db,
        stream,
        coordination: co,
        log: quietLog,
        definitions: await testDefinitions(env),
        topicDeadLetters: env.config.topicDeadLetters,
        onRunMaybeDone: (id) => void completion.maybeComplete(id, true),
        chunkSize: (migration) => {
          applied.asked.add(migration);
          return 7;
        },
        onApplied: (e) => {
          applied.records += e.records;
          applied.changed += e.changed;
          applied.largest = Math.max(applied.largest, e.records);
        },
      }),
    });
    await waitFor(async () => (await consumerLag({ ...env.config, kafkaGroupId: replayGroup }, { stream })).total === 0, 30_000, 'the replay to catch up');
    await consumer.stop();
    expect(await completion.maybeComplete(runId, true)).toBe(false);
    expect(await completion.publishPending()).toBe(0);

    expect(applied.records).toBeGreaterThanOrEqual(seeded.eligible);
    expect(applied.changed).toBe(0);
    expect(applied.largest).toBe(7);
    expect([...applied.asked]).toEqual([FIXTURE_MIGRATION]);
    expect(await fingerprint(env)).toBe(before.rows);
    expect((await env.db.pool.query('SELECT id, rows_applied FROM partitions ORDER BY id')).rows).toEqual(before.partitions);
    expect(await co.getOutstanding(runId)).toBe(1000);
    const after = await status(env, runId);
    expect(after.status).toBe('completed');
    expect(after.completedAt).toBe(before.completedAt);
    expect(after.deadLetters).toBe(0);
    await expectOneCompletionEvent(env, runId);

    // The outbox: had an instance died after completing the run but before recording the
    // event as sent, several instances publishing at once send it once more, not once each,
    // with the same key and event id, so a receiver can drop the duplicate.
    await env.db.pool.query('UPDATE migration_runs SET completion_published = false WHERE id = $1', [runId]);
    const definitions = await testDefinitions(env);
    const publishers = [0, 1, 2, 3].map(
      (i) => new CompletionTracker({ db: env.db, stream: streamFor(f), coordination: null, log: quietLog, topicRunEvents: env.config.topicRunEvents, instanceId: `p${i}`, definitions }),
    );
    const sent = await Promise.all(publishers.map((p) => p.publishPending()));
    expect(sent.reduce((a, b) => a + b, 0)).toBe(1);
    const events = await runEvents(env);
    expect(events).toHaveLength(2);
    expect(new Set(events.map((e) => e.headers['event-id']))).toEqual(new Set([`run-${await runUid(env, runId)}-completed`]));
  });

  it('sends poison records to the dead-letter topic with a reason, records them, and goes on', async () => {
    const f = await setUp({ PAGE_SIZE: '20' });
    const { env } = f;
    const seeded = await seed(env.db, { rows: 6000, groups: 4, changed: 2 });
    f.services.push(...(await startInstances(env, 1)));
    const runId = await startTestRun(env, 1000, { coordination: f.services[0]!.coordination, maxPartitions: 100 });
    const { rows: parts } = await env.db.pool.query<{ id: number }>('SELECT id FROM partitions WHERE run_id = $1 ORDER BY id LIMIT 1', [runId]);
    const partitionId = parts[0]!.id;

    // Rows outside the run: had a poison record been applied, they would change.
    const wrongVersion = await untouchedRow(env, 0);
    const wrongKey = await untouchedRow(env, 1);
    const deleted = await untouchedRow(env, 2);
    await env.db.pool.query('DELETE FROM subscriptions WHERE id = $1', [deleted.id]);
    const valid = (r: { id: number }) => ({ v: 2, m: FIXTURE_MIGRATION, run: runId, p: partitionId, k: String(r.id), t: '2', c: ['1'] });

    await waitMidRun(env, runId, 200);
    const stream = streamFor(f);
    const poison = [
      { key: String(wrongVersion.id), value: '{"v":2,"run":', reason: 'invalid-json', run: null },
      { key: String(wrongVersion.id), value: JSON.stringify({ ...valid(wrongVersion), v: 3 }), reason: 'invalid-record: v', run: runId },
      { key: String(wrongKey.id + 1), value: JSON.stringify(valid(wrongKey)), reason: 'key-mismatch', run: runId },
      { key: String(deleted.id), value: JSON.stringify(valid(deleted)), reason: 'row-not-found', run: runId },
    ];
    await stream.send(env.config.topicUpdates, poison.map(({ key, value }) => ({ key, value })));
    await expectStillRunning(env, runId);

    await waitCompletedAndPublished(env, runId);
    await stopAll(f.services.splice(0));
    await expectExactlyMigrated(env, runId, seeded.eligible);
    await expectOneCompletionEvent(env, runId);
    const untouched = await env.db.pool.query<{ id: number; product_version: number }>(
      'SELECT id, product_version FROM subscriptions WHERE id = ANY ($1::bigint[]) ORDER BY id',
      [[wrongVersion.id, wrongKey.id]],
    );
    expect(untouched.rows.map((r) => r.product_version)).toEqual([1, 1]);

    // The dead-letter topic: each poison record once, with its reason and where it came from.
    const letters = await readTopic(env.config.kafkaBrokers, env.config.topicDeadLetters, poison.length);
    expect(letters).toHaveLength(poison.length);
    for (const p of poison) {
      const letter = letters.find((l) => l.headers.reason?.startsWith(p.reason));
      expect(letter, `a dead letter for ${p.reason}`).toBeDefined();
      expect(letter!.key).toBe(p.key);
      expect(letter!.headers['source-topic']).toBe(env.config.topicUpdates);
      expect(Number(letter!.headers['source-partition'])).toBeGreaterThanOrEqual(0);
      expect(Number(letter!.headers['source-offset'])).toBeGreaterThanOrEqual(0);
      if (p.reason !== 'row-not-found') expect(letter!.value).toBe(p.value);
    }
    // The dead_letters table: each once, attributed to the run it names when that run exists.
    const table = await env.db.pool.query<{ reason: string; run_id: number | null; record_key: string }>(
      'SELECT reason, run_id, record_key FROM dead_letters ORDER BY id',
    );
    expect(table.rows).toHaveLength(poison.length);
    for (const p of poison) {
      const row = table.rows.find((r) => r.reason.startsWith(p.reason));
      expect(row, `a dead_letters row for ${p.reason}`).toMatchObject({ run_id: p.run, record_key: p.key });
    }
    expect((await status(env, runId)).deadLetters).toBe(poison.filter((p) => p.run !== null).length);
  });

  it('completes exactly once after Redis loses every key mid-run', async () => {
    const f = await setUp({ PAGE_SIZE: '20' });
    const { env } = f;
    const seeded = await seed(env.db, { rows: 6000, groups: 4, changed: 2 });
    f.services.push(...(await startInstances(env, 2)));
    const runId = await startTestRun(env, 1000, { coordination: f.services[0]!.coordination, maxPartitions: 100 });
    const redis = f.services[0]!.coordination.client;
    const counterKey = `${env.config.redisPrefix}:run:${runId}:outstanding`;
    expect(await redis.get(counterKey)).not.toBeNull();

    await waitMidRun(env, runId, 300);
    // Simulates FLUSHALL for this test only: the Redis server is shared with tests running in
    // parallel, so only this test's keys (its prefix) are deleted, with SCAN + DEL.
    const deleted: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${env.config.redisPrefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0 && (await redis.del(...keys)) > 0) deleted.push(...keys);
    } while (cursor !== '0');
    // The counter was among them (a reconciler may rebuild it from Postgres a moment later,
    // so reading it back would race with that).
    expect(deleted).toContain(counterKey);
    await expectStillRunning(env, runId);

    const done = await waitCompletedAndPublished(env, runId);
    await stopAll(f.services.splice(0));
    await expectExactlyMigrated(env, runId, seeded.eligible);
    await expectOneCompletionEvent(env, runId);
    expect((await status(env, runId)).completedAt).toBe(done.completedAt);
  });

  it('loses and doubles nothing when the consumer group rebalances mid-run', async () => {
    const f = await setUp({ PAGE_SIZE: '20' });
    const { env } = f;
    const seeded = await seed(env.db, { rows: 12_000, groups: 4, changed: 2 });
    const first = await startInstance(f, 'first');
    const runId = await startTestRun(env, 1000, { coordination: first.coordination, maxPartitions: 100 });

    const kafka = new Kafka({ brokers: [...env.config.kafkaBrokers], clientId: `${env.id}-admin`, logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    const members = async () => (await admin.describeGroups([env.config.kafkaGroupId])).groups[0]?.members.length ?? 0;
    try {
      // A second instance joins: the group rebalances while batches are being applied.
      await waitMidRun(env, runId, 300);
      const second = await startInstance(f, 'second');
      await waitFor(async () => (await members()) === 2, 20_000, 'the second consumer to join the group');
      await expectStillRunning(env, runId);

      // The first leaves gracefully: its partition tasks and its share of the topic move to
      // the second, which finishes the run alone.
      await first.stop(5000);
      f.services.splice(f.services.indexOf(first), 1);
      await expectStillRunning(env, runId);
      await waitFor(async () => (await members()) === 1, 20_000, 'the first consumer to leave the group');

      await waitCompletedAndPublished(env, runId);
      await second.stop(5000);
      f.services.splice(f.services.indexOf(second), 1);
    } finally {
      await admin.disconnect();
    }
    await expectExactlyMigrated(env, runId, seeded.eligible);
    await expectOneCompletionEvent(env, runId);
    expect((await consumerLag(env.config)).total).toBe(0);
  });
});
