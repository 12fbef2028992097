/**
 * One-time tasks in the manner of db-scheduler's `scheduled_tasks`: claimed with
 * `FOR UPDATE SKIP LOCKED`, kept alive by heartbeats, and fenced by `version`: the claim
 * returns the new version as a token and every later state change is conditional on it, so
 * a stale owner (an instance that froze and lost its task) can write nothing.
 *
 * @example
 *   const claimed = await claimDueTasks(pool, { instanceId: 'a', limit: 2, deadAfterMs: 10000 });
 *   for (const task of claimed) await heartbeat(pool, task, 'a');
 */
import type { Queryable } from '../db.ts';
import { loadSql } from '../sql.ts';

export const PARTITION_TASK = 'partition';

export interface TaskRef {
  taskName: string;
  taskInstance: string;
}

export interface ClaimedTask extends TaskRef {
  data: Record<string, unknown>;
  /** The fencing token: the row version this claim set. */
  version: number;
  consecutiveFailures: number;
  /** Milliseconds from the task's execution time to its claim (database clock). */
  claimDelayMs: number;
}

export interface NewTask extends TaskRef {
  data: Record<string, unknown>;
  priority?: number;
}

/** Schedules tasks to run now; tasks that already exist are left as they are. */
export async function scheduleTasks(db: Queryable, tasks: NewTask[]): Promise<number> {
  if (tasks.length === 0) return 0;
  const { rowCount } = await db.query(
    `INSERT INTO scheduled_tasks (task_name, task_instance, task_data, execution_time, priority)
     SELECT n, i, d, now(), p FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::smallint[]) AS t(n, i, d, p)
     ON CONFLICT (task_name, task_instance) DO NOTHING`,
    [
      tasks.map((t) => t.taskName),
      tasks.map((t) => t.taskInstance),
      tasks.map((t) => JSON.stringify(t.data)),
      tasks.map((t) => t.priority ?? 0),
    ],
  );
  return rowCount ?? 0;
}

function intervalMs(value: unknown): number {
  // pg returns intervals as objects { hours, minutes, seconds, milliseconds }.
  if (value && typeof value === 'object') {
    const v = value as Record<string, number | undefined>;
    return (
      (v.days ?? 0) * 86_400_000 +
      (v.hours ?? 0) * 3_600_000 +
      (v.minutes ?? 0) * 60_000 +
      (v.seconds ?? 0) * 1000 +
      (v.milliseconds ?? 0)
    );
  }
  return 0;
}

/** Lock-and-fetch up to `limit` due (or dead) tasks for `instanceId`. */
export async function claimDueTasks(
  db: Queryable,
  options: { instanceId: string; limit: number; deadAfterMs: number },
): Promise<ClaimedTask[]> {
  if (options.limit <= 0) return [];
  const { rows } = await db.query(loadSql('claim-due-tasks'), [options.instanceId, options.limit, options.deadAfterMs]);
  return rows.map((r) => ({
    taskName: r.task_name,
    taskInstance: r.task_instance,
    data: r.task_data ?? {},
    version: r.version,
    consecutiveFailures: r.consecutive_failures,
    claimDelayMs: Math.max(0, intervalMs(r.claim_delay)),
  }));
}

/** Renews the claim; false when the task is no longer ours (fenced). */
export async function heartbeat(db: Queryable, task: ClaimedTask, instanceId: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE scheduled_tasks SET last_heartbeat = now()
     WHERE task_name = $1 AND task_instance = $2 AND version = $3 AND picked AND picked_by = $4`,
    [task.taskName, task.taskInstance, task.version, instanceId],
  );
  return rowCount === 1;
}

/** Deletes a finished one-time task; false when fenced. */
export async function completeTask(db: Queryable, task: ClaimedTask, instanceId: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `DELETE FROM scheduled_tasks
     WHERE task_name = $1 AND task_instance = $2 AND version = $3 AND picked AND picked_by = $4`,
    [task.taskName, task.taskInstance, task.version, instanceId],
  );
  return rowCount === 1;
}

/** Records a failure and reschedules the task after `retryInMs`; false when fenced. */
export async function rescheduleAfterFailure(
  db: Queryable,
  task: ClaimedTask,
  instanceId: string,
  retryInMs: number,
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE scheduled_tasks
     SET picked = false, picked_by = NULL, last_heartbeat = NULL, version = version + 1,
         consecutive_failures = consecutive_failures + 1, last_failure = now(),
         execution_time = now() + make_interval(secs => $5::integer / 1000.0)
     WHERE task_name = $1 AND task_instance = $2 AND version = $3 AND picked AND picked_by = $4`,
    [task.taskName, task.taskInstance, task.version, instanceId, Math.round(retryInMs)],
  );
  return rowCount === 1;
}

/**
 * Gives a claimed task back so another instance can take it at once (graceful shutdown,
 * pause). `parkUntilResumed` keeps it unclaimable until {@link unparkTasks}, but only while
 * its run is still paused: the run row is share-locked in the same statement, so a resume
 * that commits meanwhile either waits for this release (and then unparks it) or is seen by it
 * (and the task is made due at once). Without that, a worker that saw "paused" just before a
 * resume would park its task for good.
 */
export async function releaseTask(
  db: Queryable,
  task: ClaimedTask,
  instanceId: string,
  parkUntilResumed = false,
): Promise<boolean> {
  const runId = task.data.runId === undefined ? null : Number(task.data.runId);
  const { rowCount } = await db.query(
    `WITH run AS (
       SELECT r.status FROM migration_runs r WHERE $5 AND r.id = $6::bigint FOR SHARE
     )
     UPDATE scheduled_tasks
     SET picked = false, picked_by = NULL, last_heartbeat = NULL, version = version + 1,
         execution_time = CASE WHEN EXISTS (SELECT 1 FROM run WHERE run.status = 'paused')
                               THEN 'infinity'::timestamptz ELSE now() END
     WHERE task_name = $1 AND task_instance = $2 AND version = $3 AND picked AND picked_by = $4`,
    [task.taskName, task.taskInstance, task.version, instanceId, parkUntilResumed, runId],
  );
  return rowCount === 1;
}

/** Parks every unclaimed task of a run (pause). */
export async function parkRunTasks(db: Queryable, runId: number): Promise<number> {
  const { rowCount } = await db.query(
    `UPDATE scheduled_tasks SET execution_time = 'infinity', version = version + 1
     WHERE task_name = $1 AND (task_data->>'runId')::bigint = $2 AND NOT picked`,
    [PARTITION_TASK, runId],
  );
  return rowCount ?? 0;
}

/** Makes a run's parked tasks due now (resume). */
export async function unparkTasks(db: Queryable, runId: number): Promise<number> {
  const { rowCount } = await db.query(
    `UPDATE scheduled_tasks SET execution_time = now(), version = version + 1
     WHERE task_name = $1 AND (task_data->>'runId')::bigint = $2 AND NOT picked AND execution_time = 'infinity'`,
    [PARTITION_TASK, runId],
  );
  return rowCount ?? 0;
}

/** Deletes every task of a run (cancel); running owners find themselves fenced. */
export async function deleteRunTasks(db: Queryable, runId: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM scheduled_tasks WHERE task_name = $1 AND (task_data->>'runId')::bigint = $2`,
    [PARTITION_TASK, runId],
  );
  return rowCount ?? 0;
}

export function partitionTask(runId: number, partitionId: number): NewTask {
  return { taskName: PARTITION_TASK, taskInstance: String(partitionId), data: { runId, partitionId } };
}
