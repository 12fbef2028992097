/**
 * Taking a run back: `tranche undo RUN` starts a new run (its own partitions, tasks, Redis
 * counter, throttle and completion) of the definition's inverse, that moves back exactly the
 * rows the run changed (its applied log, written by the apply statement itself) and that
 * still hold what it wrote. Rows the application changed since are left alone and counted.
 * Undoing an undo runs the definition again over the rows the undo moved back (a redo).
 *
 * @example
 *   const undo = await startUndoRun(db, co, definitions, 12);
 *   // { runId: 13, undoOf: 12, migration: 'subscription-version.undo', partitions: 40, rows: 399990, skipped: 10 }
 */
import type { Coordination } from '../coordination/redis.ts';
import { type Db, inTransaction, type Queryable } from '../db.ts';
import type { Definitions } from '../definitions/load.ts';
import type { ResolvedDefinition } from '../definitions/resolve.ts';
import { UserError } from '../errors.ts';
import { tryCompleteRun } from '../runs/run-store.ts';
import type { RunStatus } from '../schema.ts';
import { partitionTask, scheduleTasks } from '../tasks/task-store.ts';

export interface UndoRun {
  runId: number;
  undoOf: number;
  migration: string;
  partitions: number;
  /** Rows it will move back. */
  rows: number;
  /** Rows the undone run changed that the application changed (or deleted) since: left alone. */
  skipped: number;
}

/** The definition whose runs undo runs of `migration`, or a UserError saying why there is none. */
export function undoDefinitionFor(definitions: Definitions, migration: string, runId: number): ResolvedDefinition {
  const definition = definitions.get(migration);
  if (!definition) throw new UserError(`run ${runId} is a run of ${migration}, which is not loaded (TRANCHE_DEFINITIONS)`);
  // A run of NAME.undo is undone by NAME: a redo.
  const forward = migration.endsWith('.undo') ? definitions.get(migration.slice(0, -'.undo'.length)) : undefined;
  if (forward?.inverse?.name === migration) return forward;
  if (!definition.inverse) {
    throw new UserError(`${migration} declares no undo, so run ${runId} cannot be undone (add undo: { set, guard } to the definition)`);
  }
  return definition.inverse;
}

/** Serializes, until the transaction ends, what starting an undo of the run does. */
async function lockUndoOf(tx: Queryable, undoOf: number): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`tranche:undo:${undoOf}`]);
}

/** Refuses (UserError) while a run undoes `undoOf` already, or a run of `migrations` is active. */
async function refuseWhileActive(db: Queryable, undoOf: number, migrations: string[]): Promise<void> {
  const active = await db.query<{ id: number; migration: string; undo_of: number | null }>(
    `SELECT id, migration, undo_of FROM migration_runs
     WHERE (undo_of = $1 OR migration = ANY ($2::text[])) AND status IN ('identifying', 'running', 'paused') ORDER BY id`,
    [undoOf, migrations],
  );
  const busy = active.rows[0];
  if (!busy) return;
  throw new UserError(
    busy.undo_of === undoOf
      ? `run ${busy.id} is already undoing run ${undoOf}; wait for it or cancel it`
      : `run ${busy.id} of ${busy.migration} is still active; wait for it or cancel it before undoing run ${undoOf}`,
  );
}

/**
 * Starts the run that undoes `undoOf`. Refused (UserError, nothing written) for an unknown
 * run, a run not finished (identifying, running, paused), a definition without an inverse, a
 * run that kept no applied log, or while another run of the definition or its inverse is active.
 */
export async function startUndoRun(
  db: Db,
  coordination: Coordination | null | (() => Coordination | null),
  definitions: Definitions,
  undoOf: number,
): Promise<UndoRun> {
  const run = (
    await db.pool.query<{ migration: string; status: RunStatus; partition_size: number; max_partitions: number; applied: number }>(
      `SELECT migration, status, partition_size, max_partitions,
              (SELECT coalesce(sum(rows_applied), 0) FROM partitions WHERE run_id = r.id)::bigint AS applied
       FROM migration_runs r WHERE id = $1`,
      [undoOf],
    )
  ).rows[0];
  if (!run) throw new UserError(`run ${undoOf} does not exist`);
  const definition = undoDefinitionFor(definitions, run.migration, undoOf);
  if (run.status === 'identifying') throw new UserError(`run ${undoOf} is still identifying; undo it once it has completed (or cancel it first)`);
  if (run.status === 'running' || run.status === 'paused') {
    throw new UserError(`run ${undoOf} is ${run.status}; undo it once it has completed (or cancel it first)`);
  }
  const undoing = definition.statements.undoing!;
  // Runs moving the same rows the other way at once would undo each other: refused before the
  // log is expanded, and again under the lock that creates the run.
  const both = [definition.name, definition.inverse?.name ?? run.migration];
  await refuseWhileActive(db.pool, undoOf, both);
  // The applied log is one row per applied batch (the forward run pays one insert per batch);
  // the undo reads it one row per changed row, expanded once here.
  const expanded = await inTransaction(db.pool, async (tx) => {
    await lockUndoOf(tx, undoOf);
    const first = await tx.query(undoing.expand, [undoOf]);
    // Expanded by an earlier start that was refused: add what was logged since.
    return first.rowCount ? first : tx.query(undoing.expandAgain, [undoOf]);
  });
  // Rows just inserted have no statistics: the plan would look each of them up one by one
  // (2.6 s per 100,000 rows) where with them it joins them with the table in one pass.
  if ((expanded.rowCount ?? 0) > 0) await db.pool.query('ANALYZE applied_rows');
  const plan = await db.pool.query<{ partition_id: number; n: string; logged: string }>(undoing.plan, [undoOf]);
  const logged = plan.rows.reduce((s, r) => s + Number(r.logged), 0);
  if (logged === 0 && Number(run.applied) > 0) {
    throw new UserError(`run ${undoOf} kept no applied log (${run.migration} declared no undo when it ran), so it cannot be undone`);
  }
  const moves = plan.rows.filter((r) => Number(r.n) > 0);
  const rows = moves.reduce((s, r) => s + Number(r.n), 0);
  const created = await inTransaction(db.pool, async (tx) => {
    await lockUndoOf(tx, undoOf);
    await refuseWhileActive(tx, undoOf, both);
    const inserted = await tx.query<{ id: number }>(
      `INSERT INTO migration_runs (migration, trigger, status, partition_size, max_partitions, identified_at, undo_of, undo_skipped)
       VALUES ($1, 'manual', 'running', $2, $3, now(), $4, $5) RETURNING id`,
      [definition.name, run.partition_size, run.max_partitions, undoOf, logged - rows],
    );
    const runId = inserted.rows[0]!.id;
    await tx.query(
      `INSERT INTO run_groups (run_id, group_key, target, identified, partitions, rows_total)
       SELECT $1, rg.group_key, rg.target, true,
              (SELECT count(*) FROM partitions p WHERE p.id = ANY ($3::bigint[]) AND p.group_key = rg.group_key),
              coalesce((SELECT sum(m.n) FROM unnest($3::bigint[], $4::bigint[]) AS m(id, n) JOIN partitions p ON p.id = m.id WHERE p.group_key = rg.group_key), 0)
       FROM run_groups rg WHERE rg.run_id = $2`,
      [runId, undoOf, moves.map((m) => m.partition_id), moves.map((m) => m.n)],
    );
    // The undo's partitions are the undone run's, cut to the rows it will move back.
    const partitions = await tx.query<{ id: number }>(
      `INSERT INTO partitions (run_id, group_key, target, seq, lower_pos, lower_key, upper_pos, upper_key, row_count)
       SELECT $1, p.group_key, p.target, p.seq, p.lower_pos, p.lower_key, p.upper_pos, p.upper_key, m.n
       FROM unnest($2::bigint[], $3::bigint[]) AS m(id, n) JOIN partitions p ON p.id = m.id
       ORDER BY p.id
       RETURNING id`,
      [runId, moves.map((m) => m.partition_id), moves.map((m) => m.n)],
    );
    await scheduleTasks(tx, partitions.rows.map((p) => partitionTask(runId, p.id)));
    return { runId, partitions: partitions.rows.length };
  });
  // Opened only once the undo is accepted (a refusal touches nothing else).
  const co = typeof coordination === 'function' ? coordination() : coordination;
  if (co) {
    await co.initOutstanding(created.runId, rows).catch(() => false);
    await co.wake();
  }
  if (created.partitions === 0) await tryCompleteRun(db, definitions, created.runId);
  return { runId: created.runId, undoOf, migration: definition.name, partitions: created.partitions, rows, skipped: logged - rows };
}
