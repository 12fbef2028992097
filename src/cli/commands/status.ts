/**
 * `tranche status [RUN]`: one run in detail (per product and partition: state, rows, rate,
 * ETA, attempts, last error), or the latest runs. On a terminal, a running run is shown live
 * until it ends (Ctrl-C to leave); otherwise, or with --no-watch, it prints once.
 * `tranche partitions RUN [--state S]` lists partitions.
 */
import { UserError } from '../../errors.ts';
import { listPartitions, type PartitionView } from '../../runs/partition-list.ts';
import { getRunStatus, listRuns, type RunStatusReport } from '../../runs/run-store.ts';
import type { PartitionState } from '../../schema.ts';
import type { ConsumerLag } from '../../consumer/lag.ts';
import type { StallReport } from '../../coordination/redis.ts';
import type { CommandContext } from '../context.ts';
import { fmt, progressBar, renderRunDetail } from '../render.ts';

export function formatRun(r: RunStatusReport): string {
  const pct = r.rows.total > 0 ? ((100 * r.rows.applied) / r.rows.total).toFixed(1) : '100.0';
  return (
    `run ${String(r.runId).padEnd(6)} ${r.status.padEnd(11)} ${progressBar(r.rows.applied, r.rows.total, 16)} ` +
    `${fmt(r.rows.applied)} / ${fmt(r.rows.total)} rows (${pct}%), ${r.partitions.completed}/${r.partitions.total} partitions` +
    `${r.partitions.failed > 0 ? `, ${r.partitions.failed} failed` : ''}, ${r.deadLetters} dead letters, created ${r.createdAt}`
  );
}

const ACTIVE = ['identifying', 'running', 'paused'];

/** Lag is a nicety here: Kafka being slow or down must not hold the status up. */
function lagOrNull(ctx: CommandContext): Promise<ConsumerLag | null> {
  return Promise.race([
    ctx.consumerLag().catch(() => null),
    new Promise<null>((resolve) => setTimeout(() => resolve(null), 3000).unref()),
  ]);
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
    const runs = await listRuns(db.pool, options.limit ?? 20);
    if (options.json) console.log(JSON.stringify(runs));
    else if (runs.length === 0) console.log('no runs yet; start one with: tranche identify');
    else console.log(runs.map(formatRun).join('\n'));
    return;
  }
  let report = await getRunStatus(db.pool, runId);
  if (!report) throw new UserError(`run ${runId} does not exist`);
  let partitions: PartitionView[] = await listPartitions(db, runId);
  if (options.json) {
    const lag = await lagOrNull(ctx);
    const stalled = ACTIVE.includes(report.status) ? await stallOrNull(ctx, runId) : null;
    console.log(JSON.stringify({ ...report, consumerLag: lag, stalled, partitionList: partitions }));
    return;
  }
  const live = options.watch !== false && process.stdout.isTTY === true && ACTIVE.includes(report.status);
  if (!live) {
    console.log(renderRunDetail(report, partitions, { rate: report.rows.applied / elapsedSeconds(report), bars: process.stdout.isTTY === true }));
    if (ACTIVE.includes(report.status)) {
      console.log(lagLine(await lagOrNull(ctx)));
      const stall = await stallOrNull(ctx, runId);
      if (stall) console.log(stallLine(stall));
    }
    return;
  }
  let previous = { at: Date.now(), applied: report.rows.applied };
  let rate = report.rows.applied / elapsedSeconds(report);
  for (;;) {
    process.stdout.write(`\x1b[H\x1b[2J${renderRunDetail(report, partitions, { rate, maxPartitions: Math.max(5, (process.stdout.rows ?? 40) - 16) })}\n`);
    if (!ACTIVE.includes(report.status)) return;
    await new Promise((r) => setTimeout(r, 1000));
    const next = await getRunStatus(db.pool, runId);
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
  console.log('id          product / #                      state      rows applied / total   attempts  last error');
  for (const p of partitions) {
    console.log(
      `${String(p.id).padEnd(11)} ${`${JSON.stringify(p.productKey).slice(0, 28)} #${p.seq}`.padEnd(32)} ${p.state.padEnd(10)} ` +
        `${`${fmt(p.rows.applied)} / ${fmt(p.rows.total)}`.padEnd(22)} ${String(p.attempts).padEnd(9)} ${p.lastError ?? ''}`,
    );
  }
}
