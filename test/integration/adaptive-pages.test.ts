/**
 * Adaptive pages in a real run: while applying is slow (a trigger on the migrated table
 * sleeps for every row the apply statement updates, holding its row locks), pages shrink
 * toward what applies in the target time, down to the floor; when the trigger is dropped,
 * they grow back to the ceiling. The worker's own pages stay fast throughout: only the apply
 * rate the consumer observes can shrink them. Every row is still produced and applied once.
 *
 * The throttle keeps the worker from running far ahead of the consumer (as a throttled
 * migration on a live database would be), so that what the worker learns from the applies is
 * about the pages it is producing; one topic partition makes one page one apply statement
 * (with three, a page's records are applied by three statements that wait on each other's
 * lock of the partition's row, and the apply rate without the trigger is closer to the ceiling).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setThrottleLimit } from '../../src/coordination/throttle.ts';
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
    env = await createTestEnv({
      PAGE_SIZE: '100', PAGE_SIZE_MIN: '10', PAGE_SIZE_MAX: '100', PAGE_SIZE_ADAPTIVE: 'true', PAGE_TARGET_MS: '200',
      WORKER_CONCURRENCY: '1', THROTTLE_ROWS_PER_SECOND: '40', KAFKA_TOPIC_PARTITIONS: '1',
    });
  });
  afterAll(async () => {
    await stopAll(services);
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('shrinks pages toward the target while applies are slow and grows them back when they are not', async () => {
    const seeded = await seed(env.db, { rows: 2400, groups: 2, changed: 1 });
    await env.db.pool.query(`
      CREATE TABLE page_log (seq serial PRIMARY KEY, partition_id bigint NOT NULL, rows int NOT NULL);
      CREATE FUNCTION log_page() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO page_log (partition_id, rows) VALUES (NEW.id, NEW.rows_produced - OLD.rows_produced); RETURN NEW; END $$;
      CREATE TRIGGER log_page AFTER UPDATE ON partitions FOR EACH ROW
        WHEN (NEW.offset_key IS DISTINCT FROM OLD.offset_key) EXECUTE FUNCTION log_page();
      CREATE FUNCTION slow_apply() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.016); RETURN NEW; END $$;
      CREATE TRIGGER slow_apply BEFORE UPDATE ON subscriptions FOR EACH ROW EXECUTE FUNCTION slow_apply();`);
    services = await startInstances(env, 1);
    const runId = await startTestRun(env, 100_000, { coordination: services[0]!.coordination });
    // Page sizes in order; `full` leaves out the last page of each partition done so far (the
    // remainder, whatever size was asked for).
    const pages = async () => {
      const { rows } = await env.db.pool.query<{ partition_id: string; rows: number }>('SELECT partition_id, rows FROM page_log ORDER BY seq');
      const sizes = rows.map((r) => r.rows);
      const full = rows.filter((r, i) => rows[i + 1] !== undefined && rows[i + 1]!.partition_id === r.partition_id).map((r) => r.rows);
      return { sizes, full };
    };

    // Slow: 16 ms per row applied, so about 12 rows apply in the target of 200 ms (fewer with
    // the statement's own cost), just above the floor.
    const slow = await waitFor(async () => {
      const p = await pages();
      return p.full.length >= 3 && p.full.slice(-2).every((n) => n <= 20) ? p : null;
    }, 60_000, 'pages to shrink to what applies in the target time');
    expect(slow.sizes[0]).toBe(100);
    // Until the first apply is timed only the page's own time counts (it can nudge the size
    // near the ceiling under load); from then on the apply bounds it and it only shrinks.
    const shrinking = slow.full.slice(slow.full.findIndex((n) => n < 80));
    for (let i = 1; i < shrinking.length; i++) expect(shrinking[i]!).toBeLessThanOrEqual(shrinking[i - 1]!);

    // The slowness goes; the throttle is raised to finish sooner (the wait it imposes before a
    // page is not part of the page's time).
    await env.db.pool.query('DROP TRIGGER slow_apply ON subscriptions');
    await setThrottleLimit(services[0]!.coordination.client, env.config.redisPrefix, 200);
    const done = await waitFor(async () => {
      const s = await getRunStatus(env.db.pool, runId);
      return s?.status === 'completed' ? s : null;
    }, 60_000, 'the run to complete');
    const all = await pages();
    expect(Math.max(...all.full.slice(slow.full.length))).toBe(100); // back at the ceiling
    expect(done.rows).toMatchObject({ total: seeded.eligible, produced: seeded.eligible, applied: seeded.eligible });
    expect(all.sizes.reduce((a, b) => a + b, 0)).toBe(seeded.eligible); // every row produced once
    expect(await countEligible(env.db)).toBe(0);
  }, 120_000);
});
