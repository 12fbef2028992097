/**
 * What happens when a partition's task fails: retry with backoff while attempts remain,
 * then mark the partition failed with its last error (visible in `tranche status`,
 * re-runnable with `tranche rerun`). A poison row fails its partition, never the instance.
 */
import { type Db, inTransaction } from '../db.ts';
import type { Logger } from '../logger.ts';
import { markRunFailedIfStuck } from '../runs/run-store.ts';
import { retryDelayMs } from '../tasks/backoff.ts';
import { type ClaimedTask, completeTask, rescheduleAfterFailure } from '../tasks/task-store.ts';

export async function recordPartitionFailure(
  deps: { db: Db; log: Logger; instanceId: string; maxAttempts: number; retryBaseMs: number },
  task: ClaimedTask,
  error: unknown,
): Promise<void> {
  const partitionId = Number(task.data.partitionId);
  const runId = Number(task.data.runId);
  const message = (error instanceof Error ? error.message : String(error)).slice(0, 2000);
  const attempt = task.consecutiveFailures + 1;
  const log = deps.log.child({ runId, partitionId });
  // The task and its partition change together: a crash in between must not leave a
  // partition without a task (its run would never end).
  if (attempt >= deps.maxAttempts) {
    const failed = await inTransaction(deps.db.pool, async (tx) => {
      if (!(await completeTask(tx, task, deps.instanceId))) return false;
      await tx.query(`UPDATE partitions SET state = 'failed', last_error = $2, updated_at = now() WHERE id = $1`, [partitionId, message]);
      return true;
    });
    if (!failed) return;
    log.error({ attempt, err: message }, 'partition failed for good; rerun it with `tranche rerun`');
    // Checked after the commit, as after every partition's completion: whichever partition
    // ends last sees all the others' outcomes and marks the run.
    await markRunFailedIfStuck(deps.db.pool, runId);
    return;
  }
  const delay = retryDelayMs(attempt, deps.retryBaseMs);
  const rescheduled = await inTransaction(deps.db.pool, async (tx) => {
    if (!(await rescheduleAfterFailure(tx, task, deps.instanceId, delay))) return false;
    await tx.query(
      `UPDATE partitions SET state = 'pending', last_error = $2, updated_at = now() WHERE id = $1 AND state <> 'completed'`,
      [partitionId, message],
    );
    return true;
  });
  if (rescheduled) log.warn({ attempt, retryInMs: delay, err: message }, 'partition failed; retrying');
}
