import { describe, expect, it } from 'vitest';
import { type ChaosOptions, type FaultKind, runChaos } from './chaos.ts';
import { WORKLOADS } from './workloads.ts';

// The reduced chaos runs of the test suite. They restart Kafka, Redis and PostgreSQL, so they
// run in their own vitest project after every other test has finished (vitest.config.ts).
// Two definitions with different key types and column names go through the same faults and
// the same invariant checks; the reference run is then undone under faults of its own.

async function chaos(options: Pick<ChaosOptions, 'workload' | 'rows' | 'faults' | 'undoFaults'>) {
  const seed = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 1_000_000));
  const lines: string[] = [];
  const report = await runChaos({
    ...options,
    instances: 3,
    seed,
    pageSize: 200,
    partitionSize: 8000,
    timeoutSeconds: 240,
    // The five faults took 25-35 s in runs here (a busy machine once took 17 s to restart
    // Kafka alone). At this limit about 21,000 rows go meanwhile, plus what goes while Redis
    // is down, when the throttle lets everything through: in one run at least 48,000 rows
    // went in the first 31 s. The row counts below leave room for that, so every fault hits
    // its run in the middle. Lifted once a run's last fault is in.
    throttle: 600,
    log: (line) => {
      lines.push(line);
      console.log(line);
    },
  });
  // Every planned fault really happened, during its run.
  const planned: FaultKind[] = [...options.faults, ...(options.undoFaults ?? [])];
  expect(report.injected.map((f) => `${f.fault}: ${f.ok ? 'ok' : f.detail}`), lines.join('\n')).toEqual(planned.map(() => expect.stringMatching(/: ok$/)));
  expect(report.checks.filter((c) => !c.ok), lines.join('\n')).toEqual([]);
  expect(report.checks.length, lines.join('\n')).toBe(options.undoFaults ? 12 : 6);
}

describe('chaos (reduced)', () => {
  it('order-totals (uuid key, integer position, no groups) keeps every invariant through instance kills and Kafka, Redis and PostgreSQL restarts', async () => {
    await chaos({ workload: WORKLOADS['order-totals'], rows: 80_000, faults: ['kill', 'kafka', 'redis', 'postgres', 'kill'] });
  });

  it('subscription-version (bigint key, timestamp position, groups) keeps them through faults, and so does its undo run', async () => {
    await chaos({ workload: WORKLOADS['subscription-version'], rows: 60_000, faults: ['kill', 'redis'], undoFaults: ['kafka', 'postgres', 'kill'] });
  });
});
