/** `tranche undo RUN`: start the run that moves back the rows RUN changed (undoing an undo is a redo). */
import { startUndoRun } from '../../undo/undo.ts';
import type { CommandContext } from '../context.ts';

export async function undoCommand(ctx: CommandContext, runId: number, options: { json?: boolean }): Promise<void> {
  const db = await ctx.openDb();
  const definitions = await ctx.openDefinitions(db);
  const undo = await startUndoRun(db, () => ctx.openCoordination(), definitions, runId);
  if (options.json) {
    console.log(JSON.stringify(undo));
    return;
  }
  console.log(
    `run ${undo.runId} of ${undo.migration} undoes run ${undo.undoOf}: ${undo.partitions} partitions, ${undo.rows} rows to move back, ` +
      `${undo.skipped} left alone (changed since by someone else)`,
  );
  console.log(`follow it with: tranche status ${undo.runId}`);
}
