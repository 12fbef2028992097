/** `tranche identify`: start a run now and identify its partitions in this process. */
import { computeBoundaries, identifyDepsFrom, type PartitionBounds, startManualRun } from '../../identification/identify.ts';
import { resumeRun } from '../../runs/run-control.ts';
import { loadSql } from '../../sql.ts';
import type { CommandContext } from '../context.ts';

export interface IdentifyOptions {
  partitionSize?: number;
  maxPartitions?: number;
  product?: string[];
  force?: boolean;
  dryRun?: boolean;
  json?: boolean;
  /** The run works at any time, whatever WINDOW says. */
  ignoreWindow?: boolean;
}

export async function identifyCommand(ctx: CommandContext, options: IdentifyOptions): Promise<void> {
  const { config } = ctx;
  const partitionSize = options.partitionSize ?? config.partitionSize;
  const maxPartitions = options.maxPartitions ?? config.maxPartitionsPerProduct;
  const db = await ctx.openDb();
  if (options.dryRun) {
    const filter = options.product && options.product.length > 0 ? options.product : null;
    if (filter) {
      const { rows } = await db.pool.query<{ product_key: string }>('SELECT product_key FROM products WHERE product_key = ANY ($1::text[])', [filter]);
      const known = new Set(rows.map((r) => r.product_key));
      const unknown = filter.filter((k) => !known.has(k));
      if (unknown.length > 0) {
        const { UserError } = await import('../../errors.ts');
        throw new UserError(`unknown product${unknown.length > 1 ? 's' : ''}: ${unknown.map((k) => JSON.stringify(k)).join(', ')}`);
      }
    }
    const products = await db.pool.query<{ product_key: string; product_version: number }>(loadSql('changed-products'), [filter, null]);
    const plan: { productKey: string; productVersion: number; partitions: PartitionBounds[] }[] = [];
    for (const p of products.rows) {
      plan.push({
        productKey: p.product_key,
        productVersion: p.product_version,
        partitions: await computeBoundaries(db.pool, p.product_key, p.product_version, partitionSize, maxPartitions),
      });
    }
    if (options.json) {
      console.log(JSON.stringify({ dryRun: true, partitionSize, products: plan }));
      return;
    }
    console.log(`dry run: nothing written (partition size ${partitionSize})`);
    for (const p of plan) {
      const rows = p.partitions.reduce((s, b) => s + b.rowCount, 0);
      console.log(`${JSON.stringify(p.productKey)} -> version ${p.productVersion}: ${p.partitions.length} partitions, ${rows} rows`);
      for (const b of p.partitions) {
        console.log(`  #${b.seq}  (${b.minCreatedDate}, ${b.minId}) .. (${b.maxCreatedDate}, ${b.maxId})  ${b.rowCount} rows`);
      }
    }
    if (plan.length === 0) console.log('no product has eligible subscriptions');
    return;
  }
  const co = ctx.openCoordination();
  const run = await startManualRun(identifyDepsFrom(config, db, co, ctx.log), {
    partitionSize,
    maxPartitions,
    productFilter: options.product ?? null,
    force: options.force,
  });
  if (options.ignoreWindow) {
    await db.pool.query('UPDATE migration_runs SET ignore_window = true WHERE id = $1', [run.runId]);
    // A monitor may have paused it for the window between its creation and the line above.
    const { rows } = await db.pool.query("SELECT 1 FROM migration_runs WHERE id = $1 AND status = 'paused' AND pause_reason = 'window'", [run.runId]);
    if (rows.length > 0) await resumeRun(db, co, run.runId);
  }
  if (options.json) {
    console.log(JSON.stringify({ runId: run.runId, products: run.products.length, partitions: run.partitions, rows: run.rows }));
  } else {
    console.log(`run ${run.runId}: ${run.products.length} products, ${run.partitions} partitions, ${run.rows} rows to migrate`);
    console.log(`follow it with: tranche status ${run.runId}`);
  }
}
