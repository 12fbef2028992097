/**
 * `npx tranche …` on a machine whose own Node is older than the project's Node 24. The project's
 * own bin is not in its node_modules/.bin, so the first `npx tranche` installs the project
 * itself (a link) into npm's npx cache, and that install checks package.json's `engines`
 * against the Node that runs npm (the machine's), printing EBADENGINE warnings; later runs hit
 * the cache and print nothing. The command itself runs on the project's Node 24 (the `node`
 * dev dependency, first on the PATH npx builds). So `engines` says what npm needs to install
 * and launch the project (Node 20 or later), and bin/tranche.js checks the Node that actually
 * runs it. Each run here uses an empty npm cache, to take the first-run path.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SYSTEM_PATH = '/usr/local/bin:/usr/bin:/bin';
const systemNode = spawnSync('node', ['--version'], { env: { PATH: SYSTEM_PATH }, encoding: 'utf8' });
const hasSystemNpx = existsSync('/usr/bin/npx') || existsSync('/usr/local/bin/npx');

describe.skipIf(systemNode.status !== 0 || !hasSystemNpx)(`npx tranche with the machine's own Node (${systemNode.stdout?.trim()})`, () => {
  it('prints no npm engine warning and runs the command, on a first run (empty npx cache)', () => {
    const cache = mkdtempSync(join(tmpdir(), 'tranche-npm-cache-'));
    const result = spawnSync('npx', ['--offline', 'tranche', '--help'], {
      cwd: ROOT,
      env: { PATH: SYSTEM_PATH, HOME: process.env.HOME ?? '/tmp', npm_config_cache: cache, npm_config_update_notifier: 'false' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    rmSync(cache, { recursive: true, force: true });
    expect(result.stderr).not.toMatch(/EBADENGINE|EBADDEVENGINES|npm warn/i);
    expect(result.stdout).toContain('Usage: tranche');
    expect(result.status).toBe(0);
  });
});
