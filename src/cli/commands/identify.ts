/** `tranche identify`: start a run of a definition now and identify its partitions in this process. */
import type { Queryable } from '../../db.ts';
import type { ResolvedDefinition } from '../../definitions/resolve.ts';
import { computeBoundaries, identifyDepsFrom, type PartitionBounds, startManualRun } from '../../identification/identify.ts';
import { missingIndex } from '../../runs/run-store.ts';
import { UserError } from '../../errors.ts';
import { resumeRun } from '../../runs/run-control.ts';
import type { CommandContext } from '../context.ts';

export interface IdentifyOptions {
  migration?: string;
  partitionSize?: number;
  maxPartitions?: number;
  group?: string[];
  force?: boolean;
  allowSlow?: boolean;
  dryRun?: boolean;
  json?: boolean;
  /** The run works at any time, whatever WINDOW says. */
  ignoreWindow?: boolean;
}

/** The definition a command names with --migration, or the only one loaded. */
export function pickDefinition(definitions: { require(name: string): ResolvedDefinition; only(): ResolvedDefinition }, name?: string): ResolvedDefinition {
  return name === undefined ? definitions.only() : definitions.require(name);
}

interface Sample {
  key: string;
  before: (string | null)[];
  after: (string | null)[];
}

/**
 * What a dry run would change, computed and not written (plain SELECTs): per partition, the
 * rows its `guard` lets the apply change; for the group, a few rows before and after `set`.
 */
async function effectOf(db: Queryable, definition: ResolvedDefinition, group: string, target: string | null, bounds: PartitionBounds[]) {
  const { rows: counts } = await db.query<{ i: number; n: string }>(definition.statements.effectCounts, [
    group,
    target,
    bounds.map((b) => b.lower[0]),
    bounds.map((b) => b.lower[1]),
    bounds.map((b) => b.upper[0]),
    bounds.map((b) => b.upper[1]),
  ]);
  const { rows: sample } = await db.query<{ k: string; before: (string | null)[]; after: (string | null)[] }>(definition.statements.effectSample, [group, target, DRY_RUN_SAMPLE]);
  return {
    partitions: bounds.map((b, i) => ({ ...b, wouldChange: Number(counts[i]?.n ?? 0) })),
    sample: sample.map((r) => ({ key: r.k, before: r.before, after: r.after })),
  };
}

/** Rows of each group a dry run shows before and after. */
const DRY_RUN_SAMPLE = 3;

export async function identifyCommand(ctx: CommandContext, options: IdentifyOptions): Promise<void> {
  const { config } = ctx;
  const db = await ctx.openDb();
  const definitions = await ctx.openDefinitions(db);
  const definition = pickDefinition(definitions, options.migration);
  const partitionSize = options.partitionSize ?? definition.definition.defaults?.partitionSize ?? config.partitionSize;
  const maxPartitions = options.maxPartitions ?? definition.definition.defaults?.maxPartitions ?? config.maxPartitions;
  const filter = options.group && options.group.length > 0 ? options.group : null;
  if (filter && !definition.group) throw new UserError(`${definition.name} has no groups; --group does not apply`);
  if (options.dryRun) {
    if (filter) {
      const { rows } = await db.pool.query<{ k: string }>(definition.statements.existingGroups, [filter]);
      const unknown = filter.filter((k) => !rows.some((r) => r.k === k));
      if (unknown.length > 0) throw new UserError(`unknown group${unknown.length > 1 ? 's' : ''} of ${definition.name}: ${unknown.map((k) => JSON.stringify(k)).join(', ')}`);
    }
    const groups = await db.pool.query<{ group_key: string; target: string | null }>(definition.statements.changedGroups, [filter, null, definition.name]);
    const plan: { group: string; target: string | null; partitions: (PartitionBounds & { wouldChange: number })[]; sample: Sample[] }[] = [];
    for (const g of groups.rows) {
      const bounds = await computeBoundaries(db.pool, definition, { key: g.group_key, target: g.target }, partitionSize, maxPartitions);
      plan.push({ group: g.group_key, target: g.target, ...(await effectOf(db.pool, definition, g.group_key, g.target, bounds)) });
    }
    const index = await missingIndex(db.pool, definition);
    const { statements } = definition;
    if (options.json) {
      console.log(JSON.stringify({ dryRun: true, migration: definition.name, partitionSize, groups: plan, missingIndex: index, sql: { page: statements.nextPage, apply: statements.apply } }));
      return;
    }
    console.log(`dry run of ${definition.name}: nothing written (partition size ${partitionSize})`);
    for (const p of plan) {
      const rows = p.partitions.reduce((s, b) => s + b.rowCount, 0);
      const label = definition.group ? `${JSON.stringify(p.group)} -> target ${p.target}` : definition.table.display;
      console.log(`${label}: ${p.partitions.length} partitions, ${rows} rows`);
      for (const b of p.partitions) console.log(`  #${b.seq}  (${b.lower.join(', ')}) .. (${b.upper.join(', ')})  ${b.rowCount} rows, ${b.wouldChange} would change`);
      const columns = Object.keys(definition.definition.set);
      for (const row of p.sample) {
        const change = columns.map((c, i) => `${c} ${JSON.stringify(row.before[i])} -> ${JSON.stringify(row.after[i])}`).join(', ');
        console.log(`  e.g. ${definition.key.name} ${row.key}: ${change}`);
      }
    }
    if (plan.length === 0) console.log('no eligible rows');
    if (index) console.log(`\nthe index the walk needs is missing; identify will refuse until it exists:\n  ${index};`);
    console.log(`\neach page reads:\n${statements.nextPage}\n\neach batch of records is applied with:\n${statements.apply}`);
    return;
  }
  const co = ctx.openCoordination();
  const run = await startManualRun(identifyDepsFrom(config, db, co, ctx.log, definitions), {
    migration: definition.name,
    partitionSize,
    maxPartitions,
    groupFilter: filter,
    force: options.force,
    allowSlow: options.allowSlow,
  });
  if (options.ignoreWindow) {
    await db.pool.query('UPDATE migration_runs SET ignore_window = true WHERE id = $1', [run.runId]);
    // A monitor may have paused it for the window between its creation and the line above.
    const { rows } = await db.pool.query("SELECT 1 FROM migration_runs WHERE id = $1 AND status = 'paused' AND pause_reason = 'window'", [run.runId]);
    if (rows.length > 0) await resumeRun(db, co, run.runId);
  }
  if (options.json) {
    console.log(JSON.stringify({ runId: run.runId, migration: definition.name, groups: run.groups.length, partitions: run.partitions, rows: run.rows }));
  } else {
    console.log(`run ${run.runId} of ${definition.name}: ${run.groups.length} groups, ${run.partitions} partitions, ${run.rows} rows to migrate`);
    console.log(`follow it with: tranche status ${run.runId}`);
  }
}
