/**
 * The dashboard's operator actions in headless Chromium against a real instance: every action
 * clicked with the operator token and its effect read from Postgres and Redis; every action
 * clicked without the token (401) and with a wrong one (403) changes nothing; a token in the
 * URL or a cookie is not accepted; an instance without ADMIN_TOKEN is read-only and says so.
 * Screenshots of a running, a throttled and a failed run go to test-output/.
 */
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getThrottleLimit } from '../../src/coordination/throttle.ts';
import { getRunStatus } from '../../src/runs/run-store.ts';
import type { RunStatus } from '../../src/schema.ts';
import { seed } from '../../src/seed.ts';
import type { Service } from '../../src/service.ts';
import { runCli } from '../support/cli.ts';
import { SUBSCRIPTION_WITH_REF } from '../support/fixtures.ts';
import { createTestEnv, type TestEnv, waitFor } from '../support/env.ts';
import { startTestRun } from '../support/runs.ts';
import { deleteTestTopics, startInstances, stopAll } from '../support/services.ts';

const OUTPUT = fileURLToPath(new URL('../../test-output/', import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const TOKEN = 'test-operator-token-0123456789';

describe('dashboard actions in headless Chromium', () => {
  let env: TestEnv;
  let services: Service[] = [];
  let readOnly: Service[] = [];
  let browser: Browser;
  beforeAll(async () => {
    env = await createTestEnv({ PAGE_SIZE: '25', WORKER_CONCURRENCY: '1', MAX_ATTEMPTS: '2', RETRY_BASE_MS: '50', ADMIN_TOKEN: TOKEN, TRANCHE_DEFINITIONS: SUBSCRIPTION_WITH_REF });
    services = await startInstances(env, 1, {}, { http: true, httpPort: 0 });
    readOnly = await startInstances(env, 1, { ADMIN_TOKEN: '', INSTANCE_ID: `${env.id}-ro` }, { http: true, httpPort: 0 });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    mkdirSync(OUTPUT, { recursive: true });
  });
  afterAll(async () => {
    await browser?.close();
    await stopAll([...services, ...readOnly]);
    await deleteTestTopics(env);
    await env.cleanup();
  });

  const q = async <T extends Record<string, unknown>>(sql: string, params: unknown[] = []) => (await env.db.pool.query<T>(sql, params)).rows;
  const statusIs = (runId: number, wanted: RunStatus) => async () => (await getRunStatus(env.db.pool, runId))?.status === wanted;
  const throttle = () => getThrottleLimit(services[0]!.coordination.client, env.config.redisPrefix);
  /** Everything an action could change. */
  const snapshot = async () =>
    JSON.stringify({
      runs: await q('SELECT id, status, last_error FROM migration_runs ORDER BY id'),
      partitions: await q('SELECT id, state, attempts, offset_key, completed, last_error FROM partitions ORDER BY id'),
      tasks: await q('SELECT task_instance, execution_time::text, picked FROM scheduled_tasks ORDER BY task_instance'),
      events: await q('SELECT count(*)::int AS n FROM run_events'),
      throttle: await throttle(),
    });

  /** Clicks `selector` and waits for the page to report the answer's HTTP status. */
  async function click(page: Page, selector: string, status: number, dialog?: 'accept' | 'dismiss'): Promise<void> {
    await page.locator('#action-result').evaluate((e) => {
      const el = e as unknown as { textContent: string | null; dataset: Record<string, string | undefined> };
      el.textContent = '';
      delete el.dataset.status;
    });
    if (dialog) page.once('dialog', (d) => void (dialog === 'accept' ? d.accept() : d.dismiss()));
    await page.locator(selector).first().click();
    if (dialog === 'dismiss') return;
    await page.locator(`#action-result[data-status="${status}"]`).waitFor({ timeout: 10_000 });
  }

  it('acts with the token, refuses without it, and records who did what', async () => {
    const { changedGroups } = await seed(env.db, { rows: 8000, groups: 4, changed: 2 });
    // One poison row (a customer_ref larger than a Kafka record, carried by the test's
    // definition) in the first partition of each changed product: those two partitions
    // fail for good (MAX_ATTEMPTS 2), the run fails, and re-running them is the operator's job.
    const poison: number[] = [];
    for (const key of changedGroups) {
      const { rows } = await env.db.pool.query<{ id: number }>(
        `UPDATE subscriptions SET customer_ref = repeat('x', 1100000)
         WHERE id = (SELECT id FROM subscriptions WHERE product_key = $1 ORDER BY created_date, id OFFSET 400 LIMIT 1) RETURNING id`,
        [key],
      );
      poison.push(rows[0]!.id);
    }
    const base = `http://127.0.0.1:${services[0]!.httpPort}`;
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    await page.goto(`${base}/`);
    await page.locator('#operator').waitFor();
    await page.fill('#token', TOKEN);
    await page.fill('#operator-name', 'ada');

    // Slow the run from the start, so that it is still running while we act on it (60 rows/s:
    // its 2,000 healthy rows take over 30 s, longer than the steps below on a loaded machine).
    await page.fill('#throttle-input', '60');
    await click(page, '#throttle-set', 200);
    expect(await throttle()).toBe(60);

    const runId = await startTestRun(env, 1000, { coordination: services[0]!.coordination, maxPartitions: 100 });
    await page.reload();
    await page.locator('#run-title').filter({ hasText: `Run #${runId}` }).waitFor({ timeout: 15_000 });
    await page.locator('#run-title .status', { hasText: 'running' }).waitFor({ timeout: 15_000 });
    await waitFor(async () => (await page.locator('#rows-applied').textContent())?.startsWith('0 /') === false, 20_000, 'rows applied', 200);
    await page.screenshot({ path: `${OUTPUT}dashboard-running.png`, fullPage: true });

    // Throttled: the time spent waiting on the throttle shows, with a rate and the charts.
    await waitFor(async () => !['–', '0 s'].includes((await page.locator('#throttled').textContent()) ?? '–'), 20_000, 'throttled time', 200);
    await waitFor(async () => Number(await page.locator('#chart-rate').getAttribute('data-points')) >= 2, 20_000, 'the rate chart', 200);
    await page.screenshot({ path: `${OUTPUT}dashboard-throttled.png`, fullPage: true });
    // `tranche status` shows the same recent rate, ETA and time throttled.
    const status = await runCli(['status', String(runId), '--no-watch'], env.env);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/recent rate [\d,]+ rows\/s(, ETA \d+ s)?, throttled for \d+\.\d s/);

    // Pause with the token.
    await click(page, '#action-pause', 200);
    expect(await statusIs(runId, 'paused')()).toBe(true);
    // Wait for the run to come to rest (the running page finishes, its task is released).
    let previous = '';
    await waitFor(async () => {
      const now = await snapshot();
      const still = now === previous && (await q('SELECT 1 FROM scheduled_tasks WHERE picked')).length === 0;
      previous = now;
      return still;
    }, 20_000, 'the paused run to come to rest', 500);

    // Without the token (401), then with a wrong one (403): every action refused, nothing changed.
    const partitionId = (await q<{ id: number }>('SELECT id FROM partitions WHERE run_id = $1 ORDER BY id LIMIT 1', [runId]))[0]!.id;
    const before = await snapshot();
    await page.fill('#throttle-input', '999');
    for (const [token, status] of [['', 401], ['not-the-operator-token', 403]] as const) {
      if (token === '') await page.click('#token-forget');
      else await page.fill('#token', token);
      await click(page, '#action-pause', status);
      await click(page, '#action-resume', status);
      await click(page, '#action-cancel', status, 'accept');
      await click(page, '#action-rerun-failed', status);
      await click(page, `button.rerun[data-partition="${partitionId}"]`, status);
      await click(page, '#throttle-set', status);
      await click(page, '#throttle-clear', status);
      expect(await snapshot()).toBe(before);
    }
    // A token in the URL or in a cookie is not the header: refused.
    for (const init of [{ url: `${base}/api/runs/${runId}/resume?token=${TOKEN}` }, { url: `${base}/api/runs/${runId}/resume`, headers: { cookie: `token=${TOKEN}` } }]) {
      expect((await fetch(init.url, { method: 'POST', headers: init.headers })).status).toBe(401);
    }
    expect(await snapshot()).toBe(before);

    // Back with the token: resume, clear the throttle; the poisoned partitions fail the run.
    await page.fill('#token', TOKEN);
    await click(page, '#action-resume', 200);
    expect(await statusIs(runId, 'running')()).toBe(true);
    await click(page, '#throttle-clear', 200);
    expect(await throttle()).toBeNull();
    await page.locator('#run-title .status', { hasText: 'failed' }).waitFor({ timeout: 45_000 });
    const failed = await q<{ id: number; group_key: string }>(`SELECT id, group_key FROM partitions WHERE run_id = $1 AND state = 'failed' ORDER BY group_key`, [runId]);
    expect(failed).toHaveLength(2);
    await page.locator('tr.partition[data-state="failed"]').nth(1).waitFor();
    await page.screenshot({ path: `${OUTPUT}dashboard-failed.png`, fullPage: true });

    // Re-run one partition: fix its row, click its button; it completes, the run fails again on the other.
    await env.db.pool.query(`UPDATE subscriptions SET customer_ref = 'fixed' WHERE id = $1`, [poison[0]]);
    await click(page, `button.rerun[data-partition="${failed[0]!.id}"]`, 200);
    await waitFor(async () => (await q(`SELECT 1 FROM partitions WHERE id = $1 AND state = 'completed' AND last_error IS NULL`, [failed[0]!.id])).length === 1, 30_000, 'the re-run partition to complete');
    await waitFor(statusIs(runId, 'failed'), 30_000, 'the run to be failed again');

    // Re-run every failed partition: fix the other row; the run completes.
    await env.db.pool.query(`UPDATE subscriptions SET customer_ref = 'fixed' WHERE id = $1`, [poison[1]]);
    await page.locator('#run-title .status', { hasText: 'failed' }).waitFor();
    await click(page, '#action-rerun-failed', 200);
    await waitFor(statusIs(runId, 'completed'), 45_000, 'the run to complete');

    // Cancel needs a confirmation: a second run, slowed down; dismissing changes nothing.
    await page.fill('#throttle-input', '50');
    await click(page, '#throttle-set', 200);
    await env.db.pool.query(`UPDATE products SET product_version = product_version + 1 WHERE product_key = $1`, [changedGroups[0]]);
    const second = await startTestRun(env, 1000, { coordination: services[0]!.coordination });
    await page.reload();
    await page.locator('#run-title').filter({ hasText: `Run #${second}` }).waitFor({ timeout: 15_000 });
    await page.locator('#run-title .status', { hasText: 'running' }).waitFor({ timeout: 15_000 });
    await click(page, '#action-cancel', 0, 'dismiss');
    expect(await statusIs(second, 'running')()).toBe(true);
    await click(page, '#action-cancel', 200, 'accept');
    expect(await statusIs(second, 'cancelled')()).toBe(true);
    expect(await q(`SELECT 1 FROM scheduled_tasks WHERE (task_data->>'runId')::bigint = $1`, [second])).toHaveLength(0);

    // The history: who, what, when, on the page and in run_events; refusals left no trace.
    const events = await q<{ action: string; actor: string; outcome: string }>('SELECT action, actor, outcome FROM run_events WHERE run_id = $1 ORDER BY id', [runId]);
    expect(events.map((e) => e.action)).toEqual(['pause', 'resume', 'throttle', 'rerun-partition', 'rerun-failed']);
    expect(events.every((e) => e.actor.startsWith('ada@') && e.outcome === 'ok')).toBe(true);
    const secondEvents = await q<{ action: string }>('SELECT action FROM run_events WHERE run_id = $1 ORDER BY id', [second]);
    expect(secondEvents.map((e) => e.action)).toEqual(['cancel']);
    await page.locator('#history tr.event[data-action="cancel"]').waitFor();
    await page.close();
  });

  it('is read-only, and says so, on an instance without ADMIN_TOKEN', async () => {
    const base = `http://127.0.0.1:${readOnly[0]!.httpPort}`;
    const page = await browser.newPage();
    await page.goto(`${base}/`);
    await page.locator('#readonly').waitFor();
    expect(await page.locator('#readonly').textContent()).toContain('read-only');
    expect(await page.locator('#action-pause').count()).toBe(0);
    expect(await page.locator('button.rerun').count()).toBe(0);
    // What an action on this instance could change (the first test's run may still be moving).
    const decisions = async () =>
      JSON.stringify([await q('SELECT id, status FROM migration_runs ORDER BY id'), await q('SELECT count(*)::int AS n FROM run_events'), await throttle()]);
    const before = await decisions();
    const runId = (await q<{ id: number }>('SELECT max(id)::int AS id FROM migration_runs'))[0]!.id;
    for (const action of ['pause', 'resume', 'cancel', 'rerun-failed']) {
      const res = await fetch(`${base}/api/runs/${runId}/${action}`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
      expect(res.status).toBe(403);
    }
    const res = await fetch(`${base}/api/throttle`, { method: 'POST', headers: { 'x-tranche-token': TOKEN }, body: '{"rowsPerSecond":1}' });
    expect(res.status).toBe(403);
    expect(await decisions()).toBe(before);
    await page.close();
  });
});
