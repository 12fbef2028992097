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

/** Every message of a topic: how many, and how many distinct keys; `onMessage` sees each one. */
async function scanTopic(
  brokers: readonly string[],
  topic: string,
  onMessage?: (message: TopicMessage) => void,
): Promise<{ total: number; distinctKeys: number }> {
  const keys = new Set<string>();
  const total = await forEachMessage(
    brokers,
    topic,
    (m) => {
      if (m.key !== null) keys.add(m.key);
      onMessage?.(m);
    },
    { timeoutMs: 300_000 },
  );
  return { total, distinctKeys: keys.size };
}

export async function checkInvariants(input: {
  db: Db;
  config: Config;
  runId: number;
  pageSize: number;
  faults: number;
  eligibleAtStart: number;
  leftEligible: number;
}): Promise<InvariantCheck[]> {
  const { db, config, runId } = input;
  const q = (text: string, params: unknown[] = []) => db.pool.query(text, params);
  const checks: InvariantCheck[] = [];
  const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });

  // I1: every row the run migrated lies in exactly one partition of its product, and each
  // partition's row count is what its bounds hold (rows are counted at their target version
  // now, since the run moved them there).
  const cover = await q(
    `SELECT count(*)::int AS bad FROM (
       SELECT s.id FROM subscriptions s
       JOIN run_groups rg ON rg.run_id = $1 AND rg.group_key = s.product_key
       LEFT JOIN partitions p ON p.run_id = $1 AND p.group_key = s.product_key
         AND (s.created_date, s.id) BETWEEN (p.lower_pos::timestamptz, p.lower_key::bigint) AND (p.upper_pos::timestamptz, p.upper_key::bigint)
       GROUP BY s.id HAVING count(p.id) <> 1) x`,
    [runId],
  );
  const counted = await q(
    `SELECT count(*)::int AS bad FROM partitions p
     WHERE p.run_id = $1 AND p.row_count <> (
       SELECT count(*) FROM subscriptions s WHERE s.product_key = p.group_key
         AND (s.created_date, s.id) BETWEEN (p.lower_pos::timestamptz, p.lower_key::bigint) AND (p.upper_pos::timestamptz, p.upper_key::bigint))`,
    [runId],
  );
  check('I1 exact cover', cover.rows[0].bad === 0 && counted.rows[0].bad === 0,
    `${cover.rows[0].bad} rows not in exactly one partition, ${counted.rows[0].bad} partitions whose bounds hold another count`);

  // I2: one run (the chaos run is started once; cron de-duplication has its own test).
  const runs = await q('SELECT count(*)::int AS n FROM migration_runs');
  check('I2 one run', runs.rows[0].n === 1, `${runs.rows[0].n} run(s) in the schema`);

  // I3/I4: a crash or fault makes at most one page per in-flight task produced again.
  const { total, distinctKeys } = await scanTopic(config.kafkaBrokers, config.topicUpdates);
  const again = total - distinctKeys;
  const inFlight = config.workerConcurrency * 4; // instances alive at once, generously
  const bound = input.pageSize * inFlight * Math.max(1, input.faults);
  check('I3/I4 at most one page again per interrupted task', again <= bound && distinctKeys === input.eligibleAtStart,
    `${total} records for ${distinctKeys} rows (${input.eligibleAtStart} eligible); ${again} produced again, bound ${bound} (page ${input.pageSize} x ${inFlight} tasks x ${Math.max(1, input.faults)} faults)`);

  // I5: every eligible row reached its target exactly once.
  const applied = await q('SELECT coalesce(sum(rows_applied), 0)::bigint AS n FROM partitions WHERE run_id = $1', [runId]);
  check('I5 converge', input.leftEligible === 0 && Number(applied.rows[0].n) === input.eligibleAtStart,
    `${input.leftEligible} eligible rows left; ${applied.rows[0].n} rows changed for ${input.eligibleAtStart} eligible`);

  // I6: completed once, one completion event (a re-published duplicate carries the same event id).
  const run = await q('SELECT status, uid, completed_at, completion_published FROM migration_runs WHERE id = $1', [runId]);
  const eventIds = new Map<string, number>();
  const events = await scanTopic(config.kafkaBrokers, config.topicRunEvents, ({ headers }) => {
    const id = headers['event-id'] ?? '(none)';
    eventIds.set(id, (eventIds.get(id) ?? 0) + 1);
  });
  check('I6 complete once', run.rows[0]?.status === 'completed' && eventIds.size === 1 && eventIds.has(`run-${run.rows[0]?.uid}-completed`),
    `status ${run.rows[0]?.status}, ${events.total} event(s) with ids ${[...eventIds.entries()].map(([k, n]) => `${k} x${n}`).join(', ') || 'none'}`);

  // I7: nothing lost: no failed partition, nothing valid in the dead letters.
  const parts = await q(`SELECT count(*) FILTER (WHERE state <> 'completed')::int AS open, count(*)::int AS total FROM partitions WHERE run_id = $1`, [runId]);
  const dead = await q('SELECT count(*)::int AS n FROM dead_letters');
  const dlq = await scanTopic(config.kafkaBrokers, config.topicDeadLetters);
  check('I7 nothing lost', parts.rows[0].open === 0 && dead.rows[0].n === 0 && dlq.total === 0,
    `${parts.rows[0].open} of ${parts.rows[0].total} partitions not completed; ${dead.rows[0].n} dead letters recorded, ${dlq.total} on the topic (no invalid record was injected)`);
  return checks;
}
