/**
 * The invariants I1–I7 of ../shared/DESIGN.md, checked after a run with SQL written
 * independently of the code under test and with the topics' contents read by a plain
 * Kafka consumer.
 */
import { forEachMessage, type TopicMessage } from '../support/topics.ts';
import type { Config } from '../../src/config.ts';
import type { Db } from '../../src/db.ts';

export interface InvariantCheck {
  name: string;
  ok: boolean;
  detail: string;
}

/** Every message of a topic (`onMessage` sees each one); returns how many. */
async function scanTopic(brokers: readonly string[], topic: string, onMessage: (message: TopicMessage) => void = () => {}): Promise<number> {
  return forEachMessage(brokers, topic, onMessage, { timeoutMs: 300_000 });
}

/** The rows a run must move, as the chaos run saved them before it started (`g`, `pos`, `k`). */
export const SNAPSHOT = 'chaos_rows';

export async function checkInvariants(input: {
  db: Db;
  config: Config;
  runId: number;
  pageSize: number;
  faults: number;
  /** Runs in the schema by now (the run checked and the ones before it). */
  runs: number;
  /** Whether the rows reached their end state (the target, or back where an undone run found them). */
  converged: { ok: boolean; detail: string };
}): Promise<InvariantCheck[]> {
  const { db, config, runId } = input;
  const q = (text: string, params: unknown[] = []) => db.pool.query(text, params);
  const checks: InvariantCheck[] = [];
  const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
  const moved = (await q(`SELECT count(*)::int AS n FROM ${SNAPSHOT}`)).rows[0].n as number;

  // I1: every row the run had to move lies in exactly one partition of its group, and each
  // partition's row count is what its bounds hold. Bounds are text; they are cast to the
  // types of the snapshot's columns, which are the table's.
  const types = await q(
    `SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute
     WHERE attrelid = $1::regclass AND attname IN ('pos', 'k')`,
    [SNAPSHOT],
  );
  const type = Object.fromEntries(types.rows.map((r) => [r.attname, r.type])) as { pos: string; k: string };
  const within = `(r.pos, r.k) BETWEEN (p.lower_pos::${type.pos}, p.lower_key::${type.k}) AND (p.upper_pos::${type.pos}, p.upper_key::${type.k})`;
  const cover = await q(
    `SELECT count(*)::int AS bad FROM (
       SELECT r.k FROM ${SNAPSHOT} r
       LEFT JOIN partitions p ON p.run_id = $1 AND p.group_key = r.g AND ${within}
       GROUP BY r.k HAVING count(p.id) <> 1) x`,
    [runId],
  );
  const counted = await q(
    `SELECT count(*)::int AS bad FROM partitions p
     WHERE p.run_id = $1 AND p.row_count <> (SELECT count(*) FROM ${SNAPSHOT} r WHERE r.g = p.group_key AND ${within})`,
    [runId],
  );
  check('I1 exact cover', cover.rows[0].bad === 0 && counted.rows[0].bad === 0,
    `${cover.rows[0].bad} of ${moved} rows not in exactly one partition, ${counted.rows[0].bad} partitions whose bounds hold another count`);

  // I2: one run per start (the chaos run starts each run once; cron de-duplication has its own test).
  const runs = await q('SELECT count(*)::int AS n FROM migration_runs');
  check('I2 one run', runs.rows[0].n === input.runs, `${runs.rows[0].n} run(s) in the schema, ${input.runs} started`);

  // I3/I4: a crash or fault makes at most one page per in-flight task produced again. The
  // topic may hold earlier runs' records too: only this run's count.
  let total = 0;
  const keys = new Set<string>();
  await scanTopic(config.kafkaBrokers, config.topicUpdates, ({ value }) => {
    const record = value === null ? null : (JSON.parse(value) as { run?: number; k?: string });
    if (record?.run !== runId) return;
    total++;
    keys.add(String(record.k));
  });
  const again = total - keys.size;
  const inFlight = config.workerConcurrency * 4; // instances alive at once, generously
  const bound = input.pageSize * inFlight * Math.max(1, input.faults);
  check('I3/I4 at most one page again per interrupted task', again <= bound && keys.size === moved,
    `${total} records for ${keys.size} rows (${moved} to move); ${again} produced again, bound ${bound} (page ${input.pageSize} x ${inFlight} tasks x ${Math.max(1, input.faults)} faults)`);

  // I5: every row reached its end state, changed exactly once.
  const applied = await q('SELECT coalesce(sum(rows_applied), 0)::bigint AS n FROM partitions WHERE run_id = $1', [runId]);
  check('I5 converge', input.converged.ok && Number(applied.rows[0].n) === moved,
    `${input.converged.detail}; ${applied.rows[0].n} rows changed for ${moved} to move`);

  // I6: completed once, one completion event (a re-published duplicate carries the same event
  // id); the other events on the topic belong to the schema's earlier runs.
  const run = await q('SELECT status, uid FROM migration_runs WHERE id = $1', [runId]);
  const uids = new Set((await q('SELECT uid FROM migration_runs')).rows.map((r) => `run-${r.uid}-completed`));
  const eventIds = new Map<string, number>();
  const events = await scanTopic(config.kafkaBrokers, config.topicRunEvents, ({ headers }) => {
    const id = headers['event-id'] ?? '(none)';
    eventIds.set(id, (eventIds.get(id) ?? 0) + 1);
  });
  const ours = `run-${run.rows[0]?.uid}-completed`;
  check('I6 complete once', run.rows[0]?.status === 'completed' && eventIds.has(ours) && [...eventIds.keys()].every((id) => uids.has(id)) && eventIds.size === input.runs,
    `status ${run.rows[0]?.status}, ${events} event(s) with ids ${[...eventIds.entries()].map(([k, n]) => `${k} x${n}`).join(', ') || 'none'} for ${input.runs} run(s)`);

  // I7: nothing lost: no failed partition, nothing valid in the dead letters.
  const parts = await q(`SELECT count(*) FILTER (WHERE state <> 'completed')::int AS open, count(*)::int AS total FROM partitions WHERE run_id = $1`, [runId]);
  const dead = await q('SELECT count(*)::int AS n FROM dead_letters');
  const dlq = await scanTopic(config.kafkaBrokers, config.topicDeadLetters);
  check('I7 nothing lost', parts.rows[0].open === 0 && dead.rows[0].n === 0 && dlq === 0,
    `${parts.rows[0].open} of ${parts.rows[0].total} partitions not completed; ${dead.rows[0].n} dead letters recorded, ${dlq} on the topic (no invalid record was injected)`);
  return checks;
}
