/**
 * Partition listings for operators (CLI, HTTP API, dashboard): per partition and per group,
 * rows done and total, attempts and the last error.
 *
 * @example
 *   const parts = await listPartitions(db, 12, { state: 'failed' });
 */
import type { Db } from '../db.ts';
import type { PartitionState } from '../schema.ts';

export interface PartitionView {
  id: number;
  groupKey: string;
  target: string | null;
  seq: number;
  state: PartitionState;
  rows: { total: number; produced: number; applied: number };
  attempts: number;
  lastError: string | null;
  startedAt: string | null;
  completedAt: string | null;
  /** Inclusive (position, key) bounds and the produced offset, as Postgres prints them. */
  bounds: { min: [string, string]; max: [string, string]; offset: [string, string] | null };
}

export interface GroupView {
  groupKey: string;
  target: string | null;
  partitions: number;
  completed: number;
  failed: number;
  rows: { total: number; produced: number; applied: number };
}

export async function listPartitions(
  db: Db,
  runId: number,
  options: { state?: PartitionState; limit?: number } = {},
): Promise<PartitionView[]> {
  let query = db.kysely
    .selectFrom('partitions')
    .select([
      'id', 'group_key', 'target', 'seq', 'state', 'row_count', 'rows_produced', 'rows_applied', 'attempts',
      'last_error', 'started_at', 'completed_at', 'lower_pos', 'lower_key', 'upper_pos', 'upper_key', 'offset_pos', 'offset_key',
    ])
    .where('run_id', '=', runId);
  if (options.state) query = query.where('state', '=', options.state);
  const rows = await query.orderBy('group_key').orderBy('seq').limit(options.limit ?? 10_000).execute();
  return rows.map((r) => ({
    id: r.id,
    groupKey: r.group_key,
    target: r.target,
    seq: r.seq,
    state: r.state,
    rows: { total: r.row_count, produced: r.rows_produced, applied: Math.min(r.rows_applied, r.row_count) },
    attempts: r.attempts,
    lastError: r.last_error,
    startedAt: r.started_at,
    completedAt: r.completed_at,
    bounds: {
      min: [r.lower_pos, r.lower_key],
      max: [r.upper_pos, r.upper_key],
      offset: r.offset_pos === null || r.offset_key === null ? null : [r.offset_pos, r.offset_key],
    },
  }));
}

export function groupsOf(partitions: PartitionView[]): GroupView[] {
  const byKey = new Map<string, GroupView>();
  for (const p of partitions) {
    let v = byKey.get(p.groupKey);
    if (!v) {
      v = { groupKey: p.groupKey, target: p.target, partitions: 0, completed: 0, failed: 0, rows: { total: 0, produced: 0, applied: 0 } };
      byKey.set(p.groupKey, v);
    }
    v.partitions++;
    if (p.state === 'completed') v.completed++;
    if (p.state === 'failed') v.failed++;
    v.rows.total += p.rows.total;
    v.rows.produced += p.rows.produced;
    v.rows.applied += p.rows.applied;
  }
  return [...byKey.values()];
}
