/**
 * `tranche demo`: the whole pipeline on the example fixture (src/seed.ts) and its definition
 * (examples/). Seeds (in its own schema, so it touches nothing else), starts N service
 * instances as separate processes, starts one run, shows its progress and ends with a summary
 * and an independent SQL check that no eligible row is left. Exits 0 only if that check holds.
 */
import { fileURLToPath } from 'node:url';
import { processEnv } from '../../config.ts';
import { createContext } from '../context.ts';
import { loadDefinitions } from '../../definitions/load.ts';
import { hasExited, type Instance, startInstance, stopInstances, tailLog } from '../instances.ts';
import { identifyDepsFrom, startManualRun } from '../../identification/identify.ts';
import { getRunStatus } from '../../runs/run-store.ts';
import { countEligible, describeSeed, eligibleCheckSql, FIXTURE_DEFINITION, FIXTURE_MIGRATION, seed } from '../../seed.ts';
import { ensureTopics } from '../../service.ts';
import { createStreamClient } from '../../stream/kafka.ts';
import type { CommandContext } from '../context.ts';

export interface DemoOptions {
  rows: number;
  groups: number;
  changed: number;
  instances: number;
  partitionSize: number;
  timeout: number;
}

const LOG_DIR = fileURLToPath(new URL('../../../.cache/demo/', import.meta.url));

/** Demo isolation: its own schema, Redis prefix, topics and consumer group, unless set. */
export const DEMO_ENV = {
  DB_SCHEMA: 'tranche_demo',
  REDIS_PREFIX: 'tranche-demo',
  KAFKA_GROUP_ID: 'tranche-demo-appliers',
  TOPIC_UPDATES: 'tranche-demo.updates',
  TOPIC_DEAD_LETTERS: 'tranche-demo.dead-letters',
  TOPIC_RUN_EVENTS: 'tranche-demo.run-events',
} as const;

const fmt = (n: number) => n.toLocaleString('en-US');

export function demoContext(env: NodeJS.ProcessEnv = processEnv()): { ctx: CommandContext; env: NodeJS.ProcessEnv; instanceLogLevel: string } {
  const merged: NodeJS.ProcessEnv = { ...env };
  // The instances log at the level the user asked for (into their files), info by default.
  const instanceLogLevel = env.LOG_LEVEL || 'info';
  for (const [k, v] of Object.entries(DEMO_ENV)) if (!merged[k]) merged[k] = v;
  merged.INSTANCE_ID ||= 'demo-cli';
  merged.TRANCHE_DEFINITIONS ||= FIXTURE_DEFINITION;
  // The demo prints its own progress; its process logs only warnings unless asked.
  merged.LOG_LEVEL ||= 'warn';
  return { ctx: createContext({}, merged), env: merged, instanceLogLevel };
}

export async function demoCommand(options: DemoOptions): Promise<number> {
  const { ctx, env, instanceLogLevel } = demoContext();
  const { config } = ctx;
  const out = (line: string) => console.log(line);
  const instances: Instance[] = [];
  try {
    const db = await ctx.openDb();
    out(`tranche demo: schema "${config.dbSchema}", ${options.instances} instances, partitions of ${fmt(options.partitionSize)} rows`);
    const seeded = await seed(db, { rows: options.rows, groups: options.groups, changed: options.changed, reset: true });
    out(describeSeed(seeded));
    const definitions = await loadDefinitions(db.pool, config.definitions);
    const stream = createStreamClient({ brokers: config.kafkaBrokers, clientId: 'tranche-demo' }, ctx.log);
    await ensureTopics(stream, config);
    await stream.disconnect();

    for (let i = 1; i <= options.instances; i++) {
      instances.push(startInstance(env, `demo-${i}`, LOG_DIR, { LOG_LEVEL: instanceLogLevel }));
    }
    out(`started ${options.instances} service instances (logs in .cache/demo/)`);

    const co = ctx.openCoordination();
    const run = await startManualRun(identifyDepsFrom(config, db, co, ctx.log, definitions), {
      migration: FIXTURE_MIGRATION,
      partitionSize: options.partitionSize,
      maxPartitions: config.maxPartitions,
    });
    out(`run ${run.runId} of ${FIXTURE_MIGRATION}: ${run.groups.length} groups, ${run.partitions} partitions, ${fmt(run.rows)} rows`);

    const deadline = Date.now() + options.timeout * 1000;
    const tty = process.stdout.isTTY === true;
    let lastLine = '';
    let report = await getRunStatus(db.pool, run.runId);
    while (report && !['completed', 'failed', 'cancelled'].includes(report.status)) {
      const exited = instances.find(hasExited);
      if (exited) {
        out(`\nan instance exited unexpectedly; its log ends with:\n${tailLog(exited.logFile)}`);
        return 1;
      }
      if (Date.now() > deadline) {
        out(`\ntimed out after ${options.timeout} s with the run ${report.status}`);
        return 1;
      }
      const pct = report.rows.total > 0 ? (100 * report.rows.applied) / report.rows.total : 100;
      const line =
        `run ${report.runId} ${report.status}: partitions ${report.partitions.completed}/${report.partitions.total} produced, ` +
        `rows ${fmt(report.rows.applied)}/${fmt(report.rows.total)} applied (${pct.toFixed(1)}%)`;
      if (tty) process.stdout.write(`\r${line.padEnd(lastLine.length)}`);
      else if (line !== lastLine) out(line);
      lastLine = line;
      await new Promise((r) => setTimeout(r, 500));
      report = await getRunStatus(db.pool, run.runId);
    }
    if (tty) process.stdout.write('\n');
    if (!report) throw new Error(`run ${run.runId} disappeared`);
    const timing = await db.pool.query<{ seconds: number }>(
      'SELECT extract(epoch FROM completed_at - created_at)::float8 AS seconds FROM migration_runs WHERE id = $1',
      [run.runId],
    );
    const seconds = timing.rows[0]?.seconds ?? Number.NaN;
    const left = await countEligible(db);
    out('');
    out('summary');
    out(`  run id              ${report.runId} (${report.status})`);
    out(`  partitions          ${report.partitions.total} (${report.partitions.completed} completed, ${report.partitions.failed} failed)`);
    out(`  rows migrated       ${fmt(report.rows.applied)} of ${fmt(report.rows.total)}`);
    out(`  duration            ${seconds.toFixed(1)} s (run created to run completed)`);
    out(`  throughput          ${fmt(Math.round(report.rows.applied / seconds))} rows/s`);
    out(`  dead letters        ${report.deadLetters}`);
    out(`  eligible left       ${left}  (check: psql -h 127.0.0.1 -U postgres -c "${eligibleCheckSql(config.dbSchema)}")`);
    const ok = report.status === 'completed' && left === 0;
    out(ok ? 'OK: every eligible row was migrated' : 'FAILED: eligible rows are left behind');
    return ok ? 0 : 1;
  } finally {
    await stopInstances(instances, 15_000);
    await ctx.close();
  }
}
