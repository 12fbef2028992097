/**
 * Walks one partition page by page with a keyset cursor and streams one update record per
 * row to Kafka. The partition's offset advances only after Kafka acknowledged the page, and
 * only while this instance still holds the task (fencing token), so after a crash at most
 * one page is produced again and a stale owner can write nothing.
 */
import { type Db, inTransaction, type Queryable } from '../db.ts';
import type { Definitions } from '../definitions/load.ts';
import type { ResolvedDefinition } from '../definitions/resolve.ts';
import { FencedError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { markRunFailedIfStuck } from '../runs/run-store.ts';
import type { RunStatus } from '../schema.ts';
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
  /**
   * Rows per page: a fixed number, or the controller that adapts the pages of a migration
   * (./page-size.ts; one per migration, shared by the partitions of its runs).
   */
  pageSize: number | ((migration: string) => PageSizer);
  topicUpdates: string;
  /** The definitions this instance can produce records of. */
  definitions: Definitions;
  /** Current status of a run (may be cached for a moment). */
  runStatus(runId: number): Promise<RunStatus | null>;
  /**
   * Waits until `rows` may be produced under the global throttle; returns false when it
   * gave up early because `shouldStop` turned true (shutdown, task lost).
   */
  throttle?(rows: number, shouldStop: () => boolean): Promise<boolean>;
  /** Called after each acknowledged page (metrics, tests). */
  onPage?(event: { runId: number; partitionId: number; migration: string; rows: number; lastKey: string }): void;
}

interface PartitionRow {
  id: number;
  run_id: number;
  migration: string;
  group_key: string;
  target: string | null;
  lower_pos: string;
  lower_key: string;
  upper_pos: string;
  upper_key: string;
  offset_pos: string | null;
  offset_key: string | null;
  completed: boolean;
  /** The run this partition's run undoes (its pages read that run's applied log), or null. */
  undo_of: number | null;
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
    `SELECT p.id, p.run_id, r.migration, p.group_key, p.target, p.lower_pos, p.lower_key, p.upper_pos, p.upper_key,
            p.offset_pos, p.offset_key, p.completed, r.undo_of
     FROM partitions p JOIN migration_runs r ON r.id = p.run_id WHERE p.id = $1`,
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
  page: { partitionId: number; lastPos: string; lastKey: string; rows: number },
): Promise<void> {
  const advanced = await db.query(
    `UPDATE partitions SET offset_pos = $5, offset_key = $6, rows_produced = rows_produced + $7, updated_at = now()
     WHERE id = $4 AND ${FENCE}`,
    [...fenceParams(task, instanceId), page.partitionId, page.lastPos, page.lastKey, page.rows],
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
function recordBuilder(partition: PartitionRow, definition: ResolvedDefinition) {
  let encode: ReturnType<typeof createRecordEncoder>;
  try {
    encode = createRecordEncoder({ migration: definition.name, runId: partition.run_id, partitionId: partition.id, target: partition.target });
  } catch (error) {
    throw new Error(`partition ${partition.id} cannot produce update records: ${String(error)}`, { cause: error });
  }
  const carried = definition.carried.length;
  return (rows: Record<string, string | null>[]) =>
    rows.map((row) => {
      const key = row.k!;
      const values: (string | null)[] = [];
      for (let c = 0; c < carried; c++) values.push(row[`c${c}`] ?? null);
      try {
        return { key, value: encode(key, values) };
      } catch (error) {
        throw new Error(`row ${key} cannot become an update record: ${String(error)}`, { cause: error });
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
  definition: ResolvedDefinition,
  partition: PartitionRow,
  cursor: { pos: string; key: string; inclusive: boolean },
  pageSize: number,
  pageRecords: ReturnType<typeof recordBuilder>,
): Promise<{ messages: OutgoingMessage[]; rows: number; lastPos: string; lastKey: string } | null> {
  // An undo run reads the rows the undone run's applied log names (one more parameter).
  const pages = partition.undo_of === null ? definition.statements : definition.statements.undoing;
  if (!pages) throw new Error(`run ${partition.run_id} undoes run ${partition.undo_of}, but ${definition.name} declares no undo`);
  const statement = cursor.inclusive ? pages.firstPage : pages.nextPage;
  const params: unknown[] = [partition.group_key, partition.target, cursor.pos, cursor.key, partition.upper_pos, partition.upper_key, pageSize];
  if (partition.undo_of !== null) params.push(partition.undo_of);
  const { rows } = await db.pool.query<Record<string, string | null>>(statement, params);
  const last = rows[rows.length - 1];
  if (last === undefined) return null;
  return { messages: pageRecords(rows), rows: rows.length, lastPos: last.p!, lastKey: last.k! };
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
    log.debug({ offsetKey: partition.offset_key }, 'partition started');
  }

  const definition = deps.definitions.get(partition.migration);
  if (!definition) throw new Error(`migration ${partition.migration} is not loaded by this instance (TRANCHE_DEFINITIONS)`);
  // Cursor: strictly after the offset or, before the first page, at the lower bound.
  let cursor =
    partition.offset_pos !== null && partition.offset_key !== null
      ? { pos: partition.offset_pos, key: partition.offset_key, inclusive: false }
      : { pos: partition.lower_pos, key: partition.lower_key, inclusive: true };
  const pageRecords = recordBuilder(partition, definition);
  const pages = typeof deps.pageSize === 'number' ? fixedPageSize(deps.pageSize) : deps.pageSize(definition.name);
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
    const page = await nextPage(db, definition, partition, cursor, pageSize, pageRecords);
    if (page === null) break;
    const { rows, lastPos, lastKey } = page;
    await deps.stream.send(deps.topicUpdates, page.messages);
    await advanceOffset(db.pool, task, instanceId, { partitionId, lastPos, lastKey, rows });
    cursor = { pos: lastPos, key: lastKey, inclusive: false };
    pages.observe(pageSize, rows, performance.now() - pageStarted);
    deps.onPage?.({ runId: partition.run_id, partitionId, migration: definition.name, rows, lastKey });
    if (rows < pageSize) break;
  }

  await completePartition(db, task, instanceId, partitionId);
  log.info('partition produced');
  // A partition that failed earlier leaves its run running until the last other one ends.
  await markRunFailedIfStuck(db.pool, partition.run_id);
  return 'completed';
}
