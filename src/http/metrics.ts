/**
 * Prometheus metrics of one instance, on its own registry (several instances in one process,
 * as in tests, do not collide). Counters are fed by the worker, the applier and the executor;
 * gauges that describe shared state (partitions by state, consumer lag, run durations) are
 * read from Postgres and Kafka at scrape time.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Db } from '../db.ts';

export interface Metrics {
  readonly registry: Registry;
  rowsProduced: Counter;
  rowsApplied: Counter;
  deadLetters: Counter;
  taskClaims: Counter;
  claimDelay: Histogram;
  /** Update consumers of this instance replaced by a new one after a crash. */
  consumerRestarts: Counter;
}

export function createMetrics(deps: {
  db: Db;
  instanceId: string;
  activeTasks(): number;
  consumerLag(): Promise<{ partition: number; lag: number }[]>;
  /** Whether this instance's update consumer is a member of its group now. */
  consumerJoined?(): boolean;
  /** Runs this instance's reconciler sees stalled (all produced, nothing applied, lag > 0). */
  stalledRuns?(): number[];
}): Metrics {
  const registry = new Registry();
  registry.setDefaultLabels({ instance_id: deps.instanceId });
  collectDefaultMetrics({ register: registry, prefix: 'tranche_process_' });
  const rowsProduced = new Counter({ name: 'tranche_rows_produced_total', help: 'Update records produced and acknowledged by Kafka', registers: [registry] });
  const rowsApplied = new Counter({ name: 'tranche_rows_applied_total', help: 'Rows changed in Postgres by applied update records', registers: [registry] });
  const deadLetters = new Counter({ name: 'tranche_dead_letters_total', help: 'Records sent to the dead-letter topic', registers: [registry] });
  const taskClaims = new Counter({ name: 'tranche_task_claims_total', help: 'One-time tasks claimed by this instance', registers: [registry] });
  const consumerRestarts = new Counter({
    name: 'tranche_kafka_consumer_restarts_total',
    help: 'Update consumers stopped after a crash and replaced by a new one that rejoins the group',
    registers: [registry],
  });
  new Gauge({
    name: 'tranche_kafka_consumer_joined',
    help: '1 while this instance\'s update consumer is a member of its group, else 0',
    registers: [registry],
    collect() {
      this.set(deps.consumerJoined?.() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'tranche_run_stalled',
    help: 'Running runs seen stalled: every partition produced, records waiting on the topic, no row applied for RUN_STALL_AFTER_MS',
    labelNames: ['run_id'],
    registers: [registry],
    collect() {
      this.reset();
      for (const runId of deps.stalledRuns?.() ?? []) this.set({ run_id: String(runId) }, 1);
    },
  });
  const claimDelay = new Histogram({
    name: 'tranche_claim_delay_seconds',
    help: 'Delay from a task being due to its claim (database clock)',
    buckets: [0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  new Gauge({
    name: 'tranche_tasks_running',
    help: 'Partition tasks this instance is running',
    registers: [registry],
    collect() {
      this.set(deps.activeTasks());
    },
  });
  new Gauge({
    name: 'tranche_partitions',
    help: 'Partitions of active runs by state',
    labelNames: ['run_id', 'state'],
    registers: [registry],
    async collect() {
      this.reset();
      const { rows } = await deps.db.pool.query<{ run_id: number; state: string; n: number }>(
        `SELECT p.run_id, p.state, count(*) AS n FROM partitions p JOIN migration_runs r ON r.id = p.run_id
         WHERE r.status IN ('identifying', 'running', 'paused', 'failed') GROUP BY 1, 2`,
      );
      for (const r of rows) this.set({ run_id: String(r.run_id), state: r.state }, r.n);
    },
  });
  new Gauge({
    name: 'tranche_run_duration_seconds',
    help: 'Duration of runs: elapsed for active runs, total for the latest completed run',
    labelNames: ['run_id', 'status'],
    registers: [registry],
    async collect() {
      this.reset();
      const { rows } = await deps.db.pool.query<{ id: number; status: string; seconds: number }>(
        `(SELECT id, status, extract(epoch FROM now() - created_at)::float8 AS seconds FROM migration_runs
          WHERE status IN ('identifying', 'running', 'paused'))
         UNION ALL
         (SELECT id, status, extract(epoch FROM completed_at - created_at)::float8 FROM migration_runs
          WHERE status = 'completed' ORDER BY completed_at DESC LIMIT 1)`,
      );
      for (const r of rows) this.set({ run_id: String(r.id), status: r.status }, r.seconds);
    },
  });
  new Gauge({
    name: 'tranche_consumer_lag',
    help: 'Update records not yet applied, per topic partition (committed offset to high watermark)',
    labelNames: ['partition'],
    registers: [registry],
    async collect() {
      this.reset();
      // A hung broker must not hold the scrape up for kafkajs's retries: no lag after 5 s.
      let timer: NodeJS.Timeout | undefined;
      const lag = await Promise.race([
        deps.consumerLag().catch(() => []),
        new Promise<[]>((resolve) => (timer = setTimeout(() => resolve([]), 5000))),
      ]);
      clearTimeout(timer);
      for (const l of lag) this.set({ partition: String(l.partition) }, l.lag);
    },
  });
  new Gauge({
    name: 'tranche_dead_letters_recorded',
    help: 'Dead letters recorded in Postgres, all instances, per run',
    labelNames: ['run_id'],
    registers: [registry],
    async collect() {
      this.reset();
      const { rows } = await deps.db.pool.query<{ run_id: number | null; n: number }>(
        'SELECT run_id, count(*) AS n FROM dead_letters GROUP BY 1',
      );
      for (const r of rows) this.set({ run_id: r.run_id === null ? 'unknown' : String(r.run_id) }, r.n);
    },
  });
  return { registry, rowsProduced, rowsApplied, deadLetters, taskClaims, claimDelay, consumerRestarts };
}
