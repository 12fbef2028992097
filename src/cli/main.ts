/**
 * The `tranche` command line: turns argv into calls of the library, and maps errors to exit
 * codes in one place: 0 ok, 1 unexpected failure, 2 bad input or configuration (nothing was
 * changed), 3 a service is unreachable. Set LOG_LEVEL=debug or pass --debug for stack traces.
 */
import { Command, CommanderError, Option } from 'commander';
import { ConfigError, ServiceUnavailableError, UserError } from '../errors.ts';
import { rerunCommand, runActionCommand } from './commands/control.ts';
import { definitionsCommand, initCommand } from './commands/definitions.ts';
import { demoCommand } from './commands/demo.ts';
import { identifyCommand } from './commands/identify.ts';
import { migrateCommand } from './commands/migrate.ts';
import { seedCommand } from './commands/seed.ts';
import { serveCommand } from './commands/serve.ts';
import { stackCommand } from './commands/stack.ts';
import { throttleCommand } from './commands/throttle.ts';
import { undoCommand } from './commands/undo.ts';
import { verifyCommand } from './commands/verify.ts';
import { partitionsCommand, statusCommand } from './commands/status.ts';
import { type CommandContext, createContext } from './context.ts';
import { collect, nonNegativeInt, parseId, positiveInt } from './parse.ts';

let exitCode = 0;
let debug = process.argv.includes('--debug');

async function withContext(overrides: Parameters<typeof createContext>[0], fn: (ctx: CommandContext) => Promise<void>): Promise<void> {
  const ctx = createContext(overrides);
  try {
    await fn(ctx);
  } finally {
    await ctx.close();
  }
}

function buildProgram(): Command {
  const program = new Command('tranche')
    .description('Partitioned batch-migration scheduler: exact partitions, crash-safe tasks, a Kafka update stream applied idempotently.')
    .option('--debug', 'print stack traces of errors')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  program
    .command('migrate')
    .description('apply pending schema migrations to DB_SCHEMA')
    .action(() => withContext({}, migrateCommand));

  program
    .command('seed')
    .description("generate the demo's fixture in DB_SCHEMA (set-based, fast; see examples/)")
    .option('--rows <n>', 'rows to create', nonNegativeInt, 200_000)
    .option('--groups <n>', 'groups to spread them over', positiveInt, 20)
    .option('--changed <n>', 'groups that get a new target', nonNegativeInt, 5)
    .option('--seed <n>', 'random seed, for a reproducible data set', nonNegativeInt, 42)
    .option('--reset', "delete the fixture's rows and every run first")
    .option('--json', 'print one JSON object')
    .action((opts) => withContext({}, (ctx) => seedCommand(ctx, opts)));

  program
    .command('identify')
    .description('start a run of a definition now: find the groups with work, cut partitions, schedule one task per partition')
    .option('--migration <name>', 'the definition to run (may be omitted when only one is loaded)')
    .option('--partition-size <n>', "target rows per partition (default: the definition's, else PARTITION_SIZE)", positiveInt)
    .option('--max-partitions <n>', "cap on partitions per group (default: the definition's, else MAX_PARTITIONS)", positiveInt)
    .option('--group <key>', 'only this group (repeatable)', collect)
    .option('--force', 'start even while another run of the definition is active; its groups are skipped')
    .option('--allow-slow', 'start even though the index the walk needs is missing')
    .option('--dry-run', 'print the partitions it would create and the SQL it would run, and write nothing')
    .option('--ignore-window', 'work at any time, even outside the WINDOW (this run only)')
    .option('--json', 'print one JSON object with runId')
    .action((opts) => withContext({}, (ctx) => identifyCommand(ctx, opts)));

  program
    .command('definitions')
    .description('list the loaded migration definitions (TRANCHE_DEFINITIONS) and what each would touch')
    .option('--json', 'print JSON')
    .action((opts) => withContext({}, (ctx) => definitionsCommand(ctx, opts)));

  program
    .command('init')
    .argument('<name>', 'the new definition name')
    .option('--file <path>', 'where to write it (default migrations/tranche/NAME.ts)')
    .description('write a commented starter migration definition to edit')
    .action((name, opts) => initCommand(name, opts));

  program
    .command('serve')
    .description('run one service instance: nightly trigger, partition workers, update consumer, HTTP')
    .action(() => withContext({}, serveCommand));

  program
    .command('status')
    .argument('[run]', 'run id (omit for the latest runs)', (v) => parseId(v, 'run'))
    .description('show a run (or the latest runs): state, partitions, rows, dead letters')
    .option('--json', 'print JSON')
    .option('--no-watch', 'print once, even on a terminal while the run is going')
    .option('--limit <n>', 'runs to list without RUN', positiveInt, 20)
    .action((run, opts) => withContext({}, (ctx) => statusCommand(ctx, run, opts)));

  program
    .command('partitions')
    .argument('<run>', 'run id', (v) => parseId(v, 'run'))
    .description("list a run's partitions: state, rows, attempts, last error")
    .addOption(new Option('--state <state>', 'only partitions in this state').choices(['pending', 'running', 'completed', 'failed']))
    .option('--json', 'print JSON')
    .action((run, opts) => withContext({}, (ctx) => partitionsCommand(ctx, run, opts)));

  program
    .command('stack')
    .argument('<action>', 'up, down or status')
    .option('--all', 'with down: also stop the local Redis and PostgreSQL')
    .description('bring the local PostgreSQL, Redis and Kafka up, down, or show them')
    .action(async (action, opts) => {
      exitCode = await stackCommand(action, opts);
    });

  program
    .command('runs')
    .description('list the latest runs')
    .option('--json', 'print JSON')
    .option('--limit <n>', 'runs to list', positiveInt, 20)
    .action((opts) => withContext({}, (ctx) => statusCommand(ctx, undefined, opts)));

  for (const action of ['pause', 'resume', 'cancel'] as const) {
    program
      .command(action)
      .argument('<run>', 'run id', (v) => parseId(v, 'run'))
      .description(`${action} a run in every instance`)
      .action((run) => withContext({}, (ctx) => runActionCommand(ctx, action, run)));
  }

  program
    .command('rerun')
    .description('reset partitions to their lower bound and schedule them again')
    .addOption(new Option('--partition <id>', 'one partition').argParser((v) => parseId(v, 'partition')))
    .addOption(new Option('--run <id>', 'a run (with --failed)').argParser((v) => parseId(v, 'run')))
    .option('--failed', 'every failed partition of --run')
    .option('--json', 'print JSON')
    .action((opts) => withContext({}, (ctx) => rerunCommand(ctx, opts)));

  program
    .command('verify')
    .argument('<run>', 'run id', (v) => parseId(v, 'run'))
    .description('prove a run against the database, per partition: eligible rows left, rows reached, vanished or moved beyond, checksums; exit 1 naming the partitions that do not hold')
    .option('--json', 'print JSON')
    .option('--repair', 'rerun exactly the partitions that still have eligible rows, through the ordinary tasks')
    .action(async (run, opts) => {
      await withContext({}, async (ctx) => {
        exitCode = await verifyCommand(ctx, run, opts);
      });
    });

  program
    .command('undo')
    .argument('<run>', 'run id', (v) => parseId(v, 'run'))
    .description("start a run that moves back the rows RUN changed and that still hold what it wrote (the definition's undo; undoing an undo is a redo)")
    .option('--json', 'print JSON')
    .action((run, opts) => withContext({}, (ctx) => undoCommand(ctx, run, opts)));

  program
    .command('throttle')
    .argument('[rows-per-second]', 'global limit on rows produced per second, for every instance (0 = unlimited)', nonNegativeInt)
    .description('show or change the global throttle, also while a run is going')
    .option('--unlimited', 'remove the limit')
    .option('--reset', 'go back to THROTTLE_ROWS_PER_SECOND')
    .option('--json', 'print JSON')
    .action((limit, opts) => withContext({}, (ctx) => throttleCommand(ctx, limit, opts)));

  program
    .command('demo')
    .description('seed a data set, start service instances, run one migration and check the result')
    .option('--rows <n>', 'rows of the fixture to generate', positiveInt, 200_000)
    .option('--groups <n>', 'groups', positiveInt, 20)
    .option('--changed <n>', 'groups with a new target', nonNegativeInt, 5)
    .option('--instances <n>', 'service instances to start', positiveInt, 3)
    .option('--partition-size <n>', 'rows per partition', positiveInt, 5000)
    .option('--timeout <seconds>', 'give up after this long', positiveInt, 600)
    .action(async (opts) => {
      exitCode = await demoCommand(opts);
    });

  return program;
}

function report(error: unknown): number {
  if (error instanceof CommanderError) {
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.exitCode === 0) return 0;
    return 2; // commander already printed the message
  }
  const message = error instanceof Error ? error.message : String(error);
  if (debug && error instanceof Error) process.stderr.write(`${error.stack}\n`);
  if (error instanceof ConfigError || error instanceof UserError) {
    process.stderr.write(`tranche: ${message}\n`);
    return 2;
  }
  if (error instanceof ServiceUnavailableError) {
    process.stderr.write(`tranche: ${message}\n`);
    return 3;
  }
  const code = (error as { code?: string }).code;
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || /connect|broker/i.test(error instanceof Error ? error.constructor.name : '')) {
    process.stderr.write(`tranche: a service is unreachable: ${message}\n`);
    return 3;
  }
  process.stderr.write(`tranche: ${message}${debug ? '' : ' (run with --debug for details)'}\n`);
  return 1;
}

export async function main(argv: string[]): Promise<number> {
  debug = argv.includes('--debug');
  try {
    await buildProgram().parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (error) {
    return report(error);
  }
}
