import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getRunStatus } from '../../src/runs/run-store.ts';
import { countEligible, FIXTURE_MIGRATION, seed } from '../../src/seed.ts';
import type { Service } from '../../src/service.ts';
import { createTestEnv, type TestEnv, waitFor } from '../support/env.ts';
import { runUid, startTestRun } from '../support/runs.ts';
import { deleteTestTopics, startInstances, stopAll } from '../support/services.ts';
import { kafkajsPatched } from '../../src/stream/kafka.ts';
import { decodeUpdateRecord, type RecordFields } from '../../src/stream/update-record.ts';
import { readTopicWithJava } from '../support/java-reader.ts';
import { readTopic } from '../support/topics.ts';

describe('pipeline, end to end on Postgres, Redis and Kafka', () => {
  let env: TestEnv;
  let services: Service[] = [];
  beforeAll(async () => {
    env = await createTestEnv({ PAGE_SIZE: '200', WORKER_CONCURRENCY: '2' });
  });
  afterAll(async () => {
    await stopAll(services);
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('migrates every eligible row, completes once and announces it once', async () => {
    const seeded = await seed(env.db, { rows: 6000, groups: 6, changed: 3 });
    expect(seeded.eligible).toBe(3000);
    services = await startInstances(env, 2);
    const runId = await startTestRun(env, 300, { coordination: services[0]!.coordination, maxPartitions: 100 });

    const done = await waitFor(async () => {
      const s = await getRunStatus(env.db.pool, runId);
      return s?.status === 'completed' ? s : null;
    }, 60_000, 'the run to complete');

    expect(done.partitions).toMatchObject({ total: 12, completed: 12, failed: 0 });
    expect(done.rows).toMatchObject({ total: 3000, applied: 3000 });
    expect(await countEligible(env.db)).toBe(0);
    // Every subscription of a changed product is at version 2; the others untouched.
    const versions = await env.db.pool.query(
      `SELECT p.product_version AS target, s.product_version AS v, count(*)::int AS n
       FROM subscriptions s JOIN products p USING (product_key) GROUP BY 1, 2 ORDER BY 1, 2`,
    );
    expect(versions.rows).toEqual([
      { target: 1, v: 1, n: 3000 },
      { target: 2, v: 2, n: 3000 },
    ]);
    // Every product's progress records the version its subscriptions were migrated to.
    const migrated = await env.db.pool.query(
      `SELECT count(*)::int AS n FROM products p JOIN group_progress g ON g.group_key = p.product_key AND g.target = p.product_version::text`,
    );
    expect(migrated.rows[0].n).toBe(6);

    const events = await readTopic(env.config.kafkaBrokers, env.config.topicRunEvents, 1);
    expect(events).toHaveLength(1);
    const uid = await runUid(env, runId);
    expect(events[0]!.key).toBe(uid);
    expect(events[0]!.headers['event-id']).toBe(`run-${uid}-completed`);
    expect(JSON.parse(events[0]!.value!)).toMatchObject({ type: 'run.completed', runId: runId, rows: 3000 });

    // Update records are plain JSON keyed by row id, readable by any Kafka client.
    const records = await readTopic(env.config.kafkaBrokers, env.config.topicUpdates, 3000);
    const ids = new Set(records.map((r) => r.key));
    expect(ids.size).toBe(3000);
    const sample = JSON.parse(records[0]!.value!);
    expect(sample).toMatchObject({ v: 2, m: FIXTURE_MIGRATION, run: runId, t: '2', c: ['1'] });
    expect(records[0]!.key).toBe(sample.k);

    // Kafka's own Java client reads the same records (checking every batch's CRC), and finds
    // each in the partition its own default partitioner picks for the key. The instances
    // above produced them through the patched kafkajs encoder and partitioner.
    expect(kafkajsPatched).toBe(true);
    const fromJava = readTopicWithJava(env.config.kafkaBrokers, env.config.topicUpdates, records.length);
    expect(fromJava).toHaveLength(records.length);
    expect(new Set(fromJava.map((r) => r.key))).toEqual(ids);
    for (const r of fromJava) {
      expect(r.partition).toBe(r.javaPartition);
      expect(r.headerCount).toBe(0);
      const fields = { migration: null, runId: 0, partitionId: 0, key: '', target: null, carried: [] } as RecordFields;
      expect(decodeUpdateRecord(r.key, r.value, fields)).toBeNull();
      expect(fields).toMatchObject({ migration: FIXTURE_MIGRATION, runId, key: r.key, target: '2', carried: ['1'] });
    }
  });
});

describe('pipeline, a product key of 10,000 characters (the longest a record carries)', () => {
  let env: TestEnv;
  let services: Service[] = [];
  beforeAll(async () => {
    env = await createTestEnv(); // PAGE_SIZE's default
  });
  afterAll(async () => {
    await stopAll(services);
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('sends pages of records larger than a Kafka batch may be, in several requests, and completes', async () => {
    // 1,500 records of about 10 kB: one page of about 15 MB, where a broker refuses any batch
    // over 1 MB; one request per page failed with "larger than the max message size".
    const key = `long-${'k'.repeat(9_995)}`;
    expect(key).toHaveLength(10_000);
    await env.db.pool.query(`INSERT INTO products (product_key, product_version) VALUES ($1, 2)`, [key]);
    await env.db.pool.query(`INSERT INTO subscriptions (product_key, product_version) SELECT $1, 1 FROM generate_series(1, 1500)`, [key]);
    services = await startInstances(env, 1);
    const runId = await startTestRun(env, 10_000, { coordination: services[0]!.coordination });
    const done = await waitFor(async () => {
      const s = await getRunStatus(env.db.pool, runId);
      return s?.status === 'completed' || s?.status === 'failed' ? s : null;
    }, 90_000, 'the run to end');
    expect(done, JSON.stringify(done)).toMatchObject({ status: 'completed', deadLetters: 0 });
    expect(done.rows).toMatchObject({ total: 1500, applied: 1500 });
    expect(await countEligible(env.db)).toBe(0);
    const records = await readTopic(env.config.kafkaBrokers, env.config.topicUpdates, 1500);
    expect(new Set(records.map((r) => r.key)).size).toBe(1500);
    expect(JSON.parse(records[0]!.value!)).toMatchObject({ v: 2, t: '2' });
  });
});
