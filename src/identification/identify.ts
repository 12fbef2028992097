/**
 * Identification, the singleton phase: for each product of a run, cut its eligible
 * subscriptions into partitions with one query, then write the partitions and one task per
 * partition in one transaction. The run row carries a lease (database clock); every
 * product's transaction checks it, so an instance that lost the lease writes nothing, and
 * one that takes over simply goes on with the products not yet identified.
 *
 * @example
 *   const result = await identifyRun(deps, runId);  // { partitions: 40, rows: 400000 }
 */
import type { QueryResultRow } from 'pg';
import type { Config } from '../config.ts';
import type { Coordination } from '../coordination/redis.ts';
import { type Db, inTransaction, type Queryable } from '../db.ts';
import { FencedError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { type CreatedRun, createRun, SUBSCRIPTION_MIGRATION, tryCompleteRun } from '../runs/run-store.ts';
import { loadSql } from '../sql.ts';
import { partitionTask, scheduleTasks } from '../tasks/task-store.ts';

export interface PartitionBounds {
  seq: number;
  minCreatedDate: string;
  minId: number;
  maxCreatedDate: string;
  maxId: number;
  rowCount: number;
}

/** A row of a boundary statement (seq, min/max bounds, row_count) as {@link PartitionBounds}. */
export function toBounds(r: QueryResultRow): PartitionBounds {
  return {
    seq: r.seq,
    minCreatedDate: r.min_created_date,
    minId: r.min_id,
    maxCreatedDate: r.max_created_date,
    maxId: r.max_id,
    rowCount: r.row_count,
  };
}

export interface IdentifyDeps {
  db: Db;
  coordination: Coordination | null;
  log: Logger;
  instanceId: string;
  leaseMs: number;
  /** Products identified at once (IDENTIFY_CONCURRENCY; default 2). */
  concurrency?: number;
}

/**
 * The partitions of one product's eligible rows (product_version < targetVersion).
 * When the cap would leave an oversized last partition, the size grows so that the
 * partitions stay even: the total is known from the first pass, and the second pass
 * uses ceil(total / cap).
 */
export async function computeBoundaries(
  db: Queryable,
  productKey: string,
  targetVersion: number,
  partitionSize: number,
  maxPartitions: number,
  /** The statement in `sql/`: the single-pass default, or the recursive walk (benchmarks, tests). */
  statement: 'partition-boundaries' | 'partition-boundaries-walk' = 'partition-boundaries',
): Promise<PartitionBounds[]> {
  const run = async (size: number) => {
    const { rows } = await db.query(loadSql(statement), [productKey, targetVersion, size, maxPartitions]);
    return rows.map(toBounds);
  };
  const first = await run(partitionSize);
  const last = first[first.length - 1];
  if (first.length === maxPartitions && last && last.rowCount > partitionSize * 1.1) {
    const total = first.reduce((sum, p) => sum + p.rowCount, 0);
    return run(Math.ceil(total / maxPartitions));
  }
  return first;
}

async function renewLease(db: Queryable, runId: number, instanceId: string, leaseMs: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE migration_runs SET identify_lease_until = now() + make_interval(secs => $3::integer / 1000.0)
     WHERE id = $1 AND status = 'identifying' AND identify_owner = $2`,
    [runId, instanceId, leaseMs],
  );
  return rowCount === 1;
}

/**
 * Takes over the identification of a run whose owner's lease expired.
 * Returns the run ids this instance now owns.
 */
export async function takeOverExpiredIdentifications(db: Queryable, instanceId: string, leaseMs: number): Promise<number[]> {
  const { rows } = await db.query<{ id: number }>(
    `UPDATE migration_runs
     SET identify_owner = $1, identify_lease_until = now() + make_interval(secs => $2::integer / 1000.0)
     WHERE status = 'identifying' AND identify_lease_until < now()
     RETURNING id`,
    [instanceId, leaseMs],
  );
  return rows.map((r) => r.id);
}

/** Identifies every product of the run not identified yet, then moves the run to running. */
export async function identifyRun(deps: IdentifyDeps, runId: number): Promise<{ partitions: number; rows: number }> {
  const { db, log: baseLog, instanceId, leaseMs } = deps;
  const log = baseLog.child({ runId });
  const run = await db.pool.query<{ partition_size: number; max_partitions: number }>(
    'SELECT partition_size, max_partitions FROM migration_runs WHERE id = $1',
    [runId],
  );
  const settings = run.rows[0];
  if (!settings) throw new Error(`run ${runId} does not exist`);
  await deps.coordination?.initOutstanding(runId, 0).catch(() => false);

  let leaseLost = false;
  const renewal = setInterval(
    () => {
      renewLease(db.pool, runId, instanceId, leaseMs)
        .then((ok) => {
          if (!ok) leaseLost = true;
        })
        .catch(() => {});
    },
    Math.max(200, Math.floor(leaseMs / 3)),
  );
  let partitions = 0;
  let rows = 0;
  try {
    const pending = await db.pool.query<{ product_key: string; product_version: number }>(
      'SELECT product_key, product_version FROM run_products WHERE run_id = $1 AND NOT identified ORDER BY product_key',
      [runId],
    );
    const identifyProduct = async (product: { product_key: string; product_version: number }) => {
      const started = performance.now();
      const bounds = await computeBoundaries(db.pool, product.product_key, product.product_version, settings.partition_size, settings.max_partitions);
      const productRows = bounds.reduce((sum, b) => sum + b.rowCount, 0);
      await inTransaction(db.pool, async (tx) => {
        const lease = await tx.query(
          `SELECT 1 FROM migration_runs WHERE id = $1 AND status = 'identifying' AND identify_owner = $2 FOR UPDATE`,
          [runId, instanceId],
        );
        if (lease.rowCount !== 1) throw new FencedError(`lost the identification lease of run ${runId}`);
        const inserted = await tx.query<{ id: number }>(
          `INSERT INTO partitions (run_id, product_key, product_version, seq, min_created_date, min_id,
                                   max_created_date, max_id, row_count)
           SELECT $1, $2, $3, b.seq, b.min_d, b.min_i, b.max_d, b.max_i, b.n
           FROM unnest($4::integer[], $5::timestamptz[], $6::bigint[], $7::timestamptz[], $8::bigint[], $9::bigint[])
             AS b(seq, min_d, min_i, max_d, max_i, n)
           ON CONFLICT (run_id, product_key, seq) DO NOTHING
           RETURNING id`,
          [
            runId,
            product.product_key,
            product.product_version,
            bounds.map((b) => b.seq),
            bounds.map((b) => b.minCreatedDate),
            bounds.map((b) => b.minId),
            bounds.map((b) => b.maxCreatedDate),
            bounds.map((b) => b.maxId),
            bounds.map((b) => b.rowCount),
          ],
        );
        await scheduleTasks(
          tx,
          inserted.rows.map((r) => partitionTask(runId, r.id)),
        );
        await tx.query(
          `UPDATE run_products SET identified = true, partitions = $3, rows_total = $4
           WHERE run_id = $1 AND product_key = $2`,
          [runId, product.product_key, bounds.length, productRows],
        );
        await renewLease(tx, runId, instanceId, leaseMs);
      });
      partitions += bounds.length;
      rows += productRows;
      await deps.coordination?.addOutstanding(runId, productRows).catch(() => null);
      await deps.coordination?.wake();
      log.info(
        { product: product.product_key, partitions: bounds.length, rows: productRows, ms: Math.round(performance.now() - started) },
        'product identified',
      );
    };
    // Products are independent: a few at a time keep both Postgres cores busy (the boundary
    // query of one product runs while another's partitions are written). Each product's
    // transaction still takes the run row's lease lock, so the writes stay fenced.
    const queue = [...pending.rows];
    let failure: unknown;
    const worker = async () => {
      while (failure === undefined) {
        if (leaseLost) failure = new FencedError(`lost the identification lease of run ${runId}`);
        const product = queue.shift();
        if (failure !== undefined || !product) return;
        try {
          await identifyProduct(product);
        } catch (error) {
          failure ??= error;
        }
      }
    };
    const workers = Math.max(1, Math.min(deps.concurrency ?? 2, queue.length));
    await Promise.all(Array.from({ length: workers }, worker));
    if (failure !== undefined) throw failure;
    const finished = await db.pool.query(
      `UPDATE migration_runs r
       SET status = 'running', identified_at = now(), identify_lease_until = NULL
       WHERE r.id = $1 AND r.status = 'identifying' AND r.identify_owner = $2`,
      [runId, instanceId],
    );
    if (finished.rowCount !== 1) throw new FencedError(`lost the identification lease of run ${runId}`);
  } finally {
    clearInterval(renewal);
  }
  log.info({ partitions, rows }, 'identification finished');
  // A run with nothing to do (or whose rows were all applied already) completes here.
  await tryCompleteRun(db, runId);
  return { partitions, rows };
}

/** The identification dependencies of an instance, from its configuration. */
export function identifyDepsFrom(
  config: Pick<Config, 'instanceId' | 'identifyLeaseMs' | 'identifyConcurrency'>,
  db: Db,
  coordination: Coordination | null,
  log: Logger,
): IdentifyDeps {
  return { db, coordination, log, instanceId: config.instanceId, leaseMs: config.identifyLeaseMs, concurrency: config.identifyConcurrency };
}

/**
 * Starts a run now and identifies it in this process, holding the lease: what
 * `tranche identify` does (and the demo, the benchmarks and the chaos run).
 *
 * @example
 *   const run = await startManualRun(deps, { partitionSize: 10000, maxPartitions: 1000 });
 *   // { runId: 7, products: [...], partitions: 40, rows: 400000 }
 */
export async function startManualRun(
  deps: IdentifyDeps,
  options: { partitionSize: number; maxPartitions: number; productFilter?: string[] | null; force?: boolean },
): Promise<CreatedRun & { partitions: number; rows: number }> {
  const run = await createRun(deps.db, {
    migration: SUBSCRIPTION_MIGRATION,
    trigger: 'manual',
    partitionSize: options.partitionSize,
    maxPartitions: options.maxPartitions,
    productFilter: options.productFilter ?? null,
    force: options.force,
    instanceId: deps.instanceId,
    leaseMs: deps.leaseMs,
  });
  return { ...run, ...(await identifyRun(deps, run.runId)) };
}
