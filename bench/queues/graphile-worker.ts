/**
 * graphile-worker under the task-queue harness protocol (bench/queues/PROTOCOL.md): claim-and-
 * complete throughput of N instance processes and the schedule-to-claim delay of an idle one.
 * Prints figures; the last stdout line is the protocol's JSON object.
 *
 *   node bench/queues/graphile-worker.ts --database-url URL --schema NAME --instances N --tasks K
 *        --concurrency C --poll-interval-ms P --delay-samples S
 *
 * - Install: WorkerUtils.migrate() (the library's own migrations) into the schema NAME, which the
 *   harness drops first and at the end.
 * - Scheduling: WorkerUtils.addJobs (the batch API, one `add_jobs` call per 1,000 jobs), task
 *   `noop`, due now; probes with WorkerUtils.addJob from the parent's own pool.
 * - Instances: `run({ connectionString, schema, concurrency: C, pollInterval: P,
 *   noHandleSignals: true, taskList: { noop } })`, every other option at the library's default
 *   (so LISTEN/NOTIFY wake-ups, no local queue, no batched completion, pool size 10). The library's
 *   log goes to stderr (warnings and errors only).
 * - End of a run: graphile-worker deletes a job when it completes, so nothing is unfinished when
 *   its jobs table (`_private_jobs`; `jobs` is a view over it in this version) has no row.
 */
import { Logger, makeWorkerUtils, run, type WorkerUtils } from 'graphile-worker';
import { type HarnessArgs, main, packageVersion, progress, type QueueSystem } from './harness.ts';

const TASK = 'noop';
const BULK_CHUNK = 1000;

/** The library's log, to stderr, without info/debug chatter. */
const logger = new Logger((scope) => (level, message) => {
  if (level === 'error' || level === 'warning') progress(`[graphile-worker ${scope.label ?? 'core'}] ${level}: ${message}`);
});

interface Payload {
  key?: string;
  i?: number;
}

function system(args: HarnessArgs): QueueSystem {
  let utils: WorkerUtils | undefined;
  const workerUtils = () => {
    if (!utils) throw new Error('not installed');
    return utils;
  };
  return {
    system: 'graphile-worker',
    version: packageVersion('graphile-worker'),
    async install() {
      utils = await makeWorkerUtils({ connectionString: args.databaseUrl, schema: args.schema, logger });
      await utils.migrate();
    },
    async scheduleBulk(count) {
      for (let from = 0; from < count; from += BULK_CHUNK) {
        const specs = [];
        for (let i = from; i < Math.min(count, from + BULK_CHUNK); i++) specs.push({ identifier: TASK, payload: { i } satisfies Payload });
        await workerUtils().addJobs(specs);
      }
    },
    async scheduleProbe(key) {
      await workerUtils().addJob(TASK, { key } satisfies Payload);
    },
    unfinishedSql: `FROM "${args.schema}"._private_jobs`,
    unfinishedParams: [],
    async close() {
      const current = utils;
      utils = undefined;
      await current?.release();
    },
    notes: ({ handlerCalls }) =>
      `LISTEN/NOTIFY wake-ups plus polling (library defaults otherwise: no localQueue, no batched completion, pool 10); ` +
      `scheduled with WorkerUtils.addJobs in batches of ${BULK_CHUNK}; completed jobs are deleted, end = no row in _private_jobs; ` +
      `${handlerCalls} handler calls`,
  };
}

await main({
  file: import.meta.filename,
  system,
  async startInstance(args, reporter) {
    const runner = await run({
      connectionString: args.databaseUrl,
      schema: args.schema,
      concurrency: args.concurrency,
      pollInterval: args.pollIntervalMs,
      noHandleSignals: true,
      logger,
      taskList: {
        [TASK]: async (payload: unknown) => {
          const key = (payload as Payload | null)?.key;
          reporter.started(typeof key === 'string' ? key : undefined);
        },
      },
    });
    runner.promise.catch((error: unknown) => {
      progress(`graphile-worker runner failed: ${String(error)}`);
      process.exit(1);
    });
    return { stop: () => runner.stop() };
  },
});
