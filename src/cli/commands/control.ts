/** `tranche pause|resume|cancel RUN` and `tranche rerun`. */
import { UserError } from '../../errors.ts';
import { cancelRun, pauseRun, rerunFailed, rerunPartition, resumeRun } from '../../runs/run-control.ts';
import type { CommandContext } from '../context.ts';

export async function runActionCommand(ctx: CommandContext, action: 'pause' | 'resume' | 'cancel', runId: number): Promise<void> {
  const db = await ctx.openDb();
  const co = ctx.openCoordination();
  const fn = { pause: pauseRun, resume: resumeRun, cancel: cancelRun }[action];
  await fn(db, co, runId);
  console.log(`run ${runId}: ${{ pause: 'paused', resume: 'resumed', cancel: 'cancelled' }[action]}`);
}

export async function rerunCommand(
  ctx: CommandContext,
  options: { partition?: number; run?: number; failed?: boolean; json?: boolean },
): Promise<void> {
  if ((options.partition === undefined) === (options.run === undefined)) {
    throw new UserError('rerun needs exactly one of --partition ID or --run ID --failed');
  }
  if (options.run !== undefined && !options.failed) throw new UserError('--run ID needs --failed (rerun every failed partition of the run)');
  const db = await ctx.openDb();
  const co = ctx.openCoordination();
  if (options.partition !== undefined) {
    const { runId } = await rerunPartition(db, co, options.partition);
    if (options.json) console.log(JSON.stringify({ runId, partitions: [options.partition] }));
    else console.log(`partition ${options.partition} of run ${runId} reset to its lower bound and scheduled`);
    return;
  }
  const ids = await rerunFailed(db, co, options.run!);
  if (options.json) console.log(JSON.stringify({ runId: options.run, partitions: ids }));
  else console.log(ids.length === 0 ? `run ${options.run} has no failed partition` : `run ${options.run}: rescheduled partitions ${ids.join(', ')}`);
}
