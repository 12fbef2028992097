import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from '../support/env.ts';
import { runCli } from '../support/cli.ts';

describe('tranche CLI (subprocess)', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => {
    await env.cleanup();
  });

  const runsCount = async () => (await env.db.pool.query('SELECT count(*)::int AS n FROM migration_runs')).rows[0].n as number;

  it('seeds, identifies with --json, and reports status in the documented shape', async () => {
    const seeded = await runCli(['seed', '--rows', '2000', '--groups', '4', '--changed', '2', '--json'], env.env);
    expect(seeded.code, seeded.stderr).toBe(0);
    expect(JSON.parse(seeded.stdout)).toMatchObject({ rows: 2000, eligible: 1000 });

    const identified = await runCli(['identify', '--partition-size', '100', '--json'], env.env);
    expect(identified.code, identified.stderr).toBe(0);
    const { runId } = JSON.parse(identified.stdout);
    expect(runId).toBeGreaterThan(0);

    const status = await runCli(['status', String(runId), '--json'], env.env);
    expect(status.code, status.stderr).toBe(0);
    const report = JSON.parse(status.stdout);
    expect(report).toMatchObject({ runId, status: 'running', partitions: { total: 10, completed: 0, failed: 0 }, rows: { total: 1000, applied: 0 } });

    // A second start while this run is active is refused, and writes nothing.
    const again = await runCli(['identify'], env.env);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/still active.*--force/);
    expect(await runsCount()).toBe(1);

    const cancelled = await runCli(['cancel', String(runId)], env.env);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    const after = JSON.parse((await runCli(['status', String(runId), '--json'], env.env)).stdout);
    expect(after.status).toBe('cancelled');
  });

  it('--dry-run prints partitions and writes nothing', async () => {
    const before = await runsCount();
    const dry = await runCli(['identify', '--dry-run', '--json', '--partition-size', '250'], env.env);
    expect(dry.code, dry.stderr).toBe(0);
    const plan = JSON.parse(dry.stdout);
    expect(plan.dryRun).toBe(true);
    expect(plan.groups.length).toBeGreaterThan(0);
    expect(await runsCount()).toBe(before);
  });

  it.each([
    [['identify', '--partition-size', '0'], /partition-size.*1 or more/],
    [['identify', '--partition-size', 'abc'], /partition-size/],
    [['identify', '--group', 'no-such-product'], /unknown group of subscription-version: "no-such-product"/],
    [['identify', '--migration', 'nope'], /unknown migration "nope"; loaded: subscription-version/],
    [['status', '999999'], /run 999999 does not exist/],
    [['status', 'abc'], /run must be a positive whole number/],
    [['pause', '999999'], /run 999999 does not exist/],
    [['rerun', '--partition', '999999'], /partition 999999 does not exist/],
    [['rerun'], /exactly one of --partition/],
    [['frobnicate'], /unknown command/],
    [['seed', '--changed', '9', '--groups', '3'], /--changed must be/],
  ])('rejects %j with one clear line, exit 2, nothing written', async (args, message) => {
    const before = await runsCount();
    const result = await runCli(args as string[], env.env);
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toMatch(message as RegExp);
    expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(await runsCount()).toBe(before);
  });

  it('names a bad configuration variable and exits 2', async () => {
    const result = await runCli(['status'], { ...env.env, PARTITION_SIZE: '-3' });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toContain('PARTITION_SIZE');
  });

  it('says Postgres is unreachable with exit code 3', async () => {
    const result = await runCli(['status'], { ...env.env, DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' });
    expect(result.code, result.stderr).toBe(3);
    expect(result.stderr).toMatch(/cannot reach Postgres at 127\.0\.0\.1:1/);
  });

  it('prints help for every command', async () => {
    for (const command of ['identify', 'definitions', 'init', 'serve', 'status', 'rerun', 'seed', 'demo', 'pause']) {
      const result = await runCli([command, '--help'], env.env);
      expect(result.code, command).toBe(0);
      expect(result.stdout).toContain(`Usage: tranche ${command}`);
    }
  });
});
