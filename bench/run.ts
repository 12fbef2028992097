/**
 * `npm run bench`: the benchmark suite, one after the other, with defaults that finish in
 * about ten minutes on 2 cores. Each benchmark prints its figures beside baselines measured
 * in the same run; nothing here fails on speed. Pass --quick for a smaller smoke run.
 *
 *   identification   bench/identify.ts      boundaries vs one index-only count of the same rows
 *   schedule->claim  bench/claim-delay.ts   with Redis wake-ups vs polling only
 *   kill recovery    bench/kill-recovery.ts SIGKILL to the partition running elsewhere
 *   end to end       bench/e2e.ts           rows/s with 1, 2, 3 instances vs bulk UPDATE and keyset loop
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const quick = process.argv.includes('--quick');
const dir = fileURLToPath(new URL('./', import.meta.url));

const suite: { name: string; file: string; args: string[] }[] = [
  { name: 'identification', file: 'identify.ts', args: quick ? ['--rows', '500000', '--repeat', '1'] : ['--rows', '2000000', '--repeat', '3'] },
  { name: 'schedule to claim', file: 'claim-delay.ts', args: quick ? ['--wake-samples', '50', '--poll-samples', '5'] : [] },
  { name: 'kill recovery', file: 'kill-recovery.ts', args: ['--kills', '1'] },
  { name: 'end to end', file: 'e2e.ts', args: quick ? ['--rows', '100000', '--instances', '1,2', '--memory-rows', '0'] : ['--rows', '1000000', '--instances', '1,2,3'] },
];

function run(file: string, args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [`${dir}${file}`, ...args], { stdio: 'inherit' });
    child.on('exit', (code) => resolve(code ?? 1));
  });
}

const outcomes: string[] = [];
for (const b of suite) {
  console.log(`\n=== ${b.name}: node bench/${b.file} ${b.args.join(' ')}\n`);
  const started = Date.now();
  const code = await run(b.file, b.args);
  outcomes.push(`${b.name.padEnd(18)} ${code === 0 ? 'done' : `exit ${code}`} in ${Math.round((Date.now() - started) / 1000)} s`);
}
console.log(`\n=== suite\n${outcomes.join('\n')}\nfigures and their baselines are printed above; docs/benchmarks.md has the recorded ones`);
process.exit(outcomes.some((o) => !o.includes('done')) ? 1 : 0);
