/**
 * Proving a run against the database: per partition, with ONE set-based statement generated
 * from the definition (plain SELECTs: no lock an application write could wait on), how many
 * rows of its range are still eligible, how many reached the target or went beyond it, how
 * many vanished, and whether the key and migrated columns still hash to what they did when
 * the run was first verified (the baseline, kept in partition_checks).
 *
 * @example
 *   const result = await verifyRun(db, definitions, 12);
 *   if (!result.holds) console.log(result.verdict); // "partitions 31, 40 do not hold"
 */
import type { Coordination } from '../coordination/redis.ts';
import type { Db, Queryable } from '../db.ts';
import type { Definitions } from '../definitions/load.ts';
import { UserError } from '../errors.ts';
import { repairPartitions } from '../runs/run-control.ts';
import type { RunStatus } from '../schema.ts';

export interface PartitionVerdict {
  partitionId: number;
  groupKey: string;
  seq: number;
  target: string | null;
  /** Rows the partition was cut with, and rows the run changed. */
  cut: number;
  applied: number;
  /** Rows in the partition's range now. */
  present: number;
  /** Rows of the range still eligible (0 for a completed run). */
  eligible: number;
  /** Rows at the target, and beyond it (null: the definition has no `verify`). */
  reached: number | null;
  beyond: number | null;
  /** Rows gone since the baseline (or fewer than were cut, without one). */
  vanished: number;
  /** Rows moved beyond the target since the baseline (null without `verify.beyond`). */
  beyondSince: number | null;
  /** The checksum (key and `set` columns, or `verify.checksum`'s) differs from a comparable baseline's. */
  changedSince: boolean;
  /** When the baseline was taken (null: this verification takes it, or the run is not completed). */
  baselineAt: string | null;
  holds: boolean;
  problems: string[];
}

export interface RunVerification {
  runId: number;
  migration: string;
  status: RunStatus;
  /** The run this one undoes, or null. */
  undoOf: number | null;
  /** False when the definition has no `verify` (only the eligible check, counts and checksums). */
  reachedChecked: boolean;
  partitions: PartitionVerdict[];
  holds: boolean;
  /** Partitions that do not hold. */
  failing: number[];
  /** `holds`, or which partitions do not. */
  verdict: string;
}

interface VerifyRow {
  partition_id: number;
  group_key: string;
  seq: number;
  target: string | null;
  row_count: number;
  rows_applied: number;
  present: string;
  eligible: string;
  reached: string | null;
  beyond: string | null;
  checksum: string;
}

const num = (v: string | number | null): number | null => (v === null ? null : Number(v));

/** The verdict line of a verification. */
export function verdictOf(failing: readonly number[]): string {
  if (failing.length === 0) return 'holds';
  return `partition${failing.length > 1 ? 's' : ''} ${failing.join(', ')} do${failing.length > 1 ? '' : 'es'} not hold`;
}

/** Whether two checksums cover the same columns: the same `hex:` prefix, or none (verify.checksum, proof-statements.ts). */
function comparable(a: string, b: string): boolean {
  const tag = (c: string) => /^[0-9a-f]{8}:/.exec(c)?.[0] ?? '';
  return tag(a) === tag(b);
}

/**
 * Verifies a run, records its verdict, and on a completed run stores the baseline of every
 * partition that has none. Throws a UserError for an unknown run, a run still identifying,
 * or a run of a definition this process did not load.
 */
export async function verifyRun(db: Queryable, definitions: Definitions, runId: number): Promise<RunVerification> {
  const run = (
    await db.query<{ migration: string; status: RunStatus; undo_of: number | null }>('SELECT migration, status, undo_of FROM migration_runs WHERE id = $1', [runId])
  ).rows[0];
  if (!run) throw new UserError(`run ${runId} does not exist`);
  if (run.status === 'identifying') throw new UserError(`run ${runId} is still identifying; verify it once its partitions are cut`);
  const definition = definitions.get(run.migration);
  if (!definition) throw new UserError(`run ${runId} is a run of ${run.migration}, which is not loaded (TRANCHE_DEFINITIONS)`);
  const statement = run.undo_of === null ? definition.statements.verify : definition.statements.undoing?.verify;
  if (!statement) throw new UserError(`run ${runId} undoes run ${run.undo_of}, but ${definition.name} declares no undo`);
  const { rows } = await db.query<VerifyRow>(statement, [runId]);
  const baselines = new Map(
    (
      await db.query<{ partition_id: number; rows_present: number; rows_beyond: number | null; checksum: string; checked_at: string }>(
        'SELECT partition_id, rows_present, rows_beyond, checksum, checked_at::text FROM partition_checks WHERE run_id = $1',
        [runId],
      )
    ).rows.map((b) => [b.partition_id, b]),
  );
  const partitions = rows.map((r): PartitionVerdict => {
    const base = baselines.get(r.partition_id);
    const present = Number(r.present);
    const eligible = Number(r.eligible);
    const beyond = num(r.beyond);
    const vanished = Math.max(0, (base ? Number(base.rows_present) : r.row_count) - present);
    const beyondSince = beyond === null ? null : Math.max(0, beyond - Number(base?.rows_beyond ?? 0));
    // A baseline over other columns (verify.checksum changed since) cannot be compared: it is
    // replaced below, and the partition is not called changed.
    const changedSince = base !== undefined && comparable(base.checksum, r.checksum) && base.checksum !== r.checksum;
    const problems: string[] = [];
    if (eligible > 0) problems.push(`${eligible} still eligible`);
    if (vanished > 0) problems.push(`${vanished} vanished`);
    if (beyondSince) problems.push(`${beyondSince} beyond the target`);
    if (changedSince) problems.push(`changed since ${base.checked_at}`);
    return {
      partitionId: r.partition_id,
      groupKey: r.group_key,
      seq: r.seq,
      target: r.target,
      cut: r.row_count,
      applied: r.rows_applied,
      present,
      eligible,
      reached: num(r.reached),
      beyond,
      vanished,
      beyondSince,
      changedSince,
      baselineAt: base?.checked_at ?? null,
      holds: problems.length === 0,
      problems,
    };
  });
  const failing = partitions.filter((p) => !p.holds).map((p) => p.partitionId);
  const verdict = verdictOf(failing);
  if (run.status === 'completed') {
    const fresh = rows.filter((r) => !baselines.has(r.partition_id));
    const rebased = rows.filter((r) => {
      const base = baselines.get(r.partition_id);
      return base !== undefined && !comparable(base.checksum, r.checksum);
    });
    if (rebased.length > 0) {
      await db.query(
        'UPDATE partition_checks c SET checksum = b.checksum FROM unnest($2::bigint[], $3::text[]) AS b(id, checksum) WHERE c.run_id = $1 AND c.partition_id = b.id',
        [runId, rebased.map((r) => r.partition_id), rebased.map((r) => r.checksum)],
      );
    }
    if (fresh.length > 0) {
      await db.query(
        `INSERT INTO partition_checks (partition_id, run_id, rows_present, rows_reached, rows_beyond, checksum)
         SELECT id, $1, present, reached, beyond, checksum
         FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[]) AS b(id, present, reached, beyond, checksum)
         ON CONFLICT (partition_id) DO NOTHING`,
        [runId, fresh.map((r) => r.partition_id), fresh.map((r) => r.present), fresh.map((r) => r.reached), fresh.map((r) => r.beyond), fresh.map((r) => r.checksum)],
      );
    }
  }
  await db.query('UPDATE migration_runs SET verdict = $2, verified_at = now() WHERE id = $1', [runId, verdict]);
  return {
    runId,
    migration: run.migration,
    status: run.status,
    undoOf: run.undo_of,
    reachedChecked: run.undo_of === null && definition.definition.verify !== undefined,
    partitions,
    holds: failing.length === 0,
    failing,
    verdict,
  };
}

/**
 * Verifies a run and reruns exactly the partitions that still have eligible rows, through the
 * ordinary tasks (a completed run is reopened and completes again). Rows that vanished or
 * moved beyond the target are the application's: left alone. Returns the verification
 * before the repair and the partitions rerun.
 */
export async function repairRun(
  db: Db,
  coordination: Coordination | null | (() => Coordination | null),
  definitions: Definitions,
  runId: number,
): Promise<{ before: RunVerification; rerun: number[] }> {
  const undone = await db.pool.query<{ id: number }>('SELECT id FROM migration_runs WHERE undo_of = $1 ORDER BY id LIMIT 1', [runId]);
  if (undone.rows[0]) throw new UserError(`run ${runId} was undone by run ${undone.rows[0].id}; its records are no longer applied, so it cannot be repaired (undo run ${undone.rows[0].id} to redo it)`);
  const before = await verifyRun(db.pool, definitions, runId);
  const stillEligible = new Map(before.partitions.filter((p) => p.eligible > 0).map((p) => [p.partitionId, p.eligible]));
  const rerun = stillEligible.size === 0 ? [] : await repairPartitions(db, typeof coordination === 'function' ? coordination() : coordination, runId, stillEligible);
  return { before, rerun };
}
