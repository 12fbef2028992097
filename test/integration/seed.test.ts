/**
 * The generated data set's layout: shuffled rows (created_date independent of the id) or
 * chronological ones (ids and table order following created_date). Same rows either way.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seed, seededLayout } from '../../src/seed.ts';
import { createTestEnv, type TestEnv } from '../support/env.ts';

describe('seed layout', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => {
    await env.cleanup();
  });

  /**
   * The layout, and a digest of the rows apart from their ids (the non-tied dates count back
   * from the seeding's now(), so only the tied import instants enter the digest as they are).
   */
  const shape = async () => {
    const { rows } = await env.db.pool.query<{ n: number; digest: string; ties: number }>(
      `SELECT count(*)::int AS n,
              md5(string_agg(product_key || '|' || customer_ref || '|' ||
                CASE WHEN created_date IN (SELECT timestamptz '2024-03-01 00:00:00.000001+00' + d * interval '1 day' FROM generate_series(0, 2) d)
                  THEN created_date::text ELSE 'random' END, ',' ORDER BY customer_ref)) AS digest,
              (count(*) - count(DISTINCT created_date))::int AS ties
       FROM subscriptions`,
    );
    return { ...rows[0]!, layout: await seededLayout(env.db) };
  };

  it('puts rows in created_date order when chronological, and the same rows all over the table when shuffled', async () => {
    await seed(env.db, { rows: 5000, groups: 4, changed: 2, reset: true, randomSeed: 7, layout: 'chronological' });
    const chronological = await shape();
    await seed(env.db, { rows: 5000, groups: 4, changed: 2, reset: true, randomSeed: 7 });
    const shuffled = await shape();
    expect(chronological.layout).toBe('chronological');
    expect(shuffled.layout).toBe('shuffled');
    expect(chronological.n).toBe(5000);
    // Same rows, same tied instants (batch imports), only their ids and places differ.
    expect(chronological.ties).toBeGreaterThan(0);
    expect(chronological.digest).toBe(shuffled.digest);
  });
});
