/**
 * `npm run chaos`: a full chaos run. Options:
 *   --workload NAME   the definition to run: subscription-version (default) or order-totals
 *   --undo-faults L   undo the run afterwards, with these faults (comma-separated; "" for none)
 *   --rows N          eligible rows (default 1,000,000)
 *   --instances N     service instances (default 3)
 *   --seed N          reproduce a run (default: random, printed at the start)
 *   --faults LIST     comma-separated from kill,kafka,hang,redis,postgres (default kill,kill,kafka,hang,redis,postgres,kill)
 *   --hang-seconds S  how long a "hang" freezes the broker (SIGSTOP, then SIGCONT; default 40)
 *   --private-broker  run the kafka and hang faults on a broker of its own (test/support/private-kafka.ts)
 *                     instead of the local stack's shared one
 *   --timeout S       give up after S seconds (default 1200)
 *   --throttle N      global limit in rows/s, to stretch a small run until its last fault (default 0: none)
 * It restarts the local Kafka, Redis and PostgreSQL: run it alone. Exits 1 on any breach.
 */
import { parseArgs } from 'node:util';
import { wholeFlag } from '../../src/cli/parse.ts';
import { startPrivateKafka } from '../support/private-kafka.ts';
import { FIXTURE_MIGRATION } from '../../src/seed.ts';
import { ALL_FAULTS, type FaultKind, runChaos } from './chaos.ts';
import { WORKLOADS } from './workloads.ts';
import { type KafkaControl, privateKafkaControl } from './faults.ts';

const USAGE = `usage: npm run chaos -- [options]
  --workload NAME     the definition to migrate: ${Object.keys(WORKLOADS).join(' or ')}
                      (default ${FIXTURE_MIGRATION})
  --undo-faults LIST  then undo the run with \`tranche undo\`, injecting these faults into
                      the undo run, and check it the same way ("" for an undo without faults;
                      only for definitions that declare an undo)
  --rows N            eligible rows (default 1,000,000)
  --instances N       service instances (default 3)
  --seed N            reproduce a run (default: random, printed at the start)
  --faults LIST       comma-separated from kill,kafka,hang,redis,postgres
                      (default kill,kill,kafka,hang,redis,postgres,kill)
  --hang-seconds S    how long a "hang" freezes the Kafka broker (SIGSTOP, then
                      SIGCONT); must exceed the consumer session timeout (default 40)
  --private-broker    start a Kafka broker of its own for the run: the kafka and hang
                      faults hit it, not the shared one (only kill, kafka and hang faults)
  --throttle N        global limit in rows/s, to stretch a small run until its last fault
                      (default 0: none)
  --page-size N       rows per page (default 1000)
  --partition-size N  rows per partition (default 50000)
  --timeout S         give up after S seconds (default 1200)
It restarts the local Kafka, Redis and PostgreSQL: run it alone. Exits 1 on any breach.`;

let parsed;
try {
  parsed = parseArgs({
    options: {
      help: { type: 'boolean', default: false },
      workload: { type: 'string', default: FIXTURE_MIGRATION },
      'undo-faults': { type: 'string' },
      rows: { type: 'string', default: '1000000' },
      instances: { type: 'string', default: '3' },
      seed: { type: 'string' },
      faults: { type: 'string', default: 'kill,kill,kafka,hang,redis,postgres,kill' },
      'hang-seconds': { type: 'string', default: '40' },
      'private-broker': { type: 'boolean', default: false },
      timeout: { type: 'string', default: '1200' },
      'page-size': { type: 'string', default: '1000' },
      'partition-size': { type: 'string', default: '50000' },
      throttle: { type: 'string', default: '0' },
    },
    strict: true,
  });
} catch (error) {
  console.error(`chaos: ${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
  process.exit(2);
}
const { values } = parsed;
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

const list = (text: string) => text.split(',').map((f) => f.trim()).filter(Boolean);
const faults = list(values.faults);
const undoFaults = values['undo-faults'] === undefined ? undefined : list(values['undo-faults']);
const workload = WORKLOADS[values.workload];
if (!workload) {
  console.error(`chaos: unknown workload ${values.workload}; choose from ${Object.keys(WORKLOADS).join(', ')}`);
  process.exit(2);
}
const unknown = [...faults, ...(undoFaults ?? [])].filter((f) => !ALL_FAULTS.includes(f as FaultKind));
if (unknown.length > 0) {
  console.error(`chaos: unknown fault ${unknown.join(', ')}; choose from ${ALL_FAULTS.join(', ')}`);
  process.exit(2);
}
if (values['private-broker'] && [...faults, ...(undoFaults ?? [])].some((f) => f === 'redis' || f === 'postgres')) {
  console.error('chaos: --private-broker keeps the shared services untouched: choose faults from kill, kafka, hang');
  process.exit(2);
}
const seed = values.seed === undefined ? Math.floor(Math.random() * 1_000_000) : wholeFlag('seed', values.seed, 0);
let kafka: KafkaControl | undefined;
const broker = values['private-broker'] ? await startPrivateKafka() : undefined;
if (broker) {
  // The instances are child processes that inherit this environment.
  process.env.KAFKA_BROKERS = broker.brokers.join(',');
  kafka = privateKafkaControl(broker);
  console.log(`chaos: private Kafka broker at ${broker.brokers.join(',')}`);
}
let report;
try {
  report = await runChaos({
    workload,
    undoFaults: undoFaults as FaultKind[] | undefined,
    rows: wholeFlag('rows', values.rows, 1),
    instances: wholeFlag('instances', values.instances, 1),
    seed,
    faults: faults as FaultKind[],
    pageSize: wholeFlag('page-size', values['page-size'], 1),
    partitionSize: wholeFlag('partition-size', values['partition-size'], 1),
    timeoutSeconds: wholeFlag('timeout', values.timeout, 1),
    throttle: wholeFlag('throttle', values.throttle, 0),
    hangMs: wholeFlag('hang-seconds', values['hang-seconds'], 1) * 1000,
    kafka,
    log: (line) => console.log(line),
  });
} finally {
  await broker?.destroy();
}
const undoFlag = undoFaults === undefined ? '' : ` --undo-faults '${undoFaults.join(',')}'`;
console.log(`chaos: reproduce with: npm run chaos -- --workload ${values.workload} --seed ${report.seed} --rows ${values.rows} --faults ${values.faults}${undoFlag}`);
process.exit(report.ok ? 0 : 1);
