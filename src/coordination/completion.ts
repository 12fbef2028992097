/**
 * Knowing when a run is finished, and saying so once.
 *
 * Fast path: the consumer that brings a run's Redis counter to zero calls `maybeComplete`.
 * Truth: `tryCompleteRun` completes a run with a conditional update only when every
 * partition is produced and no row of the run is still eligible. Safety net: `reconcile`
 * (every few seconds, in every instance) rebuilds lost counters from Postgres and tries
 * completion for runs whose counter is gone, at or below zero, or no longer moving, and
 * reports a run that stopped moving while records wait on the topic (StallWatch).
 * The completion event is sent from an outbox (`completion_published`), keyed by the run's uid and
 * carrying an `event-id` header: a consumer may receive it twice and can tell.
 */
import { type Db, inTransaction } from '../db.ts';
import type { Definitions } from '../definitions/load.ts';
import type { Logger } from '../logger.ts';
import { lockUnpublishedCompletion, markCompletionPublished, markRunFailedIfStuck, tryCompleteRun, unpublishedCompletions } from '../runs/run-store.ts';
import type { StreamClient } from '../stream/kafka.ts';
import type { Coordination } from './redis.ts';
import { StallWatch } from './stall-watch.ts';

export interface CompletionDeps {
  db: Db;
  stream: StreamClient;
  coordination: Coordination | null;
  log: Logger;
  topicRunEvents: string;
  instanceId: string;
  definitions: Definitions;
  /** Least time between two completion attempts of one run by this instance. */
  minAttemptIntervalMs?: number;
  /** RUN_STALL_AFTER_MS: see StallWatch (default 60 s). */
  stallAfterMs?: number;
  /** Update records not yet applied (the applier group's lag); without it no stall is reported. */
  updatesLag?(): Promise<number>;
}

export interface RunCompletedEvent {
  type: 'run.completed';
  /** `run-<uid>-completed`: the run's uid is unique across deployments sharing a Kafka cluster. */
  eventId: string;
  runId: number;
  runUid: string;
  migration: string;
  completedAt: string;
  rows: number;
}

export class CompletionTracker {
  private readonly deps: CompletionDeps;
  private readonly lastAttempt = new Map<number, number>();
  private readonly lastApplied = new Map<number, number>();
  private readonly inFlight = new Map<number, Promise<boolean>>();
  private readonly stallWatch: StallWatch | null;

  constructor(deps: CompletionDeps) {
    this.deps = deps;
    const { updatesLag } = deps;
    this.stallWatch = updatesLag
      ? new StallWatch({ log: deps.log, coordination: deps.coordination, instanceId: deps.instanceId, stallAfterMs: deps.stallAfterMs ?? 60_000, updatesLag })
      : null;
  }

  /** Running runs this instance's reconciler sees stalled (see StallWatch). */
  stalledRuns(): number[] {
    return this.stallWatch?.stalledRuns() ?? [];
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
        const completed = await tryCompleteRun(this.deps.db, this.deps.definitions, runId);
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

  /**
   * Sends the completion event of every completed run that has not been announced.
   * Each run's outbox row is locked (`FOR UPDATE SKIP LOCKED`) while its event is sent and
   * marked published, so of several instances publishing at once exactly one sends it; only
   * a crash between the acknowledgement and the commit can send it twice (same key and
   * `event-id`). Returns how many events this call sent.
   */
  async publishPending(): Promise<number> {
    const pending = await unpublishedCompletions(this.deps.db.pool);
    let sent = 0;
    for (const candidate of pending) {
      const published = await inTransaction(this.deps.db.pool, async (tx) => {
        const run = await lockUnpublishedCompletion(tx, candidate.id);
        if (!run) return false;
        const event: RunCompletedEvent = {
          type: 'run.completed',
          eventId: `run-${run.uid}-completed`,
          runId: run.id,
          runUid: run.uid,
          migration: run.migration,
          completedAt: run.completed_at,
          rows: run.rows_total,
        };
        await this.deps.stream.send(this.deps.topicRunEvents, [
          { key: run.uid, value: JSON.stringify(event), headers: { 'event-id': event.eventId, 'event-type': event.type } },
        ]);
        await markCompletionPublished(tx, run.id);
        return true;
      });
      if (published) sent++;
    }
    return sent;
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
          if (created) {
            // The run may have completed (and deleted its counter) since the query above:
            // then the rebuilt counter would be left behind for good.
            const still = await this.deps.db.pool.query<{ running: boolean }>(
              `SELECT status = 'running' AS running FROM migration_runs WHERE id = $1`,
              [run.id],
            );
            if (still.rows[0]?.running) this.deps.log.info({ runId: run.id, outstanding: rebuilt }, 'rebuilt the outstanding counter from Postgres');
            else await this.deps.coordination.deleteOutstanding(run.id).catch(() => {});
          }
        }
      }
      const previous = this.lastApplied.get(run.id);
      this.lastApplied.set(run.id, run.rows_applied);
      const stalled = previous !== undefined && previous === run.rows_applied;
      if (run.all_produced && (counter === null || counter <= 0 || stalled)) {
        await this.maybeComplete(run.id, true);
      } else if (!run.all_produced) {
        // Every partition ended but one failed for good (the instance that failed it may have
        // died before saying so): the run is failed, visible and re-runnable.
        await markRunFailedIfStuck(this.deps.db.pool, run.id);
      }
      await this.stallWatch?.observe({ id: run.id, allProduced: run.all_produced, rowsApplied: Number(run.rows_applied), outstanding: counter });
    }
    this.stallWatch?.retain(new Set(rows.map((r) => r.id)));
    await this.publishPending().catch((error: unknown) => this.deps.log.warn({ err: String(error) }, 'publishing completion events failed'));
  }
}
