/** Starting a run in a test, the way `tranche identify` does. */
import type { Coordination } from '../../src/coordination/redis.ts';
import { startManualRun } from '../../src/identification/identify.ts';
import { FIXTURE_MIGRATION } from '../../src/seed.ts';
import { quietLog, type TestEnv, testDefinitions } from './env.ts';

export async function startTestRun(
  env: TestEnv,
  partitionSize: number,
  options: { coordination?: Coordination | null; groupFilter?: string[]; maxPartitions?: number; migration?: string } = {},
): Promise<number> {
  const run = await startManualRun(
    { db: env.db, coordination: options.coordination ?? null, log: quietLog, instanceId: 'test', leaseMs: 10_000, definitions: await testDefinitions(env) },
    { migration: options.migration ?? FIXTURE_MIGRATION, partitionSize, maxPartitions: options.maxPartitions ?? 1000, groupFilter: options.groupFilter },
  );
  return run.runId;
}

/** The run's uid: what its completion event is keyed and identified by. */
export async function runUid(env: Pick<TestEnv, 'db'>, runId: number): Promise<string> {
  const { rows } = await env.db.pool.query<{ uid: string }>('SELECT uid FROM migration_runs WHERE id = $1', [runId]);
  return rows[0]!.uid;
}
