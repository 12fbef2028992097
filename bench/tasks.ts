/**
 * One-time task claim-and-complete throughput and schedule-to-claim delay: tranche's task
 * executor beside db-scheduler (the Java library it is modelled on), graphile-worker and
 * pg-boss, all on the same PostgreSQL, in the same run, one after the other, each measured by
 * the same protocol (bench/queues/PROTOCOL.md). Prints one table with every figure beside
 * db-scheduler's with the same instance count; never fails on speed.
 *
 *   node bench/tasks.ts [--tasks 10000] [--instances 1,4] [--concurrency 10]
 *                       [--poll-interval-ms 2000] [--delay-samples 10]
 *                       [--systems tranche,db-scheduler,graphile-worker,pg-boss,pg-boss-burst]
 *
 * Every system gets the same work: K no-op tasks due now, N instance processes with C slots
 * each, polling every P ms, and (with one instance) S tasks scheduled one at a time from
 * another process for the delay. Each keeps its own wake-up mechanism: tranche Redis pub/sub,
 * graphile-worker LISTEN/NOTIFY, db-scheduler and pg-boss none (polling). pg-boss is measured
 * twice: with its defaults (a worker waits the poll interval after every fetch of up to 50
 * jobs) and with `burstWhenBatchFull`, which fetches again at once after a full batch.
 * db-scheduler needs java and mvn (its jars are cached in .cache/m2); without them its rows
 * say so and the ratios are left out.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { wholeFlag } from '../src/cli/parse.ts';
import { loadConfig, processEnv } from '../src/config.ts';
import { addSummaryRow } from './summary.ts';
import { benchArgs } from './args.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SYSTEMS: Record<string, { label: string; command: string[] }> = {
  tranche: { label: 'tranche', command: [process.execPath, `${ROOT}bench/queues/tranche.ts`] },
  'db-scheduler': { label: 'db-scheduler', command: ['bash', `${ROOT}bench/db-scheduler/run.sh`] },
  'graphile-worker': { label: 'graphile-worker', command: [process.execPath, `${ROOT}bench/queues/graphile-worker.ts`] },
  'pg-boss': { label: 'pg-boss', command: [process.execPath, `${ROOT}bench/queues/pg-boss.ts`] },
  'pg-boss-burst': { label: 'pg-boss, burst', command: [process.execPath, `${ROOT}bench/queues/pg-boss.ts`, '--burst', 'true'] },
};

const args = benchArgs(import.meta.url, {
  tasks: { type: 'string', default: '10000' },
  instances: { type: 'string', default: '1,4' },
  concurrency: { type: 'string', default: '10' },
  'poll-interval-ms': { type: 'string', default: '2000' },
  'delay-samples': { type: 'string', default: '10' },
  systems: { type: 'string', default: Object.keys(SYSTEMS).join(',') },
});
const tasks = wholeFlag('tasks', args.tasks, 1);
const concurrency = wholeFlag('concurrency', args.concurrency, 1);
const pollIntervalMs = wholeFlag('poll-interval-ms', args['poll-interval-ms'], 1);
const delaySamples = wholeFlag('delay-samples', args['delay-samples'], 0);
const instanceCounts = String(args.instances)
  .split(',')
  .map((s) => wholeFlag('instances', s.trim(), 1));
const systems = String(args.systems)
  .split(',')
  .map((s) => s.trim());
for (const s of systems) {
  if (!SYSTEMS[s]) {
    console.error(`--systems: unknown system "${s}" (known: ${Object.keys(SYSTEMS).join(', ')})`);
    process.exit(2);
  }
}
const config = loadConfig(processEnv());

interface Result {
  system: string;
  version: string;
  instances: number;
  tasksPerSecond: number;
  handlerCalls: number;
  peakRssMb: number;
  delay: { samples: number; medianMs: number; p99Ms: number; maxMs: number } | null;
  notes: string;
}

/** Runs one harness; its progress goes to our stderr, its last stdout line is the result. */
function runHarness(command: string[], harnessArgs: string[]): Promise<Result | { error: string }> {
  return new Promise((resolve) => {
    const child = spawn(command[0]!, [...command.slice(1), ...harnessArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      process.stderr.write(d);
    });
    child.on('error', (e) => resolve({ error: e.message }));
    child.on('exit', (code) => {
      const last = out.trim().split('\n').pop() ?? '';
      if (code === 0 && last.startsWith('{')) resolve(JSON.parse(last) as Result);
      else resolve({ error: (err.trim().split('\n').pop() ?? `exit ${code}`).slice(0, 200) });
    });
  });
}

const results = new Map<string, Result | { error: string }>();
const key = (system: string, n: number) => `${system}/${n}`;
const started = Date.now();
for (const n of instanceCounts) {
  for (const s of systems) {
    const schema = `bench_tasks_${s.replaceAll('-', '_')}_${randomBytes(3).toString('hex')}`;
    const harnessArgs = ['--database-url', config.databaseUrl, '--schema', schema, '--instances', String(n), '--tasks', String(tasks)];
    harnessArgs.push('--concurrency', String(concurrency), '--poll-interval-ms', String(pollIntervalMs));
    // The delay is a property of one idle instance: measured once, with the 1-instance run.
    harnessArgs.push('--delay-samples', String(n === instanceCounts[0] ? delaySamples : 0));
    process.stderr.write(`\n--- ${SYSTEMS[s]!.label}, ${n} instance(s)\n`);
    results.set(key(s, n), await runHarness(SYSTEMS[s]!.command, harnessArgs));
  }
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => (n < 10 ? n.toFixed(1) : fmt(n));
const out: string[] = [];
out.push(
  `claim-and-complete: ${fmt(tasks)} no-op one-time tasks, ${concurrency} slots per instance, poll interval ${pollIntervalMs} ms; ` +
    `delay: ${delaySamples} tasks scheduled one at a time to ${instanceCounts[0]} idle instance(s) (${((Date.now() - started) / 1000).toFixed(0)} s in all)`,
);
out.push(`${'system'.padEnd(18)}${'version'.padEnd(16)}${'instances'.padStart(9)}${'tasks/s'.padStart(9)}${'vs db-scheduler'.padStart(17)}${'delay median'.padStart(14)}${'delay p99'.padStart(11)}${'peak RSS'.padStart(10)}`);
for (const n of instanceCounts) {
  const base = results.get(key('db-scheduler', n));
  const baseRate = base && 'tasksPerSecond' in base ? base.tasksPerSecond : undefined;
  for (const s of systems) {
    const r = results.get(key(s, n))!;
    const label = SYSTEMS[s]!.label;
    if ('error' in r) {
      out.push(`${label.padEnd(18)}${''.padEnd(16)}${String(n).padStart(9)}  failed: ${r.error}`);
      continue;
    }
    const ratio = baseRate ? `${(r.tasksPerSecond / baseRate).toFixed(2)}x` : '-';
    const delay = r.delay ? [`${ms(r.delay.medianMs)} ms`, `${ms(r.delay.p99Ms)} ms`] : ['', ''];
    out.push(
      `${label.padEnd(18)}${r.version.slice(0, 15).padEnd(16)}${String(n).padStart(9)}${fmt(r.tasksPerSecond).padStart(9)}${ratio.padStart(17)}${delay[0]!.padStart(14)}${delay[1]!.padStart(11)}${`${r.peakRssMb} MB`.padStart(10)}`,
    );
    if (s === 'tranche') {
      addSummaryRow({
        section: 'one-time tasks',
        what: `tranche claim-and-complete, ${n} instance${n > 1 ? 's' : ''}`,
        figure: `${fmt(r.tasksPerSecond)} tasks/s`,
        baseline: baseRate ? `db-scheduler ${fmt(baseRate)} tasks/s` : 'db-scheduler not run',
        ratio,
      });
      const baseDelay = base && 'delay' in base ? base.delay : null;
      if (r.delay) {
        addSummaryRow({
          section: 'one-time tasks',
          what: 'tranche schedule-to-claim, median',
          figure: `${ms(r.delay.medianMs)} ms`,
          baseline: baseDelay ? `db-scheduler ${ms(baseDelay.medianMs)} ms` : 'db-scheduler not run',
          ratio: baseDelay ? `${(r.delay.medianMs / baseDelay.medianMs).toFixed(3)}x` : '',
        });
      }
    }
  }
}
out.push('notes:');
for (const s of systems) {
  const r = results.get(key(s, instanceCounts[0]!));
  if (r && 'notes' in r) out.push(`  ${SYSTEMS[s]!.label}: ${r.notes}`);
}
console.log(`\n${out.join('\n')}`);

mkdirSync(`${ROOT}bench/results`, { recursive: true });
const stamp = new Date().toISOString().replaceAll(':', '-').replace(/\..*/, '');
writeFileSync(
  `${ROOT}bench/results/tasks-${stamp}.json`,
  `${JSON.stringify({ at: new Date().toISOString(), options: { tasks, concurrency, pollIntervalMs, delaySamples, instanceCounts }, results: Object.fromEntries(results) }, null, 2)}\n`,
);
console.log(`results: bench/results/tasks-${stamp}.json`);
process.exit([...results.values()].some((r) => 'error' in r) ? 1 : 0);
