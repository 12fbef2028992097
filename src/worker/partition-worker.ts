/**
 * Walks one partition page by page with a keyset cursor and streams one update record per
 * row to Kafka. The partition's offset advances only after Kafka acknowledged the page, and
 * only while this instance still holds the task (fencing token), so after a crash at most
 * one page is produced again and a stale owner can write nothing.
 */
import { type Db, inTransaction, type Queryable } from '../db.ts';
import { FencedError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { markRunFailedIfStuck } from '../runs/run-store.ts';
import type { RunStatus } from '../schema.ts';
import { loadSql } from '../sql.ts';
import { createRecordEncoder } from '../stream/update-record.ts';
import type { OutgoingMessage, StreamClient } from '../stream/kafka.ts';
import type { TaskControlState } from '../tasks/executor.ts';
import { type ClaimedTask, completeTask, releaseTask } from '../tasks/task-store.ts';
import { fixedPageSize, type PageSizer } from './page-size.ts';

export type PartitionOutcome = 'completed' | 'paused' | 'cancelled' | 'released';

export interface PartitionWorkerDeps {
  db: Db;
  stream: StreamClient;
  log: Logger;
  instanceId: string;
  /** Rows per page: a fixed number, or a controller that adapts it (./page-size.ts). */
  pageSize: number | PageSizer;
  topicUpdates: string;
  /** Current status of a run (may be cached for a moment). */
  runStatus(runId: number): Promise<RunStatus | null>;
  /**
   * Waits until `rows` may be produced under the global throttle; returns false when it
   * gave up early because `shouldStop` turned true (shutdown, task lost).
   */
  throttle?(rows: number, shouldStop: () => boolean): Promise<boolean>;
  /** Called after each acknowledged page (metrics, tests). */
  onPage?(event: { runId: number; partitionId: number; rows: number; lastId: number }): void;
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

/**
 * SQL condition: the task row still carries this claim's token and owner. The row is
 * share-locked until the writing transaction ends, so a claim by another instance (which
 * updates the row) cannot commit between this check and the write it guards: the claim
 * either comes after the write (and its owner reads the written offset) or before the
 * check (and the write is refused). A plain EXISTS would read a snapshot that may already be
 * stale when the write, delayed by a row lock, finally lands.
 */
const FENCE = `EXISTS (SELECT 1 FROM scheduled_tasks t
  WHERE t.task_name = 'partition' AND t.task_instance = $1::text AND t.version = $2 AND t.picked AND t.picked_by = $3
  FOR SHARE)`;

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

/**
 * Moves the partition's offset to the last row of a page Kafka acknowledged, only while
 * `task` is still this instance's claim. Throws {@link FencedError} when it is not.
 */
export async function advanceOffset(
  db: Queryable,
  task: ClaimedTask,
  instanceId: string,
  page: { partitionId: number; lastDate: string; lastId: number; rows: number },
): Promise<void> {
  const advanced = await db.query(
    `UPDATE partitions SET offset_date = $5::timestamptz, offset_id = $6, rows_produced = rows_produced + $7,
            updated_at = now()
     WHERE id = $4 AND ${FENCE}`,
    [...fenceParams(task, instanceId), page.partitionId, page.lastDate, page.lastId, page.rows],
  );
  if (advanced.rowCount !== 1) throw new FencedError(`task of partition ${page.partitionId} was taken over`);
}

/**
 * Marks the partition completed and deletes its task, in one transaction, only while `task`
 * is still this instance's claim. Throws {@link FencedError} (and writes nothing) when not.
 */
export async function completePartition(db: Db, task: ClaimedTask, instanceId: string, partitionId: number): Promise<void> {
  await inTransaction(db.pool, async (tx) => {
    const done = await tx.query(
      `UPDATE partitions SET completed = true, state = 'completed', completed_at = now(), updated_at = now(),
              last_error = NULL
       WHERE id = $4 AND ${FENCE}`,
      [...fenceParams(task, instanceId), partitionId],
    );
    if (done.rowCount !== 1 || !(await completeTask(tx, task, instanceId))) {
      throw new FencedError(`task of partition ${partitionId} was taken over before completion`);
    }
  });
}

/**
 * Builds a partition's update records page by page; a row that cannot make a valid record
 * fails the partition, naming the row.
 */
function recordBuilder(partition: PartitionRow) {
  let encode: ReturnType<typeof createRecordEncoder>;
  try {
    encode = createRecordEncoder({
      runId: partition.run_id,
      partitionId: partition.id,
      productKey: partition.product_key,
      toVersion: partition.product_version,
    });
  } catch (error) {
    throw new Error(`partition ${partition.id} cannot produce update records: ${String(error)}`, { cause: error });
  }
  return (rows: { id: number; product_version: number }[]) =>
    rows.map((row) => {
      try {
        return { key: String(row.id), value: encode({ id: row.id, fromVersion: row.product_version }) };
      } catch (error) {
        throw new Error(`row ${row.id} cannot become an update record: ${String(error)}`, { cause: error });
      }
    });
}

/**
 * The next keyset page of a partition as update records, with the cursor of its last row
 * (null when the partition has no more): the query's rows are not kept while the records are
 * sent (the garbage collector would copy them for as long as Kafka takes to acknowledge).
 */
async function nextPage(
  db: Db,
  partition: PartitionRow,
  afterDate: string,
  afterId: number,
  pageSize: number,
  pageRecords: ReturnType<typeof recordBuilder>,
): Promise<{ messages: OutgoingMessage[]; rows: number; lastDate: string; lastId: number } | null> {
  const { rows } = await db.pool.query<{ id: number; created_date: string; product_version: number }>(loadSql('next-page'), [
    partition.product_key,
    partition.product_version,
    afterDate,
    afterId,
    partition.max_created_date,
    partition.max_id,
    pageSize,
  ]);
  const last = rows[rows.length - 1];
  if (last === undefined) return null;
  return { messages: pageRecords(rows), rows: rows.length, lastDate: last.created_date, lastId: last.id };
}

/** Processes the partition of a claimed task until it is done, paused, cancelled or released. */
export async function processPartition(
  deps: PartitionWorkerDeps,
  task: ClaimedTask,
  control: TaskControlState,
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
  const pageRecords = recordBuilder(partition);
  const pages = typeof deps.pageSize === 'number' ? fixedPageSize(deps.pageSize) : deps.pageSize;
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
    const pageSize = pages.next();
    if (deps.throttle && !(await deps.throttle(pageSize, () => control.stopping || control.lost))) continue;
    const pageStarted = performance.now();
    const page = await nextPage(db, partition, afterDate, afterId, pageSize, pageRecords);
    if (page === null) break;
    const { rows, lastDate, lastId } = page;
    await deps.stream.send(deps.topicUpdates, page.messages);
    await advanceOffset(db.pool, task, instanceId, { partitionId, lastDate, lastId, rows });
    afterDate = lastDate;
    afterId = lastId;
    pages.observe(pageSize, rows, performance.now() - pageStarted);
    deps.onPage?.({ runId: partition.run_id, partitionId, rows, lastId });
    if (rows < pageSize) break;
  }

  await completePartition(db, task, instanceId, partitionId);
  log.info('partition produced');
  // A partition that failed earlier leaves its run running until the last other one ends.
  await markRunFailedIfStuck(db.pool, partition.run_id);
  return 'completed';
}
