/** Starting a run in a test, the way `tranche identify` does. */
import type { Coordination } from '../../src/coordination/redis.ts';
import { startManualRun } from '../../src/identification/identify.ts';
import { quietLog, type TestEnv } from './env.ts';

export async function startTestRun(
  env: TestEnv,
  partitionSize: number,
  options: { coordination?: Coordination | null; productFilter?: string[]; maxPartitions?: number } = {},
): Promise<number> {
  const run = await startManualRun(
    { db: env.db, coordination: options.coordination ?? null, log: quietLog, instanceId: 'test', leaseMs: 10_000 },
    { partitionSize, maxPartitions: options.maxPartitions ?? 1000, productFilter: options.productFilter },
  );
  return run.runId;
}
