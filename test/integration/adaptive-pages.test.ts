/**
 * Adaptive pages in a real run: while each page is slow (a trigger sleeps in the statement
 * that saves a page's offset, part of the worker's page time), pages shrink toward the target
 * time down to the floor; when the slowness goes, they grow back to the ceiling. Every row is
 * still produced once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getRunStatus } from '../../src/runs/run-store.ts';
import { countEligible, seed } from '../../src/seed.ts';
import type { Service } from '../../src/service.ts';
import { createTestEnv, type TestEnv, waitFor } from '../support/env.ts';
import { startTestRun } from '../support/runs.ts';
import { deleteTestTopics, startInstances, stopAll } from '../support/services.ts';

describe('adaptive pages', () => {
  let env: TestEnv;
  let services: Service[] = [];
  beforeAll(async () => {
    env = await createTestEnv({ PAGE_SIZE: '400', PAGE_SIZE_MIN: '20', PAGE_SIZE_MAX: '400', PAGE_SIZE_ADAPTIVE: 'true', PAGE_TARGET_MS: '100', WORKER_CONCURRENCY: '1' });
  });
  afterAll(async () => {
    await stopAll(services);
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('shrinks pages toward the target while pages are slow and grows them back when they are not', async () => {
    const seeded = await seed(env.db, { rows: 12_000, groups: 2, changed: 1 });
    await env.db.pool.query(`
      CREATE TABLE page_log (seq serial PRIMARY KEY, rows int NOT NULL);
      CREATE FUNCTION log_page() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO page_log (rows) VALUES (NEW.rows_produced - OLD.rows_produced); RETURN NEW; END $$;
      CREATE TRIGGER log_page AFTER UPDATE ON partitions FOR EACH ROW
        WHEN (NEW.offset_key IS DISTINCT FROM OLD.offset_key) EXECUTE FUNCTION log_page();
      CREATE FUNCTION slow_page() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$;
      CREATE TRIGGER slow_page BEFORE UPDATE ON partitions FOR EACH ROW
        WHEN (NEW.offset_key IS DISTINCT FROM OLD.offset_key) EXECUTE FUNCTION slow_page();`);
    services = await startInstances(env, 1);
    const runId = await startTestRun(env, 100_000, { coordination: services[0]!.coordination });
    const pages = async () => (await env.db.pool.query<{ rows: number }>('SELECT rows FROM page_log ORDER BY seq')).rows.map((r) => r.rows);

    // Slow: each page takes over 300 ms against a target of 100 ms.
    const slow = await waitFor(async () => {
      const p = await pages();
      return p.length >= 3 && p.slice(-2).every((n) => n <= 30) ? p : null;
    }, 45_000, 'pages to shrink to the floor');
    expect(slow[0]).toBe(400);
    for (let i = 1; i < slow.length; i++) expect(slow[i]!).toBeLessThanOrEqual(slow[i - 1]!);

    await env.db.pool.query('DROP TRIGGER slow_page ON partitions');
    const done = await waitFor(async () => {
      const s = await getRunStatus(env.db.pool, runId);
      return s?.status === 'completed' ? s : null;
    }, 60_000, 'the run to complete');
    const all = await pages();
    const after = all.slice(slow.length);
    expect(Math.max(...after.slice(0, -1))).toBe(400); // back at the ceiling (the last page is the remainder)
    expect(done.rows).toMatchObject({ total: seeded.eligible, applied: seeded.eligible });
    expect(all.reduce((a, b) => a + b, 0)).toBe(seeded.eligible); // every row produced once
    expect(await countEligible(env.db)).toBe(0);
  }, 90_000);
});
