/**
 * Delay from scheduling a one-time task to its claim, measured by the database
 * (`now() - execution_time` at the claim), with Redis wake-ups and with polling only, in the
 * same run, printed side by side. Prints figures; never fails on speed.
 *
 *   node bench/claim-delay.ts [--wake-samples 300] [--poll-samples 20] [--poll-interval 2000]
 *
 * One idle TaskExecutor (the one the service runs) claims each task as it is scheduled:
 *   - wake-ups: the executor is subscribed to Redis; the scheduler publishes a wake-up after
 *     committing the task, as identification and rerun do;
 *   - polling only: no subscription (Redis down), the executor finds the task at its next
 *     poll (POLL_INTERVAL_MS). Tasks are scheduled at random moments, so the delay samples the
 *     whole poll interval.
 *
 * It works in its own schema and Redis prefix and drops them at the end.
 */
import { randomBytes } from 'node:crypto';
import { wholeFlag } from '../src/cli/parse.ts';
import { loadConfig } from '../src/config.ts';
import { createCoordination } from '../src/coordination/redis.ts';
import { createDb } from '../src/db.ts';
import { silentLogger } from '../src/logger.ts';
import { migrateToLatest } from '../src/migrate.ts';
import { TaskExecutor } from '../src/tasks/executor.ts';
import { completeTask, scheduleTasks } from '../src/tasks/task-store.ts';
import { benchArgs } from './args.ts';

const args = benchArgs(import.meta.url, {
  'wake-samples': { type: 'string', default: '300' },
  'poll-samples': { type: 'string', default: '20' },
  'poll-interval': { type: 'string', default: '2000' },
});
const wakeSamples = wholeFlag('wake-samples', args['wake-samples'], 1);
const pollSamples = wholeFlag('poll-samples', args['poll-samples'], 0);
const pollIntervalMs = wholeFlag('poll-interval', args['poll-interval'], 1);

const id = randomBytes(4).toString('hex');
const config = loadConfig({ ...process.env, DB_SCHEMA: `bench_claim_${id}`, REDIS_PREFIX: `bench-claim-${id}`, LOG_LEVEL: 'silent' });
const log = silentLogger();
const db = createDb({ ...config, dbPoolSize: 5 });
await migrateToLatest(db);
const co = createCoordination({ redisUrl: config.redisUrl, prefix: config.redisPrefix }, log);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function measure(mode: 'wake' | 'poll', samples: number): Promise<number[]> {
  const delays: number[] = [];
  let claimed: ((delayMs: number) => void) | undefined;
  const executor = new TaskExecutor({
    db,
    log,
    instanceId: `bench-${mode}`,
    concurrency: 1,
    pollIntervalMs,
    heartbeatIntervalMs: 2000,
    heartbeatTimeoutMs: 10_000,
    handler: async (task) => {
      await completeTask(db.pool, task, `bench-${mode}`);
      claimed?.(task.claimDelayMs);
    },
    onFailure: async () => {},
  });
  // Only the wake-up executor listens; the other one is what an instance sees with Redis down.
  const listener = mode === 'wake' ? createCoordination({ redisUrl: config.redisUrl, prefix: config.redisPrefix }, log) : null;
  await listener?.subscribe({ onWake: () => executor.wake(), onSignal: () => {} });
  executor.start();
  for (let i = 0; i < samples; i++) {
    // Schedule at a random moment: in the poll cycle for polling, just after idling for wake-ups.
    await sleep(mode === 'poll' ? Math.random() * pollIntervalMs : 5 + Math.random() * 20);
    const done = new Promise<number>((resolve) => (claimed = resolve));
    await scheduleTasks(db.pool, [{ taskName: `bench-${mode}`, taskInstance: String(i), data: {} }]);
    await co.wake();
    delays.push(await done);
  }
  await executor.stop(5000);
  await listener?.close();
  return delays;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1);
  return sorted[Math.max(0, index)]!;
}

try {
  const started = Date.now();
  const wake = (await measure('wake', wakeSamples)).sort((a, b) => a - b);
  const poll = (await measure('poll', pollSamples)).sort((a, b) => a - b);
  const row = (name: string, values: number[]) =>
    `${name.padEnd(26)}${String(values.length).padStart(6)}${quantile(values, 0.5).toFixed(1).padStart(12)}${quantile(values, 0.99).toFixed(1).padStart(12)}${values[values.length - 1]!.toFixed(1).padStart(12)}`;
  console.log(`schedule-to-claim delay (database clock), POLL_INTERVAL_MS=${pollIntervalMs}, ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`${'mode'.padEnd(26)}${'n'.padStart(6)}${'median ms'.padStart(12)}${'p99 ms'.padStart(12)}${'max ms'.padStart(12)}`);
  console.log(row('redis wake-ups', wake));
  console.log(row('polling only', poll));
  console.log(`median: ${quantile(wake, 0.5).toFixed(1)} ms with wake-ups vs ${quantile(poll, 0.5).toFixed(1)} ms polling only`);
} finally {
  await co.close();
  await db.pool.query(`DROP SCHEMA IF EXISTS "${config.dbSchema}" CASCADE`).catch(() => {});
  await db.close();
}
