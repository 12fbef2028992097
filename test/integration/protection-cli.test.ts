/** Bad protection settings are refused by the CLI with one clear line and exit code 2, changing nothing. */
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.ts';
import { isolatedEnvironment } from '../support/env.ts';

describe('protection settings on the command line', () => {
  it.each([
    ['HEALTH_MAX_REPLICA_LAG_MS', '-1', /HEALTH_MAX_REPLICA_LAG_MS must be an integer from 1/],
    ['HEALTH_PROBE_QUERY', 'UPDATE subscriptions SET product_version = 1', /HEALTH_PROBE_QUERY must be one SELECT statement/],
    ['WINDOW_TIMEZONE', 'Mars/Olympus', /WINDOW_TIMEZONE is not an IANA time zone/],
    ['WINDOW', '05:00-01:00', /WINDOW "05:00-01:00" ends before it starts/],
  ])('refuses %s=%s with one line and exit 2', async (name, value, message) => {
    const result = await runCli(['status'], isolatedEnvironment({ [name]: value }));
    expect(result.code).toBe(2);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^tranche: invalid configuration: /);
    expect(lines[0]).toMatch(message);
    expect(result.stdout).toBe('');
  }, 30_000);
});
