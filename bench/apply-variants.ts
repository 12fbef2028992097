/**
 * Micro-benchmark of the apply statement (sql/apply-updates.sql) against variants, on the
 * e2e data set (schema bench_e2e, seeded by bench/e2e.ts): per round, a batch of random
 * eligible-again rows is applied by each variant in turn, in a transaction that is rolled back,
 * so every variant sees the same rows and the same table. Prints microseconds per row. The
 * records name partition 1, which the reset data set does not have: the statement's counting
 * on partitions finds nothing to lock, so this measures the apply itself.
 *
 *   node bench/apply-variants.ts [--batch 3000] [--rounds 15]
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { wholeFlag } from '../src/cli/parse.ts';
import { benchArgs } from './args.ts';

const args = benchArgs(import.meta.url, { batch: { type: 'string', default: '3000' }, rounds: { type: 'string', default: '15' } });
const batch = wholeFlag('batch', args.batch, 1);
const rounds = wholeFlag('rounds', args.rounds, 1);
const current = readFileSync(new URL('../sql/apply-updates.sql', import.meta.url), 'utf8');

// The statement's own `input` and `changed`, without the counting on partitions after them.
const countsAt = current.indexOf(',\ncounts AS');
if (countsAt < 0) throw new Error('sql/apply-updates.sql has no `counts` CTE any more: update this benchmark');
const applyOnly = `${current.slice(0, countsAt)}
SELECT run_id, partition_id, count(*)::bigint AS n FROM changed GROUP BY run_id, partition_id`;

const variants: Record<string, string> = {
  'current (sql/apply-updates.sql)': current,
  'ids sorted in input': current.replace(
    'AS r(id, to_version, run_id, partition_id)\n)',
    'AS r(id, to_version, run_id, partition_id)\n  ORDER BY id\n)',
  ),
  'apply only, no counting on partitions': applyOnly,
  'plain UPDATE … WHERE id = ANY (one version)': 'UPDATE subscriptions SET product_version = 2, updated_at = now() WHERE id = ANY ($1::bigint[]) AND product_version < 2',
};

const client = new pg.Client({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres', options: '-c search_path=bench_e2e' });
await client.connect();
const totals = new Map<string, number>();
for (let r = 0; r < rounds; r++) {
  const { rows } = await client.query<{ id: string }>('SELECT id FROM subscriptions ORDER BY random() LIMIT $1', [batch]);
  const ids = rows.map((x) => x.id).sort(() => Math.random() - 0.5);
  const names = Object.keys(variants).sort(() => Math.random() - 0.5);
  for (const name of names) {
    await client.query('BEGIN');
    await client.query('UPDATE subscriptions SET product_version = 1 WHERE id = ANY ($1::bigint[])', [ids]);
    const t = performance.now();
    const sql = variants[name]!;
    const params = sql.includes('$4') ? [ids, ids.map(() => 2), ids.map(() => 1), ids.map(() => 1)] : [ids];
    await client.query(sql, params);
    totals.set(name, (totals.get(name) ?? 0) + performance.now() - t);
    await client.query('ROLLBACK');
  }
}
for (const [name, ms] of totals) console.log(`${((1000 * ms) / (rounds * batch)).toFixed(1).padStart(7)} µs/row  ${name}`);
await client.end();
