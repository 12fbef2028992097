/**
 * Runs in Postgres: creating one (one active run per migration unless forced), reading its
 * status, and completing it exactly once with a conditional update.
 *
 * @example
 *   const run = await createRun(db, definitions.require('order-totals'), { trigger: 'manual', ... });
 *   const status = await getRunStatus(db, run.runId);
 */
import type pg from 'pg';
import { type Db, inTransaction, type Queryable } from '../db.ts';
import type { Definitions } from '../definitions/load.ts';
import { quoteIdent, type ResolvedDefinition } from '../definitions/resolve.ts';
import { UserError } from '../errors.ts';
import type { RunStatus } from '../schema.ts';
import { verifyRun } from '../verify/verify.ts';

export interface NewRun {
  trigger: 'manual' | 'cron';
  slotKey?: string | null;
  partitionSize: number;
  maxPartitions: number;
  /** Only these groups (NULL: every group whose target changed). */
  groupFilter?: string[] | null;
  /** Start even though another run of the migration is active; its groups are skipped. */
  force?: boolean;
  /** Start even though the index the walk needs is missing (every page then scans). */
  allowSlow?: boolean;
  instanceId: string;
  leaseMs: number;
}

export interface CreatedRun {
  runId: number;
  groups: { groupKey: string; target: string | null }[];
}

export interface RunStatusReport {
  runId: number;
  uid: string;
  migration: string;
  status: RunStatus;
  trigger: string;
  createdAt: string;
  identifiedAt: string | null;
  completedAt: string | null;
  groups: number;
  partitions: { total: number; pending: number; running: number; completed: number; failed: number };
  rows: { total: number; produced: number; applied: number };
  deadLetters: number;
  lastError: string | null;
  /** The last verification's verdict ('holds', or which partitions do not; null: not verified). */
  verdict: string | null;
  /** The run this one undoes, and the rows it left alone (changed since by someone else). */
  undoOf: number | null;
  undoSkipped: number | null;
}

const ACTIVE: RunStatus[] = ['identifying', 'running', 'paused'];

/** Throws a UserError naming the groups of `filter` that do not exist. */
async function assertGroupsExist(client: Queryable, definition: ResolvedDefinition, filter: string[]): Promise<void> {
  if (!definition.group) throw new UserError(`${definition.name} has no groups; run it without a group filter`);
  const { rows } = await client.query<{ k: string }>(definition.statements.existingGroups, [filter]);
  const known = new Set(rows.map((r) => r.k));
  const unknown = filter.filter((k) => !known.has(k));
  if (unknown.length > 0) {
    throw new UserError(`unknown group${unknown.length > 1 ? 's' : ''} of ${definition.name}: ${unknown.map((k) => JSON.stringify(k)).join(', ')}`);
  }
}

/**
 * The statement that creates the index the definition's walk needs, or null when an index
 * starting with those columns exists.
 */
export async function missingIndex(db: Queryable, definition: ResolvedDefinition): Promise<string | null> {
  const columns = definition.statements.indexColumns;
  const { rows } = await db.query<{ ok: boolean }>(
    `SELECT EXISTS (
       SELECT 1 FROM pg_index i
       WHERE i.indrelid = $1 AND i.indpred IS NULL AND i.indnkeyatts >= $3
         AND (SELECT array_agg(a.attname::text ORDER BY k.ord)
              FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE k.ord <= $3) = $2::text[]
     ) AS ok`,
    [definition.table.oid, columns, columns.length],
  );
  if (rows[0]?.ok) return null;
  const name = quoteIdent(`${definition.table.display.split('.').pop()}_tranche_${columns.join('_')}`.slice(0, 63));
  return `CREATE INDEX CONCURRENTLY ${name} ON ${definition.table.sql} (${columns.map(quoteIdent).join(', ')})`;
}

/**
 * Creates a run of a definition in state `identifying`, leased to `instanceId`, with the
 * groups it covers. Concurrent starts of one migration are serialized by an advisory lock.
 */
export async function createRun(db: Db, definition: ResolvedDefinition, input: NewRun, client?: pg.PoolClient): Promise<CreatedRun> {
  const migration = definition.name;
  if (definition.definition.requireIndex !== false && !input.allowSlow) {
    const create = await missingIndex(client ?? db.pool, definition);
    if (create) {
      throw new UserError(`${migration}: ${definition.table.display} has no index on (${definition.statements.indexColumns.join(', ')}), so every page would scan the table; create it with: ${create}; (or pass --allow-slow)`);
    }
  }
  const work = async (tx: pg.PoolClient): Promise<CreatedRun> => {
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`tranche:run:${migration}`]);
    const filter = input.groupFilter && input.groupFilter.length > 0 ? [...new Set(input.groupFilter)] : null;
    if (filter) await assertGroupsExist(tx, definition, filter);
    const active = await tx.query<{ id: number; status: RunStatus }>(
      'SELECT id, status FROM migration_runs WHERE migration = $1 AND status = ANY ($2::text[]) ORDER BY id',
      [migration, ACTIVE],
    );
    if (active.rows.length > 0 && !input.force) {
      const list = active.rows.map((r) => `run ${r.id} (${r.status})`).join(', ');
      throw new UserError(`${list} of ${migration} is still active; wait for it, cancel it, or pass --force to start one for the other groups`);
    }
    const groups = await tx.query<{ group_key: string; target: string | null }>(definition.statements.changedGroups, [
      filter,
      active.rows.map((r) => r.id),
      migration,
    ]);
    const run = await tx.query<{ id: number }>(
      `INSERT INTO migration_runs
         (migration, trigger, slot_key, status, partition_size, max_partitions, group_filter,
          identify_owner, identify_lease_until)
       VALUES ($1, $2, $3, 'identifying', $4, $5, $6, $7, now() + make_interval(secs => $8::integer / 1000.0))
       RETURNING id`,
      [migration, input.trigger, input.slotKey ?? null, input.partitionSize, input.maxPartitions, filter, input.instanceId, input.leaseMs],
    );
    const runId = run.rows[0]!.id;
    if (groups.rows.length > 0) {
      await tx.query(
        `INSERT INTO run_groups (run_id, group_key, target)
         SELECT $1, k, v FROM unnest($2::text[], $3::text[]) AS t(k, v)`,
        [runId, groups.rows.map((g) => g.group_key), groups.rows.map((g) => g.target)],
      );
    }
    return { runId, groups: groups.rows.map((g) => ({ groupKey: g.group_key, target: g.target })) };
  };
  return client ? work(client) : inTransaction(db.pool, work);
}

/**
 * Reports of the runs with the given ids (NULL: the latest `limit` runs), newest first, in
 * one statement whatever their number.
 */
async function runReports(db: Queryable, ids: number[] | null, limit: number): Promise<RunStatusReport[]> {
  const { rows } = await db.query(
    `SELECT r.id, r.uid, r.migration, r.status, r.trigger, r.created_at, r.identified_at, r.completed_at, r.last_error,
            r.verdict, r.undo_of, r.undo_skipped,
            (SELECT count(*) FROM run_groups rg WHERE rg.run_id = r.id) AS groups,
            coalesce(p.total, 0) AS total, coalesce(p.pending, 0) AS pending, coalesce(p.running, 0) AS running,
            coalesce(p.completed, 0) AS completed, coalesce(p.failed, 0) AS failed,
            coalesce(p.rows_total, 0) AS rows_total, coalesce(p.rows_produced, 0) AS rows_produced,
            coalesce(p.rows_applied, 0) AS rows_applied,
            (SELECT count(*) FROM dead_letters d WHERE d.run_id = r.id) AS dead_letters
     FROM (SELECT * FROM migration_runs WHERE $1::bigint[] IS NULL OR id = ANY ($1::bigint[]) ORDER BY id DESC LIMIT $2) r
     LEFT JOIN LATERAL (
       SELECT count(*) AS total,
              count(*) FILTER (WHERE state = 'pending') AS pending,
              count(*) FILTER (WHERE state = 'running') AS running,
              count(*) FILTER (WHERE state = 'completed') AS completed,
              count(*) FILTER (WHERE state = 'failed') AS failed,
              sum(row_count)::bigint AS rows_total,
              sum(rows_produced)::bigint AS rows_produced,
              sum(rows_applied)::bigint AS rows_applied
       FROM partitions WHERE run_id = r.id
     ) p ON true
     ORDER BY r.id DESC`,
    [ids, limit],
  );
  return rows.map((r) => ({
    runId: r.id,
    uid: r.uid,
    migration: r.migration,
    status: r.status,
    trigger: r.trigger,
    createdAt: r.created_at,
    identifiedAt: r.identified_at,
    completedAt: r.completed_at,
    groups: r.groups,
    partitions: { total: r.total, pending: r.pending, running: r.running, completed: r.completed, failed: r.failed },
    rows: { total: r.rows_total, produced: r.rows_produced, applied: Math.min(r.rows_applied, r.rows_total) },
    deadLetters: r.dead_letters,
    lastError: r.last_error,
    verdict: r.verdict,
    undoOf: r.undo_of,
    undoSkipped: r.undo_skipped,
  }));
}

/** Status of one run, or null when there is no such run. */
export async function getRunStatus(db: Queryable, runId: number): Promise<RunStatusReport | null> {
  return (await runReports(db, [runId], 1))[0] ?? null;
}

/** The most recent runs, newest first. */
export function listRuns(db: Queryable, limit = 20): Promise<RunStatusReport[]> {
  return runReports(db, null, limit);
}

/**
 * Completes the run if, and only if, it is running, every partition is completed and no
 * row of its partitions is still eligible. The conditional update makes this happen once,
 * whoever calls it and however often. Returns true for the one caller that completed it.
 */
export async function tryCompleteRun(db: Db, definitions: Definitions, runId: number): Promise<boolean> {
  const ready = await db.pool.query<{ ready: boolean; migration: string; undo_of: number | null }>(
    `SELECT r.status = 'running'
            AND NOT EXISTS (SELECT 1 FROM partitions p WHERE p.run_id = r.id AND NOT p.completed) AS ready, r.migration, r.undo_of
     FROM migration_runs r WHERE r.id = $1`,
    [runId],
  );
  const run = ready.rows[0];
  if (!run?.ready) return false;
  // Only an instance that knows the definition can tell whether rows are left.
  const definition = definitions.get(run.migration);
  if (!definition) return false;
  // An undo run waits for the rows of the undone run's applied log, not for eligible rows.
  const remainingSql = run.undo_of === null ? definition.statements.remaining : definition.statements.undoing?.remaining;
  if (!remainingSql) return false;
  const remaining = await db.pool.query<{ remaining: boolean }>(remainingSql, [runId]);
  if (remaining.rows[0]?.remaining) return false;
  const completed = await inTransaction(db.pool, async (tx) => {
    const done = await tx.query(
      `UPDATE migration_runs r
       SET status = 'completed', completed_at = now()
       WHERE r.id = $1 AND r.status = 'running'
         AND NOT EXISTS (SELECT 1 FROM partitions p WHERE p.run_id = r.id AND NOT p.completed)
       RETURNING r.id`,
      [runId],
    );
    if (done.rowCount !== 1) return false;
    // An undo does not move a group's progress: the next nightly run still skips it.
    if (run.undo_of !== null) return true;
    await tx.query(
      `INSERT INTO group_progress (migration, group_key, target)
       SELECT $2, rg.group_key, rg.target FROM run_groups rg WHERE rg.run_id = $1
       ON CONFLICT (migration, group_key) DO UPDATE SET target = EXCLUDED.target, updated_at = now()`,
      [runId, run.migration],
    );
    return true;
  });
  if (completed) {
    // The verification at completion: its verdict goes on the run, its checksums become the
    // baseline a later `tranche verify` compares with. It never undoes the completion.
    await verifyRun(db.pool, definitions, runId).catch((error: unknown) =>
      db.pool.query('UPDATE migration_runs SET verdict = $2, verified_at = now() WHERE id = $1', [runId, `not verified: ${String(error)}`.slice(0, 500)]).catch(() => {}),
    );
  }
  return completed;
}

/** Marks the run failed when every partition has ended and at least one failed. */
export async function markRunFailedIfStuck(db: Queryable, runId: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE migration_runs r SET status = 'failed', last_error = 'one or more partitions failed'
     WHERE r.id = $1 AND r.status = 'running'
       AND EXISTS (SELECT 1 FROM partitions p WHERE p.run_id = r.id AND p.state = 'failed')
       AND NOT EXISTS (SELECT 1 FROM partitions p WHERE p.run_id = r.id AND p.state IN ('pending', 'running'))`,
    [runId],
  );
  return rowCount === 1;
}

/** Runs whose completion event has not been published yet (the outbox). */
export interface CompletedRunRow {
  id: number;
  uid: string;
  migration: string;
  completed_at: string;
  rows_total: number;
}

export async function unpublishedCompletions(db: Queryable): Promise<CompletedRunRow[]> {
  const { rows } = await db.query(
    `SELECT r.id, r.uid, r.migration, r.completed_at, (SELECT coalesce(sum(row_count), 0) FROM partitions p WHERE p.run_id = r.id)::bigint AS rows_total
     FROM migration_runs r WHERE r.status = 'completed' AND NOT r.completion_published ORDER BY r.id`,
  );
  return rows;
}

/**
 * Locks one completed run's outbox row if its event is still unpublished; null when it was
 * published meanwhile or another transaction holds it (that one is publishing it).
 */
export async function lockUnpublishedCompletion(
  tx: Queryable,
  runId: number,
): Promise<CompletedRunRow | null> {
  const { rows } = await tx.query(
    `SELECT r.id, r.uid, r.migration, r.completed_at, (SELECT coalesce(sum(row_count), 0) FROM partitions p WHERE p.run_id = r.id)::bigint AS rows_total
     FROM migration_runs r WHERE r.id = $1 AND r.status = 'completed' AND NOT r.completion_published
     FOR UPDATE OF r SKIP LOCKED`,
    [runId],
  );
  return rows[0] ?? null;
}

export async function markCompletionPublished(db: Queryable, runId: number): Promise<void> {
  await db.query('UPDATE migration_runs SET completion_published = true WHERE id = $1', [runId]);
}
