/**
 * Text rendering of runs for the terminal: progress bars, rates and ETAs. Pure functions.
 *
 * @example
 *   progressBar(30, 120, 10); // '██▌·······'
 */
import type { PartitionView } from '../runs/partition-list.ts';
import { groupsOf } from '../runs/partition-list.ts';
import type { RunStatusReport } from '../runs/run-store.ts';

export const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

export function progressBar(done: number, total: number, width = 20): string {
  const ratio = total > 0 ? Math.min(1, Math.max(0, done / total)) : 1;
  const cells = ratio * width;
  const full = Math.floor(cells);
  const half = cells - full >= 0.5 ? 1 : 0;
  return '█'.repeat(full) + (half ? '▌' : '') + '·'.repeat(width - full - half);
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '—';
  if (seconds < 60) return `${Math.round(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
}

/** Rows per second and seconds left, from rows applied over elapsed seconds. */
export function rateAndEta(applied: number, total: number, elapsedSeconds: number): { rate: number; eta: number } {
  const rate = elapsedSeconds > 0 ? applied / elapsedSeconds : 0;
  const eta = applied >= total ? 0 : rate > 0 ? (total - applied) / rate : Number.POSITIVE_INFINITY;
  return { rate, eta };
}

export interface RenderOptions {
  /** Rows per second to show for the run (measured by the caller). */
  rate: number;
  /** Most partitions listed (those not completed, and any with an error, come first). */
  maxPartitions?: number;
  bars?: boolean;
}

export function renderRunDetail(run: RunStatusReport, partitions: PartitionView[], options: RenderOptions): string {
  const bars = options.bars !== false;
  const lines: string[] = [];
  const left = run.rows.total - run.rows.applied;
  const eta = left <= 0 ? 0 : options.rate > 0 ? left / options.rate : Number.POSITIVE_INFINITY;
  const p = run.partitions;
  lines.push(`run ${run.runId}  ${run.status}  (${run.trigger}, ${run.migration}, created ${run.createdAt})`);
  lines.push(
    `  rows        ${bars ? `${progressBar(run.rows.applied, run.rows.total, 30)} ` : ''}${fmt(run.rows.applied)} / ${fmt(run.rows.total)} applied, ` +
      `${fmt(run.rows.produced)} produced` +
      (run.status === 'running' ? `, ${fmt(options.rate)} rows/s, ETA ${formatDuration(eta)}` : ''),
  );
  lines.push(`  partitions  ${p.total} total: ${p.completed} completed, ${p.running} running, ${p.pending} pending, ${p.failed} failed`);
  lines.push(`  dead letters ${run.deadLetters}`);
  if (run.completedAt) lines.push(`  completed   ${run.completedAt}`);
  if (run.undoOf !== null) lines.push(`  undoes      run ${run.undoOf} (${fmt(run.undoSkipped ?? 0)} rows left alone: changed since)`);
  if (run.verdict !== null) lines.push(`  verified    ${run.verdict}`);
  if (run.lastError) lines.push(`  last error  ${run.lastError}`);
  const groups = groupsOf(partitions);
  if (groups.length > 0) lines.push('', '  group                          target   partitions   rows applied');
  for (const group of groups) {
    const name = group.groupKey.length > 30 ? `${group.groupKey.slice(0, 29)}…` : group.groupKey;
    const target = group.target ?? '-';
    lines.push(
      `  ${JSON.stringify(name).padEnd(30)} ${(target.length > 8 ? `${target.slice(0, 7)}…` : target).padEnd(8)} ` +
        `${`${group.completed}/${group.partitions}`.padEnd(12)} ${bars ? `${progressBar(group.rows.applied, group.rows.total, 12)} ` : ''}` +
        `${fmt(group.rows.applied)} / ${fmt(group.rows.total)}${group.failed > 0 ? `  (${group.failed} failed)` : ''}`,
    );
  }
  const max = options.maxPartitions ?? 40;
  const interesting = partitions
    .filter((x) => x.state !== 'completed' || x.lastError !== null)
    .sort((a, b) => (a.state === 'failed' ? -1 : 0) - (b.state === 'failed' ? -1 : 0));
  if (interesting.length > 0) {
    lines.push('', `  ${'partition'.padEnd(10)} ${'group #'.padEnd(24)} ${'state'.padEnd(10)} ${'rows applied'.padEnd(18)} ${'rate, ETA'.padEnd(22)} ${'attempts'.padEnd(8)} last error`);
  }
  const now = Date.now();
  for (const x of interesting.slice(0, max)) {
    const started = x.startedAt ? Date.parse(x.startedAt.replace(' ', 'T').replace(/\+00$/, 'Z')) : Number.NaN;
    const elapsed = Number.isNaN(started) ? 0 : (now - started) / 1000;
    const { rate: prate, eta: peta } = rateAndEta(x.rows.applied, x.rows.total, elapsed);
    const name = x.groupKey.length > 20 ? `${x.groupKey.slice(0, 19)}…` : x.groupKey;
    const speed = x.state === 'running' ? `${fmt(prate)}/s, ETA ${formatDuration(peta)}` : '';
    lines.push(
      `  ${String(x.id).padEnd(10)} ${`${name} #${x.seq}`.padEnd(24)} ${x.state.padEnd(10)} ` +
        `${`${fmt(x.rows.applied)}/${fmt(x.rows.total)}`.padEnd(18)} ${speed.padEnd(22)} ${String(x.attempts).padEnd(8)} ${x.lastError ?? ''}`,
    );
  }
  if (interesting.length > max) lines.push(`  … ${interesting.length - max} more (tranche partitions ${run.runId})`);
  return lines.join('\n');
}
