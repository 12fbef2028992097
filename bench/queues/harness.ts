/**
 * The common parts of the task-queue harnesses in this directory (see PROTOCOL.md): argument
 * parsing, the instance processes, the end-of-run polling, VmHWM, quantiles and the final JSON.
 * A harness file supplies a `QueueSystem` (how the parent installs, schedules and counts what is
 * unfinished) and a `startInstance` (what one instance process runs), then calls `main`.
 *
 * Every instance is the harness file itself, started again with `--child` and the same arguments,
 * as a separate Node process. It talks to the parent over stdin/stdout, one line at a time:
 *
 *   child -> parent   ready                  the instance is started (workers running)
 *                     first <epochMs>        the first handler start of this process
 *                     claimed <key> <epochMs> handler start of a probe task (delay phase)
 *                     calls <n>              handler calls (one per task), printed on stop
 *                     batches <n>            handler invocations, for systems that hand over batches
 *   parent -> child   stop                   stop gracefully, print the counts, exit
 *
 * The child's stdout carries nothing else: console.log/info/debug go to stderr there, and the
 * systems' own loggers are pointed at stderr by each harness. A child also stops when its stdin
 * closes, so it cannot outlive the parent.
 */
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';

export interface HarnessArgs {
  databaseUrl: string;
  schema: string;
  instances: number;
  tasks: number;
  concurrency: number;
  pollIntervalMs: number;
  delaySamples: number;
  child: boolean;
  /** Harness-specific options, as given (undefined when absent). */
  extra: Record<string, string | undefined>;
}

/** Parses the protocol's arguments plus the harness's own string options (`extra`, with defaults). */
export function parseHarnessArgs(extra: Record<string, string> = {}): HarnessArgs {
  const extraOptions: Record<string, { type: 'string'; default: string }> = {};
  for (const [name, value] of Object.entries(extra)) extraOptions[name] = { type: 'string', default: value };
  const { values } = parseArgs({
    options: {
      'database-url': { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
      schema: { type: 'string' },
      instances: { type: 'string', default: '1' },
      tasks: { type: 'string', default: '2000' },
      concurrency: { type: 'string', default: '10' },
      'poll-interval-ms': { type: 'string', default: '2000' },
      'delay-samples': { type: 'string', default: '0' },
      child: { type: 'boolean', default: false },
      ...extraOptions,
    },
    strict: true,
  });
  const int = (name: string, min: number): number => {
    const raw = values[name as keyof typeof values];
    const value = Number(raw);
    if (typeof raw !== 'string' || !Number.isInteger(value) || value < min) throw new Error(`--${name} must be an integer >= ${min}, got ${String(raw)}`);
    return value;
  };
  const schema = values.schema;
  if (schema === undefined || !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error('--schema must be a lower-case SQL identifier');
  const extraValues: Record<string, string | undefined> = {};
  for (const name of Object.keys(extra)) {
    const value = values[name as keyof typeof values];
    extraValues[name] = typeof value === 'string' ? value : undefined;
  }
  return {
    databaseUrl: values['database-url'],
    schema,
    instances: int('instances', 1),
    tasks: int('tasks', 1),
    concurrency: int('concurrency', 1),
    pollIntervalMs: int('poll-interval-ms', 1),
    delaySamples: int('delay-samples', 0),
    child: values.child,
    extra: extraValues,
  };
}

/** The version in the package.json of an installed package (found from its resolved entry). */
export function packageVersion(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.resolve(name)));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === name && pkg.version !== undefined) return pkg.version;
    } catch {
      // no package.json here, look further up
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the version of ${name}`);
    dir = parent;
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Nearest-rank quantile of ascending values (as in bench/claim-delay.ts). */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1);
  return sorted[Math.max(0, index)]!;
}

/** Writes one line to stderr (progress and library logs; stdout is for the protocol). */
export function progress(message: string): void {
  process.stderr.write(`${message}\n`);
}

// ---------------------------------------------------------------------------------------------
// Child side

/** What an instance's task handler reports: call `started` once per task, at handler start. */
export interface HandlerReporter {
  /** A task's handler started; `key` is the probe key of a delay-phase task, if any. */
  started(key: string | undefined, atMs?: number): void;
  /** One handler invocation that covered a batch of tasks (systems that work in batches). */
  batch(): void;
}

export interface RunningInstance {
  /** Stops gracefully: in-flight handlers finish, connections close. */
  stop(): Promise<void>;
}

export type StartInstance = (args: HarnessArgs, reporter: HandlerReporter) => Promise<RunningInstance>;

function protocolLine(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function runChild(args: HarnessArgs, startInstance: StartInstance): Promise<void> {
  // Keep stray library output off the protocol channel.
  const toStderr = (...items: unknown[]) => console.error(...items);
  console.log = toStderr;
  console.info = toStderr;
  console.debug = toStderr;

  let calls = 0;
  let batches = 0;
  const reporter: HandlerReporter = {
    started(key, atMs = Date.now()) {
      calls++;
      if (calls === 1) protocolLine(`first ${atMs}`);
      if (key !== undefined) protocolLine(`claimed ${key} ${atMs}`);
    },
    batch() {
      batches++;
    },
  };
  const instance = await startInstance(args, reporter);
  protocolLine('ready');
  await new Promise<void>((resolve) => {
    const lines = createInterface({ input: process.stdin });
    lines.on('line', (line) => {
      if (line.trim() === 'stop') resolve();
    });
    lines.on('close', resolve);
  });
  await instance.stop();
  protocolLine(`calls ${calls}`);
  if (batches > 0) protocolLine(`batches ${batches}`);
}

// ---------------------------------------------------------------------------------------------
// Parent side

/** What the parent does with the system itself, from its own connection(s). */
export interface QueueSystem {
  system: string;
  version: string;
  /** Installs the system's tables in args.schema with the library's own migration/installer. */
  install(): Promise<void>;
  /** Schedules the bulk tasks 0..count-1, due now, through the system's (batch) API. */
  scheduleBulk(count: number): Promise<void>;
  /** Schedules one probe task, due now, that the handler reports as `claimed <key>`. */
  scheduleProbe(key: string): Promise<void>;
  /** `FROM ... WHERE ...` selecting the tasks that are not finished, by the system's definition. */
  unfinishedSql: string;
  unfinishedParams: unknown[];
  /** Closes the parent's own connections to the system. */
  close(): Promise<void>;
  /** The `notes` field, knowing the run's totals. */
  notes(run: { handlerCalls: number; handlerBatches: number }): string;
}

interface Instance {
  proc: ChildProcessByStdio<Writable, Readable, null>;
  ready: Promise<void>;
  stopped: Promise<void>;
  first: number | undefined;
  calls: number | undefined;
  batches: number;
  exitCode: number | null | undefined;
  claimed: Map<string, number>;
  onClaimed: (() => void) | undefined;
}

const live = new Set<Instance>();
process.on('exit', () => {
  for (const instance of live) instance.proc.kill('SIGKILL');
});

function startInstances(file: string, count: number): Instance[] {
  const instances: Instance[] = [];
  for (let i = 0; i < count; i++) {
    const proc = spawn(process.execPath, [...process.execArgv, file, ...process.argv.slice(2), '--child'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let readyResolve!: () => void;
    let readyReject!: (error: Error) => void;
    const instance: Instance = {
      proc,
      ready: new Promise<void>((resolve, reject) => ((readyResolve = resolve), (readyReject = reject))),
      stopped: new Promise<void>((resolve) => proc.once('exit', () => resolve())),
      first: undefined,
      calls: undefined,
      batches: 0,
      exitCode: undefined,
      claimed: new Map(),
      onClaimed: undefined,
    };
    instance.ready.catch(() => {});
    proc.stdin.on('error', () => {}); // a child that already exited
    proc.once('exit', (code, signal) => {
      live.delete(instance);
      instance.exitCode = code;
      readyReject(new Error(`instance ${proc.pid} exited (${signal ?? code}) before it was ready`));
    });
    createInterface({ input: proc.stdout }).on('line', (line) => {
      const [word, a, b] = line.trim().split(/\s+/);
      if (word === 'ready') readyResolve();
      else if (word === 'first') instance.first = Number(a);
      else if (word === 'calls') instance.calls = Number(a);
      else if (word === 'batches') instance.batches = Number(a);
      else if (word === 'claimed' && a !== undefined) {
        instance.claimed.set(a, Number(b));
        instance.onClaimed?.();
      } else if (line.trim() !== '') progress(`[instance ${proc.pid}] ${line}`);
    });
    live.add(instance);
    instances.push(instance);
  }
  return instances;
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms ${what}`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Largest resident set size of the process so far, in kB (VmHWM in /proc/PID/status). */
function vmHwmKb(pid: number | undefined): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
  if (!match) throw new Error(`no VmHWM for process ${pid}`);
  return Number(match[1]);
}

/** Stops instances gracefully (`stop` on stdin), SIGKILL after 20 s; fails if one did not stop cleanly. */
async function stopInstances(instances: Instance[]): Promise<void> {
  for (const instance of instances) {
    if (instance.exitCode !== undefined) continue;
    instance.proc.stdin.write('stop\n');
    instance.proc.stdin.end();
  }
  await Promise.all(
    instances.map(async (instance) => {
      try {
        await withTimeout(instance.stopped, 20_000, `waiting for instance ${instance.proc.pid} to stop`);
      } catch (error) {
        instance.proc.kill('SIGKILL');
        await instance.stopped;
        throw error;
      }
    }),
  );
  for (const instance of instances) {
    if (instance.exitCode !== 0 || instance.calls === undefined) throw new Error(`instance ${instance.proc.pid} exited with ${instance.exitCode} without reporting its calls`);
  }
}

function killInstances(): Promise<void> {
  const waits: Promise<void>[] = [];
  for (const instance of live) {
    instance.proc.kill('SIGKILL');
    waits.push(instance.stopped);
  }
  return Promise.all(waits).then(() => {});
}

async function runParent(file: string, args: HarnessArgs, makeSystem: (args: HarnessArgs) => QueueSystem): Promise<void> {
  const admin = new pg.Pool({ connectionString: args.databaseUrl, max: 2 });
  let system: QueueSystem | undefined;
  let result: Record<string, unknown>;
  try {
    await admin.query(`DROP SCHEMA IF EXISTS "${args.schema}" CASCADE`);
    system = makeSystem(args);
    await system.install();
    progress(`${system.system} ${system.version}: scheduling ${args.tasks} tasks in schema ${args.schema}`);
    await system.scheduleBulk(args.tasks);
    const unfinished = async (): Promise<number> =>
      Number((await admin.query<{ n: string }>(`SELECT count(*) AS n ${system!.unfinishedSql}`, system!.unfinishedParams)).rows[0]!.n);
    const scheduled = await unfinished();
    if (scheduled !== args.tasks) throw new Error(`scheduled ${args.tasks} tasks but ${scheduled} are unfinished before any instance ran`);

    // Claim-and-complete throughput.
    progress(`starting ${args.instances} instance(s), concurrency ${args.concurrency}, poll interval ${args.pollIntervalMs} ms`);
    const workers = startInstances(file, args.instances);
    const failed = Promise.race(workers.map((w) => w.stopped.then(() => Promise.reject(new Error(`instance ${w.proc.pid} exited (${w.exitCode}) during the run`)))));
    failed.catch(() => {});
    await withTimeout(Promise.race([Promise.all(workers.map((w) => w.ready)), failed]), 60_000, 'waiting for the instances to start');
    const existsSql = `SELECT EXISTS (SELECT 1 ${system.unfinishedSql}) AS any`;
    let end = 0;
    let lastCount = args.tasks;
    let lastChange = Date.now();
    let lastCheck = Date.now();
    for (;;) {
      const any = (await Promise.race([admin.query<{ any: boolean }>(existsSql, system.unfinishedParams), failed])).rows[0]!.any;
      if (!any) {
        end = Date.now();
        break;
      }
      if (Date.now() - lastCheck >= 2000) {
        lastCheck = Date.now();
        const count = await unfinished();
        progress(`  ${count} unfinished`);
        if (count !== lastCount) {
          lastCount = count;
          lastChange = Date.now();
        } else if (Date.now() - lastChange > 120_000) throw new Error(`no progress for 120 s with ${count} tasks unfinished`);
      }
      await sleep(20);
    }
    const firsts = workers.map((w) => w.first).filter((first): first is number => first !== undefined);
    if (firsts.length === 0) throw new Error('no handler start was reported');
    const seconds = (end - Math.min(...firsts)) / 1000;
    const peakRssKb = Math.max(...workers.map((w) => vmHwmKb(w.proc.pid)));
    await stopInstances(workers);
    const handlerCalls = workers.reduce((sum, w) => sum + (w.calls ?? 0), 0);
    const handlerBatches = workers.reduce((sum, w) => sum + w.batches, 0);
    progress(`throughput: ${args.tasks} tasks in ${seconds.toFixed(2)} s, ${handlerCalls} handler calls`);

    // Schedule-to-claim delay.
    let delay: { samples: number; medianMs: number; p99Ms: number; maxMs: number } | null = null;
    if (args.delaySamples > 0) {
      const [probe] = startInstances(file, 1);
      const exited = probe!.stopped.then(() => Promise.reject(new Error(`delay instance exited (${probe!.exitCode})`)));
      exited.catch(() => {});
      await withTimeout(Promise.race([probe!.ready, exited]), 60_000, 'waiting for the delay instance to start');
      await sleep(500);
      const delays: number[] = [];
      for (let i = 0; i < args.delaySamples; i++) {
        await sleep(Math.random() * args.pollIntervalMs);
        const key = `probe-${i}`;
        await system.scheduleProbe(key);
        const scheduledAt = Date.now();
        const claimedAt = await withTimeout(
          Promise.race([
            new Promise<number>((resolve) => {
              const check = () => {
                const at = probe!.claimed.get(key);
                if (at === undefined) return;
                probe!.onClaimed = undefined;
                resolve(at);
              };
              probe!.onClaimed = check;
              check();
            }),
            exited,
          ]),
          10 * args.pollIntervalMs + 30_000,
          `waiting for probe ${key} to be claimed`,
        );
        delays.push(claimedAt - scheduledAt);
      }
      await stopInstances([probe!]);
      delays.sort((a, b) => a - b);
      delay = {
        samples: delays.length,
        medianMs: round(quantile(delays, 0.5), 1),
        p99Ms: round(quantile(delays, 0.99), 1),
        maxMs: round(delays[delays.length - 1]!, 1),
      };
      progress(`delay: median ${delay.medianMs} ms, p99 ${delay.p99Ms} ms, max ${delay.maxMs} ms over ${delay.samples} samples`);
    }

    result = {
      system: system.system,
      version: system.version,
      instances: args.instances,
      tasks: args.tasks,
      concurrency: args.concurrency,
      pollIntervalMs: args.pollIntervalMs,
      seconds: round(seconds, 2),
      tasksPerSecond: Math.round(args.tasks / seconds),
      handlerCalls,
      peakRssMb: Math.round(peakRssKb / 1024),
      delay,
      notes: system.notes({ handlerCalls, handlerBatches }),
    };
    await system.close();
    system = undefined;
  } finally {
    await killInstances();
    await system?.close().catch(() => {});
    await admin.query(`DROP SCHEMA IF EXISTS "${args.schema}" CASCADE`).catch((error: unknown) => progress(`could not drop schema ${args.schema}: ${String(error)}`));
    await admin.end();
  }
  console.log(JSON.stringify(result));
}

function round(value: number, digits: number): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/**
 * Entry point of a harness file: runs the parent (the protocol) or, with `--child`, one instance.
 * `file` is the harness file's own path (`import.meta.filename`), started again for instances.
 */
export async function main(options: {
  file: string;
  extraArgs?: Record<string, string>;
  system: (args: HarnessArgs) => QueueSystem;
  startInstance: StartInstance;
}): Promise<void> {
  let args: HarnessArgs | undefined;
  try {
    args = parseHarnessArgs(options.extraArgs);
    if (args.child) await runChild(args, options.startInstance);
    else await runParent(options.file, args, options.system);
    process.exit(0);
  } catch (error) {
    const message = (error instanceof Error ? error.message : String(error)).replace(/\s+/g, ' ');
    console.error(`${args?.child ? `instance ${process.pid}` : 'harness'} failed: ${message}`);
    process.exit(1);
  }
}
