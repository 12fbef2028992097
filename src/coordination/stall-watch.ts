/**
 * Noticing a run that stopped moving: every partition is produced, yet neither its applied
 * rows (Postgres) nor its outstanding counter (Redis) changed for `stallAfterMs` while update
 * records wait on the topic (consumer lag > 0). That is what a run looks like when no update
 * consumer applies anything (all crashed, or stuck), and nothing else would say so: the run
 * stays `running`, with no error, for good.
 *
 * A stall is logged once as an error when it starts and once as info when the run moves
 * again; while it lasts it is recorded in Redis for `tranche status` and listed by
 * `stalledRuns()` (the tranche_run_stalled gauge).
 *
 * @example
 *   const watch = new StallWatch({ log, coordination, stallAfterMs: 60_000, instanceId, updatesLag });
 *   await watch.observe({ id: 7, allProduced: true, rowsApplied: 1200, outstanding: 300 });
 */
import type { Logger } from '../logger.ts';
import type { Coordination, StallReport } from './redis.ts';

export interface StallWatchDeps {
  log: Logger;
  coordination: Coordination | null;
  /** RUN_STALL_AFTER_MS */
  stallAfterMs: number;
  instanceId: string;
  /** Update records not yet applied (sum of the applier group's lag); throws when Kafka does not answer. */
  updatesLag(): Promise<number>;
  /** Longest wait for the lag (default 5 s): a hung broker must not hold the reconciler up. */
  lagTimeoutMs?: number;
  now?(): number;
}

export interface RunProgress {
  id: number;
  allProduced: boolean;
  rowsApplied: number;
  /** The Redis counter, null when unknown. */
  outstanding: number | null;
}

export class StallWatch {
  private readonly deps: StallWatchDeps;
  private readonly lastMove = new Map<number, { rowsApplied: number; outstanding: number | null; at: number }>();
  private readonly stalled = new Map<number, StallReport>();

  constructor(deps: StallWatchDeps) {
    this.deps = deps;
  }

  /** Runs this instance currently sees stalled. */
  stalledRuns(): number[] {
    return [...this.stalled.keys()];
  }

  /** Forgets runs that are no longer running (completed, failed, paused, cancelled). */
  retain(running: ReadonlySet<number>): void {
    for (const id of [...this.lastMove.keys()]) {
      if (running.has(id)) continue;
      this.lastMove.delete(id);
      if (this.stalled.delete(id)) void this.deps.coordination?.clearStalled(id).catch(() => {});
    }
  }

  /** Takes one reconciler observation of a running run; returns whether it is stalled now. */
  async observe(run: RunProgress): Promise<boolean> {
    const now = this.deps.now?.() ?? Date.now();
    const last = this.lastMove.get(run.id);
    if (!last || last.rowsApplied !== run.rowsApplied || last.outstanding !== run.outstanding || !run.allProduced) {
      this.lastMove.set(run.id, { rowsApplied: run.rowsApplied, outstanding: run.outstanding, at: now });
      if (this.stalled.delete(run.id)) {
        this.deps.log.info({ runId: run.id, rowsApplied: run.rowsApplied }, 'run moving again: rows are being applied');
        await this.deps.coordination?.clearStalled(run.id).catch(() => {});
      }
      return false;
    }
    const stillMs = now - last.at;
    if (stillMs < this.deps.stallAfterMs) return false;
    const lag = await this.lag();
    if (lag === null || lag <= 0) return this.stalled.has(run.id);
    const report: StallReport = {
      since: new Date(last.at).toISOString(),
      rowsApplied: run.rowsApplied,
      outstanding: run.outstanding,
      lag,
      seenBy: this.deps.instanceId,
    };
    if (!this.stalled.has(run.id)) {
      this.deps.log.error(
        { runId: run.id, lag, rowsApplied: run.rowsApplied, outstanding: run.outstanding, stillMs },
        `run stalled: every partition produced and ${lag} update records wait on the topic, but no row was applied for ${Math.round(stillMs / 1000)} s (are the update consumers running? see /readyz and tranche_kafka_consumer_joined)`,
      );
    }
    this.stalled.set(run.id, report);
    await this.deps.coordination?.setStalled(run.id, report, Math.max(60_000, 2 * this.deps.stallAfterMs)).catch(() => {});
    return true;
  }

  private lag(): Promise<number | null> {
    return Promise.race([
      this.deps.updatesLag().catch(() => null),
      new Promise<null>((resolve) => setTimeout(() => resolve(null), this.deps.lagTimeoutMs ?? 5000).unref()),
    ]);
  }
}
