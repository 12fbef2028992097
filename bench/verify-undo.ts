/**
 * What proving and taking back a run cost, against baselines of the same run:
 *   - `verify` of a completed run beside ONE `SELECT count(*)` of the eligible predicate over
 *     the same rows (the run's groups), median of three each; target: at most 2x;
 *   - the undo run's rows/s beside the forward run's (created to completed, from the database),
 *     and counting its start too (the applied log expanded and the plan, before the run exists);
 *   - the applied log's cost: the forward run (which writes the log) beside the same change by a
 *     definition without undo (no log) over the same rows, run once before and once after.
 *
 *   node bench/verify-undo.ts [--rows 1000000] [--groups 20] [--instances 2] [--partition-size 20000]
 *
 * Works in its own schema on the local services (like the tests), removed at the end.
 * Prints figures; nothing fails on speed.
 */
import { wholeFlag } from '../src/cli/parse.ts';
import { getRunStatus } from '../src/runs/run-store.ts';
import { FIXTURE_DEFINITION, seed } from '../src/seed.ts';
import { startUndoRun, type UndoRun } from '../src/undo/undo.ts';
import { verifyRun } from '../src/verify/verify.ts';
import { createTestEnv, type TestEnv, testDefinitions, waitFor } from '../test/support/env.ts';
import { SUBSCRIPTION_NO_UNDO } from '../test/support/fixtures.ts';
import { startTestRun } from '../test/support/runs.ts';
import { deleteTestTopics, startInstances, stopAll } from '../test/support/services.ts';
import { benchArgs } from './args.ts';

const args = benchArgs(import.meta.url, {
  rows: { type: 'string', default: '1000000' },
  groups: { type: 'string', default: '20' },
  instances: { type: 'string', default: '2' },
  'partition-size': { type: 'string', default: '20000' },
});
const rows = wholeFlag('rows', args.rows, 10);
const groups = wholeFlag('groups', args.groups, 2);
const instances = wholeFlag('instances', args.instances, 1);
const partitionSize = wholeFlag('partition-size', args['partition-size'], 1);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** Waits for the run to complete; its rows/s from the database's created_at and completed_at. */
async function rate(env: TestEnv, runId: number): Promise<{ rows: number; seconds: number; perSecond: number }> {
  await waitFor(async () => (await getRunStatus(env.db.pool, runId))?.status === 'completed', 3_600_000, `run ${runId} to complete`, 200);
  const { rows: r } = await env.db.pool.query<{ s: number; n: string }>(
    `SELECT extract(epoch FROM completed_at - created_at)::float8 AS s, (SELECT sum(rows_applied) FROM partitions WHERE run_id = $1) AS n
     FROM migration_runs WHERE id = $1`,
    [runId],
  );
  const n = Number(r[0]!.n);
  return { rows: n, seconds: r[0]!.s, perSecond: n / r[0]!.s };
}

const env = await createTestEnv({ LOG_LEVEL: 'silent', TRANCHE_DEFINITIONS: `${FIXTURE_DEFINITION},${SUBSCRIPTION_NO_UNDO}` });
const services = await startInstances(env, instances).catch(async (error) => {
  await env.cleanup();
  throw error;
});
try {
  await seed(env.db, { rows, groups, changed: Math.ceil(groups / 2) });
  const co = services[0]!.coordination;
  const definitions = await testDefinitions(env);
  // The same change by a definition without undo (no applied log), before and after the
  // runs measured (so that neither warm-up nor a warm cache favours one side); each time the
  // rows are set back to where they were first.
  const plainChange = async () => {
    await env.db.pool.query("DELETE FROM group_progress WHERE migration = 'subscription-no-undo'");
    return rate(env, await startTestRun(env, partitionSize, { coordination: co, migration: 'subscription-no-undo' }));
  };
  const plainBefore = await plainChange();
  await env.db.pool.query(
    `UPDATE subscriptions s SET product_version = 1 FROM products p WHERE p.product_key = s.product_key AND s.product_version = p.product_version AND p.product_version > 1`,
  );
  await env.db.pool.query('VACUUM ANALYZE subscriptions');
  const forwardRun = await startTestRun(env, partitionSize, { coordination: co });
  const forward = await rate(env, forwardRun);
  await env.db.pool.query('VACUUM ANALYZE subscriptions');

  const verifyMs: number[] = [];
  const countMs: number[] = [];
  const count = `SELECT count(*) FROM subscriptions t JOIN run_groups rg ON rg.run_id = $1 AND t.product_key = rg.group_key
                 WHERE t.product_version < rg.target::integer`;
  for (let i = 0; i < 3; i++) {
    countMs.push(await timed(() => env.db.pool.query(count, [forwardRun])));
    verifyMs.push(await timed(() => verifyRun(env.db.pool, definitions, forwardRun)));
  }
  const verdict = (await verifyRun(env.db.pool, definitions, forwardRun)).verdict;
  let undo!: UndoRun;

  const undoStartMs = await timed(async () => {
    undo = await startUndoRun(env.db, co, definitions, forwardRun);
  });
  const back = await rate(env, undo.runId);
  const plainAfter = await plainChange();
  const plain = { rows: plainAfter.rows, seconds: (plainBefore.seconds + plainAfter.seconds) / 2, perSecond: (plainBefore.perSecond + plainAfter.perSecond) / 2 };

  const f = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  console.log(`verify-undo: ${f(rows)} rows, ${groups} groups, ${instances} instance(s), partitions of ${f(partitionSize)} rows`);
  console.log(`forward run (writes the applied log)  ${f(forward.rows)} rows in ${f(forward.seconds, 2)} s = ${f(forward.perSecond)} rows/s`);
  console.log(`verify of the completed run           median ${f(median(verifyMs), 1)} ms (${verdict})`);
  console.log(`SELECT count(*) of eligible, same rows median ${f(median(countMs), 1)} ms`);
  console.log(`  verify / count(*) = ${f(median(verifyMs) / median(countMs), 2)}x (target: at most 2x)`);
  console.log(`undo run                              ${f(back.rows)} rows in ${f(back.seconds, 2)} s = ${f(back.perSecond)} rows/s (${f(undo.skipped)} left alone)`);
  console.log(`  undo / forward rows/s = ${f(back.perSecond / forward.perSecond, 2)}`);
  const withStart = back.rows / (back.seconds + undoStartMs / 1000);
  console.log(`  its start (applied log expanded, plan) ${f(undoStartMs)} ms; counting it ${f(withStart)} rows/s = ${f(withStart / forward.perSecond, 2)}x the forward run`);
  console.log(`same change without undo (no log)     ${f(plain.rows)} rows: ${f(plainBefore.perSecond)} rows/s before, ${f(plainAfter.perSecond)} after, mean ${f(plain.perSecond)}`);
  console.log(`  forward with log / without, rows/s = ${f(forward.perSecond / plain.perSecond, 2)}`);
} finally {
  await stopAll(services);
  await deleteTestTopics(env);
  await env.cleanup();
}
