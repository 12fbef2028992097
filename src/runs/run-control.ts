/**
 * Operator actions on runs and partitions. Postgres state is the truth and changes with
 * conditional updates; a Redis signal then tells every instance at once.
 *
 * @example
 *   await pauseRun(db, coordination, 12);
 *   await rerunPartition(db, coordination, 345);
 */
import type { Coordination } from '../coordination/redis.ts';
import { type Db, inTransaction } from '../db.ts';
import { UserError } from '../errors.ts';
import type { RunStatus } from '../schema.ts';
import { deleteRunTasks, parkRunTasks, partitionTask, unparkTasks } from '../tasks/task-store.ts';

async function currentStatus(db: Db, runId: number): Promise<RunStatus> {
  const run = await db.kysely.selectFrom('migration_runs').select('status').where('id', '=', runId).executeTakeFirst();
  const status = run?.status;
  if (!status) throw new UserError(`run ${runId} does not exist`);
  return status;
}

/**
 * Pauses a running run. `reason` is kept with it (null: an operator; 'window': outside its work
 * window, resumed by tranche when the next one opens; 'critical: …': the health hard stop).
 */
export async function pauseRun(db: Db, co: Coordination | null, runId: number, reason: string | null = null): Promise<void> {
  const status = await currentStatus(db, runId);
  if (status === 'paused') return;
  if (status !== 'running') throw new UserError(`run ${runId} is ${status}; only a running run can be paused`);
  await inTransaction(db.pool, async (tx) => {
    const { rowCount } = await tx.query(
      `UPDATE migration_runs SET status = 'paused', pause_reason = $2 WHERE id = $1 AND status = 'running'`,
      [runId, reason],
    );
    if (rowCount !== 1) throw new UserError(`run ${runId} changed state meanwhile; try again`);
    await parkRunTasks(tx, runId);
  });
  await co?.signal('pause', runId);
}

export async function resumeRun(db: Db, co: Coordination | null, runId: number): Promise<void> {
  const status = await currentStatus(db, runId);
  if (status === 'running') return;
  if (status !== 'paused') throw new UserError(`run ${runId} is ${status}; only a paused run can be resumed`);
  await inTransaction(db.pool, async (tx) => {
    await tx.query(`UPDATE migration_runs SET status = 'running', pause_reason = NULL WHERE id = $1 AND status = 'paused'`, [runId]);
    await unparkTasks(tx, runId);
  });
  await co?.signal('resume', runId);
  await co?.wake();
}

export async function cancelRun(db: Db, co: Coordination | null, runId: number): Promise<void> {
  const status = await currentStatus(db, runId);
  if (status === 'cancelled') return;
  if (status === 'completed') throw new UserError(`run ${runId} is already completed; nothing to cancel`);
  await inTransaction(db.pool, async (tx) => {
    await tx.query(`UPDATE migration_runs SET status = 'cancelled', identify_lease_until = NULL WHERE id = $1`, [runId]);
    await deleteRunTasks(tx, runId);
  });
  await co?.signal('cancel', runId);
  await co?.deleteOutstanding(runId);
}

const RERUNNABLE: RunStatus[] = ['running', 'paused', 'failed'];

/**
 * Resets partitions to their lower bound and schedules them again. `repair` (from `tranche
 * verify --repair`) may also reopen a completed run: it runs again, completes again when its
 * rows are applied (no second completion event: the event of its uid was sent), and each
 * partition counts as applied all but its rows still eligible, so that completion waits for them.
 */
async function resetPartitions(
  db: Db,
  co: Coordination | null,
  runId: number,
  partitionIds: number[],
  repair?: { stillEligible: ReadonlyMap<number, number> },
): Promise<number> {
  if (partitionIds.length === 0) return 0;
  await inTransaction(db.pool, async (tx) => {
    const run = await tx.query<{ status: RunStatus }>('SELECT status FROM migration_runs WHERE id = $1 FOR UPDATE', [runId]);
    const status = run.rows[0]?.status;
    if (!status) throw new UserError(`run ${runId} does not exist`);
    if (repair && status === 'completed') {
      await tx.query(`UPDATE migration_runs SET status = 'running', completed_at = NULL WHERE id = $1`, [runId]);
      const ids = [...repair.stillEligible.keys()];
      await tx.query(
        `UPDATE partitions pt SET rows_applied = greatest(0, pt.row_count - e.n)
         FROM unnest($1::bigint[], $2::bigint[]) AS e(id, n) WHERE pt.id = e.id`,
        [ids, ids.map((id) => repair.stillEligible.get(id) ?? 0)],
      );
      // Their verification baseline is taken again when the run completes again.
      await tx.query('DELETE FROM partition_checks WHERE partition_id = ANY ($1::bigint[])', [ids]);
    } else if (!RERUNNABLE.includes(status)) {
      throw new UserError(`run ${runId} is ${status}; partitions can be rerun only while a run is running, paused or failed`);
    }
    const busy = await tx.query<{ task_instance: string }>(
      `SELECT task_instance FROM scheduled_tasks WHERE task_name = 'partition' AND task_instance = ANY ($1::text[]) AND picked`,
      [partitionIds.map(String)],
    );
    if (busy.rows.length > 0) {
      throw new UserError(`partition ${busy.rows.map((r) => r.task_instance).join(', ')} is running now; pause the run or wait`);
    }
    await tx.query(
      `UPDATE partitions SET offset_pos = NULL, offset_key = NULL, completed = false, state = 'pending',
              attempts = 0, rows_produced = 0, last_error = NULL, completed_at = NULL, updated_at = now()
       WHERE id = ANY ($1::bigint[])`,
      [partitionIds],
    );
    await tx.query(`DELETE FROM scheduled_tasks WHERE task_name = 'partition' AND task_instance = ANY ($1::text[])`, [
      partitionIds.map(String),
    ]);
    const tasks = partitionIds.map((id) => partitionTask(runId, id));
    await tx.query(
      `INSERT INTO scheduled_tasks (task_name, task_instance, task_data, execution_time)
       SELECT n, i, d, CASE WHEN $4 THEN 'infinity'::timestamptz ELSE now() END
       FROM unnest($1::text[], $2::text[], $3::jsonb[]) AS t(n, i, d)`,
      [tasks.map((t) => t.taskName), tasks.map((t) => t.taskInstance), tasks.map((t) => JSON.stringify(t.data)), status === 'paused'],
    );
    if (status === 'failed') {
      await tx.query(`UPDATE migration_runs SET status = 'running', last_error = NULL WHERE id = $1`, [runId]);
    }
  });
  await co?.wake();
  return partitionIds.length;
}

/**
 * Reruns exactly these partitions of a run through the ordinary tasks, reopening it when it
 * is completed (what `tranche verify --repair` does with the partitions that still have
 * eligible rows). `stillEligible`: partition id to its rows still eligible.
 */
export async function repairPartitions(db: Db, co: Coordination | null, runId: number, stillEligible: ReadonlyMap<number, number>): Promise<number[]> {
  const ids = [...stillEligible.keys()].sort((a, b) => a - b);
  await resetPartitions(db, co, runId, ids, { stillEligible });
  return ids;
}

export async function rerunPartition(db: Db, co: Coordination | null, partitionId: number): Promise<{ runId: number }> {
  const { rows } = await db.pool.query<{ run_id: number }>('SELECT run_id FROM partitions WHERE id = $1', [partitionId]);
  const runId = rows[0]?.run_id;
  if (runId === undefined) throw new UserError(`partition ${partitionId} does not exist`);
  await resetPartitions(db, co, runId, [partitionId]);
  return { runId };
}

export async function rerunFailed(db: Db, co: Coordination | null, runId: number): Promise<number[]> {
  const status = await currentStatus(db, runId);
  if (!RERUNNABLE.includes(status)) {
    throw new UserError(`run ${runId} is ${status}; partitions can be rerun only while a run is running, paused or failed`);
  }
  const { rows } = await db.pool.query<{ id: number }>(
    `SELECT id FROM partitions WHERE run_id = $1 AND state = 'failed' ORDER BY id`,
    [runId],
  );
  const ids = rows.map((r) => r.id);
  await resetPartitions(db, co, runId, ids);
  return ids;
}
