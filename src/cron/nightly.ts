/**
 * The nightly trigger. node-cron fires in every instance; the first instance to insert the
 * slot into `cron_slots` (primary key) creates the run, every other one sees the conflict and
 * does nothing. A slot missed while every instance was down is fired once by the first
 * instance that starts, when CRON_MISSED=catch-up and the schedule has fired before.
 */
import cron, { type ScheduledTask } from 'node-cron';
import type { Db } from '../db.ts';
import type { ResolvedDefinition } from '../definitions/resolve.ts';
import { UserError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { createRun } from '../runs/run-store.ts';
import { previousSlot, slotKey, slotTimeOf } from './slots.ts';

export interface NightlyOptions {
  db: Db;
  log: Logger;
  instanceId: string;
  /** The definition this trigger starts runs of (one trigger per scheduled definition). */
  definition: ResolvedDefinition;
  schedule: string;
  timezone: string;
  missed: 'catch-up' | 'skip';
  partitionSize: number;
  maxPartitions: number;
  leaseMs: number;
  /** Starts identification of a run this instance created. */
  identify(runId: number): Promise<void>;
}

export type SlotOutcome = { fired: false } | { fired: true; runId: number | null; outcome: string };

/** Claims the slot and, for the one instance that wins it, creates the run. */
export async function fireSlot(options: NightlyOptions, scheduled: Date): Promise<SlotOutcome> {
  const migration = options.definition.name;
  const key = slotKey(migration, scheduled);
  const { db, log } = options;
  const claimed = await db.pool.query(
    `INSERT INTO cron_slots (slot_key, migration, fired_by, outcome) VALUES ($1, $2, $3, 'claimed')
     ON CONFLICT (slot_key) DO NOTHING`,
    [key, migration, options.instanceId],
  );
  if (claimed.rowCount !== 1) return { fired: false };
  try {
    const run = await createRun(db, options.definition, {
      trigger: 'cron',
      slotKey: key,
      partitionSize: options.partitionSize,
      maxPartitions: options.maxPartitions,
      instanceId: options.instanceId,
      leaseMs: options.leaseMs,
    });
    await db.pool.query(`UPDATE cron_slots SET run_id = $2, outcome = 'run-created' WHERE slot_key = $1`, [key, run.runId]);
    log.info({ slot: key, runId: run.runId, migration, groups: run.groups.length }, 'nightly run created');
    options.identify(run.runId).catch((error: unknown) => log.error({ runId: run.runId, err: String(error) }, 'identification failed'));
    return { fired: true, runId: run.runId, outcome: 'run-created' };
  } catch (error) {
    const outcome = error instanceof UserError ? `skipped: ${error.message}` : `error: ${String(error)}`;
    await db.pool.query('UPDATE cron_slots SET outcome = $2 WHERE slot_key = $1', [key, outcome.slice(0, 2000)]);
    log.warn({ slot: key, outcome }, 'nightly slot did not start a run');
    return { fired: true, runId: null, outcome };
  }
}

/**
 * Fires the latest slot if it was missed while every instance was down. "Now" is the
 * database clock (unless given), so instances with skewed clocks agree on the slot.
 */
export async function catchUpMissedSlot(options: NightlyOptions, now?: Date): Promise<SlotOutcome> {
  if (options.missed !== 'catch-up') return { fired: false };
  const { rows } = await options.db.pool.query<{ slot_key: string | null; now_ms: number }>(
    `SELECT (SELECT slot_key FROM cron_slots WHERE migration = $1 ORDER BY slot_key DESC LIMIT 1) AS slot_key,
            (extract(epoch FROM now()) * 1000)::float8 AS now_ms`,
    [options.definition.name],
  );
  const lastKey = rows[0]?.slot_key;
  const last = lastKey ? slotTimeOf(lastKey) : null;
  if (!last) return { fired: false }; // the schedule never fired: nothing was missed
  const due = previousSlot(options.schedule, options.timezone, now ?? new Date(rows[0]!.now_ms));
  if (due.getTime() <= last.getTime()) return { fired: false };
  options.log.info({ slot: due.toISOString() }, 'catching up a missed nightly slot');
  return fireSlot(options, due);
}

export interface NightlyHandle {
  /** Settles once the start-up check for a missed slot has run (never rejects). */
  readonly caughtUp: Promise<SlotOutcome>;
  stop(): Promise<void>;
}

export function startNightly(options: NightlyOptions): NightlyHandle {
  const task: ScheduledTask = cron.schedule(
    options.schedule,
    async (context) => {
      await fireSlot(options, context.date).catch((error: unknown) =>
        options.log.error({ err: String(error) }, 'nightly trigger failed'),
      );
    },
    { timezone: options.timezone, name: `tranche-${options.definition.name}-${options.instanceId}`, noOverlap: false },
  );
  const caughtUp = catchUpMissedSlot(options).catch((error: unknown): SlotOutcome => {
    options.log.error({ err: String(error) }, 'catch-up check failed');
    return { fired: false };
  });
  return {
    caughtUp,
    async stop() {
      await task.destroy();
    },
  };
}
