import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seed } from '../../src/seed.ts';
import type { Service } from '../../src/service.ts';
import { createTestEnv, type TestEnv, waitFor } from '../support/env.ts';
import { startTestRun } from '../support/runs.ts';
import { deleteTestTopics, startInstances, stopAll } from '../support/services.ts';

const OUTPUT = fileURLToPath(new URL('../../test-output/', import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

describe('dashboard in headless Chromium', () => {
  let env: TestEnv;
  let services: Service[] = [];
  let browser: Browser;
  beforeAll(async () => {
    // Small pages and one worker slot make the run last a few seconds, long enough to watch.
    env = await createTestEnv({ PAGE_SIZE: '25', WORKER_CONCURRENCY: '1' });
    services = await startInstances(env, 1, {}, { http: true, httpPort: 0 });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    mkdirSync(OUTPUT, { recursive: true });
  });
  afterAll(async () => {
    await browser?.close();
    await stopAll(services);
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('shows the run and its partitions progressing, then completed', async () => {
    await seed(env.db, { rows: 48_000, groups: 4, changed: 2 });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`http://127.0.0.1:${services[0]!.httpPort}/`);
    await page.getByText('No run yet').waitFor();

    const runId = await startTestRun(env, 6000, { coordination: services[0]!.coordination, maxPartitions: 100 });

    await page.reload();
    await page.locator('#run-title').filter({ hasText: `Run #${runId}` }).waitFor({ timeout: 15_000 });
    const seen = new Set<string>();
    let midRunShot = false;
    await waitFor(async () => {
      const applied = (await page.locator('#rows-applied').textContent()) ?? '';
      seen.add(applied);
      const running = await page.locator('#run-title .status').textContent();
      if (!midRunShot && running === 'running' && seen.size >= 2) {
        await page.screenshot({ path: `${OUTPUT}dashboard-running.png`, fullPage: true });
        midRunShot = true;
      }
      return running === 'completed';
    }, 90_000, 'the dashboard to show the run completed', 200);

    expect(seen.size, `progress values seen: ${[...seen].join(' | ')}`).toBeGreaterThanOrEqual(3);
    expect(await page.locator('#rows-applied').textContent()).toBe('24,000 / 24,000');
    expect(await page.locator('tr.partition').count()).toBe(4);
    expect(await page.locator('tr.partition[data-state="completed"]').count()).toBe(4);
    // The verification at completion: its verdict is on the run (the page refreshes itself).
    await page.locator('#run-verdict').filter({ hasText: 'verified: holds' }).waitFor({ timeout: 15_000 });
    await page.screenshot({ path: `${OUTPUT}dashboard-completed.png`, fullPage: true });
    expect(midRunShot).toBe(true);
  });
});
