/**
 * A run over time, kept cheaply in Redis: every few seconds one instance (whichever takes the
 * run's sample lock first, so N instances still give one series) appends a sample
 * `{ t, applied, lag }` per active run to a capped list `${prefix}:run:${id}:samples` (the last
 * 360 samples, 30 minutes at 5 s). Time spent waiting on the throttle is added, per run, to
 * `${prefix}:run:${id}:throttled-ms` by the worker that waited. Redis losing them loses the
 * chart, never the run: Postgres stays the truth for the rows themselves.
 *
 * The rate is taken over the last minute of samples; the ETA is what remains over that rate.
 *
 * @example
 *   const sampler = startProgressSampler({ db, redis, prefix, intervalMs: 5000, totalLag });
 *   const progress = await readRunProgress(redis, prefix, runId, report);
 *   // { samples: [...], rowsPerSecond: 1830, etaSeconds: 42, throttledSeconds: 3.5 }
 */
import type { Redis } from 'ioredis';
import type { Db } from '../db.ts';
import { whenReady } from '../coordination/throttle.ts';
import type { Logger } from '../logger.ts';

export interface ProgressSample {
  /** Milliseconds since the epoch (the sampling instance's clock). */
  t: number;
  /** Rows applied by the run so far. */
  applied: number;
  /** Consumer lag of the update topic, in records, or null when Kafka did not answer. */
  lag: number | null;
}

export interface RunProgress {
  samples: ProgressSample[];
  /** Rows applied per second over the last minute of samples; null with fewer than two. */
  rowsPerSecond: number | null;
  /** Seconds until every row is applied at that rate; null when unknown or not progressing. */
  etaSeconds: number | null;
  throttledSeconds: number;
}

const KEEP = 360;
const RATE_WINDOW_MS = 60_000;
const samplesKey = (prefix: string, runId: number) => `${prefix}:run:${runId}:samples`;
const throttledKey = (prefix: string, runId: number) => `${prefix}:run:${runId}:throttled-ms`;
const lockKey = (prefix: string, runId: number) => `${prefix}:run:${runId}:sample-lock`;

/** Adds time a worker of the run waited on the throttle. Never throws. */
export async function addThrottledTime(redis: Redis, prefix: string, runId: number, ms: number): Promise<void> {
  await redis.incrby(throttledKey(prefix, runId), Math.round(ms)).catch(() => {});
}

/** Rate over the samples of the last minute, and the ETA for `remaining` rows. */
export function rateAndEta(samples: ProgressSample[], remaining: number): { rowsPerSecond: number | null; etaSeconds: number | null } {
  const last = samples.at(-1);
  if (!last) return { rowsPerSecond: null, etaSeconds: null };
  const first = samples.find((s) => s.t >= last.t - RATE_WINDOW_MS) ?? last;
  if (last.t - first.t < 1000) return { rowsPerSecond: null, etaSeconds: null };
  const rowsPerSecond = Math.max(0, (last.applied - first.applied) / ((last.t - first.t) / 1000));
  const etaSeconds = remaining <= 0 ? 0 : rowsPerSecond > 0 ? remaining / rowsPerSecond : null;
  return { rowsPerSecond, etaSeconds };
}

/** The run's samples, rate, ETA and throttled time. `rows` is the run's applied/total. */
export async function readRunProgress(
  redis: Redis,
  prefix: string,
  runId: number,
  rows: { applied: number; total: number },
): Promise<RunProgress> {
  await whenReady(redis);
  const [raw, throttled] = await Promise.all([
    redis.lrange(samplesKey(prefix, runId), 0, -1).catch(() => [] as string[]),
    redis.get(throttledKey(prefix, runId)).catch(() => null),
  ]);
  const samples = raw.map((s) => JSON.parse(s) as ProgressSample).sort((a, b) => a.t - b.t);
  return { samples, ...rateAndEta(samples, rows.total - rows.applied), throttledSeconds: Number(throttled ?? 0) / 1000 };
}

/** Takes one sample of every active run (at most one per run and interval, cluster-wide). */
export async function sampleActiveRuns(deps: { db: Db; redis: Redis; prefix: string; intervalMs: number; totalLag(): Promise<number | null> }): Promise<number> {
  const { rows } = await deps.db.pool.query<{ id: number; applied: string }>(
    `SELECT r.id, (SELECT coalesce(sum(p.rows_applied), 0) FROM partitions p WHERE p.run_id = r.id)::text AS applied
     FROM migration_runs r WHERE r.status IN ('identifying', 'running', 'paused')`,
  );
  if (rows.length === 0) return 0;
  let lag: number | null | undefined;
  let taken = 0;
  for (const run of rows) {
    const mine = await deps.redis.set(lockKey(deps.prefix, run.id), '1', 'PX', Math.max(100, deps.intervalMs - 50), 'NX');
    if (mine !== 'OK') continue;
    lag ??= await deps.totalLag().catch(() => null);
    const sample: ProgressSample = { t: Date.now(), applied: Number(run.applied), lag };
    await deps.redis
      .multi()
      .rpush(samplesKey(deps.prefix, run.id), JSON.stringify(sample))
      .ltrim(samplesKey(deps.prefix, run.id), -KEEP, -1)
      .pexpire(samplesKey(deps.prefix, run.id), 7 * 86_400_000)
      .exec();
    taken++;
  }
  return taken;
}

/** Samples every `intervalMs` until stopped; failures are logged at debug and skipped. */
export function startProgressSampler(deps: {
  db: Db;
  redis: Redis;
  prefix: string;
  intervalMs: number;
  log: Logger;
  totalLag(): Promise<number | null>;
}): { stop(): void } {
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    sampleActiveRuns(deps)
      .catch((error: unknown) => deps.log.debug({ err: String(error) }, 'progress sample failed'))
      .finally(() => (busy = false));
  }, deps.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
