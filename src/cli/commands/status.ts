/** `tranche status [RUN]`: one run in detail, or the latest runs. */
import { UserError } from '../../errors.ts';
import { getRunStatus, listRuns, type RunStatusReport } from '../../runs/run-store.ts';
import type { CommandContext } from '../context.ts';

const fmt = (n: number) => n.toLocaleString('en-US');

export function formatRun(r: RunStatusReport): string {
  const pct = r.rows.total > 0 ? ((100 * r.rows.applied) / r.rows.total).toFixed(1) : '100.0';
  const p = r.partitions;
  return [
    `run ${r.runId}  ${r.status}  (${r.trigger}, ${r.migration}, created ${r.createdAt})`,
    `  products     ${r.products}`,
    `  partitions   ${p.total} total: ${p.completed} completed, ${p.running} running, ${p.pending} pending, ${p.failed} failed`,
    `  rows         ${fmt(r.rows.applied)} / ${fmt(r.rows.total)} applied (${pct}%), ${fmt(r.rows.produced)} produced`,
    `  dead letters ${r.deadLetters}`,
    ...(r.completedAt ? [`  completed    ${r.completedAt}`] : []),
    ...(r.lastError ? [`  last error   ${r.lastError}`] : []),
  ].join('\n');
}

export async function statusCommand(ctx: CommandContext, runId: number | undefined, options: { json?: boolean; limit?: number }): Promise<void> {
  const db = await ctx.openDb();
  if (runId === undefined) {
    const runs = await listRuns(db.pool, options.limit ?? 20);
    if (options.json) console.log(JSON.stringify(runs));
    else if (runs.length === 0) console.log('no runs yet; start one with: tranche identify');
    else console.log(runs.map(formatRun).join('\n\n'));
    return;
  }
  const report = await getRunStatus(db.pool, runId);
  if (!report) throw new UserError(`run ${runId} does not exist`);
  const { rows } = await db.pool.query(
    `SELECT id, product_key, seq, state, row_count, rows_produced, rows_applied, attempts, last_error
     FROM partitions WHERE run_id = $1 AND (state = 'failed' OR last_error IS NOT NULL) ORDER BY id LIMIT 50`,
    [runId],
  );
  if (options.json) {
    console.log(JSON.stringify({ ...report, problemPartitions: rows }));
    return;
  }
  console.log(formatRun(report));
  for (const p of rows) {
    console.log(`  partition ${p.id} (${JSON.stringify(p.product_key)} #${p.seq}) ${p.state} after ${p.attempts} attempts: ${p.last_error}`);
  }
}
