/**
 * Knowing when a run is finished, and saying so once.
 *
 * Fast path: the consumer that brings a run's Redis counter to zero calls `maybeComplete`.
 * Truth: `tryCompleteRun` completes a run with a conditional update only when every
 * partition is produced and no row of the run is still eligible. Safety net: `reconcile`
 * (every few seconds, in every instance) rebuilds lost counters from Postgres and tries
 * completion for runs whose counter is gone, at or below zero, or no longer moving.
 * The completion event is sent from an outbox (`completion_published`), keyed by run id and
 * carrying an `event-id` header: a consumer may receive it twice and can tell.
 */
import type { Db } from '../db.ts';
import type { Logger } from '../logger.ts';
import { markCompletionPublished, tryCompleteRun, unpublishedCompletions } from '../runs/run-store.ts';
import type { StreamClient } from '../stream/kafka.ts';
import type { Coordination } from './redis.ts';

export interface CompletionDeps {
  db: Db;
  stream: StreamClient;
  coordination: Coordination | null;
  log: Logger;
  topicRunEvents: string;
  instanceId: string;
  /** Least time between two completion attempts of one run by this instance. */
  minAttemptIntervalMs?: number;
}

export interface RunCompletedEvent {
  type: 'run.completed';
  eventId: string;
  runId: number;
  completedAt: string;
  rows: number;
}

export class CompletionTracker {
  private readonly deps: CompletionDeps;
  private readonly lastAttempt = new Map<number, number>();
  private readonly lastApplied = new Map<number, number>();
  private readonly inFlight = new Map<number, Promise<boolean>>();

  constructor(deps: CompletionDeps) {
    this.deps = deps;
  }

  /** Tries to complete the run unless this instance tried a moment ago. Never throws. */
  maybeComplete(runId: number, force = false): Promise<boolean> {
    const now = Date.now();
    const min = this.deps.minAttemptIntervalMs ?? 500;
    const existing = this.inFlight.get(runId);
    if (existing) return existing;
    if (!force && now - (this.lastAttempt.get(runId) ?? 0) < min) return Promise.resolve(false);
    this.lastAttempt.set(runId, now);
    const attempt = (async () => {
      try {
        const completed = await tryCompleteRun(this.deps.db, runId);
        if (completed) {
          this.deps.log.info({ runId }, 'run completed');
          await this.deps.coordination?.deleteOutstanding(runId).catch(() => {});
          await this.publishPending();
        }
        return completed;
      } catch (error) {
        this.deps.log.warn({ runId, err: String(error) }, 'completion attempt failed');
        return false;
      } finally {
        this.inFlight.delete(runId);
      }
    })();
    this.inFlight.set(runId, attempt);
    return attempt;
  }

  /** Sends the completion event of every completed run that has not been announced. */
  async publishPending(): Promise<number> {
    const pending = await unpublishedCompletions(this.deps.db.pool);
    for (const run of pending) {
      const event: RunCompletedEvent = {
        type: 'run.completed',
        eventId: `run-${run.id}-completed`,
        runId: run.id,
        completedAt: run.completed_at,
        rows: run.rows_total,
      };
      await this.deps.stream.send(this.deps.topicRunEvents, [
        { key: String(run.id), value: JSON.stringify(event), headers: { 'event-id': event.eventId, 'event-type': event.type } },
      ]);
      await markCompletionPublished(this.deps.db.pool, run.id);
    }
    return pending.length;
  }

  /** One reconciliation pass over the running runs. */
  async reconcile(): Promise<void> {
    const { rows } = await this.deps.db.pool.query<{
      id: number;
      all_produced: boolean;
      rows_total: number;
      rows_applied: number;
    }>(
      `SELECT r.id,
              NOT EXISTS (SELECT 1 FROM partitions p WHERE p.run_id = r.id AND NOT p.completed) AS all_produced,
              (SELECT coalesce(sum(row_count), 0) FROM partitions p WHERE p.run_id = r.id)::bigint AS rows_total,
              (SELECT coalesce(sum(rows_applied), 0) FROM partitions p WHERE p.run_id = r.id)::bigint AS rows_applied
       FROM migration_runs r WHERE r.status = 'running' ORDER BY r.id`,
    );
    for (const run of rows) {
      let counter: number | null = null;
      if (this.deps.coordination) {
        counter = await this.deps.coordination.getOutstanding(run.id).catch(() => null);
        if (counter === null) {
          const rebuilt = run.rows_total - run.rows_applied;
          const created = await this.deps.coordination.initOutstanding(run.id, rebuilt).catch(() => false);
          if (created) this.deps.log.info({ runId: run.id, outstanding: rebuilt }, 'rebuilt the outstanding counter from Postgres');
        }
      }
      const previous = this.lastApplied.get(run.id);
      this.lastApplied.set(run.id, run.rows_applied);
      const stalled = previous !== undefined && previous === run.rows_applied;
      if (run.all_produced && (counter === null || counter <= 0 || stalled)) {
        await this.maybeComplete(run.id, true);
      }
    }
    await this.publishPending().catch((error: unknown) => this.deps.log.warn({ err: String(error) }, 'publishing completion events failed'));
  }
}
