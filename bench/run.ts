/**
 * `npm run bench`: the benchmark suite, one after the other, with defaults that finish in
 * about ten minutes on 2 cores, then one table of the headline figures, each beside the
 * baseline measured in the same run. Each benchmark also prints its own detailed table.
 * Nothing here fails on speed.
 *
 *   node bench/run.ts [--quick]      (--quick: smaller sizes, a smoke run)
 *
 *   identification   bench/identify.ts      boundaries vs one index-only count of the same rows
 *   one-time tasks   bench/tasks.ts         claim-and-complete and schedule-to-claim vs
 *                                           db-scheduler, graphile-worker, pg-boss
 *   kill recovery    bench/kill-recovery.ts SIGKILL to the partition running elsewhere
 *   end to end       bench/e2e.ts           rows/s with 1, 2, 3 instances vs bulk UPDATE and
 *                                           keyset loop; peak RSS at two sizes; the chart
 */
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { benchArgs } from './args.ts';
import { renderSummary } from './summary.ts';

const { quick } = benchArgs(import.meta.url, { quick: { type: 'boolean', default: false } });
const dir = fileURLToPath(new URL('./', import.meta.url));

const suite: { name: string; file: string; args: string[] }[] = [
  { name: 'identification', file: 'identify.ts', args: quick ? ['--rows', '500000', '--repeat', '1'] : ['--rows', '2000000', '--repeat', '2'] },
  { name: 'one-time tasks', file: 'tasks.ts', args: quick ? ['--tasks', '2000', '--delay-samples', '5'] : [] },
  { name: 'kill recovery', file: 'kill-recovery.ts', args: ['--kills', '1'] },
  { name: 'end to end', file: 'e2e.ts', args: quick ? ['--rows', '100000', '--instances', '1,2', '--memory-rows', '10000'] : ['--rows', '1000000', '--instances', '1,2,3'] },
];

const summary = `${dir}results/summary-${process.pid}.jsonl`;
mkdirSync(`${dir}results`, { recursive: true });
rmSync(summary, { force: true });

function run(file: string, args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [`${dir}${file}`, ...args], { stdio: 'inherit', env: { ...process.env, BENCH_SUMMARY: summary } });
    child.on('exit', (code) => resolve(code ?? 1));
  });
}

const outcomes: string[] = [];
const started = Date.now();
for (const b of suite) {
  console.log(`\n=== ${b.name}: node bench/${b.file} ${b.args.join(' ')}\n`);
  const t = Date.now();
  const code = await run(b.file, b.args);
  outcomes.push(`${b.name.padEnd(18)} ${code === 0 ? 'done' : `exit ${code}`} in ${Math.round((Date.now() - t) / 1000)} s`);
}
console.log(`\n=== suite (${Math.round((Date.now() - started) / 1000)} s)\n${outcomes.join('\n')}`);
console.log(`\n=== figures, each beside its baseline from the same run (docs/benchmarks.md has recorded ones)\n${renderSummary(summary)}`);
process.exit(outcomes.some((o) => !o.includes('done')) ? 1 : 0);
