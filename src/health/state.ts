/**
 * The protection state every instance follows, published in Redis by the instance that holds
 * the health lease (`${prefix}:health:state`, a JSON value that expires after a few intervals:
 * when no instance evaluates any more, or Redis loses it, tranche runs unthrottled, as the
 * rows-per-second throttle fails open).
 *
 * @example
 *   const gate = createHealthGate(redis, 'tranche');
 *   if (await gate.blocked()) { … wait … }
 *   const state = await readHealthState(redis, 'tranche'); // for status and metrics
 */
import type { Redis } from 'ioredis';
import type { SignalReading } from './signals.ts';

export type ProtectionState = 'running' | 'throttled' | 'critical';

export interface HealthState {
  /** running: produce; throttled: wait; critical: the runs were paused (hard stop). */
  readonly state: ProtectionState;
  /** The first signal over its limit (null while running). */
  readonly reason: SignalReading | null;
  /** Every signal read, with its limit. */
  readonly signals: readonly SignalReading[];
  /** The work window, when one is configured. */
  readonly window: { readonly open: boolean; readonly text: string; readonly timezone: string; readonly nextChange: string | null } | null;
  /** Instance that evaluated it, and when (database clock, ISO). */
  readonly evaluatedBy: string;
  readonly at: string;
}

export const stateKey = (prefix: string) => `${prefix}:health:state`;
export const leaseKey = (prefix: string) => `${prefix}:health:lease`;

/** Numeric form for `/metrics`: 0 running, 1 throttled, 2 critical. */
export const STATE_VALUE: Record<ProtectionState, number> = { running: 0, throttled: 1, critical: 2 };

export async function publishHealthState(redis: Redis, prefix: string, state: HealthState, ttlMs: number): Promise<void> {
  await redis.set(stateKey(prefix), JSON.stringify(state), 'PX', Math.max(1000, Math.round(ttlMs)));
}

/** The published state, or null when none is (nobody evaluates, or Redis is unreachable). */
export async function readHealthState(redis: Redis, prefix: string): Promise<HealthState | null> {
  try {
    const raw = await redis.get(stateKey(prefix));
    return raw === null ? null : (JSON.parse(raw) as HealthState);
  } catch {
    return null;
  }
}

/** What workers ask before each page: is production held back? Cached for `cacheMs`. */
export interface HealthGate {
  blocked(): Promise<boolean>;
}

export function createHealthGate(redis: Redis, prefix: string, cacheMs = 200): HealthGate {
  let cached: { at: number; blocked: boolean } | null = null;
  return {
    async blocked() {
      if (cached && performance.now() - cached.at < cacheMs) return cached.blocked;
      const state = await readHealthState(redis, prefix);
      const blocked = state !== null && state.state !== 'running';
      cached = { at: performance.now(), blocked };
      return blocked;
    },
  };
}

/** One line for status output: "running" or "throttled: replica_lag 1,830 ms > 1,000 ms". */
export function describeHealthState(state: HealthState | null): string {
  if (state === null) return 'running (no health state published: no instance is evaluating)';
  const n = (v: number) => Math.round(v).toLocaleString('en-US');
  if (state.reason === null) return `running (${state.signals.map((s) => `${s.name} ${n(s.value)}/${n(s.limit)} ${s.unit}`).join(', ') || 'no signals on'})`;
  const r = state.reason;
  return `${state.state}: ${r.name} ${n(r.value)} ${r.unit} > limit ${n(r.limit)} ${r.unit}`;
}
