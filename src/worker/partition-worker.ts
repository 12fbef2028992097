/**
 * Walks one partition page by page with a keyset cursor and streams one update record per
 * row to Kafka. The partition's offset advances only after Kafka acknowledged the page, and
 * only while this instance still holds the task (fencing token), so after a crash at most
 * one page is produced again and a stale owner can write nothing.
 */
import type { Db, Queryable } from '../db.ts';
import { FencedError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { RunStatus } from '../schema.ts';
import { loadSql } from '../sql.ts';
import { encodeUpdateRecord } from '../stream/update-record.ts';
import type { StreamClient } from '../stream/kafka.ts';
import { type ClaimedTask, completeTask, releaseTask } from '../tasks/task-store.ts';

export type PartitionOutcome = 'completed' | 'paused' | 'cancelled' | 'released';

export interface PartitionWorkerDeps {
  db: Db;
  stream: StreamClient;
  log: Logger;
  instanceId: string;
  pageSize: number;
  topicUpdates: string;
  /** Current status of a run (may be cached for a moment). */
  runStatus(runId: number): Promise<RunStatus | null>;
  /** Waits until `rows` may be produced under the global throttle. */
  throttle?(rows: number): Promise<void>;
  /** Called after each acknowledged page (metrics, tests). */
  onPage?(event: { runId: number; partitionId: number; rows: number; lastId: number }): void;
}

export interface TaskControl {
  /** Set when the heartbeat found the task taken away. */
  lost: boolean;
  /** Set when the instance is shutting down: checkpoint and give the task back. */
  stopping: boolean;
}

interface PartitionRow {
  id: number;
  run_id: number;
  product_key: string;
  product_version: number;
  min_created_date: string;
  min_id: number;
  max_created_date: string;
  max_id: number;
  offset_date: string | null;
  offset_id: number | null;
  completed: boolean;
}

/** SQL condition: the task row still carries this claim's token and owner. */
const FENCE = `EXISTS (SELECT 1 FROM scheduled_tasks t
  WHERE t.task_name = 'partition' AND t.task_instance = $1::text AND t.version = $2 AND t.picked AND t.picked_by = $3)`;

function fenceParams(task: ClaimedTask, instanceId: string): [string, number, string] {
  return [task.taskInstance, task.version, instanceId];
}

async function loadPartition(db: Queryable, partitionId: number): Promise<PartitionRow | null> {
  const { rows } = await db.query<PartitionRow>(
    `SELECT id, run_id, product_key, product_version, min_created_date, min_id, max_created_date, max_id,
            offset_date, offset_id, completed
     FROM partitions WHERE id = $1`,
    [partitionId],
  );
  return rows[0] ?? null;
}

/** Processes the partition of a claimed task until it is done, paused, cancelled or released. */
export async function processPartition(
  deps: PartitionWorkerDeps,
  task: ClaimedTask,
  control: TaskControl,
): Promise<PartitionOutcome> {
  const { db, instanceId } = deps;
  const partitionId = Number(task.data.partitionId);
  const partition = await loadPartition(db.pool, partitionId);
  const status = partition ? await deps.runStatus(partition.run_id) : null;
  if (!partition || status === null || status === 'cancelled' || status === 'completed') {
    await completeTask(db.pool, task, instanceId);
    return 'cancelled';
  }
  if (status === 'paused') {
    await releaseTask(db.pool, task, instanceId, true);
    return 'paused';
  }
  const log = deps.log.child({ runId: partition.run_id, partitionId });
  if (!partition.completed) {
    const marked = await db.pool.query(
      `UPDATE partitions SET state = 'running', attempts = attempts + 1, updated_at = now(),
              started_at = coalesce(started_at, now())
       WHERE id = $4 AND ${FENCE}`,
      [...fenceParams(task, instanceId), partitionId],
    );
    if (marked.rowCount !== 1) throw new FencedError(`task of partition ${partitionId} is no longer ours`);
    log.debug({ offsetId: partition.offset_id }, 'partition started');
  }

  // Cursor: strictly after (offset) or, before the first page, just before the lower bound
  // (min_id - 1 with the same created_date sorts immediately before (min_date, min_id)).
  let afterDate = partition.offset_date ?? partition.min_created_date;
  let afterId = partition.offset_id ?? partition.min_id - 1;
  while (!partition.completed) {
    if (control.lost) throw new FencedError(`task of partition ${partitionId} was taken over`);
    if (control.stopping) {
      await releaseTask(db.pool, task, instanceId);
      log.info('partition released at shutdown; offset kept');
      return 'released';
    }
    const current = await deps.runStatus(partition.run_id);
    if (current === 'paused') {
      await releaseTask(db.pool, task, instanceId, true);
      log.info('partition parked: run paused');
      return 'paused';
    }
    if (current === 'cancelled' || current === null) {
      await completeTask(db.pool, task, instanceId);
      return 'cancelled';
    }
    await deps.throttle?.(deps.pageSize);
    const page = await db.pool.query<{ id: number; created_date: string; product_version: number }>(loadSql('next-page'), [
      partition.product_key,
      partition.product_version,
      afterDate,
      afterId,
      partition.max_created_date,
      partition.max_id,
      deps.pageSize,
    ]);
    if (page.rows.length === 0) break;
    await deps.stream.send(
      deps.topicUpdates,
      page.rows.map((row) => ({
        key: String(row.id),
        value: encodeUpdateRecord({
          v: 1,
          runId: partition.run_id,
          partitionId,
          id: row.id,
          productKey: partition.product_key,
          fromVersion: row.product_version,
          toVersion: partition.product_version,
        }),
      })),
    );
    const last = page.rows[page.rows.length - 1]!;
    const advanced = await db.pool.query(
      `UPDATE partitions SET offset_date = $5::timestamptz, offset_id = $6, rows_produced = rows_produced + $7,
              updated_at = now()
       WHERE id = $4 AND ${FENCE}`,
      [...fenceParams(task, instanceId), partitionId, last.created_date, last.id, page.rows.length],
    );
    if (advanced.rowCount !== 1) throw new FencedError(`task of partition ${partitionId} was taken over`);
    afterDate = last.created_date;
    afterId = last.id;
    deps.onPage?.({ runId: partition.run_id, partitionId, rows: page.rows.length, lastId: last.id });
    if (page.rows.length < deps.pageSize) break;
  }

  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    const done = await client.query(
      `UPDATE partitions SET completed = true, state = 'completed', completed_at = now(), updated_at = now(),
              last_error = NULL
       WHERE id = $4 AND ${FENCE}`,
      [...fenceParams(task, instanceId), partitionId],
    );
    if (done.rowCount !== 1 || !(await completeTask(client, task, instanceId))) {
      throw new FencedError(`task of partition ${partitionId} was taken over before completion`);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
  log.info('partition produced');
  return 'completed';
}
