/** `tranche stack up|down|status`: the local services, through scripts/stack.sh. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { UserError } from '../../errors.ts';

const SCRIPT = fileURLToPath(new URL('../../../scripts/stack.sh', import.meta.url));

export async function stackCommand(action: string, options: { all?: boolean }): Promise<number> {
  if (!['up', 'down', 'status'].includes(action)) throw new UserError(`stack action must be up, down or status (got "${action}")`);
  if (options.all && action !== 'down') throw new UserError('--all goes with down');
  const args = [SCRIPT, action, ...(options.all ? ['--all'] : [])];
  return new Promise((resolve, reject) => {
    const child = spawn('bash', args, { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code) => resolve(code ?? 1));
  });
}
