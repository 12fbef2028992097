/** `tranche definitions` and `tranche init`: what is loaded, and a starter definition to edit. */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { UserError } from '../../errors.ts';
import { missingIndex } from '../../runs/run-store.ts';
import type { CommandContext } from '../context.ts';

export async function definitionsCommand(ctx: CommandContext, options: { json?: boolean }): Promise<void> {
  const db = await ctx.openDb();
  const definitions = await ctx.openDefinitions(db);
  const views = [];
  for (const d of definitions.all) {
    const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM (${d.statements.changedGroups}) g`, [null, null, d.name]);
    views.push({
      name: d.name,
      table: d.table.display,
      key: `${d.key.name} (${d.key.type})`,
      partitionBy: `${d.position.name} (${d.position.type})`,
      group: d.group ? `${d.group.column.name} -> ${d.group.targets.display}.${d.group.target.name}` : null,
      sets: Object.keys(d.definition.set),
      carries: d.carried.map((c) => c.name),
      verify: d.definition.verify ? 'reached and beyond' : 'eligible check, counts and checksums only',
      undo: d.inverse ? `${d.inverse.name} (runs keep an applied log)` : null,
      schedule: d.definition.schedule === null ? 'manual only' : (d.definition.schedule ?? `${ctx.config.cronSchedule} (CRON_SCHEDULE)`),
      groupsWithWork: rows[0]?.n ?? 0,
      missingIndex: await missingIndex(db.pool, d),
    });
  }
  if (options.json) {
    console.log(JSON.stringify(views));
    return;
  }
  if (views.length === 0) {
    console.log('no definitions loaded: set TRANCHE_DEFINITIONS to your definition files (tranche init NAME writes a starter)');
    return;
  }
  for (const v of views) {
    console.log(`${v.name}`);
    console.log(`  table        ${v.table}, key ${v.key}, partitioned by ${v.partitionBy}`);
    console.log(`  groups       ${v.group ?? 'none (the whole table is one group)'}; ${v.groupsWithWork} with eligible rows now`);
    console.log(`  writes       ${v.sets.join(', ')}${v.carries.length > 0 ? `; records carry ${v.carries.join(', ')}` : ''}`);
    console.log(`  verify       ${v.verify}; undo ${v.undo ?? 'not declared'}`);
    console.log(`  schedule     ${v.schedule}`);
    console.log(`  index        ${v.missingIndex ? `MISSING: ${v.missingIndex}` : 'present'}`);
  }
}

const STARTER = (name: string) => `// A tranche migration definition: edit it, then point TRANCHE_DEFINITIONS at this file
// and check it with \`tranche definitions\` and \`tranche identify --migration ${name} --dry-run\`.
import { defineMigration } from 'tranche';

export default defineMigration({
  name: '${name}',
  // The table whose rows move (schema-qualified if it is not on the search_path) and its
  // unique, non-null key (bigint, integer, uuid or text).
  table: 'orders',
  key: 'id',
  // The column the work is cut into partitions and pages on; the key breaks ties.
  // Needs an index on (partitionBy, key), or (group column, partitionBy, key) with a group.
  partitionBy: 'created_at',
  // Optional: group rows by a column whose target comes from another table; then
  // {target} in the SQL below is the group's target.
  // group: { column: 'product_key', targets: { table: 'products', key: 'product_key', target: 'version' } },
  // The rows that still need the change (SQL over the row's columns; the table is aliased t).
  eligible: 'total_cents IS NULL',
  // What each update record carries from the row: {carried.COLUMN} in set or guard.
  carry: [],
  // The change, applied to a batch of rows in one UPDATE.
  set: { total_cents: '(SELECT coalesce(sum(l.cents), 0) FROM order_lines l WHERE l.order_id = t.id)' },
  // What makes applying a record twice harmless (default: eligible).
  // guard: 'total_cents IS NULL',
  // Cron expression of the nightly run; null for manual runs only; omit for CRON_SCHEDULE.
  schedule: null,
  defaults: { partitionSize: 10000 },
});
`;

export async function initCommand(name: string, options: { file?: string }): Promise<void> {
  if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(name)) throw new UserError(`NAME must be 1-63 of a-z, 0-9, ".", "_" or "-" (got ${JSON.stringify(name)})`);
  const file = resolve(options.file ?? `migrations/tranche/${name}.ts`);
  if (existsSync(file)) throw new UserError(`${file} exists; not overwriting it`);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, STARTER(name), { flag: 'wx' });
  console.log(`wrote ${file}\nnext: TRANCHE_DEFINITIONS=${options.file ?? `./migrations/tranche/*.ts`} npx tranche definitions`);
}
