/**
 * pg-boss under the task-queue harness protocol (bench/queues/PROTOCOL.md): claim-and-complete
 * throughput of N instance processes and the schedule-to-claim delay of an idle one. Prints
 * figures; the last stdout line is the protocol's JSON object.
 *
 *   node bench/queues/pg-boss.ts --database-url URL --schema NAME --instances N --tasks K
 *        --concurrency C --poll-interval-ms P --delay-samples S [--batch-size 50] [--burst false]
 *
 * - Install: the parent's PgBoss start() (the library's own installer, `createSchema` on) into
 *   the schema NAME, which the harness drops first and at the end; then createQueue('noop').
 *   The parent is a producer only (supervise and cron off); instances keep every default.
 * - Scheduling: boss.insert (the batch API, 1,000 jobs a call), due now; probes with boss.send
 *   from the parent's own pool.
 * - Instances: `new PgBoss({ connectionString, schema })`, then `work('noop', {
 *   pollingIntervalSeconds: P/1000, batchSize: B, localConcurrency: C }, handler)`: C workers,
 *   each fetching up to B jobs a poll and handing them to one handler call. A worker waits the
 *   polling interval after every fetch unless `burstWhenBatchFull` (--burst true) lets it fetch
 *   again at once after a full batch; that is off by default in the library and here. Queue
 *   `notify` / `useListenNotify` stay at their defaults (off), so pg-boss polls only.
 *   Each job of a batch counts as one handler call (`handlerCalls`); the notes give the number
 *   of handler invocations. 'error' and 'warning' events go to stderr.
 * - End of a run: no job of the queue in a state before `completed` (created, retry, active).
 */
import { type Job, PgBoss } from 'pg-boss';
import { type HarnessArgs, main, packageVersion, progress, type QueueSystem } from './harness.ts';

const QUEUE = 'noop';
const BULK_CHUNK = 1000;

interface Payload {
  key?: string;
  i?: number;
}

function batchSize(args: HarnessArgs): number {
  const value = Number(args.extra['batch-size']);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--batch-size must be an integer >= 1, got ${args.extra['batch-size']}`);
  return value;
}

function burst(args: HarnessArgs): boolean {
  const value = args.extra.burst;
  if (value !== 'true' && value !== 'false') throw new Error(`--burst must be true or false, got ${value}`);
  return value === 'true';
}

function logEvents(boss: PgBoss, who: string): void {
  boss.on('error', (error) => progress(`[pg-boss ${who}] error: ${error.message}`));
  boss.on('warning', (warning) => progress(`[pg-boss ${who}] warning: ${warning.message}`));
}

function system(args: HarnessArgs): QueueSystem {
  const size = batchSize(args);
  const bursting = burst(args);
  let boss: PgBoss | undefined;
  const producer = () => {
    if (!boss) throw new Error('not installed');
    return boss;
  };
  return {
    system: 'pg-boss',
    version: packageVersion('pg-boss'),
    async install() {
      boss = new PgBoss({ connectionString: args.databaseUrl, schema: args.schema, supervise: false, schedule: false });
      logEvents(boss, 'parent');
      await boss.start();
      await boss.createQueue(QUEUE);
    },
    async scheduleBulk(count) {
      for (let from = 0; from < count; from += BULK_CHUNK) {
        const jobs = [];
        for (let i = from; i < Math.min(count, from + BULK_CHUNK); i++) jobs.push({ data: { i } satisfies Payload });
        await producer().insert(QUEUE, jobs);
      }
    },
    async scheduleProbe(key) {
      const id = await producer().send(QUEUE, { key } satisfies Payload);
      if (id === null) throw new Error(`probe ${key} was not created`);
    },
    unfinishedSql: `FROM "${args.schema}".job WHERE name = $1 AND state < 'completed'`,
    unfinishedParams: [QUEUE],
    async close() {
      const current = boss;
      boss = undefined;
      await current?.stop({ graceful: false });
    },
    notes: ({ handlerCalls, handlerBatches }) =>
      `polling only (queue notify and useListenNotify off, library defaults); work() with localConcurrency=${args.concurrency}, ` +
      `batchSize=${size}, burstWhenBatchFull=${bursting}; ${handlerCalls} jobs handled in ${handlerBatches} handler invocations; ` +
      `scheduled with boss.insert in batches of ${BULK_CHUNK}; end = no job in created/retry/active`,
  };
}

await main({
  file: import.meta.filename,
  extraArgs: { 'batch-size': '50', burst: 'false' },
  system,
  async startInstance(args, reporter) {
    const boss = new PgBoss({ connectionString: args.databaseUrl, schema: args.schema });
    logEvents(boss, `instance ${process.pid}`);
    await boss.start();
    await boss.work(
      QUEUE,
      {
        pollingIntervalSeconds: args.pollIntervalMs / 1000,
        batchSize: batchSize(args),
        localConcurrency: args.concurrency,
        burstWhenBatchFull: burst(args),
      },
      async (jobs: Job<Payload>[]) => {
        const at = Date.now();
        reporter.batch();
        for (const job of jobs) reporter.started(typeof job.data.key === 'string' ? job.data.key : undefined, at);
      },
    );
    return { stop: () => boss.stop({ graceful: true, timeout: 10_000 }) };
  },
});
