/**
 * A run's history: the operator actions taken on it (pause, resume, cancel, re-runs, the
 * throttle while it ran), who took them, when, and how they ended, in `run_events`.
 *
 * @example
 *   await recordRunEvent(db.pool, { runId: 12, action: 'pause', actor: 'dashboard@10.0.0.5', outcome: 'ok' });
 *   const events = await listRunEvents(db.pool, 12);
 */
import type { Queryable } from '../db.ts';

export interface RunEvent {
  id: number;
  runId: number | null;
  action: string;
  actor: string;
  detail: Record<string, unknown>;
  outcome: 'ok' | 'refused' | 'error';
  createdAt: string;
}

export async function recordRunEvent(
  db: Queryable,
  event: { runId: number | null; action: string; actor: string; detail?: Record<string, unknown>; outcome: RunEvent['outcome'] },
): Promise<void> {
  await db.query('INSERT INTO run_events (run_id, action, actor, detail, outcome) VALUES ($1, $2, $3, $4, $5)', [
    event.runId,
    event.action,
    event.actor,
    JSON.stringify(event.detail ?? {}),
    event.outcome,
  ]);
}

/** The run's events, oldest first (global events, such as the throttle, have no run). */
export async function listRunEvents(db: Queryable, runId: number, limit = 100): Promise<RunEvent[]> {
  const { rows } = await db.query<{ id: string; run_id: string | null; action: string; actor: string; detail: Record<string, unknown>; outcome: RunEvent['outcome']; created_at: string }>(
    `SELECT id, run_id, action, actor, detail, outcome, created_at::text FROM run_events WHERE run_id = $1 ORDER BY id LIMIT $2`,
    [runId, limit],
  );
  return rows.map((r) => ({
    id: Number(r.id),
    runId: r.run_id === null ? null : Number(r.run_id),
    action: r.action,
    actor: r.actor,
    detail: r.detail,
    outcome: r.outcome,
    createdAt: r.created_at,
  }));
}
