/**
 * Migration definitions other than the reference one, end to end against the real services:
 * a backfill without groups keyed by uuid and partitioned by an integer (order-totals), and
 * a definition whose every identifier needs quoting, keyed by text (account-policy). Each goes
 * through identification (exact cover with heavy ties), two instances, a replay of the whole
 * topic, a dead letter, and exactly-once completion. Bad definitions are refused with one line.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MigrationDefinition } from '../../src/definitions/define.ts';
import { loadDefinitions } from '../../src/definitions/load.ts';
import { resolveDefinition } from '../../src/definitions/resolve.ts';
import { DefinitionError } from '../../src/errors.ts';
import { getRunStatus } from '../../src/runs/run-store.ts';
import { runCli } from '../support/cli.ts';
import { createTestEnv, type TestEnv, waitFor } from '../support/env.ts';
import { ACCOUNT_POLICY, createAccounts, createOrders, ORDER_TOTALS, wrongTotals } from '../support/fixtures.ts';
import { runUid, startTestRun } from '../support/runs.ts';
import { deleteTestTopics, startInstances, stopAll } from '../support/services.ts';
import { replayTopic } from '../support/replay.ts';
import { readTopic } from '../support/topics.ts';

/** I1 for any definition: every eligible row (as of identification) in exactly one partition. */
async function expectExactCover(env: TestEnv, runId: number, table: string, key: string, position: string, eligibleAtStart: Set<string>, group?: string): Promise<void> {
  const { rows } = await env.db.pool.query<{ k: string; n: number }>(
    `SELECT t.${key}::text AS k, count(p.id)::int AS n FROM ${table} t
     LEFT JOIN partitions p ON p.run_id = $1
       AND ${group ? `p.group_key = t.${group}::text` : "p.group_key = ''"}
       AND (t.${position}, t.${key}) >= (p.lower_pos::${'%T'}, p.lower_key::${'%K'})
       AND (t.${position}, t.${key}) <= (p.upper_pos::${'%T'}, p.upper_key::${'%K'})
     GROUP BY 1`.replaceAll('%T', position === '"Signed Up"' ? 'timestamptz' : 'integer').replaceAll('%K', key === 'id' ? 'uuid' : 'text'),
    [runId],
  );
  const bad = rows.filter((r) => (eligibleAtStart.has(r.k) ? r.n !== 1 : false));
  expect(bad, 'every eligible row in exactly one partition').toEqual([]);
  const { rows: counts } = await env.db.pool.query<{ n: number }>('SELECT coalesce(sum(row_count), 0)::int AS n FROM partitions WHERE run_id = $1', [runId]);
  expect(counts[0]!.n).toBe(eligibleAtStart.size);
}

async function expectOneEvent(env: TestEnv, runId: number, migration: string): Promise<void> {
  const events = await readTopic(env.config.kafkaBrokers, env.config.topicRunEvents, 1);
  expect(events).toHaveLength(1);
  expect(events[0]!.headers['event-id']).toBe(`run-${await runUid(env, runId)}-completed`);
  expect(JSON.parse(events[0]!.value!)).toMatchObject({ type: 'run.completed', runId, migration });
}

async function runToCompletion(env: TestEnv, migration: string, partitionSize: number) {
  const services = await startInstances(env, 2);
  try {
    const runId = await startTestRun(env, partitionSize, { coordination: services[0]!.coordination, migration });
    const done = await waitFor(async () => {
      const s = await getRunStatus(env.db.pool, runId);
      return s?.status === 'completed' || s?.status === 'failed' ? s : null;
    }, 90_000, `the ${migration} run to end`);
    return { runId, done };
  } finally {
    await stopAll(services);
  }
}

/** A replay of the whole topic changes no row (I5), as the fingerprint of the table shows. */
async function replayChangesNothing(env: TestEnv, fingerprint: () => Promise<string>): Promise<void> {
  const before = await fingerprint();
  expect(await replayTopic(env)).toBe(0);
  expect(await fingerprint()).toBe(before);
}

describe('order-totals: no groups, uuid key, integer partition column', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv({ TRANCHE_DEFINITIONS: ORDER_TOTALS, PAGE_SIZE: '200' });
    await createOrders(env.db, { orders: 6000, eligible: 4000 });
  });
  afterAll(async () => {
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('migrates every eligible order once, with a replay that changes nothing and one completion', async () => {
    const eligible = new Set((await env.db.pool.query<{ k: string }>('SELECT id::text AS k FROM orders WHERE total_cents IS NULL')).rows.map((r) => r.k));
    expect(await wrongTotals(env.db)).toBe(4000);
    // A dry run shows what each partition would change, and a few rows before and after.
    const dry = await runCli(['identify', '--dry-run', '--json', '--partition-size', '700'], env.env);
    expect(dry.code, dry.stderr).toBe(0);
    const [plan] = JSON.parse(dry.stdout).groups as { partitions: { rowCount: number; wouldChange: number }[]; sample: { before: (string | null)[]; after: string[] }[] }[];
    expect(plan!.partitions.map((p) => p.wouldChange)).toEqual(plan!.partitions.map((p) => p.rowCount));
    expect(plan!.partitions.reduce((n, p) => n + p.wouldChange, 0)).toBe(4000);
    expect(plan!.sample).toHaveLength(3);
    for (const row of plan!.sample) {
      expect(row.before).toEqual([null]);
      expect(Number(row.after[0])).toBeGreaterThan(0);
    }
    expect(await wrongTotals(env.db)).toBe(4000);
    const { runId, done } = await runToCompletion(env, 'order-totals', 700);
    expect(done).toMatchObject({ status: 'completed', migration: 'order-totals', deadLetters: 0, rows: { total: 4000, applied: 4000 } });
    expect(done.partitions.total).toBe(6);
    await expectExactCover(env, runId, 'orders', 'id', 'placed_day', eligible);
    expect(await wrongTotals(env.db)).toBe(0);
    expect((await env.db.pool.query('SELECT count(*)::int AS n FROM orders WHERE total_cents = -1')).rows[0].n).toBe(2000);
    // Without `verify` in the definition, verify checks eligible rows, counts and checksums only.
    const verified = await runCli(['verify', String(runId), '--json'], env.env);
    expect(verified.code, verified.stderr).toBe(0);
    expect(JSON.parse(verified.stdout)).toMatchObject({ holds: true, reachedChecked: false, verdict: 'holds' });
    const refused = await runCli(['undo', String(runId)], env.env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe(`tranche: order-totals declares no undo, so run ${runId} cannot be undone (add undo: { set, guard } to the definition)\n`);
    await expectOneEvent(env, runId, 'order-totals');
    await replayChangesNothing(env, async () => (await env.db.pool.query(`SELECT md5(string_agg(id::text || total_cents, ',' ORDER BY id)) AS f FROM orders`)).rows[0].f);
    // Nothing left: a new run finds no work.
    const again = await runCli(['identify', '--json'], env.env);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ migration: 'order-totals', groups: 0, partitions: 0 });
  });
});

describe('account-policy: quoted identifiers, text key, groups with targets', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv({ TRANCHE_DEFINITIONS: ACCOUNT_POLICY, PAGE_SIZE: '50' });
    await createAccounts(env.db, { accounts: 1500 });
  });
  afterAll(async () => {
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('migrates each region to its target, carrying the previous version, and completes once', async () => {
    const eligible = new Set(
      (await env.db.pool.query<{ k: string }>(`SELECT a."Account Code" AS k FROM "Accounts" a JOIN "Region Policies" r USING ("Region") WHERE a."Policy Version" < r."Policy Version"`)).rows.map((r) => r.k),
    );
    expect(eligible.size).toBe(1000);
    const { runId, done } = await runToCompletion(env, 'account-policy', 120);
    expect(done).toMatchObject({ status: 'completed', deadLetters: 0, groups: 2, rows: { total: 1000, applied: 1000 } });
    await expectExactCover(env, runId, '"Accounts"', '"Account Code"', '"Signed Up"', eligible, '"Region"');
    // Quoted identifiers and a text key in the generated verification too.
    const verified = await runCli(['verify', String(runId), '--json'], env.env);
    expect(verified.code, verified.stderr).toBe(0);
    expect(JSON.parse(verified.stdout)).toMatchObject({ holds: true, reachedChecked: false, failing: [] });
    const { rows } = await env.db.pool.query(
      `SELECT "Region" AS region, "Policy Version" AS v, "Previous Version" AS prev, count(*)::int AS n FROM "Accounts" GROUP BY 1, 2, 3 ORDER BY 1`,
    );
    expect(rows).toEqual([
      { region: 'ap', v: 1, prev: null, n: 500 },
      { region: 'eu "west"', v: 3, prev: 1, n: 500 },
      { region: 'us-east', v: 2, prev: 1, n: 500 },
    ]);
    await expectOneEvent(env, runId, 'account-policy');
    await replayChangesNothing(env, async () => (await env.db.pool.query(`SELECT md5(string_agg("Account Code" || "Policy Version", ',' ORDER BY "Account Code")) AS f FROM "Accounts"`)).rows[0].f);
  });
});

describe('bad definitions are refused with one clear line, before anything is written', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => {
    await env.cleanup();
  });
  const base: MigrationDefinition = {
    name: 'bad', table: 'subscriptions', key: 'id', partitionBy: 'created_date', eligible: 'product_version < 2', set: { product_version: '2' },
  };

  it.each([
    [{ table: 'nope' }, /table "nope" does not exist/],
    [{ key: 'nope' }, /key "nope" is not a column of/],
    [{ key: 'product_key' }, /key "product_key" of .* is not unique/],
    [{ partitionBy: 'status' }, /partitionBy "status" is text; use a timestamp/],
    [{ table: 'subscriptions"; DROP TABLE products; --' }, /does not exist/],
    [{ set: { 'product_version" = 1; DROP TABLE products; --': '2' } }, /is not a column of/],
    [{ eligible: 'product_version <<< 2' }, /eligible does not work: .*operator does not exist/],
    [{ eligible: 'product_version < {target}' }, /\{target\} needs a group/],
    [{ set: { product_version: '{carried.nope}' } }, /names a column that carry does not list/],
    [{ name: 'Bad Name' }, /name must be 1-63 of a-z/],
    [{ schedule: 'every night' }, /schedule must be a cron expression/],
    [{ verify: { reached: 'product_version = 2', checksum: ['nope'] } }, /verify.checksum "nope" is not a column of/],
    [{ verify: { reached: 'product_version = 2', checksum: [] } }, /verify.checksum must list at least one column/],
  ])('%j', async (change, message) => {
    const error = await resolveDefinition(env.db.pool, { ...base, ...change } as MigrationDefinition).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DefinitionError);
    expect(String((error as Error).message)).toMatch(message);
    expect((error as Error).message).not.toContain('\n');
    expect((await env.db.pool.query(`SELECT to_regclass('products') IS NOT NULL AS ok`)).rows[0].ok).toBe(true);
  });

  it('the command line exits 2 with that line, and a definition file that does not load is named', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tranche-defs-'));
    writeFileSync(join(dir, 'bad.ts'), `export default ${JSON.stringify({ ...base, key: 'product_key' })};\n`);
    writeFileSync(join(dir, 'broken.ts'), 'export default {{{;\n');
    const bad = await runCli(['identify'], { ...env.env, TRANCHE_DEFINITIONS: join(dir, 'bad.ts') });
    expect(bad.code, bad.stderr).toBe(2);
    expect(bad.stderr.trim()).toMatch(/^tranche: definition bad: key "product_key" of .* is not unique/);
    const broken = await runCli(['definitions'], { ...env.env, TRANCHE_DEFINITIONS: join(dir, 'broken.ts') });
    expect(broken.code, broken.stderr).toBe(2);
    expect(broken.stderr).toMatch(/cannot load definitions from .*broken\.ts/);
    const none = await runCli(['definitions'], { ...env.env, TRANCHE_DEFINITIONS: join(dir, '*.nothing') });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/matches no file/);
    expect((await env.db.pool.query('SELECT count(*)::int AS n FROM migration_runs')).rows[0].n).toBe(0);
  });

  it('refuses to identify without the index the walk needs, naming the statement to run', async () => {
    await env.db.pool.query('CREATE TABLE plain (id bigint PRIMARY KEY, day integer NOT NULL, done boolean NOT NULL DEFAULT false)');
    await env.db.pool.query('INSERT INTO plain SELECT g, g % 7 FROM generate_series(1, 50) g');
    const dir = mkdtempSync(join(tmpdir(), 'tranche-defs-'));
    const file = join(dir, 'plain.ts');
    writeFileSync(file, `export default ${JSON.stringify({ name: 'plain', table: 'plain', key: 'id', partitionBy: 'day', eligible: 'NOT done', set: { done: 'true' } })};\n`);
    const refused = await runCli(['identify'], { ...env.env, TRANCHE_DEFINITIONS: file });
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toContain('CREATE INDEX CONCURRENTLY "plain_tranche_day_id" ON');
    expect((await env.db.pool.query('SELECT count(*)::int AS n FROM migration_runs')).rows[0].n).toBe(0);
    const definitions = await loadDefinitions(env.db.pool, [file]);
    expect(definitions.require('plain').statements.indexColumns).toEqual(['day', 'id']);
    const slow = await runCli(['identify', '--allow-slow', '--json'], { ...env.env, TRANCHE_DEFINITIONS: file });
    expect(slow.code, slow.stderr).toBe(0);
    expect(JSON.parse(slow.stdout)).toMatchObject({ migration: 'plain', partitions: 1, rows: 50 });
  });
});
