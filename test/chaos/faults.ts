/**
 * Faults a chaos run injects into the local stack. Each one really happens or says why it
 * cannot (a service not managed here); nothing is pretended.
 */
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);
const STACK = fileURLToPath(new URL('../../scripts/stack.sh', import.meta.url));

export class FaultUnavailable extends Error {
  override name = 'FaultUnavailable';
}

async function stack(...args: string[]): Promise<string> {
  const { stdout, stderr } = await run('bash', [STACK, ...args], { timeout: 180_000 });
  return `${stdout}${stderr}`;
}

/** The Kafka broker a chaos run may restart or freeze. */
export interface KafkaControl {
  /** Stops the broker and starts it again; resolves once it accepts writes. */
  restart(): Promise<string>;
  /**
   * SIGSTOP, then SIGCONT after `ms`: a broker that hangs (a long GC pause, a VM stall) with
   * its connections open, which clients see only through timeouts. Longer than the consumer
   * session timeout, the broker drops every member of the group once it runs again.
   */
  hang(ms: number): Promise<string>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The broker pid scripts/stack.sh manages, or FaultUnavailable. */
async function stackKafkaPid(what: string): Promise<number> {
  const status = await stack('status').catch((e: { stdout?: string }) => e.stdout ?? '');
  const pid = /kafka up at .*\(pid (\d+)\)/.exec(status)?.[1];
  if (!pid) {
    throw new FaultUnavailable(`the Kafka broker is not managed by this checkout's scripts/stack.sh (started elsewhere), so it cannot be ${what} here`);
  }
  return Number(pid);
}

/** Freezes the process `pid` for `ms` (SIGSTOP, SIGCONT), resuming it whatever happens. */
async function freeze(pid: number, ms: number): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  try {
    await sleep(ms);
  } finally {
    process.kill(pid, 'SIGCONT');
  }
}

/** The broker of the local stack (scripts/stack.sh): shared with everything else on the machine. */
export const stackKafka: KafkaControl = {
  async restart() {
    await stackKafkaPid('restarted');
    await stack('down');
    await stack('up');
    return 'kafka broker stopped and started again';
  },
  async hang(ms) {
    const pid = await stackKafkaPid('frozen');
    await freeze(pid, ms);
    return `kafka broker (pid ${pid}) frozen for ${(ms / 1000).toFixed(1)} s (SIGSTOP), then resumed (SIGCONT)`;
  },
};

/** A broker the caller started itself (test/support/private-kafka.ts). */
export function privateKafkaControl(broker: { pid(): number | undefined; kill(): Promise<void>; start(): Promise<void> }): KafkaControl {
  return {
    async restart() {
      await broker.kill();
      await broker.start();
      return 'private kafka broker killed (SIGKILL) and started again';
    },
    async hang(ms) {
      const pid = broker.pid();
      if (pid === undefined) throw new FaultUnavailable('the private Kafka broker is not running');
      await freeze(pid, ms);
      return `private kafka broker (pid ${pid}) frozen for ${(ms / 1000).toFixed(1)} s (SIGSTOP), then resumed (SIGCONT)`;
    },
  };
}

/** Stops the Kafka broker the stack script manages and starts it again (waits until it accepts writes). */
export function restartKafka(): Promise<string> {
  return stackKafka.restart();
}

/** Shuts Redis down without saving (its data is gone) and starts it again. */
export async function restartRedis(): Promise<string> {
  try {
    await run('redis-cli', ['-h', '127.0.0.1', '-p', '6379', 'shutdown', 'nosave'], { timeout: 10_000 });
  } catch {
    // redis-cli reports the closed connection as an error: that is the shutdown working.
  }
  await stack('up');
  return 'redis shut down without saving (all keys lost) and started again';
}

/** Restarts the local PostgreSQL cluster (fast shutdown: open connections are cut). */
export async function restartPostgres(): Promise<string> {
  let versions: string[];
  try {
    versions = readdirSync('/etc/postgresql');
  } catch {
    throw new FaultUnavailable('no local PostgreSQL cluster (/etc/postgresql) to restart');
  }
  const version = versions.sort().at(-1);
  if (!version) throw new FaultUnavailable('no local PostgreSQL cluster to restart');
  await run('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', 'restart', '-m', 'fast'], { timeout: 120_000 });
  await stack('up');
  return `postgresql ${version}/main restarted (fast: connections cut)`;
}
