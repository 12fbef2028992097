/**
 * Partition listings for operators (CLI, HTTP API, dashboard): per partition and per product,
 * rows done and total, attempts and the last error.
 *
 * @example
 *   const parts = await listPartitions(db, 12, { state: 'failed' });
 */
import type { Db } from '../db.ts';
import type { PartitionState } from '../schema.ts';

export interface PartitionView {
  id: number;
  productKey: string;
  productVersion: number;
  seq: number;
  state: PartitionState;
  rows: { total: number; produced: number; applied: number };
  attempts: number;
  lastError: string | null;
  startedAt: string | null;
  completedAt: string | null;
  bounds: { min: [string, number]; max: [string, number]; offset: [string, number] | null };
}

export interface ProductView {
  productKey: string;
  productVersion: number;
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
      'id', 'product_key', 'product_version', 'seq', 'state', 'row_count', 'rows_produced', 'rows_applied', 'attempts',
      'last_error', 'started_at', 'completed_at', 'min_created_date', 'min_id', 'max_created_date', 'max_id', 'offset_date',
      'offset_id',
    ])
    .where('run_id', '=', runId);
  if (options.state) query = query.where('state', '=', options.state);
  const rows = await query.orderBy('product_key').orderBy('seq').limit(options.limit ?? 10_000).execute();
  return rows.map((r) => ({
    id: r.id,
    productKey: r.product_key,
    productVersion: r.product_version,
    seq: r.seq,
    state: r.state,
    rows: { total: r.row_count, produced: r.rows_produced, applied: Math.min(r.rows_applied, r.row_count) },
    attempts: r.attempts,
    lastError: r.last_error,
    startedAt: r.started_at,
    completedAt: r.completed_at,
    bounds: {
      min: [r.min_created_date, r.min_id],
      max: [r.max_created_date, r.max_id],
      offset: r.offset_id === null || r.offset_date === null ? null : [r.offset_date, r.offset_id],
    },
  }));
}

export function productsOf(partitions: PartitionView[]): ProductView[] {
  const byKey = new Map<string, ProductView>();
  for (const p of partitions) {
    let v = byKey.get(p.productKey);
    if (!v) {
      v = { productKey: p.productKey, productVersion: p.productVersion, partitions: 0, completed: 0, failed: 0, rows: { total: 0, produced: 0, applied: 0 } };
      byKey.set(p.productKey, v);
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
