/** `tranche seed`: generate products and subscriptions. */
import { seed } from '../../seed.ts';
import type { CommandContext } from '../context.ts';

export async function seedCommand(
  ctx: CommandContext,
  options: { subscriptions: number; products: number; changed: number; reset?: boolean; seed?: number; json?: boolean },
): Promise<void> {
  const db = await ctx.openDb();
  const started = performance.now();
  const result = await seed(db, { ...options, randomSeed: options.seed });
  const seconds = (performance.now() - started) / 1000;
  if (options.json) console.log(JSON.stringify({ ...result, seconds }));
  else {
    console.log(
      `seeded ${result.subscriptions.toLocaleString('en-US')} subscriptions over ${result.products} products in ${seconds.toFixed(1)} s; ` +
        `${result.changedProducts.length} products changed, ${result.eligible.toLocaleString('en-US')} subscriptions eligible`,
    );
  }
}
