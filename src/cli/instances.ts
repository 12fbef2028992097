/**
 * Service instances as child processes (`tranche serve`), for the demo, benchmarks and
 * chaos runs: start one with its own INSTANCE_ID and log file, kill or stop them.
 *
 * @example
 *   const a = startInstance(env, 'demo-1', '.cache/demo/');
 *   await stopInstances([a], 15000);
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/tranche.js', import.meta.url));

export interface Instance {
  readonly id: string;
  readonly child: ChildProcess;
  readonly logFile: string;
}

export function startInstance(env: NodeJS.ProcessEnv, id: string, logDir: string, extra: Record<string, string> = {}): Instance {
  mkdirSync(logDir, { recursive: true });
  const logFile = `${logDir.replace(/\/?$/, '/')}${id}.log`;
  const out = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(process.execPath, [BIN, 'serve'], {
    env: { ...env, INSTANCE_ID: id, HTTP_PORT: '0', CRON_ENABLED: 'false', ...extra },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  return { id, child, logFile };
}

export function hasExited(instance: Instance): boolean {
  return instance.child.exitCode !== null || instance.child.signalCode !== null;
}

/** Waits for the process to exit; resolves with its exit code (null when killed by a signal). */
export function exited(instance: Instance): Promise<number | null> {
  if (hasExited(instance)) return Promise.resolve(instance.child.exitCode);
  return new Promise((resolve) => instance.child.once('exit', (code) => resolve(code)));
}

/** SIGTERM, then SIGKILL after `graceMs`. */
export async function stopInstances(instances: Instance[], graceMs: number): Promise<void> {
  await Promise.all(
    instances.map(async (instance) => {
      if (hasExited(instance)) return;
      const timer = setTimeout(() => instance.child.kill('SIGKILL'), graceMs);
      instance.child.kill('SIGTERM');
      await exited(instance);
      clearTimeout(timer);
    }),
  );
}

export function tailLog(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
