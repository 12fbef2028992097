/**
 * `tranche status [RUN]`: one run in detail (per group and partition: state, rows, rate,
 * ETA, attempts, last error), or the latest runs. On a terminal, a running run is shown live
 * until it ends (Ctrl-C to leave); otherwise, or with --no-watch, it prints once.
 * `tranche partitions RUN [--state S]` lists partitions.
 */
import { UserError } from '../../errors.ts';
import { listPartitions, type PartitionView } from '../../runs/partition-list.ts';
import { getRunStatus, listRuns, type RunStatusReport } from '../../runs/run-store.ts';
import type { PartitionState } from '../../schema.ts';
import type { ConsumerLag } from '../../consumer/lag.ts';
import { readRunProgress, type RunProgress } from '../../runs/run-progress.ts';
import type { StallReport } from '../../coordination/redis.ts';
import type { CommandContext } from '../context.ts';
import { describeHealthState, type HealthState, readHealthState } from '../../health/state.ts';
import type { Queryable } from '../../db.ts';
import type { RunStatus } from '../../schema.ts';
import { fmt, progressBar, renderRunDetail } from '../render.ts';

export function formatRun(r: RunStatusReport): string {
  const pct = r.rows.total > 0 ? ((100 * r.rows.applied) / r.rows.total).toFixed(1) : '100.0';
  return (
    `run ${String(r.runId).padEnd(6)} ${r.status.padEnd(11)} ${progressBar(r.rows.applied, r.rows.total, 16)} ` +
    `${fmt(r.rows.applied)} / ${fmt(r.rows.total)} rows (${pct}%), ${r.partitions.completed}/${r.partitions.total} partitions` +
    `${r.partitions.failed > 0 ? `, ${r.partitions.failed} failed` : ''}, ${r.deadLetters} dead letters, created ${r.createdAt}` +
    `${r.undoOf !== null ? `, undoes run ${r.undoOf}` : ''}${r.verdict !== null ? `, verified: ${r.verdict}` : ''}`
  );
}

const ACTIVE = ['identifying', 'running', 'paused'];

/** The shared protection state; like the lag, it must not hold the status up (1 s at most). */
async function protectionOrNull(ctx: CommandContext): Promise<HealthState | null | 'unknown'> {
  const redis = ctx.openCoordination().client;
  const ready = redis.status === 'ready' || (await Promise.race([
    new Promise<boolean>((resolve) => redis.once('ready', () => resolve(true))),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1000).unref()),
  ]));
  return ready ? readHealthState(redis, ctx.config.redisPrefix) : 'unknown';
}

function protectionLine(state: HealthState | null | 'unknown'): string {
  if (state === 'unknown') return '  protection unknown (Redis did not answer)';
  const window = state?.window ? `; window ${state.window.text} ${state.window.timezone} ${state.window.open ? 'open' : 'closed'}` : '';
  return `  protection  ${describeHealthState(state)}${window}`;
}

/** "paused (window)", "paused (critical: …)": a paused run shows why, when tranche paused it. */
async function withPauseReasons<T extends { runId: number; status: RunStatus }>(db: Queryable, reports: T[]): Promise<T[]> {
  const paused = reports.filter((r) => r.status === 'paused').map((r) => r.runId);
  if (paused.length === 0) return reports;
  const { rows } = await db.query<{ id: number; pause_reason: string | null }>(
    'SELECT id, pause_reason FROM migration_runs WHERE id = ANY ($1::bigint[])',
    [paused],
  );
  const reasons = new Map(rows.map((r) => [r.id, r.pause_reason]));
  return reports.map((r) => {
    const reason = reasons.get(r.runId);
    return reason ? { ...r, status: `paused (${reason})` as RunStatus } : r;
  });
}

/** Lag is a nicety here: Kafka being slow or down must not hold the status up. */
function lagOrNull(ctx: CommandContext): Promise<ConsumerLag | null> {
  return Promise.race([
    ctx.consumerLag().catch(() => null),
    new Promise<null>((resolve) => setTimeout(() => resolve(null), 3000).unref()),
  ]);
}

/**
 * The run's recent rate, ETA and time throttled, as the dashboard shows them (samples the
 * instances keep in Redis: src/runs/run-progress.ts). Null when Redis does not answer.
 */
function progressOrNull(ctx: CommandContext, report: RunStatusReport): Promise<RunProgress | null> {
  return Promise.race([
    (async () => readRunProgress(ctx.openCoordination().client, ctx.config.redisPrefix, report.runId, report.rows))().catch(() => null),
    new Promise<null>((resolve) => setTimeout(() => resolve(null), 3000).unref()),
  ]);
}

function progressLine(progress: RunProgress | null): string {
  if (!progress) return '  recent rate unknown (Redis did not answer)';
  const rate = progress.rowsPerSecond === null ? 'recent rate not sampled yet' : `recent rate ${fmt(Math.round(progress.rowsPerSecond))} rows/s`;
  const eta = progress.etaSeconds === null ? '' : `, ETA ${Math.round(progress.etaSeconds)} s`;
  return `  ${rate}${eta}, throttled for ${progress.throttledSeconds.toFixed(1)} s`;
}

function lagLine(lag: ConsumerLag | null): string {
  if (!lag) return '  consumer lag unknown (Kafka did not answer)';
  const busy = lag.partitions.filter((p) => p.lag > 0).map((p) => `p${p.partition}: ${fmt(p.lag)}`);
  return `  consumer lag ${fmt(lag.total)} records${busy.length > 0 ? ` (${busy.join(', ')})` : ''}`;
}

/** The run's stall record from Redis (StallWatch), or null; Redis down counts as none. */
async function stallOrNull(ctx: CommandContext, runId: number): Promise<StallReport | null> {
  const co = ctx.openCoordination();
  return Promise.race([
    (async () => {
      // Commands fail at once while the client is not connected yet (no offline queue).
      if (co.client.status !== 'ready') await new Promise((resolve) => co.client.once('ready', resolve));
      return co.getStalled(runId);
    })().catch(() => null),
    new Promise<null>((resolve) => setTimeout(() => resolve(null), 2000).unref()),
  ]);
}

function stallLine(stall: StallReport): string {
  return `  STALLED since ${stall.since}: every partition produced, ${fmt(stall.lag)} update records wait on the topic, no row applied (seen by ${stall.seenBy}); check the instances' /readyz and logs`;
}

function elapsedSeconds(report: RunStatusReport): number {
  const start = Date.parse(report.createdAt.replace(' ', 'T').replace(/\+00$/, 'Z'));
  const end = report.completedAt ? Date.parse(report.completedAt.replace(' ', 'T').replace(/\+00$/, 'Z')) : Date.now();
  return Math.max(0.001, (end - start) / 1000);
}

export async function statusCommand(
  ctx: CommandContext,
  runId: number | undefined,
  options: { json?: boolean; limit?: number; watch?: boolean },
): Promise<void> {
  const db = await ctx.openDb();
  if (runId === undefined) {
    const runs = await withPauseReasons(db.pool, await listRuns(db.pool, options.limit ?? 20));
    if (options.json) console.log(JSON.stringify(runs));
    else if (runs.length === 0) console.log('no runs yet; start one with: tranche identify');
    else console.log(runs.map(formatRun).join('\n'));
    return;
  }
  const found = await getRunStatus(db.pool, runId);
  if (!found) throw new UserError(`run ${runId} does not exist`);
  let [report] = (await withPauseReasons(db.pool, [found])) as [RunStatusReport];
  let partitions: PartitionView[] = await listPartitions(db, runId);
  const progress = await progressOrNull(ctx, report);
  if (options.json) {
    const lag = await lagOrNull(ctx);
    const protection = await protectionOrNull(ctx);
    const { samples: _samples, ...recent } = progress ?? { samples: [] };
    const stalled = ACTIVE.includes(found.status) ? await stallOrNull(ctx, runId) : null;
    console.log(JSON.stringify({ ...report, consumerLag: lag, progress: progress ? recent : null, protection: protection === 'unknown' ? null : protection, stalled, partitionList: partitions }));
    return;
  }
  // The recent rate (last minute of samples) when the instances sampled it, else the average.
  const recentRate = progress?.rowsPerSecond ?? null;
  const live = options.watch !== false && process.stdout.isTTY === true && ACTIVE.includes(found.status);
  if (!live) {
    console.log(renderRunDetail(report, partitions, { rate: recentRate ?? report.rows.applied / elapsedSeconds(report), bars: process.stdout.isTTY === true }));
    if (ACTIVE.includes(found.status)) {
      console.log(`${progressLine(progress)}\n${lagLine(await lagOrNull(ctx))}\n${protectionLine(await protectionOrNull(ctx))}`);
      const stall = await stallOrNull(ctx, runId);
      if (stall) console.log(stallLine(stall));
    }
    return;
  }
  let previous = { at: Date.now(), applied: report.rows.applied };
  let rate = recentRate ?? report.rows.applied / elapsedSeconds(report);
  for (;;) {
    process.stdout.write(`\x1b[H\x1b[2J${renderRunDetail(report, partitions, { rate, maxPartitions: Math.max(5, (process.stdout.rows ?? 40) - 16) })}\n`);
    if (!ACTIVE.includes(report.status.split(' ')[0] ?? '')) return;
    process.stdout.write(`${protectionLine(await protectionOrNull(ctx))}\n`);
    await new Promise((r) => setTimeout(r, 1000));
    const next = (await withPauseReasons(db.pool, [await getRunStatus(db.pool, runId)].filter((r) => r !== null)))[0];
    if (!next) return;
    const now = Date.now();
    const instant = (next.rows.applied - previous.applied) / ((now - previous.at) / 1000);
    rate = 0.7 * rate + 0.3 * instant; // smoothed
    previous = { at: now, applied: next.rows.applied };
    report = next;
    partitions = await listPartitions(db, runId);
  }
}

export async function partitionsCommand(ctx: CommandContext, runId: number, options: { state?: PartitionState; json?: boolean }): Promise<void> {
  const db = await ctx.openDb();
  if (!(await getRunStatus(db.pool, runId))) throw new UserError(`run ${runId} does not exist`);
  const partitions = await listPartitions(db, runId, { state: options.state });
  if (options.json) {
    console.log(JSON.stringify(partitions));
    return;
  }
  if (partitions.length === 0) {
    console.log(`run ${runId} has no ${options.state ? `${options.state} ` : ''}partitions`);
    return;
  }
  console.log('id          group / #                        state      rows applied / total   attempts  last error');
  for (const p of partitions) {
    console.log(
      `${String(p.id).padEnd(11)} ${`${JSON.stringify(p.groupKey).slice(0, 28)} #${p.seq}`.padEnd(32)} ${p.state.padEnd(10)} ` +
        `${`${fmt(p.rows.applied)} / ${fmt(p.rows.total)}`.padEnd(22)} ${String(p.attempts).padEnd(9)} ${p.lastError ?? ''}`,
    );
  }
}
