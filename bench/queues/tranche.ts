/**
 * tranche's one-time tasks under the task-queue harness protocol (bench/queues/PROTOCOL.md):
 * claim-and-complete throughput of N instance processes and the schedule-to-claim delay of an
 * idle one, measured exactly as the other systems in this directory are. The last stdout line
 * is the protocol's JSON object.
 *
 *   node bench/queues/tranche.ts --database-url URL --schema NAME --instances N --tasks K
 *        --concurrency C --poll-interval-ms P --delay-samples S [--redis-url URL]
 *
 * - Install: the project's own migrations (migrateToLatest) into the schema NAME.
 * - Scheduling: scheduleTasks, one INSERT of 1,000 tasks at a time, due now; a probe is one
 *   scheduleTasks call followed by the Redis wake-up that identification and rerun publish.
 * - Instances: the TaskExecutor a `tranche serve` process runs (claims sized to its free slots
 *   with FOR UPDATE SKIP LOCKED, heartbeats, Redis wake-ups, polling every P ms), C slots, a
 *   pool of C + 2 connections. The handler notes its start and deletes its task with
 *   completeTask, the fenced completion a partition worker ends with.
 * - End of a run: a completed task is deleted, so nothing is unfinished when scheduled_tasks
 *   has no row.
 */
import { createCoordination } from '../../src/coordination/redis.ts';
import { createDb, type Db } from '../../src/db.ts';
import { silentLogger } from '../../src/logger.ts';
import { migrateToLatest } from '../../src/migrate.ts';
import { TaskExecutor } from '../../src/tasks/executor.ts';
import { completeTask, type NewTask, scheduleTasks } from '../../src/tasks/task-store.ts';
import { type HarnessArgs, main, progress, type QueueSystem } from './harness.ts';

const TASK = 'noop';
const BULK_CHUNK = 1000;
const log = silentLogger();

const redisUrl = (args: HarnessArgs) => args.extra['redis-url'] ?? 'redis://127.0.0.1:6379';
const openDb = (args: HarnessArgs, poolSize: number): Db =>
  createDb({ databaseUrl: args.databaseUrl, dbSchema: args.schema, dbPoolSize: poolSize, applicationName: 'bench-queues-tranche' });
const coordination = (args: HarnessArgs) => createCoordination({ redisUrl: redisUrl(args), prefix: `bench-${args.schema}` }, log);

function system(args: HarnessArgs): QueueSystem {
  const db = openDb(args, 2);
  const co = coordination(args);
  return {
    system: 'tranche',
    version: 'this checkout',
    async install() {
      await migrateToLatest(db);
    },
    async scheduleBulk(count) {
      for (let from = 0; from < count; from += BULK_CHUNK) {
        const tasks: NewTask[] = [];
        for (let i = from; i < Math.min(count, from + BULK_CHUNK); i++) tasks.push({ taskName: TASK, taskInstance: `t${i}`, data: {} });
        await scheduleTasks(db.pool, tasks);
      }
    },
    async scheduleProbe(key) {
      await scheduleTasks(db.pool, [{ taskName: TASK, taskInstance: `probe-${key}`, data: { probe: key } }]);
      await co.wake();
    },
    unfinishedSql: `FROM "${args.schema}".scheduled_tasks`,
    unfinishedParams: [],
    async close() {
      await co.close();
      await db.close();
    },
    notes: ({ handlerCalls }) =>
      `TaskExecutor of tranche serve: SKIP LOCKED claims sized to free slots, Redis wake-ups plus polling; ` +
      `scheduled in INSERTs of ${BULK_CHUNK}; completed tasks are deleted, end = no row in scheduled_tasks; ${handlerCalls} handler calls`,
  };
}

await main({
  file: import.meta.filename,
  system,
  extraArgs: { 'redis-url': 'redis://127.0.0.1:6379' },
  async startInstance(args, reporter) {
    const db = openDb(args, args.concurrency + 2);
    const co = coordination(args);
    const instanceId = `bench-${process.pid}`;
    const executor = new TaskExecutor({
      db,
      log,
      instanceId,
      concurrency: args.concurrency,
      pollIntervalMs: args.pollIntervalMs,
      heartbeatIntervalMs: 2000,
      heartbeatTimeoutMs: 10_000,
      handler: async (task) => {
        const probe = task.data.probe;
        reporter.started(typeof probe === 'string' ? probe : undefined);
        await completeTask(db.pool, task, instanceId);
      },
      onFailure: async (task, error) => progress(`task ${task.taskInstance} failed: ${String(error)}`),
    });
    await co.subscribe({ onWake: () => executor.wake(), onSignal: () => {} });
    executor.start();
    return {
      async stop() {
        await executor.stop(5000);
        await co.close();
        await db.close();
      },
    };
  },
});
