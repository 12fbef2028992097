/**
 * Chaos on real `tranche serve` processes: SIGKILL instances in the middle of partitions,
 * several times per run, and SIGTERM one to watch it drain. Checks I3 (one live owner),
 * I4 (resume from the offset: at most one page produced again per task killed) and I5.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Coordination, createCoordination } from '../../src/coordination/redis.ts';
import { setThrottleLimit } from '../../src/coordination/throttle.ts';
import { getRunStatus } from '../../src/runs/run-store.ts';
import { countEligible, seed } from '../../src/seed.ts';
import { ensureTopics } from '../../src/service.ts';
import { createStreamClient } from '../../src/stream/kafka.ts';
import { createTestEnv, quietLog, type TestEnv, waitFor } from '../support/env.ts';
import { startTestRun } from '../support/runs.ts';
import { deleteTestTopics } from '../support/services.ts';
import { readTopic } from '../support/topics.ts';

const BIN = fileURLToPath(new URL('../../bin/tranche.js', import.meta.url));
const PAGE_SIZE = 100;

interface Instance {
  id: string;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  log(): string;
}

/** Every process spawned, started or not, so that none outlives the tests. */
const spawned: ChildProcess[] = [];

/** Starts `tranche serve` as a subprocess and resolves once it says it started. */
async function startServe(env: TestEnv, id: string, overrides: Record<string, string> = {}): Promise<Instance> {
  const child = spawn(process.execPath, [BIN, 'serve'], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env.env, LOG_LEVEL: 'info', ...overrides, INSTANCE_ID: id },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  spawned.push(child);
  let output = '';
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const instance: Instance = { id, child, exited, log: () => output };
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`instance ${id} exited at start:\n${output}`);
    return output.includes('"msg":"service started"');
  }, 30_000, `instance ${id} to start`, 50);
  return instance;
}


interface Owned {
  partitionId: number;
  pickedBy: string;
  offsetId: number | null;
  rowsProduced: number;
  rowCount: number;
}

async function ownedTasks(env: TestEnv, runId: number): Promise<Owned[]> {
  const { rows } = await env.db.pool.query(
    `SELECT p.id AS "partitionId", t.picked_by AS "pickedBy", p.offset_key AS "offsetId", p.rows_produced AS "rowsProduced", p.row_count AS "rowCount"
     FROM scheduled_tasks t JOIN partitions p ON p.id = t.task_instance::bigint
     WHERE t.task_name = 'partition' AND t.picked AND p.run_id = $1`,
    [runId],
  );
  return rows;
}

/** Update records on the topic per partition: [records, distinct rows]. */
async function recordsPerPartition(env: TestEnv, runId: number, expectAtLeast: number): Promise<Map<number, { records: number; rows: Set<string> }>> {
  const messages = await readTopic(env.config.kafkaBrokers, env.config.topicUpdates, expectAtLeast, 30_000);
  const byPartition = new Map<number, { records: number; rows: Set<string> }>();
  for (const m of messages) {
    const record = JSON.parse(m.value!) as { run: number; p: number; k: string };
    if (record.run !== runId) continue;
    const entry = byPartition.get(record.p) ?? { records: 0, rows: new Set<string>() };
    entry.records++;
    entry.rows.add(record.k);
    byPartition.set(record.p, entry);
  }
  return byPartition;
}

describe('instances killed and stopped in the middle of partitions (subprocesses)', () => {
  let env: TestEnv;
  let co: Coordination;
  const instances: Instance[] = [];
  const kill = async (instance: Instance, signal: NodeJS.Signals) => {
    if (instance.child.exitCode === null && instance.child.signalCode === null) instance.child.kill(signal);
    return instance.exited;
  };

  beforeAll(async () => {
    env = await createTestEnv({
      PAGE_SIZE: String(PAGE_SIZE),
      WORKER_CONCURRENCY: '6', // two instances have a slot for every partition: recovery never waits for one
      HEARTBEAT_INTERVAL_MS: '300',
      HEARTBEAT_TIMEOUT_MS: '2000',
      POLL_INTERVAL_MS: '500',
      THROTTLE_ROWS_PER_SECOND: '1000',
    });
    co = createCoordination({ redisUrl: env.config.redisUrl, prefix: env.config.redisPrefix }, quietLog);
    const stream = createStreamClient({ brokers: env.config.kafkaBrokers, clientId: 'test' }, quietLog);
    await ensureTopics(stream, env.config);
    await stream.disconnect();
    await seed(env.db, { rows: 60_000, groups: 6, changed: 3 });
  });
  afterAll(async () => {
    for (const child of spawned) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await co.close();
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('SIGKILL of instances mid-partition, four times: the run completes, one live owner at a time, at most one page again per task killed', async () => {
    instances.push(...(await Promise.all([1, 2, 3, 4].map((i) => startServe(env, `crash-${i}`)))));
    const runId = await startTestRun(env, 2500, { coordination: co });
    const total = (await getRunStatus(env.db.pool, runId))!.rows.total;
    expect(total).toBe(30_000);

    // Ownership sampler: a task may change hands only away from an instance that was killed.
    const killed = new Set<string>();
    const violations: string[] = [];
    const owner = new Map<number, string>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const o of await ownedTasks(env, runId).catch(() => [])) {
          const before = owner.get(o.partitionId);
          if (before && before !== o.pickedBy && !killed.has(before)) violations.push(`partition ${o.partitionId}: ${before} (alive) -> ${o.pickedBy}`);
          owner.set(o.partitionId, o.pickedBy);
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    })();

    const lostTasks = new Map<number, number>(); // partition -> times its owner was killed
    const recoveries: number[] = [];
    const restarts: Promise<void>[] = [];
    const alive = () => instances.filter((i) => i.child.exitCode === null && i.child.signalCode === null);
    for (let k = 1; k <= 4; k++) {
      // Kill only while two instances would be left to take over (12 slots for 12 partitions).
      await waitFor(async () => alive().length >= 3, 30_000, 'a restarted instance', 50);
      const live = new Set(alive().map((i) => i.id));
      // A victim that is in the middle of a partition: some pages out, more to go.
      const victimTasks = await waitFor(
        async () => {
          const mid = (await ownedTasks(env, runId)).filter((o) => live.has(o.pickedBy) && o.offsetId !== null && o.rowsProduced < o.rowCount - PAGE_SIZE);
          const victim = mid[0]?.pickedBy;
          return victim ? (await ownedTasks(env, runId)).filter((o) => o.pickedBy === victim) : null;
        },
        20_000,
        `an instance in the middle of a partition (kill ${k})`,
        20,
      ).catch(async (error: unknown) => {
        const parts = (await env.db.pool.query('SELECT id, state, offset_key, rows_produced, row_count, attempts FROM partitions WHERE run_id = $1 ORDER BY id', [runId])).rows;
        const tasks = (await env.db.pool.query('SELECT task_instance, picked, picked_by, execution_time, last_heartbeat, now() AS now FROM scheduled_tasks')).rows;
        const logs = instances.map((i) => `--- ${i.id}\n${i.log().split('\n').filter((l) => !l.includes('"level":30')).slice(-15).join('\n')}`).join('\n');
        throw new Error(`${String(error)}\n${JSON.stringify(parts)}\n${JSON.stringify(tasks)}\n${logs}`);
      });
      const victim = instances.find((i) => i.id === victimTasks[0]!.pickedBy)!;
      killed.add(victim.id);
      const killedAt = Date.now();
      await kill(victim, 'SIGKILL');
      for (const t of victimTasks) lostTasks.set(t.partitionId, (lostTasks.get(t.partitionId) ?? 0) + 1);
      const restart = startServe(env, `crash-${4 + k}`);
      // Each of its partitions runs again elsewhere (or was finished by then).
      await waitFor(
        async () => {
          const now = await ownedTasks(env, runId);
          for (const t of victimTasks) {
            const o = now.find((x) => x.partitionId === t.partitionId);
            const done = (await env.db.pool.query('SELECT completed FROM partitions WHERE id = $1', [t.partitionId])).rows[0].completed;
            if (!done && (!o || o.pickedBy === victim.id)) return false;
          }
          return true;
        },
        15_000,
        `the partitions of ${victim.id} to run again`,
        20,
      ).catch(async (error: unknown) => {
        const tasks = (await env.db.pool.query('SELECT task_instance, picked, picked_by, version, execution_time, last_heartbeat, now() AS now FROM scheduled_tasks ORDER BY 1')).rows;
        const logs = alive().map((i) => `--- ${i.id}\n${i.log().split('\n').filter((l) => !l.includes('kafka')).slice(-12).join('\n')}`).join('\n');
        throw new Error(`${String(error)}\n${JSON.stringify(tasks)}\n${logs}`);
      });
      recoveries.push(Date.now() - killedAt);
      // A restart can take a while (its consumer joins the group only once the dead member's
      // session expired); the others do the work meanwhile.
      restarts.push(restart.then((i) => void instances.push(i)));
    }

    const done = await waitFor(async () => {
      const s = await getRunStatus(env.db.pool, runId);
      return s?.status === 'completed' ? s : null;
    }, 60_000, 'the run to complete').catch(async (error: unknown) => {
      const parts = (await env.db.pool.query('SELECT id, state, offset_key, rows_produced, rows_applied, row_count, attempts, last_error FROM partitions WHERE run_id = $1 ORDER BY id', [runId])).rows;
      const tasks = (await env.db.pool.query('SELECT task_instance, picked, picked_by, version, execution_time, last_heartbeat, now() AS now FROM scheduled_tasks ORDER BY 1')).rows;
      const status = await getRunStatus(env.db.pool, runId);
      const logs = alive().map((i) => `--- ${i.id}\n${i.log().split('\n').filter((l) => !l.includes('rebalancing')).slice(-12).join('\n')}`).join('\n');
      throw new Error(`${String(error)}\n${JSON.stringify(status)}\n${JSON.stringify(parts)}\n${JSON.stringify(tasks)}\n${logs}`);
    });
    sampling = false;
    await sampler;
    await Promise.all(restarts);

    expect(violations).toEqual([]);
    expect(done.rows).toMatchObject({ total, applied: total });
    expect(done.partitions.failed).toBe(0);
    expect(await countEligible(env.db)).toBe(0);
    // Recovery needs the heartbeat to go stale (2 s) plus a poll (0.5 s).
    for (const ms of recoveries) expect(ms).toBeLessThan(6000);

    const records = await recordsPerPartition(env, runId, total);
    const partitions = (await env.db.pool.query('SELECT id, row_count FROM partitions WHERE run_id = $1', [runId])).rows;
    let duplicates = 0;
    for (const p of partitions) {
      const r = records.get(p.id);
      expect(r?.rows.size, `rows of partition ${p.id} on the topic`).toBe(p.row_count);
      const again = r!.records - r!.rows.size;
      duplicates += again;
      expect(again, `records of partition ${p.id} produced twice`).toBeLessThanOrEqual(PAGE_SIZE * (lostTasks.get(p.id) ?? 0));
    }
    // The figures, for the record.
    console.log(`crash: 4 kills, ${[...lostTasks.values()].reduce((a, b) => a + b, 0)} tasks lost, ${duplicates} records produced twice, recoveries ${recoveries.join(', ')} ms`);
  });

  it('SIGTERM drains: exit 0 within the grace period, tasks released and taken over at once, offsets kept, nothing produced twice', async () => {
    await Promise.all(instances.map((i) => kill(i, 'SIGKILL')));
    instances.length = 0;
    // Neither a stale heartbeat (30 s) nor a poll (10 s) could explain a quick takeover here.
    // A fresh consumer group: joining the old one would wait for the killed members' sessions to expire.
    // 400 rows/s: the partitions are far from done when the grace period (3 s) ends.
    const slow = {
      HEARTBEAT_TIMEOUT_MS: '30000',
      POLL_INTERVAL_MS: '10000',
      SHUTDOWN_GRACE_MS: '3000',
      THROTTLE_ROWS_PER_SECOND: '400',
      KAFKA_GROUP_ID: `${env.config.kafkaGroupId}-drain`,
    };
    await env.db.pool.query(`UPDATE products SET product_version = product_version + 1 WHERE product_key = 'product-001'`);
    const leaving = await startServe(env, 'drain-a', { ...slow, WORKER_CONCURRENCY: '2' });
    instances.push(leaving);
    const runId = await startTestRun(env, 2500, { coordination: co, groupFilter: ['product-001'] }); // 4 partitions
    const before = await waitFor(
      async () => {
        const owned = (await ownedTasks(env, runId)).filter((o) => o.pickedBy === 'drain-a');
        return owned.length === 2 && owned.every((o) => o.offsetId !== null && o.rowsProduced < o.rowCount - PAGE_SIZE) ? owned : null;
      },
      20_000,
      'drain-a to be in the middle of two partitions',
      20,
    );
    const staying = await startServe(env, 'drain-b', { ...slow, WORKER_CONCURRENCY: '4' });
    instances.push(staying);

    const termAt = Date.now();
    leaving.child.kill('SIGTERM');
    const exit = await leaving.exited;
    const exitedAt = Date.now();
    expect(exit, leaving.log().slice(-2000)).toEqual({ code: 0, signal: null });
    expect(exitedAt - termAt).toBeLessThan(3000);
    const atExit = (await env.db.pool.query(`SELECT count(*)::int AS n FROM scheduled_tasks WHERE picked_by = 'drain-a'`)).rows[0].n;
    expect(atExit).toBe(0);

    // drain-b, woken, takes both partitions at once, from their offsets.
    const released = before.map((b) => b.partitionId);
    const taken = await waitFor(
      async () => {
        const { rows } = await env.db.pool.query(
          `SELECT p.id, p.offset_key, p.rows_produced, p.completed, t.picked_by
           FROM partitions p LEFT JOIN scheduled_tasks t ON t.task_name = 'partition' AND t.task_instance = p.id::text
           WHERE p.id = ANY ($1::bigint[])`,
          [released],
        );
        return rows.every((r) => r.picked_by === 'drain-b') ? rows : null;
      },
      3000,
      'drain-b to take the released partitions',
      20,
    );
    expect(Date.now() - exitedAt).toBeLessThan(3000);
    for (const t of taken) {
      const b = before.find((x) => x.partitionId === t.id)!;
      expect(t.offset_key).not.toBeNull();
      expect(t.rows_produced).toBeGreaterThanOrEqual(b.rowsProduced);
    }
    // The operator lifts the throttle while the run is going; every instance follows.
    await setThrottleLimit(co.client, env.config.redisPrefix, 0);
    const done = await waitFor(async () => {
      const s = await getRunStatus(env.db.pool, runId);
      return s?.status === 'completed' ? s : null;
    }, 30_000, 'the run to complete');
    const records = await recordsPerPartition(env, runId, done.rows.total);
    const produced = [...records.values()].reduce((sum, r) => sum + r.records, 0);
    expect(produced).toBe(done.rows.total); // the drain checkpointed after a whole page
  });

  it('serve bounds its V8 heap and fixes the malloc mmap threshold in place (same process id) unless NODE_OPTIONS sets a heap flag', async () => {
    const heapLimit = (instance: Instance) => Number(/"heapLimitMb":(\d+)/.exec(instance.log())?.[1]);
    const bounded = await startServe(env, 'heap-default');
    const ownArgs = readFileSync(`/proc/${bounded.child.pid}/cmdline`, 'utf8').split('\0');
    expect(ownArgs).toEqual(expect.arrayContaining(['--max-semi-space-size=16', '--max-old-space-size=256', '--heap-growing-percent=100']));
    // and with a fixed malloc mmap threshold (glibc), so that large freed buffers leave RSS
    expect(readFileSync(`/proc/${bounded.child.pid}/environ`, 'utf8').split('\0')).toContain('MALLOC_MMAP_THRESHOLD_=131072');
    expect(heapLimit(bounded)).toBeGreaterThan(0);
    expect(heapLimit(bounded)).toBeLessThanOrEqual(320);
    const chosen = await startServe(env, 'heap-chosen', { NODE_OPTIONS: '--max-old-space-size=700' });
    expect(readFileSync(`/proc/${chosen.child.pid}/cmdline`, 'utf8')).not.toContain('max-semi-space-size');
    expect(heapLimit(chosen)).toBeGreaterThanOrEqual(700);
    expect(await kill(bounded, 'SIGTERM')).toEqual({ code: 0, signal: null });
    expect(await kill(chosen, 'SIGTERM')).toEqual({ code: 0, signal: null });
  });
});
