/**
 * Prometheus metrics of one instance, on its own registry (several instances in one process,
 * as in tests, do not collide). Names follow Prometheus conventions: the process and Node
 * metrics under their usual names (`process_*`, `nodejs_*`), tranche's own under `tranche_*`,
 * units in names, `_total` on counters, a `migration` label (migration_runs.migration) on
 * every figure that belongs to one run. Every series carries `instance_id`.
 *
 * Counters are fed by the worker, the applier, the executor and the throttle; gauges that
 * describe shared state (runs, partitions, dead letters, consumer lag) are read from Postgres
 * and Kafka at scrape time, so every instance reports the same figures for them.
 *
 * @example
 *   const metrics = createMetrics({ db, instanceId, activeTasks, consumerLag, throttleLimit });
 *   metrics.rowsProduced.inc({ migration: 'subscription-version' }, 2500);
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Db } from '../db.ts';
import { type HealthState, STATE_VALUE } from '../health/state.ts';

export interface Metrics {
  readonly registry: Registry;
  rowsProduced: Counter<'migration'>;
  rowsApplied: Counter;
  deadLetters: Counter;
  taskClaims: Counter;
  claimDelay: Histogram;
  throttledSeconds: Counter<'migration'>;
  /** Update consumers of this instance replaced by a new one after a crash. */
  consumerRestarts: Counter;
}

export interface MetricsDeps {
  db: Db;
  instanceId: string;
  activeTasks(): number;
  consumerLag(): Promise<{ partition: number; lag: number }[]>;
  /** The global throttle in rows per second now in force (0 = unlimited), or null when unknown. */
  throttleLimit?(): Promise<number | null>;
  /** The shared protection state (src/health), read at scrape time. */
  health?(): Promise<HealthState | null>;
  /** Whether this instance's update consumer is a member of its group now. */
  consumerJoined?(): boolean;
  /** Runs this instance's reconciler sees stalled (all produced, nothing applied, lag > 0). */
  stalledRuns?(): number[];
}

export function createMetrics(deps: MetricsDeps): Metrics {
  const registry = new Registry();
  registry.setDefaultLabels({ instance_id: deps.instanceId });
  collectDefaultMetrics({ register: registry });
  // prom-client names three gauges with `_total`, which Prometheus keeps for counters
  // (`promtool check metrics` objects); the same figures by type stay as `nodejs_active_handles`,
  // `nodejs_active_requests` and `nodejs_active_resources`: sum them for the totals.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(name);
  }
  const rowsProduced = new Counter({
    name: 'tranche_rows_produced_total',
    help: 'Update records produced and acknowledged by Kafka',
    labelNames: ['migration'],
    registers: [registry],
  });
  const rowsApplied = new Counter({ name: 'tranche_rows_applied_total', help: 'Rows changed in Postgres by applied update records', registers: [registry] });
  const deadLetters = new Counter({ name: 'tranche_dead_letters_total', help: 'Records sent to the dead-letter topic by this instance', registers: [registry] });
  const taskClaims = new Counter({ name: 'tranche_task_claims_total', help: 'One-time tasks claimed by this instance', registers: [registry] });
  const throttledSeconds = new Counter({
    name: 'tranche_throttled_seconds_total',
    help: 'Time partition workers of this instance waited on the global throttle',
    labelNames: ['migration'],
    registers: [registry],
  });
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
    name: 'tranche_throttle_rows_per_second',
    help: 'Global throttle on rows produced per second now in force (0 = unlimited)',
    registers: [registry],
    async collect() {
      this.reset();
      const limit = await deps.throttleLimit?.().catch(() => null);
      if (limit !== null && limit !== undefined) this.set(limit);
    },
  });
  new Gauge({
    name: 'tranche_partitions',
    help: 'Partitions of active and failed runs by state',
    labelNames: ['migration', 'run_id', 'state'],
    registers: [registry],
    async collect() {
      this.reset();
      const { rows } = await deps.db.pool.query<{ run_id: number; migration: string; state: string; n: number }>(
        `SELECT p.run_id, r.migration, p.state, count(*)::int AS n FROM partitions p JOIN migration_runs r ON r.id = p.run_id
         WHERE r.status IN ('identifying', 'running', 'paused', 'failed') GROUP BY 1, 2, 3`,
      );
      for (const r of rows) this.set({ migration: r.migration, run_id: String(r.run_id), state: r.state }, r.n);
    },
  });
  const runRows = new Gauge({
    name: 'tranche_run_rows_applied',
    help: 'Rows applied so far by each active run (its partitions, from Postgres)',
    labelNames: ['migration', 'run_id', 'status'],
    registers: [registry],
  });
  const runRowsEligible = new Gauge({
    name: 'tranche_run_rows',
    help: 'Rows each active run must apply in all (its partitions, from Postgres)',
    labelNames: ['migration', 'run_id', 'status'],
    registers: [registry],
  });
  new Gauge({
    name: 'tranche_run_duration_seconds',
    help: 'Duration of runs: elapsed for active runs, total for the latest completed run',
    labelNames: ['migration', 'run_id', 'status'],
    registers: [registry],
    async collect() {
      this.reset();
      runRows.reset();
      runRowsEligible.reset();
      const { rows } = await deps.db.pool.query<{ id: number; migration: string; status: string; seconds: number; applied: string; total: string }>(
        `(SELECT r.id, r.migration, r.status, extract(epoch FROM now() - r.created_at)::float8 AS seconds,
                 (SELECT coalesce(sum(p.rows_applied), 0) FROM partitions p WHERE p.run_id = r.id)::text AS applied,
                 (SELECT coalesce(sum(p.row_count), 0) FROM partitions p WHERE p.run_id = r.id)::text AS total
          FROM migration_runs r WHERE r.status IN ('identifying', 'running', 'paused'))
         UNION ALL
         (SELECT id, migration, status, extract(epoch FROM completed_at - created_at)::float8, NULL, NULL FROM migration_runs
          WHERE status = 'completed' ORDER BY completed_at DESC LIMIT 1)`,
      );
      for (const r of rows) {
        const labels = { migration: r.migration, run_id: String(r.id), status: r.status };
        this.set(labels, r.seconds);
        if (r.applied !== null) runRows.set(labels, Number(r.applied));
        if (r.total !== null) runRowsEligible.set(labels, Number(r.total));
      }
    },
  });
  new Gauge({
    name: 'tranche_consumer_lag_records',
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
    labelNames: ['migration', 'run_id'],
    registers: [registry],
    async collect() {
      this.reset();
      const { rows } = await deps.db.pool.query<{ run_id: number | null; migration: string | null; n: number }>(
        `SELECT d.run_id, r.migration, count(*)::int AS n FROM dead_letters d LEFT JOIN migration_runs r ON r.id = d.run_id GROUP BY 1, 2`,
      );
      for (const r of rows) {
        this.set({ migration: r.migration ?? 'unknown', run_id: r.run_id === null ? 'unknown' : String(r.run_id) }, r.n);
      }
    },
  });
  const health = deps.health;
  if (health) {
    new Gauge({
      name: 'tranche_throttle_state',
      help: 'Shared protection state: 0 running, 1 throttled, 2 critical (runs paused); label signal: the reason',
      labelNames: ['signal'],
      registers: [registry],
      async collect() {
        this.reset();
        const state = await health();
        this.set({ signal: state?.reason?.name ?? '' }, state ? STATE_VALUE[state.state] : 0);
      },
    });
    const readings = async () => (await health())?.signals ?? [];
    new Gauge({
      name: 'tranche_health_signal_value',
      help: 'Last value of each health signal (unit label: ms, bytes or backends)',
      labelNames: ['signal', 'unit'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const r of await readings()) this.set({ signal: r.name, unit: r.unit }, r.value);
      },
    });
    new Gauge({
      name: 'tranche_health_signal_limit',
      help: 'Limit of each health signal above which pages are throttled',
      labelNames: ['signal', 'unit'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const r of await readings()) this.set({ signal: r.name, unit: r.unit }, r.limit);
      },
    });
  }
  return { registry, rowsProduced, rowsApplied, deadLetters, taskClaims, claimDelay, throttledSeconds, consumerRestarts };
}
