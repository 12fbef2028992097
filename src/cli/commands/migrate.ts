/** `tranche migrate`: apply pending schema migrations. */
import { migrateToLatest } from '../../migrate.ts';
import type { CommandContext } from '../context.ts';

export async function migrateCommand(ctx: CommandContext): Promise<void> {
  const db = await ctx.openDb({ migrate: false });
  const applied = await migrateToLatest(db);
  console.log(applied.length === 0 ? `schema "${db.schema}" is up to date` : `applied: ${applied.join(', ')}`);
}
