/**
 * A run in the middle of which a test breaks the Kafka broker (a private one), and what must
 * hold after: the helpers of broker-faults.test.ts and network-cut.test.ts.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { expect } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { getRunStatus } from '../../src/runs/run-store.ts';
import { countEligible, seed } from '../../src/seed.ts';
import { type Service, startService } from '../../src/service.ts';
import { createTestEnv, type TestEnv, waitFor } from './env.ts';
import type { PrivateKafka } from './private-kafka.ts';
import { runUid, startTestRun } from './runs.ts';
import { readTopic } from './topics.ts';

/** The consumers' session timeout in these runs: the broker's group.min.session.timeout.ms. */
export const SESSION_TIMEOUT_MS = 6000;
/** Eligible rows of a run. */
export const ELIGIBLE = 6000;

export async function readyz(service: Service): Promise<{ status: number; kafka: boolean }> {
  const res = await fetch(`http://127.0.0.1:${service.httpPort}/readyz`);
  const body = (await res.json()) as { checks: { kafka: boolean } };
  return { status: res.status, kafka: body.checks.kafka };
}

export async function counter(service: Service, name: string): Promise<number> {
  const metric = await service.metrics.registry.getSingleMetric(name)?.get();
  return metric?.values.reduce((sum, v) => sum + v.value, 0) ?? 0;
}

/** A log line of an instance, as pino wrote it. */
export interface LogLine {
  level: number;
  msg: string;
}

/** The lines of `instance`'s log at `level` (pino numbers: 30 info, 40 warn, 50 error) matching `pattern`. */
export function logged(logs: LogLine[], level: number, pattern: RegExp): LogLine[] {
  return logs.filter((l) => l.level === level && pattern.test(l.msg));
}

/**
 * Two instances on a fresh environment and a run of ELIGIBLE rows, throttled so that it
 * lasts; each instance's log lines (info and above) are kept in `logs`.
 */
export async function startFaultRun(broker: PrivateKafka): Promise<{ env: TestEnv; services: Service[]; runId: number; logs: LogLine[][] }> {
  const env = await createTestEnv({
    KAFKA_BROKERS: broker.brokers.join(','),
    KAFKA_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS),
    CONSUMER_DOWN_ALERT_MS: '5000',
    RUN_STALL_AFTER_MS: '5000',
    PAGE_SIZE: '100',
    WORKER_CONCURRENCY: '3',
    THROTTLE_ROWS_PER_SECOND: '300',
    // A send that fails while the broker is down fails the partition's attempt (kafkajs
    // retries for about half a minute first); attempts are retried with backoff.
    MAX_ATTEMPTS: '20',
  });
  const seeded = await seed(env.db, { rows: 2 * ELIGIBLE, groups: 4, changed: 2 });
  expect(seeded.eligible).toBe(ELIGIBLE);
  const logs: LogLine[][] = [];
  const services: Service[] = [];
  for (const i of [1, 2]) {
    const lines: LogLine[] = [];
    logs.push(lines);
    const log = pino({ level: 'info' }, new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk))), done()) }));
    services.push(await startService(loadConfig({ ...env.env, INSTANCE_ID: `${env.id}-i${i}` }), log, { migrate: false, http: true, httpPort: 0 }));
  }
  const runId = await startTestRun(env, 1000, { coordination: services[0]!.coordination });
  // In the middle of the run: rows are being applied.
  await waitFor(async () => ((await getRunStatus(env.db.pool, runId))?.rows.applied ?? 0) >= ELIGIBLE / 6, 60_000, 'rows to be applied');
  return { env, services, runId, logs };
}

/** The run completes, with every row applied once with effect and one completion event. */
export async function expectCompleted(broker: PrivateKafka, env: TestEnv, services: Service[], runId: number): Promise<void> {
  const done = await waitFor(async () => {
    const s = await getRunStatus(env.db.pool, runId);
    return s?.status === 'completed' ? s : null;
  }, 150_000, 'the run to complete after the fault', 250).catch(async (error: unknown) => {
    const s = await getRunStatus(env.db.pool, runId);
    throw new Error(`${String(error)}\nstatus: ${JSON.stringify(s)}\nbroker log:\n${broker.logTail(15)}`);
  });
  expect(done.rows).toMatchObject({ total: ELIGIBLE, applied: ELIGIBLE });
  expect(done.partitions.failed).toBe(0);
  expect(await countEligible(env.db)).toBe(0);
  // Rows changed, as the instances counted them: a row applied twice with effect counts twice.
  const applied = (await Promise.all(services.map((s) => counter(s, 'tranche_rows_applied_total')))).reduce((a, b) => a + b, 0);
  expect(applied).toBe(ELIGIBLE);
  const events = await readTopic(broker.brokers, env.config.topicRunEvents, 1, 30_000);
  expect(events.map((e) => e.key)).toEqual([await runUid(env, runId)]);
  // Both consumers are back in the group.
  await waitFor(async () => (await Promise.all(services.map(readyz))).every((r) => r.status === 200), 60_000, 'both instances ready');
}

