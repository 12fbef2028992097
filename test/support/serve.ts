/** Real `tranche serve` subprocesses on an isolated test environment, on free HTTP ports. */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from './env.ts';
import { freePort } from './ports.ts';

const BIN = fileURLToPath(new URL('../../bin/tranche.js', import.meta.url));

export interface ServeProcess {
  child: ChildProcess;
  port: number;
  stderr(): string;
  stop(): Promise<void>;
}

export async function startServe(env: Record<string, string>, instanceId: string): Promise<ServeProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, [BIN, 'serve'], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env, HTTP_PORT: String(port), INSTANCE_ID: instanceId },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`tranche serve exited with ${child.exitCode}: ${stderr}`);
      return (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null))?.ok;
    },
    30_000,
    `tranche serve ${instanceId} to answer on port ${port}`,
    200,
  );
  return {
    child,
    port,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
