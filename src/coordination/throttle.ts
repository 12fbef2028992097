/**
 * The global throttle: a limit on rows produced per second, shared by every instance through
 * one token bucket in Redis. The limit lives in Redis too (`${prefix}:throttle:limit`), so an
 * operator can change it while a run is going and every instance follows at its next page;
 * without that key the configured default applies (THROTTLE_ROWS_PER_SECOND, 0 = unlimited).
 *
 * The bucket holds at most one second of rows and refills on Redis' own clock (TIME), so
 * instances with skewed clocks share it fairly. A page larger than the bucket is let through
 * when the bucket is full and leaves it in debt, so any page size works and the long-run rate
 * stays at the limit. When Redis is unreachable the throttle lets everything through (fail
 * open) and logs once per outage: a throttle must never stop a migration.
 *
 * The health state (src/health) comes first: while it says throttled or critical, a worker
 * waits before its page, whatever the rows-per-second limit.
 *
 * @example
 *   const throttle = createThrottle({ redis: co.client, prefix: 'tranche', defaultLimit: 0, log });
 *   await setThrottleLimit(co.client, 'tranche', 2000);   // rows per second, every instance
 *   await throttle.acquire(1000);                         // waits until 1000 rows may go
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../logger.ts';

/**
 * KEYS[1] bucket (hash: tokens, ts in ms), KEYS[2] limit (rows/s; absent: ARGV[2]).
 * ARGV[1] rows wanted, ARGV[2] default limit. Returns 0 when the rows may go (and takes them),
 * otherwise the milliseconds to wait before asking again.
 */
const TAKE = `
local limit = tonumber(redis.call('GET', KEYS[2]) or ARGV[2])
if not limit or limit <= 0 then return 0 end
local wanted = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local capacity = limit
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
if now > ts then tokens = math.min(capacity, tokens + (now - ts) * limit / 1000) end
local need = math.min(wanted, capacity)
local wait = 0
if tokens >= need then tokens = tokens - wanted else wait = math.ceil((need - tokens) * 1000 / limit) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], 60000)
return wait`;

/** Longest single sleep, so that stopping, pausing and a raised limit are noticed quickly. */
const MAX_SLEEP_MS = 250;

export interface Throttle {
  /**
   * Waits until `rows` may be produced under the global limit. Returns early (false) when
   * `shouldStop` turns true while waiting; true once the rows were granted. `onWait` hears
   * each sleep (milliseconds), to account the time spent throttled.
   */
  acquire(rows: number, shouldStop?: () => boolean, onWait?: (ms: number) => void): Promise<boolean>;
}

export interface ThrottleOptions {
  redis: Redis;
  prefix: string;
  /** Rows per second when no limit is set in Redis; 0 means unlimited. */
  defaultLimit: number;
  log: Logger;
  /** The health protection state (src/health): while it holds production back, nothing goes. */
  health?: { blocked(): Promise<boolean> };
}

const bucketKey = (prefix: string) => `${prefix}:throttle`;
const limitKey = (prefix: string) => `${prefix}:throttle:limit`;

/** Waits until the client is connected (a freshly created client is not yet), up to `ms`. */
export async function whenReady(redis: Redis, ms = 5000): Promise<void> {
  if (redis.status === 'ready') return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    new Promise<void>((resolve) => redis.once('ready', () => resolve())),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))),
  ]);
  clearTimeout(timer);
}

/** Sets the global limit in rows per second for every instance (0 = unlimited; null = back to the configured default). */
export async function setThrottleLimit(redis: Redis, prefix: string, rowsPerSecond: number | null): Promise<void> {
  if (rowsPerSecond !== null && (!Number.isSafeInteger(rowsPerSecond) || rowsPerSecond < 0)) {
    throw new RangeError(`the throttle must be a whole number of rows per second, 0 or more (got ${rowsPerSecond})`);
  }
  await whenReady(redis);
  if (rowsPerSecond === null) {
    await redis.del(limitKey(prefix));
    return;
  }
  await redis.set(limitKey(prefix), String(rowsPerSecond));
}

/** The limit set in Redis, or null when none is set (the configured default applies). */
export async function getThrottleLimit(redis: Redis, prefix: string): Promise<number | null> {
  await whenReady(redis);
  const value = await redis.get(limitKey(prefix));
  return value === null ? null : Number(value);
}

export function createThrottle(options: ThrottleOptions): Throttle {
  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
  const keys = [bucketKey(options.prefix), limitKey(options.prefix)];
  let failing = false;
  return {
    async acquire(rows, shouldStop = () => false, onWait) {
      if (rows <= 0) return true;
      while (options.health && (await options.health.blocked())) {
        await sleep(MAX_SLEEP_MS);
        if (shouldStop()) return false;
      }
      for (;;) {
        let waitMs: number;
        try {
          waitMs = Number(await options.redis.eval(TAKE, 2, ...keys, String(rows), String(options.defaultLimit)));
          if (failing) options.log.info('throttle: redis reachable again');
          failing = false;
        } catch (error) {
          if (!failing) options.log.warn({ err: String(error) }, 'throttle: redis unavailable; not throttling until it is back');
          failing = true;
          return true;
        }
        if (!(waitMs > 0)) return true;
        const ms = Math.min(waitMs, MAX_SLEEP_MS);
        await sleep(ms);
        onWait?.(ms);
        if (shouldStop()) return false;
      }
    },
  };
}
