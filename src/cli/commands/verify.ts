/**
 * `tranche verify RUN [--json] [--repair]`: prove a run against the database, per partition.
 * Exit 0 when every partition holds, 1 naming those that do not; with --repair, the
 * partitions that still have eligible rows are rerun through the ordinary tasks.
 */
import { repairRun, type RunVerification, verifyRun } from '../../verify/verify.ts';
import type { CommandContext } from '../context.ts';
import { fmt } from '../render.ts';

const cell = (n: number | null) => (n === null ? '-' : fmt(n));

export function renderVerification(v: RunVerification): string {
  const lines = [`run ${v.runId} (${v.migration}, ${v.status}${v.undoOf !== null ? `, undoes run ${v.undoOf}` : ''}): ${v.verdict}`];
  if (!v.reachedChecked) {
    lines.push(
      v.undoOf !== null
        ? '  an undo run: "eligible" counts the undone run\'s rows still to move back; no reached/beyond'
        : `  ${v.migration} has no verify in its definition: only the eligible check, counts and checksums`,
    );
  }
  lines.push(`  ${'partition'.padEnd(10)} ${'group #'.padEnd(22)} ${'cut'.padStart(8)} ${'present'.padStart(8)} ${'eligible'.padStart(8)} ${'reached'.padStart(8)} ${'beyond'.padStart(7)}  verdict`);
  for (const p of v.partitions) {
    const group = `${JSON.stringify(p.groupKey).slice(0, 18)} #${p.seq}`;
    lines.push(
      `  ${String(p.partitionId).padEnd(10)} ${group.padEnd(22)} ${fmt(p.cut).padStart(8)} ${fmt(p.present).padStart(8)} ${fmt(p.eligible).padStart(8)} ` +
        `${cell(p.reached).padStart(8)} ${cell(p.beyond).padStart(7)}  ${p.holds ? 'holds' : p.problems.join(', ')}`,
    );
  }
  return lines.join('\n');
}

export async function verifyCommand(ctx: CommandContext, runId: number, options: { json?: boolean; repair?: boolean }): Promise<number> {
  const db = await ctx.openDb();
  const definitions = await ctx.openDefinitions(db);
  if (options.repair) {
    const { before, rerun } = await repairRun(db, () => ctx.openCoordination(), definitions, runId);
    if (options.json) console.log(JSON.stringify({ ...before, repaired: rerun }));
    else {
      console.log(renderVerification(before));
      console.log(rerun.length === 0 ? 'nothing to repair: no partition has eligible rows' : `repair: rerunning partition${rerun.length > 1 ? 's' : ''} ${rerun.join(', ')} through the ordinary tasks; verify again once run ${runId} completes`);
    }
    return before.holds ? 0 : 1;
  }
  const result = await verifyRun(db.pool, definitions, runId);
  console.log(options.json ? JSON.stringify(result) : renderVerification(result));
  return result.holds ? 0 : 1;
}
