/**
 * Identification, the singleton phase: for each group of a run, cut its eligible rows into
 * partitions with one query, then write the partitions and one task per partition in one
 * transaction. The run row carries a lease (database clock); every
 * group's transaction checks it, so an instance that lost the lease writes nothing, and
 * one that takes over simply goes on with the groups not yet identified.
 *
 * @example
 *   const result = await identifyRun(deps, runId);  // { partitions: 40, rows: 400000 }
 */
import type { Config } from '../config.ts';
import type { Coordination } from '../coordination/redis.ts';
import { type Db, inTransaction, type Queryable } from '../db.ts';
import type { Definitions } from '../definitions/load.ts';
import type { ResolvedDefinition } from '../definitions/resolve.ts';
import { FencedError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { type CreatedRun, createRun, tryCompleteRun } from '../runs/run-store.ts';
import { partitionTask, scheduleTasks } from '../tasks/task-store.ts';

/** One partition: its inclusive bounds as (position, key) text, and its row count. */
export interface PartitionBounds {
  seq: number;
  lower: [pos: string, key: string];
  upper: [pos: string, key: string];
  rowCount: number;
}

export interface IdentifyDeps {
  db: Db;
  coordination: Coordination | null;
  log: Logger;
  instanceId: string;
  leaseMs: number;
  definitions: Definitions;
  /** Groups identified at once (IDENTIFY_CONCURRENCY; default 2). */
  concurrency?: number;
}

/**
 * The partitions of one group's eligible rows, in ONE statement: a single pass over the
 * definition's index (migrations/0003's tranche_boundaries). When the cap would leave an
 * oversized last partition, the size grows so that the partitions stay even: the total is
 * known from the first pass, and the second pass uses ceil(total / cap).
 */
export async function computeBoundaries(
  db: Queryable,
  definition: ResolvedDefinition,
  group: { key: string; target: string | null },
  partitionSize: number,
  maxPartitions: number,
): Promise<PartitionBounds[]> {
  const { boundaryRows, boundaryLast } = definition.statements;
  const run = async (size: number) => {
    const { rows } = await db.query<{ seq: number; lower_pos: string; lower_key: string; upper_pos: string; upper_key: string; row_count: number }>(
      'SELECT * FROM tranche_boundaries($1, $2, $3, $4, $5, $6) ORDER BY seq',
      [boundaryRows, boundaryLast, group.key, group.target, size, maxPartitions],
    );
    return rows.map((r) => ({ seq: r.seq, lower: [r.lower_pos, r.lower_key], upper: [r.upper_pos, r.upper_key], rowCount: r.row_count }) as PartitionBounds);
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

/** Identifies every group of the run not identified yet, then moves the run to running. */
export async function identifyRun(deps: IdentifyDeps, runId: number): Promise<{ partitions: number; rows: number }> {
  const { db, log: baseLog, instanceId, leaseMs } = deps;
  const log = baseLog.child({ runId });
  const run = await db.pool.query<{ partition_size: number; max_partitions: number; migration: string }>(
    'SELECT partition_size, max_partitions, migration FROM migration_runs WHERE id = $1',
    [runId],
  );
  const settings = run.rows[0];
  if (!settings) throw new Error(`run ${runId} does not exist`);
  const definition = deps.definitions.require(settings.migration);
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
    const pending = await db.pool.query<{ group_key: string; target: string | null }>(
      'SELECT group_key, target FROM run_groups WHERE run_id = $1 AND NOT identified ORDER BY group_key',
      [runId],
    );
    const identifyGroup = async (group: { group_key: string; target: string | null }) => {
      const started = performance.now();
      const bounds = await computeBoundaries(db.pool, definition, { key: group.group_key, target: group.target }, settings.partition_size, settings.max_partitions);
      const groupRows = bounds.reduce((sum, b) => sum + b.rowCount, 0);
      await inTransaction(db.pool, async (tx) => {
        const lease = await tx.query(
          `SELECT 1 FROM migration_runs WHERE id = $1 AND status = 'identifying' AND identify_owner = $2 FOR UPDATE`,
          [runId, instanceId],
        );
        if (lease.rowCount !== 1) throw new FencedError(`lost the identification lease of run ${runId}`);
        const inserted = await tx.query<{ id: number }>(
          `INSERT INTO partitions (run_id, group_key, target, seq, lower_pos, lower_key, upper_pos, upper_key, row_count)
           SELECT $1, $2, $3, b.seq, b.lp, b.lk, b.up, b.uk, b.n
           FROM unnest($4::integer[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[])
             AS b(seq, lp, lk, up, uk, n)
           ON CONFLICT (run_id, group_key, seq) DO NOTHING
           RETURNING id`,
          [
            runId,
            group.group_key,
            group.target,
            bounds.map((b) => b.seq),
            bounds.map((b) => b.lower[0]),
            bounds.map((b) => b.lower[1]),
            bounds.map((b) => b.upper[0]),
            bounds.map((b) => b.upper[1]),
            bounds.map((b) => b.rowCount),
          ],
        );
        await scheduleTasks(
          tx,
          inserted.rows.map((r) => partitionTask(runId, r.id)),
        );
        await tx.query(
          `UPDATE run_groups SET identified = true, partitions = $3, rows_total = $4
           WHERE run_id = $1 AND group_key = $2`,
          [runId, group.group_key, bounds.length, groupRows],
        );
        await renewLease(tx, runId, instanceId, leaseMs);
      });
      partitions += bounds.length;
      rows += groupRows;
      await deps.coordination?.addOutstanding(runId, groupRows).catch(() => null);
      await deps.coordination?.wake();
      log.info(
        { group: group.group_key, partitions: bounds.length, rows: groupRows, ms: Math.round(performance.now() - started) },
        'group identified',
      );
    };
    // Groups are independent: a few at a time keep both Postgres cores busy (the boundary
    // query of one group runs while another's partitions are written). Each group's
    // transaction still takes the run row's lease lock, so the writes stay fenced.
    const queue = [...pending.rows];
    let failure: unknown;
    const worker = async () => {
      while (failure === undefined) {
        if (leaseLost) failure = new FencedError(`lost the identification lease of run ${runId}`);
        const group = queue.shift();
        if (failure !== undefined || !group) return;
        try {
          await identifyGroup(group);
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
  await tryCompleteRun(db, deps.definitions, runId);
  return { partitions, rows };
}

/** The identification dependencies of an instance, from its configuration. */
export function identifyDepsFrom(
  config: Pick<Config, 'instanceId' | 'identifyLeaseMs' | 'identifyConcurrency'>,
  db: Db,
  coordination: Coordination | null,
  log: Logger,
  definitions: Definitions,
): IdentifyDeps {
  return { db, coordination, log, definitions, instanceId: config.instanceId, leaseMs: config.identifyLeaseMs, concurrency: config.identifyConcurrency };
}

/**
 * Starts a run of a definition now and identifies it in this process, holding the lease:
 * what `tranche identify` does (and the demo, the benchmarks and the chaos run).
 *
 * @example
 *   const run = await startManualRun(deps, { migration: 'order-totals', partitionSize: 10000, maxPartitions: 1000 });
 *   // { runId: 7, groups: [...], partitions: 40, rows: 400000 }
 */
export async function startManualRun(
  deps: IdentifyDeps,
  options: { migration: string; partitionSize: number; maxPartitions: number; groupFilter?: string[] | null; force?: boolean; allowSlow?: boolean },
): Promise<CreatedRun & { partitions: number; rows: number }> {
  const definition = deps.definitions.require(options.migration);
  const run = await createRun(deps.db, definition, {
    trigger: 'manual',
    partitionSize: options.partitionSize,
    maxPartitions: options.maxPartitions,
    groupFilter: options.groupFilter ?? null,
    force: options.force,
    allowSlow: options.allowSlow,
    instanceId: deps.instanceId,
    leaseMs: deps.leaseMs,
  });
  return { ...run, ...(await identifyRun(deps, run.runId)) };
}
