import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getRunStatus } from '../../src/runs/run-store.ts';
import { seed } from '../../src/seed.ts';
import type { Service } from '../../src/service.ts';
import { createTestEnv, type TestEnv, waitFor } from '../support/env.ts';
import { startTestRun } from '../support/runs.ts';
import { deleteTestTopics, startInstances, stopAll } from '../support/services.ts';

interface Family {
  name: string;
  type: string;
  metrics: { value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; count?: string }[];
}

describe('HTTP endpoints of serve', () => {
  let env: TestEnv;
  let services: Service[] = [];
  let base = '';
  beforeAll(async () => {
    env = await createTestEnv({ PAGE_SIZE: '100' });
    services = await startInstances(env, 1, {}, { http: true, httpPort: 0 });
    base = `http://127.0.0.1:${services[0]!.httpPort}`;
  });
  afterAll(async () => {
    await stopAll(services);
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('answers health and readiness', async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await waitFor(async () => {
      const res = await fetch(`${base}/readyz`);
      return res.status === 200 ? res.json() : null;
    }, 30_000, 'readiness');
    expect(ready).toMatchObject({ status: 'ready', checks: { postgres: true, redis: true, kafka: true } });
  });

  it('serves run and partition JSON, and metrics that a Prometheus parser reads', async () => {
    await seed(env.db, { rows: 2000, groups: 4, changed: 2 });
    const runId = await startTestRun(env, 250, { coordination: services[0]!.coordination, maxPartitions: 100 });
    await waitFor(async () => (await getRunStatus(env.db.pool, runId))?.status === 'completed', 60_000, 'run completion');

    const runs = (await (await fetch(`${base}/api/runs`)).json()) as { runId: number; status: string }[];
    expect(runs[0]).toMatchObject({ runId: runId, status: 'completed' });
    const partitions = (await (await fetch(`${base}/api/runs/${runId}/partitions`)).json()) as { state: string }[];
    expect(partitions).toHaveLength(4);
    expect(partitions.every((p) => p.state === 'completed')).toBe(true);
    expect((await fetch(`${base}/api/runs/${runId}/partitions?state=bogus`)).status).toBe(400);
    expect((await fetch(`${base}/api/runs/99999`)).status).toBe(404);
    expect((await fetch(`${base}/api/runs`, { method: 'POST' })).status).toBe(405);

    const res = await fetch(`${base}/metrics`);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const families = parsePrometheusTextFormat(await res.text()) as Family[];
    const byName = new Map(families.map((f) => [f.name, f]));
    const value = (name: string) => Number(byName.get(name)?.metrics[0]?.value);
    expect(value('tranche_rows_produced_total')).toBe(1000);
    expect(value('tranche_rows_applied_total')).toBe(1000);
    expect(value('tranche_task_claims_total')).toBe(4);
    expect(value('tranche_dead_letters_total')).toBe(0);
    expect(byName.get('tranche_claim_delay_seconds')?.type).toBe('HISTOGRAM');
    // This parser reports a histogram by its cumulative buckets: +Inf holds every observation.
    expect(Number(byName.get('tranche_claim_delay_seconds')?.metrics[0]?.buckets?.['+Inf'])).toBe(4);
    expect(byName.get('tranche_consumer_lag_records')?.type).toBe('GAUGE');
    const lag = byName.get('tranche_consumer_lag_records')!.metrics;
    expect(lag.length).toBe(3);
    expect(lag.every((m) => Number(m.value) === 0)).toBe(true);
    const duration = byName.get('tranche_run_duration_seconds')!.metrics.find((m) => m.labels?.run_id === String(runId));
    expect(Number(duration?.value)).toBeGreaterThan(0);
    expect(byName.has('tranche_partitions')).toBe(true);
    expect(duration?.labels?.migration).toBe('subscription-version');
    expect(byName.get('tranche_rows_produced_total')?.metrics[0]?.labels?.migration).toBe('subscription-version');
    expect(byName.has('process_cpu_user_seconds_total')).toBe(true);
    expect([...byName.keys()].some((n) => n.startsWith('tranche_process_'))).toBe(false);
    // The consumer is in its group, was never replaced, and no run is stalled.
    expect(value('tranche_kafka_consumer_joined')).toBe(1);
    expect(value('tranche_kafka_consumer_restarts_total')).toBe(0);
    expect(byName.get('tranche_run_stalled')?.type).toBe('GAUGE');
    expect(byName.get('tranche_run_stalled')?.metrics ?? []).toEqual([]);
  });
});
