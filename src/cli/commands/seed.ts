/** `tranche seed`: generate the demo's fixture (see src/seed.ts). */
import { describeSeed, seed } from '../../seed.ts';
import type { CommandContext } from '../context.ts';

export async function seedCommand(
  ctx: CommandContext,
  options: { rows: number; groups: number; changed: number; reset?: boolean; seed?: number; json?: boolean },
): Promise<void> {
  const db = await ctx.openDb();
  const started = performance.now();
  const result = await seed(db, { rows: options.rows, groups: options.groups, changed: options.changed, reset: options.reset, randomSeed: options.seed });
  const seconds = (performance.now() - started) / 1000;
  if (options.json) console.log(JSON.stringify({ ...result, seconds }));
  else console.log(describeSeed(result, seconds));
}
