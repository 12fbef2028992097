import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { usageOf } from '../../bench/args.ts';

const script = (name: string) => fileURLToPath(new URL(`../../bench/${name}`, import.meta.url));
const run = (name: string, ...args: string[]) => spawnSync(process.execPath, [script(name), ...args], { encoding: 'utf8', timeout: 30_000 });

describe('benchmark flags', () => {
  it('take the usage from the script doc comment, continuation lines included', () => {
    const usage = usageOf(new URL('../../bench/e2e.ts', import.meta.url).href);
    expect(usage.startsWith('usage: node bench/e2e.ts [--rows 1000000]')).toBe(true);
    expect(usage).toContain('[--label NAME] [--timeout 900] [--profile]');
    expect(usage).not.toContain('Every row is eligible');
  });

  it('print the usage for --help and exit 0, touching nothing', () => {
    const result = run('record-codec.ts', '--help');
    expect(result.status).toBe(0);
    expect(result.stdout.trim()).toBe('usage: node bench/record-codec.ts [--records 300000]');
  });

  it('reject an unknown flag or a bad number with one line and the usage, exit 2', () => {
    const unknown = run('record-codec.ts', '--recrods', '5');
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toBe("Unknown option '--recrods'\nusage: node bench/record-codec.ts [--records 300000]\n");
    expect(unknown.stdout).toBe('');
    const bad = run('record-codec.ts', '--records', 'many');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toBe('--records must be a whole number, 1 or more (got "many")\n');
  });
});
