/**
 * Redis holds what is fast but not true: per-run outstanding counters, wake-ups for idle
 * instances, and pause/cancel signals. Postgres is the truth; every use here has a Postgres
 * fallback, so Redis being down or flushed slows tranche down but never makes it wrong.
 *
 * @example
 *   const co = createCoordination({ redisUrl, prefix: 'tranche' }, log);
 *   await co.initOutstanding(runId, 0);
 *   const left = await co.decrementOutstanding(runId, 250); // null when the key was lost
 */
import { Redis } from 'ioredis';
import type { Logger } from '../logger.ts';

const DECR_IF_EXISTS = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('DECRBY', KEYS[1], ARGV[1])
end
return false`;

const INCR_IF_EXISTS = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return false`;

/** A run seen stalled: every partition produced, records waiting on the topic, nothing applied. */
export interface StallReport {
  /** Since when (ISO time) neither the applied rows nor the outstanding counter moved. */
  since: string;
  rowsApplied: number;
  outstanding: number | null;
  /** Update records on the topic not yet committed by the applier group. */
  lag: number;
  /** The instance whose reconciler saw it. */
  seenBy: string;
}

export type ControlAction = 'pause' | 'resume' | 'cancel' | 'throttle';

export interface Coordination {
  readonly client: Redis;
  /** Creates the run's counter unless it exists (SET NX). */
  initOutstanding(runId: number, value: number): Promise<boolean>;
  /** Adds to the counter if it exists; null when it was lost (the reconciler rebuilds it). */
  addOutstanding(runId: number, n: number): Promise<number | null>;
  /** Subtracts from the counter if it exists; null when it was lost. */
  decrementOutstanding(runId: number, n: number): Promise<number | null>;
  getOutstanding(runId: number): Promise<number | null>;
  deleteOutstanding(runId: number): Promise<void>;
  /**
   * Records that a reconciler found the run stalled (see CompletionTracker), for `tranche
   * status`; the record expires after `ttlMs` unless written again.
   */
  setStalled(runId: number, report: StallReport, ttlMs: number): Promise<void>;
  /** The run's stall record, or null when none is current. */
  getStalled(runId: number): Promise<StallReport | null>;
  clearStalled(runId: number): Promise<void>;
  /** Wakes idle instances: tasks were scheduled. Never throws. */
  wake(): Promise<void>;
  /** Tells every instance about an operator action. Never throws. */
  signal(action: ControlAction, runId: number): Promise<void>;
  /** Subscribes to wake-ups and signals on a dedicated connection. */
  subscribe(handlers: { onWake: () => void; onSignal: (action: ControlAction, runId: number) => void }): Promise<void>;
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

export function createCoordination(options: { redisUrl: string; prefix: string }, log: Logger): Coordination {
  // Commands of the main client fail fast, so that Redis being down never blocks the work.
  // The subscriber instead keeps its SUBSCRIBE queued until Redis is reachable (and ioredis
  // subscribes again after each reconnect): wake-ups resume by themselves after an outage.
  const mkClient = (forSubscriber = false) => {
    const client = new Redis(options.redisUrl, {
      maxRetriesPerRequest: forSubscriber ? null : 1,
      enableOfflineQueue: forSubscriber,
      lazyConnect: false,
      retryStrategy: (times) => Math.min(times * 200, 2000),
    });
    // Redis down is a degraded mode, not a crash: log once per outage.
    let down = false;
    client.on('error', (error) => {
      if (!down) log.warn({ err: error.message }, 'redis unavailable; falling back to Postgres');
      down = true;
    });
    client.on('ready', () => {
      if (down) log.info('redis reachable again');
      down = false;
    });
    return client;
  };
  const client = mkClient();
  let subscriber: Redis | undefined;
  const key = (runId: number) => `${options.prefix}:run:${runId}:outstanding`;
  const stalledKey = (runId: number) => `${options.prefix}:run:${runId}:stalled`;
  const wakeChannel = `${options.prefix}:wake`;
  const controlChannel = `${options.prefix}:control`;
  const toNumber = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

  return {
    client,
    async initOutstanding(runId, value) {
      return (await client.set(key(runId), String(value), 'NX')) === 'OK';
    },
    async addOutstanding(runId, n) {
      return toNumber(await client.eval(INCR_IF_EXISTS, 1, key(runId), String(n)));
    },
    async decrementOutstanding(runId, n) {
      return toNumber(await client.eval(DECR_IF_EXISTS, 1, key(runId), String(n)));
    },
    async getOutstanding(runId) {
      return toNumber(await client.get(key(runId)));
    },
    async deleteOutstanding(runId) {
      await client.del(key(runId));
    },
    async setStalled(runId, report, ttlMs) {
      await client.set(stalledKey(runId), JSON.stringify(report), 'PX', ttlMs);
    },
    async getStalled(runId) {
      const raw = await client.get(stalledKey(runId));
      return raw === null ? null : (JSON.parse(raw) as StallReport);
    },
    async clearStalled(runId) {
      await client.del(stalledKey(runId));
    },
    async wake() {
      await client.publish(wakeChannel, '1').catch(() => {});
    },
    async signal(action, runId) {
      await client.publish(controlChannel, JSON.stringify({ action, runId })).catch(() => {});
    },
    async subscribe({ onWake, onSignal }) {
      subscriber ??= mkClient(true);
      subscriber.on('message', (channel: string, message: string) => {
        if (channel === wakeChannel) onWake();
        else if (channel === controlChannel) {
          try {
            const parsed = JSON.parse(message) as { action?: unknown; runId?: unknown };
            if (typeof parsed.action === 'string' && typeof parsed.runId === 'number') {
              onSignal(parsed.action as ControlAction, parsed.runId);
            }
          } catch {
            log.warn({ message }, 'ignored malformed control message');
          }
        }
      });
      // Wait a moment for the subscription, but never block start-up on Redis: until it is
      // in place (or while Redis is down) polling alone finds the tasks.
      const subscribed = subscriber.subscribe(wakeChannel, controlChannel).then(
        () => true,
        (error: unknown) => {
          log.warn({ err: String(error) }, 'redis subscribe failed; polling only');
          return false;
        },
      );
      let timer: NodeJS.Timeout | undefined;
      const waited = await Promise.race([subscribed, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), 2000)))]);
      clearTimeout(timer);
      if (waited === 'timeout') log.warn('redis SUBSCRIBE not in place yet; polling until it is');
    },
    async ping() {
      try {
        return (await client.ping()) === 'PONG';
      } catch {
        return false;
      }
    },
    async close() {
      subscriber?.disconnect();
      client.disconnect();
    },
  };
}
