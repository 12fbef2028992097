/**
 * Reads the database health signals tranche throttles on. Each is read only when its limit is
 * set; each reading carries its value and its limit in one unit. The statements are small
 * catalog reads of the database tranche writes to (pg_stat_replication, pg_replication_slots,
 * pg_locks with pg_stat_activity), plus the operator's probe in a read-only transaction.
 *
 * @example
 *   const readings = await readSignals(db, settings);
 *   // [{ name: 'replica_lag', value: 12, limit: 1000, unit: 'ms' }, …]
 */
import type { Db } from '../db.ts';

export type SignalName = 'replica_lag' | 'slot_lag' | 'lock_wait' | 'active_backends' | 'probe';

export interface SignalReading {
  readonly name: SignalName;
  readonly value: number;
  readonly limit: number;
  readonly unit: 'ms' | 'bytes' | 'backends';
}

export interface SignalSettings {
  healthMaxReplicaLagMs: number | null;
  healthSlots: readonly string[];
  healthMaxSlotLagBytes: number | null;
  healthMaxLockWaitMs: number | null;
  healthMaxActiveBackends: number | null;
  healthProbeQuery: string | null;
  healthProbeMaxMs: number;
}

/** Sessions of tranche: every pool of tranche sets an application_name starting with this. */
export const TRANCHE_APPLICATION = 'tranche%';

/** Largest replay lag of the streaming replicas, ms (0 when none, or all caught up). */
const REPLICA_LAG = `SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8 * 1000 AS value FROM pg_stat_replication`;

/** Most WAL bytes one of the named slots retains ($1: slot names). */
const SLOT_LAG = `SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)), 0)::float8 AS value
  FROM pg_replication_slots WHERE slot_name = ANY ($1::text[])`;

/**
 * Longest current wait, ms, of a session of this database (not tranche's) on a lock that a
 * session of tranche holds or waits ahead of it ($1: tranche's application_name pattern).
 */
const LOCK_WAIT = `SELECT coalesce(max(extract(epoch FROM clock_timestamp() - l.waitstart)), 0)::float8 * 1000 AS value
  FROM pg_locks l JOIN pg_stat_activity w ON w.pid = l.pid
  WHERE NOT l.granted AND l.waitstart IS NOT NULL AND w.datname = current_database()
    AND w.application_name NOT LIKE $1
    AND EXISTS (SELECT 1 FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(l.pid)) AND b.application_name LIKE $1)`;

/** Active client backends of this database, tranche's and this one excluded ($1: pattern). */
const ACTIVE_BACKENDS = `SELECT count(*)::float8 AS value FROM pg_stat_activity
  WHERE state = 'active' AND backend_type = 'client backend' AND datname = current_database()
    AND application_name NOT LIKE $1 AND pid <> pg_backend_pid()`;

async function one(db: Db, sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await db.pool.query<{ value: number }>(sql, params);
  return Number(rows[0]?.value ?? 0);
}

/**
 * Latency of the probe in a read-only transaction, ms. A probe that fails or runs past ten
 * times its limit (its statement timeout) reads as that timeout: over the limit.
 */
async function probeLatency(db: Db, query: string, maxMs: number): Promise<number> {
  const timeoutMs = Math.max(maxMs * 10, 100);
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN READ ONLY');
    await client.query(`SET LOCAL statement_timeout = ${Math.round(timeoutMs)}`);
    const started = performance.now();
    try {
      await client.query(query);
      return performance.now() - started;
    } catch {
      return timeoutMs;
    } finally {
      await client.query('ROLLBACK').catch(() => {});
    }
  } finally {
    client.release();
  }
}

/** Reads every signal whose limit is set, in a fixed order. */
export async function readSignals(db: Db, s: SignalSettings): Promise<SignalReading[]> {
  const readings: SignalReading[] = [];
  if (s.healthMaxReplicaLagMs !== null) {
    readings.push({ name: 'replica_lag', value: await one(db, REPLICA_LAG), limit: s.healthMaxReplicaLagMs, unit: 'ms' });
  }
  if (s.healthMaxSlotLagBytes !== null && s.healthSlots.length > 0) {
    readings.push({ name: 'slot_lag', value: await one(db, SLOT_LAG, [s.healthSlots]), limit: s.healthMaxSlotLagBytes, unit: 'bytes' });
  }
  if (s.healthMaxLockWaitMs !== null) {
    readings.push({ name: 'lock_wait', value: await one(db, LOCK_WAIT, [TRANCHE_APPLICATION]), limit: s.healthMaxLockWaitMs, unit: 'ms' });
  }
  if (s.healthMaxActiveBackends !== null) {
    readings.push({
      name: 'active_backends',
      value: await one(db, ACTIVE_BACKENDS, [TRANCHE_APPLICATION]),
      limit: s.healthMaxActiveBackends,
      unit: 'backends',
    });
  }
  if (s.healthProbeQuery !== null) {
    readings.push({ name: 'probe', value: await probeLatency(db, s.healthProbeQuery, s.healthProbeMaxMs), limit: s.healthProbeMaxMs, unit: 'ms' });
  }
  return readings;
}

/** "replica_lag 1,830 ms > 1,000 ms" */
export function describeReading(r: SignalReading): string {
  const n = (v: number) => Math.round(v).toLocaleString('en-US');
  return `${r.name} ${n(r.value)} ${r.unit} ${r.value > r.limit ? '>' : '<='} ${n(r.limit)} ${r.unit}`;
}
