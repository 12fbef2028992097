/**
 * tranche and Prometheus together: `promtool check metrics` finds nothing to say about a live
 * instance's /metrics; the shipped alert rules pass `promtool check rules` and their unit tests
 * (`promtool test rules`); and a real Prometheus (Debian's `prometheus` package) scraping two
 * `tranche serve` instances every second holds tranche's series, read back through its API.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getRunStatus } from '../../src/runs/run-store.ts';
import { seed } from '../../src/seed.ts';
import { createTestEnv, type TestEnv, waitFor } from '../support/env.ts';
import { startTestRun } from '../support/runs.ts';
import { freePort } from '../support/ports.ts';
import { type ServeProcess, startServe } from '../support/serve.ts';
import { deleteTestTopics } from '../support/services.ts';

const RULES_DIR = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url));
const has = (tool: string) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0;
// `npm test` installs them (scripts/ensure-test-tools.sh): a missing tool fails, never skips.
if (!has('promtool') || !has('prometheus')) {
  throw new Error('promtool or prometheus is not installed: run bash scripts/ensure-test-tools.sh (apt-get install -y prometheus)');
}

describe('Prometheus', () => {
  let env: TestEnv;
  let instances: ServeProcess[] = [];
  let prometheus: ChildProcess | undefined;
  let dataDir = '';
  beforeAll(async () => {
    env = await createTestEnv();
    instances = await Promise.all([startServe(env.env, `${env.id}-a`), startServe(env.env, `${env.id}-b`)]);
    dataDir = mkdtempSync(join(tmpdir(), 'tranche-prometheus-'));
  });
  afterAll(async () => {
    if (prometheus && prometheus.exitCode === null) {
      const exited = new Promise((resolve) => prometheus!.once('exit', resolve));
      prometheus.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
      if (prometheus.exitCode === null) prometheus.kill('SIGKILL');
    }
    await Promise.all(instances.map((i) => i.stop()));
    await deleteTestTopics(env);
    await env.cleanup();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('promtool check metrics prints nothing for a live instance that has run a migration', async () => {
    await seed(env.db, { rows: 2000, groups: 4, changed: 2 });
    const runId = await startTestRun(env, 250);
    await waitFor(async () => (await getRunStatus(env.db.pool, runId))?.status === 'completed', 60_000, 'run completion', 200);
    const texts = await Promise.all(instances.map(async (i) => (await fetch(`http://127.0.0.1:${i.port}/metrics`)).text()));
    const produced = texts.map((t) => Number(/^tranche_rows_produced_total\{[^}]*migration="subscription-version"[^}]*\} (\d+)$/m.exec(t)?.[1] ?? 0));
    expect(produced[0]! + produced[1]!).toBe(1000);
    const text = texts[0]!;
    expect(text).toMatch(new RegExp(`^tranche_run_duration_seconds\\{[^}]*migration="subscription-version",run_id="${runId}",status="completed"`, 'm'));
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(text).toContain('nodejs_heap_size_used_bytes');
    expect(text).toContain('nodejs_active_handles{');
    expect(text).not.toContain('tranche_process_');
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(`${check.stdout}${check.stderr}`).toBe('');
    expect(check.status).toBe(0);
  });

  it('the alert rules pass promtool check rules and their unit tests', () => {
    const check = spawnSync('promtool', ['check', 'rules', 'tranche-alerts.yml'], { cwd: RULES_DIR, encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    const test = spawnSync('promtool', ['test', 'rules', 'tranche-alerts.test.yml'], { cwd: RULES_DIR, encoding: 'utf8' });
    expect(test.status, test.stdout + test.stderr).toBe(0);
    expect(test.stdout).toContain('SUCCESS');
  });

  it('a real Prometheus scrapes two tranche serve instances and answers a query for their series', async () => {
    const port = await freePort();
    const targets = instances.map((i) => `'127.0.0.1:${i.port}'`).join(', ');
    writeFileSync(
      join(dataDir, 'prometheus.yml'),
      `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - ${join(RULES_DIR, 'tranche-alerts.yml')}\n` +
        `scrape_configs:\n  - job_name: tranche\n    static_configs:\n      - targets: [${targets}]\n`,
    );
    execFileSync('promtool', ['check', 'config', join(dataDir, 'prometheus.yml')], { stdio: 'pipe' });
    let log = '';
    prometheus = spawn(
      'prometheus',
      [`--config.file=${join(dataDir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dataDir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    prometheus.stderr?.on('data', (d) => (log = (log + String(d)).slice(-4000)));
    const api = `http://127.0.0.1:${port}/api/v1`;
    const result = await waitFor(
      async () => {
        if (prometheus?.exitCode !== null) throw new Error(`prometheus exited: ${log}`);
        const res = await fetch(`${api}/query?query=${encodeURIComponent('tranche_tasks_running{job="tranche"}')}`);
        const body = (await res.json()) as { status: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
        return body.status === 'success' && body.data.result.length === 2 ? body.data.result : null;
      },
      60_000,
      'Prometheus to hold tranche_tasks_running from both instances',
      500,
    );
    expect(result.map((r) => r.metric.instance_id).sort()).toEqual([`${env.id}-a`, `${env.id}-b`]);
    expect(result.map((r) => r.metric.instance).sort()).toEqual(instances.map((i) => `127.0.0.1:${i.port}`).sort());
    expect(result.every((r) => r.value[1] === '0')).toBe(true);

    const up = (await (await fetch(`${api}/query?query=${encodeURIComponent('sum(up{job="tranche"})')}`)).json()) as {
      data: { result: { value: [number, string] }[] };
    };
    expect(up.data.result[0]?.value[1]).toBe('2');
    // The run of the first test, by its migration label, summed over both instances.
    await waitFor(async () => {
      const q = 'sum(tranche_rows_produced_total{job="tranche",migration="subscription-version"})';
      const body = (await (await fetch(`${api}/query?query=${encodeURIComponent(q)}`)).json()) as { data: { result: { value: [number, string] }[] } };
      return body.data.result[0]?.value[1] === '1000';
    }, 20_000, 'Prometheus to sum the rows produced over both instances', 500);
    const rules = (await (await fetch(`${api}/rules`)).json()) as { data: { groups: { name: string; rules: { name: string; health: string }[] }[] } };
    const loaded = rules.data.groups.flatMap((g) => g.rules);
    expect(loaded.map((r) => r.name)).toContain('TrancheInstanceDown');
    await waitFor(async () => {
      const again = (await (await fetch(`${api}/rules`)).json()) as typeof rules;
      const all = again.data.groups.flatMap((g) => g.rules);
      return all.every((r) => r.health === 'ok') ? all : null;
    }, 20_000, 'every rule to be evaluated without error', 500);
  });
});
