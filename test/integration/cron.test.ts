/**
 * I2, one run per slot: several `tranche serve` processes fire a per-second cron, and every
 * slot ends up with exactly one cron_slots row and at most one run; a slot missed while every
 * instance was down is fired once at start (catch-up) or not at all (skip).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catchUpMissedSlot, type NightlyOptions, startNightly } from '../../src/cron/nightly.ts';
import { previousSlot, slotKey, slotTimeOf } from '../../src/cron/slots.ts';
import { createDb } from '../../src/db.ts';
import type { ResolvedDefinition } from '../../src/definitions/resolve.ts';
import { FIXTURE_MIGRATION, seed } from '../../src/seed.ts';
import { createTestEnv, quietLog, type TestEnv, testDefinitions, waitFor } from '../support/env.ts';
import { deleteTestTopics } from '../support/services.ts';

const BIN = fileURLToPath(new URL('../../bin/tranche.js', import.meta.url));

interface ServeProcess {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

function serve(env: Record<string, string>): ServeProcess {
  const child = spawn(process.execPath, [BIN, 'serve'], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stderr: () => stderr, exited };
}

async function stopServe(p: ServeProcess): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
  await p.exited;
  clearTimeout(timer);
}

describe('nightly trigger: one run per slot (I2)', () => {
  let env: TestEnv;
  const processes: ServeProcess[] = [];
  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => {
    await Promise.all(processes.map(stopServe));
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('three instances on a per-second cron: exactly one slot row and at most one run per second', async () => {
    await seed(env.db, { rows: 600, groups: 3, changed: 2 });
    for (const name of ['a', 'b', 'c']) {
      processes.push(
        serve({ ...env.env, CRON_ENABLED: 'true', CRON_SCHEDULE: '* * * * * *', LOG_LEVEL: 'info', INSTANCE_ID: `cron-${name}` }),
      );
    }
    await waitFor(async () => processes.every((p) => p.stderr().includes('"service started"')), 60_000, 'three instances to start');
    const startedAt = (await env.db.pool.query<{ ms: number }>('SELECT (extract(epoch FROM now()) * 1000)::float8 AS ms')).rows[0]!.ms;
    const windowStart = Math.ceil(startedAt / 1000) * 1000 + 1000;
    const windowEnd = windowStart + 5000;
    // Wait until a slot after the window has been settled by somebody, so the window is complete.
    await waitFor(
      async () => {
        const { rows } = await env.db.pool.query<{ slot_key: string }>(
          `SELECT slot_key FROM cron_slots WHERE outcome <> 'claimed' ORDER BY slot_key DESC LIMIT 1`,
        );
        const last = rows[0] ? slotTimeOf(rows[0].slot_key) : null;
        return last !== null && last.getTime() > windowEnd;
      },
      30_000,
      'the per-second slots to pass the window',
    );
    await Promise.all(processes.map(stopServe));
    for (const p of processes) expect(p.child.exitCode, p.stderr().slice(-2000)).toBe(0);

    const slots = await env.db.pool.query<{ slot_key: string; run_id: number | null; outcome: string; fired_by: string }>(
      'SELECT slot_key, run_id, outcome, fired_by FROM cron_slots ORDER BY slot_key',
    );
    // Every slot is named by a whole second, and no second appears twice under another name.
    const seconds = slots.rows.map((s) => slotTimeOf(s.slot_key)!.getTime());
    for (const t of seconds) expect(t % 1000).toBe(0);
    expect(new Set(seconds).size).toBe(seconds.length);
    // Each second of the window fired, exactly once.
    const inWindow = seconds.filter((t) => t >= windowStart && t <= windowEnd);
    expect(inWindow).toEqual(Array.from({ length: 6 }, (_, i) => windowStart + i * 1000));
    for (const s of slots.rows) {
      expect(s.outcome, s.slot_key).toMatch(/^(run-created|skipped: .*still active.*)$/);
      expect(s.run_id !== null, s.slot_key).toBe(s.outcome === 'run-created');
    }
    // One run per run-created slot, and no run without its slot.
    const runs = await env.db.pool.query<{ id: number; slot_key: string | null; trigger: string }>(
      'SELECT id, slot_key, trigger FROM migration_runs ORDER BY id',
    );
    const created = slots.rows.filter((s) => s.outcome === 'run-created');
    expect(created.length).toBeGreaterThan(0);
    expect(runs.rows.map((r) => ({ id: r.id, slot: r.slot_key, trigger: r.trigger })).sort((a, b) => a.id - b.id)).toEqual(
      created.map((s) => ({ id: s.run_id, slot: s.slot_key, trigger: 'cron' })).sort((a, b) => a.id! - b.id!),
    );
    // The first run migrated the two changed products; later slots found nothing to do.
    const first = await env.db.pool.query('SELECT count(*)::int AS n FROM run_groups WHERE run_id = $1', [created[0]!.run_id]);
    expect(first.rows[0].n).toBe(2);
  });
});

describe('nightly trigger: a slot missed while every instance was down', () => {
  let env: TestEnv;
  let definition: ResolvedDefinition;
  beforeAll(async () => {
    env = await createTestEnv();
    definition = (await testDefinitions(env)).require(FIXTURE_MIGRATION);
  });
  afterAll(async () => {
    await env.cleanup();
  });

  const SCHEDULE = '0 2 * * *';
  const options = (instanceId: string, missed: 'catch-up' | 'skip', identified: number[]): NightlyOptions => ({
    db: env.db,
    log: quietLog,
    instanceId,
    definition,
    schedule: SCHEDULE,
    timezone: 'UTC',
    missed,
    partitionSize: 100,
    maxPartitions: 100,
    leaseMs: 10_000,
    identify: async (runId) => {
      identified.push(runId);
    },
  });

  /** Records the slot before the latest one as fired, so the latest one is the missed slot. */
  async function recordEarlierSlot(): Promise<{ missedKey: string; earlierKey: string }> {
    await env.db.pool.query('TRUNCATE cron_slots, run_groups, migration_runs RESTART IDENTITY CASCADE');
    const nowMs = (await env.db.pool.query<{ ms: number }>('SELECT (extract(epoch FROM now()) * 1000)::float8 AS ms')).rows[0]!.ms;
    const missed = previousSlot(SCHEDULE, 'UTC', new Date(nowMs));
    const earlier = previousSlot(SCHEDULE, 'UTC', new Date(missed.getTime() - 1000));
    const earlierKey = slotKey(FIXTURE_MIGRATION, earlier);
    await env.db.pool.query(
      `INSERT INTO cron_slots (slot_key, migration, fired_by, fired_at, outcome) VALUES ($1, $2, 'gone', $3, 'run-created')`,
      [earlierKey, FIXTURE_MIGRATION, earlier.toISOString()],
    );
    return { missedKey: slotKey(FIXTURE_MIGRATION, missed), earlierKey };
  }

  it('catch-up: instances starting at once fire the missed slot once', async () => {
    await seed(env.db, { rows: 100, groups: 2, changed: 1, reset: true });
    const { missedKey, earlierKey } = await recordEarlierSlot();
    const identified: number[] = [];
    // Four instances, each with its own connection pool, as separate processes would have.
    const dbs = Array.from({ length: 4 }, () => createDb({ ...env.config, dbPoolSize: 2 }));
    await Promise.all(dbs.map((db) => db.pool.query('SELECT 1')));
    const nightlies = dbs.map((db, i) => startNightly({ ...options(`n${i}`, 'catch-up', identified), db }));
    const outcomes = await Promise.all(nightlies.map((n) => n.caughtUp));
    await Promise.all(nightlies.map((n) => n.stop()));
    await Promise.all(dbs.map((db) => db.close()));

    const fired = outcomes.filter((o) => o.fired);
    expect(fired).toHaveLength(1);
    expect(fired[0]).toMatchObject({ fired: true, outcome: 'run-created' });
    const slots = await env.db.pool.query('SELECT slot_key, outcome, run_id FROM cron_slots ORDER BY slot_key');
    expect(slots.rows.map((r) => r.slot_key)).toEqual([earlierKey, missedKey]);
    const runs = await env.db.pool.query('SELECT id, slot_key, trigger FROM migration_runs');
    expect(runs.rows).toEqual([{ id: slots.rows[1].run_id, slot_key: missedKey, trigger: 'cron' }]);
    expect(identified).toEqual([runs.rows[0].id]);

    // A later start finds the slot recorded and fires nothing.
    expect(await catchUpMissedSlot(options('c', 'catch-up', identified))).toEqual({ fired: false });
    const after = await env.db.pool.query('SELECT count(*)::int AS n FROM cron_slots');
    expect(after.rows[0].n).toBe(2);
  });

  it('skip: a starting instance leaves the missed slot alone', async () => {
    const { earlierKey } = await recordEarlierSlot();
    const identified: number[] = [];
    const a = startNightly(options('a', 'skip', identified));
    expect(await a.caughtUp).toEqual({ fired: false });
    await a.stop();
    const slots = await env.db.pool.query('SELECT slot_key FROM cron_slots');
    expect(slots.rows.map((r) => r.slot_key)).toEqual([earlierKey]);
    const runs = await env.db.pool.query('SELECT count(*)::int AS n FROM migration_runs');
    expect(runs.rows[0].n).toBe(0);
    expect(identified).toEqual([]);
  });

  it('catch-up with no slot ever recorded fires nothing (a fresh install does not run at start)', async () => {
    await env.db.pool.query('TRUNCATE cron_slots, run_groups, migration_runs RESTART IDENTITY CASCADE');
    const identified: number[] = [];
    expect(await catchUpMissedSlot(options('a', 'catch-up', identified))).toEqual({ fired: false });
    const runs = await env.db.pool.query('SELECT count(*)::int AS n FROM migration_runs');
    expect(runs.rows[0].n).toBe(0);
  });
});
