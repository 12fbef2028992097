/**
 * The health monitor runs in every instance; one at a time (a short Redis lease) reads the
 * signals, decides the protection state, publishes it for all, and acts on runs:
 *   - a signal over its limit: `throttled` (workers wait before their next page) until it is
 *     back under;
 *   - a signal at HEALTH_CRITICAL_FACTOR times its limit: `critical`, every running run is
 *     paused with the reason (the hard stop; an operator resumes);
 *   - outside the work window (database clock): running runs pause as `paused (window)` and
 *     resume by themselves when the next window opens; runs started with --ignore-window go on.
 * A change of state is logged once, by the instance that saw it, not per page.
 *
 * @example
 *   const monitor = startHealthMonitor({ db, coordination, log, instanceId, prefix, settings: config });
 *   await monitor.stop();
 */
import type { Coordination } from '../coordination/redis.ts';
import type { Db } from '../db.ts';
import type { Logger } from '../logger.ts';
import { pauseRun, resumeRun } from '../runs/run-control.ts';
import { describeReading, readSignals, type SignalReading, type SignalSettings } from './signals.ts';
import { type HealthState, leaseKey, publishHealthState, readHealthState, type ProtectionState } from './state.ts';
import { isInWindow, nextWindowChange, type WorkWindows } from './window.ts';

export interface HealthSettings extends SignalSettings {
  healthIntervalMs: number;
  healthCriticalFactor: number | null;
  window: WorkWindows | null;
}

export interface HealthMonitorDeps {
  db: Db;
  coordination: Coordination;
  log: Logger;
  instanceId: string;
  prefix: string;
  settings: HealthSettings;
  /** The clock windows are evaluated on (default: the database's now(), one clock for all instances). */
  now?: () => Promise<Date>;
}

export interface HealthMonitor {
  /** Evaluates now if this instance holds (or takes) the lease; the state it published, else null. */
  evaluate(): Promise<HealthState | null>;
  stop(): Promise<void>;
}

/** KEYS[1] lease; ARGV[1] owner, ARGV[2] ms. Takes the lease when free, renews it when ours. */
const LEASE = `
local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return 1
end
return 0`;

/** The protection state of a set of readings. */
export function decide(readings: readonly SignalReading[], criticalFactor: number | null): { state: ProtectionState; reason: SignalReading | null } {
  if (criticalFactor !== null) {
    const critical = readings.find((r) => r.value >= r.limit * criticalFactor);
    if (critical) return { state: 'critical', reason: critical };
  }
  const over = readings.find((r) => r.value > r.limit);
  return over ? { state: 'throttled', reason: over } : { state: 'running', reason: null };
}

const signature = (s: Pick<HealthState, 'state' | 'reason'> | null) => (s === null ? 'running:' : `${s.state}:${s.reason?.name ?? ''}`);

export function startHealthMonitor(deps: HealthMonitorDeps): HealthMonitor {
  const { db, coordination, log, settings, prefix, instanceId } = deps;
  const redis = coordination.client;
  const interval = settings.healthIntervalMs;
  let stopped = false;
  let running: Promise<unknown> = Promise.resolve();
  let failing = false;

  async function databaseNow(): Promise<Date> {
    const { rows } = await db.pool.query<{ ms: number }>('SELECT (extract(epoch FROM now()) * 1000)::float8 AS ms');
    return new Date(Number(rows[0]?.ms ?? Date.now()));
  }

  async function actOnWindow(open: boolean): Promise<void> {
    if (!open) {
      const { rows } = await db.pool.query<{ id: number }>(`SELECT id FROM migration_runs WHERE status = 'running' AND NOT ignore_window`);
      for (const { id } of rows) {
        await pauseRun(db, coordination, id, 'window').then(
          () => log.info({ runId: id, window: settings.window?.text }, 'run paused: outside its work window'),
          (error: unknown) => log.debug({ runId: id, err: String(error) }, 'window pause skipped'),
        );
      }
    } else {
      const { rows } = await db.pool.query<{ id: number }>(`SELECT id FROM migration_runs WHERE status = 'paused' AND pause_reason = 'window'`);
      for (const { id } of rows) {
        await resumeRun(db, coordination, id).then(
          () => log.info({ runId: id, window: settings.window?.text }, 'run resumed: its work window opened'),
          (error: unknown) => log.debug({ runId: id, err: String(error) }, 'window resume skipped'),
        );
      }
    }
  }

  async function actOnCritical(reason: SignalReading): Promise<void> {
    const { rows } = await db.pool.query<{ id: number }>(`SELECT id FROM migration_runs WHERE status = 'running'`);
    for (const { id } of rows) {
      await pauseRun(db, coordination, id, `critical: ${describeReading(reason)}`).then(
        () => log.error({ runId: id, signal: reason.name, value: reason.value, limit: reason.limit }, `run paused by the health hard stop: ${describeReading(reason)}`),
        (error: unknown) => log.debug({ runId: id, err: String(error) }, 'critical pause skipped'),
      );
    }
  }

  async function evaluate(): Promise<HealthState | null> {
    try {
      const mine = Number(await redis.eval(LEASE, 1, leaseKey(prefix), instanceId, String(Math.max(3 * interval, 1000))));
      if (failing) log.info('health monitor: redis reachable again');
      failing = false;
      if (mine !== 1) return null;
    } catch (error) {
      if (!failing) log.warn({ err: String(error) }, 'health monitor: redis unavailable; not throttling on health until it is back');
      failing = true;
      return null;
    }
    const now = await (deps.now ?? databaseNow)();
    const readings = await readSignals(db, settings);
    const decided = decide(readings, settings.healthCriticalFactor);
    const window = settings.window
      ? {
          open: isInWindow(settings.window, now),
          text: settings.window.text,
          timezone: settings.window.timezone,
          nextChange: nextWindowChange(settings.window, now)?.toISOString() ?? null,
        }
      : null;
    const state: HealthState = { ...decided, signals: readings, window, evaluatedBy: instanceId, at: now.toISOString() };
    const previous = await readHealthState(redis, prefix);
    await publishHealthState(redis, prefix, state, 5 * interval);
    if (signature(previous) !== signature(state)) {
      const fields = { signals: Object.fromEntries(readings.map((r) => [r.name, Math.round(r.value)])) };
      if (state.reason) log.warn(fields, `protection ${state.state}: ${describeReading(state.reason)}`);
      else log.info(fields, `protection running again${previous?.reason ? `: ${describeReading(readings.find((r) => r.name === previous.reason?.name) ?? previous.reason)}` : ''}`);
    }
    if (previous?.window && window && previous.window.open !== window.open) {
      log.info({ window: window.text, timezone: window.timezone }, window.open ? 'work window opened' : 'work window closed');
    }
    if (state.state === 'critical' && state.reason) await actOnCritical(state.reason);
    if (window) await actOnWindow(window.open);
    return state;
  }

  let busy = false;
  const tick = () => {
    if (stopped || busy) return;
    busy = true;
    running = evaluate()
      .catch((error: unknown) => log.warn({ err: String(error) }, 'health evaluation failed'))
      .finally(() => {
        busy = false;
      });
  };
  const timer = setInterval(tick, interval);
  timer.unref();
  tick();

  return {
    evaluate,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
      await redis.eval(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`, 1, leaseKey(prefix), instanceId).catch(() => {});
    },
  };
}
