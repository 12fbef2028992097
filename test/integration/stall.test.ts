/**
 * Issue 23: a run whose partitions are all produced but whose rows stop being applied while
 * records wait on the topic (no update consumer applies them) is noticed by the reconciler
 * and said in the logs (once), the tranche_run_stalled gauge and `tranche status`.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CompletionTracker } from '../../src/coordination/completion.ts';
import { type Coordination, createCoordination } from '../../src/coordination/redis.ts';
import { createMetrics } from '../../src/http/metrics.ts';
import { seed } from '../../src/seed.ts';
import { ensureTopics } from '../../src/service.ts';
import { createStreamClient, type StreamClient } from '../../src/stream/kafka.ts';
import { runCli } from '../support/cli.ts';
import { createTestEnv, quietLog, type TestEnv, waitFor, testDefinitions } from '../support/env.ts';
import { startTestRun } from '../support/runs.ts';
import { deleteTestTopics } from '../support/services.ts';

describe('a stalled run', () => {
  let env: TestEnv;
  let co: Coordination;
  let stream: StreamClient;
  beforeAll(async () => {
    env = await createTestEnv();
    co = createCoordination({ redisUrl: env.config.redisUrl, prefix: env.config.redisPrefix }, quietLog);
    stream = createStreamClient({ brokers: env.config.kafkaBrokers, clientId: 'test-stall' }, quietLog);
    await ensureTopics(stream, env.config);
  });
  afterAll(async () => {
    await stream.disconnect();
    await co.close();
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('is reported once when nothing is applied while records wait on the topic, and cleared when rows move again', async () => {
    await seed(env.db, { rows: 600, groups: 3, changed: 3 });
    const runId = await startTestRun(env, 100, { coordination: co });
    // Every partition produced, nothing applied; the records wait on the topic, unread.
    await env.db.pool.query(`UPDATE partitions SET completed = true, state = 'completed' WHERE run_id = $1`, [runId]);
    await stream.send(env.config.topicUpdates, Array.from({ length: 50 }, (_, i) => ({ key: String(i), value: '{}' })));

    const lines: { level: number; msg: string; runId?: number }[] = [];
    const log = pino({ level: 'info' }, new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk))), done()) }));
    const tracker = new CompletionTracker({
      db: env.db,
      stream,
      coordination: co,
      log,
      topicRunEvents: env.config.topicRunEvents,
      instanceId: 'stall-test',
      definitions: await testDefinitions(env),
      stallAfterMs: 1000,
      updatesLag: async () => (await stream.lag(env.config.kafkaGroupId, env.config.topicUpdates)).reduce((s, p) => s + p.lag, 0),
    });
    const metrics = createMetrics({ db: env.db, instanceId: 'stall-test', activeTasks: () => 0, consumerLag: async () => [], stalledRuns: () => tracker.stalledRuns() });

    await tracker.reconcile();
    expect(tracker.stalledRuns()).toEqual([]);
    await waitFor(async () => {
      await tracker.reconcile();
      return tracker.stalledRuns().includes(runId);
    }, 15_000, 'the run to be seen stalled', 200);
    await tracker.reconcile();
    await tracker.reconcile();

    const stalledLines = lines.filter((l) => l.level === 50 && /run stalled/.test(l.msg));
    expect(stalledLines).toHaveLength(1);
    expect(stalledLines[0]!.runId).toBe(runId);
    expect(await metrics.registry.getSingleMetricAsString('tranche_run_stalled')).toContain(`tranche_run_stalled{run_id="${runId}",instance_id="stall-test"} 1`);
    expect(await co.getStalled(runId)).toMatchObject({ lag: 50, rowsApplied: 0, seenBy: 'stall-test' });

    const status = await runCli(['status', String(runId), '--no-watch'], env.env);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/STALLED since .*50 update records wait on the topic/);
    const json = await runCli(['status', String(runId), '--json'], env.env);
    expect(JSON.parse(json.stdout)).toMatchObject({ status: 'running', stalled: { lag: 50 } });

    // Rows are applied again (as an applier would count them): the stall is over.
    await env.db.pool.query(`UPDATE partitions SET rows_applied = 1 WHERE id = (SELECT min(id) FROM partitions WHERE run_id = $1)`, [runId]);
    await tracker.reconcile();
    expect(tracker.stalledRuns()).toEqual([]);
    expect(await co.getStalled(runId)).toBeNull();
    expect(lines.filter((l) => /run moving again/.test(l.msg))).toHaveLength(1);
    expect(await metrics.registry.getSingleMetricAsString('tranche_run_stalled')).not.toContain(`run_id="${runId}"`);
  });
});
