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

/** Stops the Kafka broker the stack script manages and starts it again (waits until it accepts writes). */
export async function restartKafka(): Promise<string> {
  const status = await stack('status').catch((e: { stdout?: string }) => e.stdout ?? '');
  if (!/kafka up at .*\(pid \d+\)/.test(status)) {
    throw new FaultUnavailable('the Kafka broker is not managed by this checkout\'s scripts/stack.sh (started elsewhere), so it cannot be restarted here');
  }
  await stack('down');
  await stack('up');
  return 'kafka broker stopped and started again';
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
