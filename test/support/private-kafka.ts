/**
 * A private single-node KRaft broker for tests that freeze, kill or restart Kafka: the shared
 * broker on 9092 (scripts/stack.sh) is used by every other test and must never be disturbed.
 *
 * It runs the jars scripts/stack.sh cached (under $TRANCHE_STACK_DIR/kafka/libs, default
 * .cache/kafka/libs) with the same server.properties template (stack/kafka/server.properties),
 * on two free ports of its own and a data directory in a temporary folder, formatted with
 * Kafka's StorageTool as the script does. Readiness is scripts/kafka-ready.mjs: a topic
 * created and a message acknowledged.
 *
 * @example
 *   const broker = await startPrivateKafka();
 *   broker.freeze(); // SIGSTOP: a hung broker
 *   broker.resume(); // SIGCONT
 *   await broker.kill(); // SIGKILL
 *   await broker.start(); // same data, same ports
 *   await broker.destroy();
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from './ports.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const run = promisify(execFile);

export interface PrivateKafka {
  /** host:port for clients (the proxy's when `proxied`). */
  readonly brokers: string[];
  /** With `proxied`: the link between clients and the broker, which a test can cut. */
  readonly network: TcpProxy | undefined;
  /** The broker's process id while it runs. */
  pid(): number | undefined;
  /** SIGSTOP: the process hangs, its sockets stay open (a long GC pause, a VM stall). */
  freeze(): void;
  /** SIGCONT after freeze(). */
  resume(): void;
  /** SIGKILL, and waits until the process is gone. */
  kill(): Promise<void>;
  /** Starts the broker again on the same data and ports; resolves once it accepts writes. */
  start(): Promise<void>;
  /** Last lines of the broker's log (for failure messages). */
  logTail(lines?: number): string;
  /** Kills the broker (if running) and removes its data. */
  destroy(): Promise<void>;
}

function stackDir(): string {
  const dir = process.env.TRANCHE_STACK_DIR ?? '.cache';
  return isAbsolute(dir) ? dir : join(ROOT, dir);
}

/** A Kafka cluster id: 16 random bytes, base64url without padding (what StorageTool random-uuid prints). */
function clusterId(): string {
  return randomBytes(16).toString('base64url');
}

/**
 * `proxied`: clients reach the broker through a TCP proxy (test/support/tcp-proxy.ts) that
 * the broker advertises as its address, so that `network.cut()` cuts every connection.
 */
export async function startPrivateKafka(options: { heap?: string; startTimeoutMs?: number; proxied?: boolean } = {}): Promise<PrivateKafka> {
  const libs = join(stackDir(), 'kafka', 'libs');
  if (!existsSync(libs)) throw new Error(`no Kafka jars in ${libs}: run "npm run stack:up" once first`);
  const java = process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
  const log4j = `-Dlog4j.configuration=file:${join(ROOT, 'stack', 'kafka', 'log4j.properties')}`;
  const home = mkdtempSync(join(tmpdir(), 'tranche-kafka-'));
  const data = join(home, 'data');
  const props = join(home, 'server.properties');
  const logFile = join(home, 'kafka.log');
  const [port, controllerPort] = [await freePort(), await freePort()];
  const network = options.proxied ? await startTcpProxy(port) : undefined;
  const advertised = network?.port ?? port;
  const template = readFileSync(join(ROOT, 'stack', 'kafka', 'server.properties'), 'utf8');
  writeFileSync(
    props,
    template
      .replaceAll('@LOG_DIRS@', data)
      .replaceAll('127.0.0.1:9093', `127.0.0.1:${controllerPort}`)
      .replace('advertised.listeners=PLAINTEXT://127.0.0.1:9092', `advertised.listeners=PLAINTEXT://127.0.0.1:${advertised}`)
      .replaceAll('127.0.0.1:9092', `127.0.0.1:${port}`),
  );
  await run(java, [log4j, '-cp', `${libs}/*`, 'kafka.tools.StorageTool', 'format', '-t', clusterId(), '-c', props, '--ignore-formatted'], { timeout: 60_000 });

  const brokers = [`127.0.0.1:${advertised}`];
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const start = async () => {
    const out = openSync(logFile, 'a');
    child = spawn(
      java,
      [...(options.heap ?? '-Xmx384m -Xms128m').split(' '), '-XX:+UseG1GC', '-XX:MaxGCPauseMillis=20', '-Djava.awt.headless=true', log4j, '-cp', `${libs}/*`, 'kafka.Kafka', props],
      { stdio: ['ignore', out, out] },
    );
    closeSync(out);
    const proc = child;
    exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    const ready = run(process.execPath, ['--disable-warning=TimeoutNegativeWarning', join(ROOT, 'scripts', 'kafka-ready.mjs')], {
      env: { ...process.env, KAFKA_BROKERS: brokers.join(','), KAFKA_READY_TIMEOUT_MS: String(options.startTimeoutMs ?? 90_000) },
      timeout: (options.startTimeoutMs ?? 90_000) + 10_000,
    });
    const died = exited.then(() => {
      throw new Error(`the private Kafka broker exited during startup:\n${tail(40)}`);
    });
    await Promise.race([ready, died]);
  };
  const tail = (lines = 30) => {
    try {
      return readFileSync(logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  };
  const kill = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT'); // a frozen process dies of SIGKILL too, but be plain about it
      child.kill('SIGKILL');
      await exited;
    }
  };

  try {
    await start();
  } catch (error) {
    await kill();
    await network?.close();
    rmSync(home, { recursive: true, force: true });
    throw error;
  }
  return {
    brokers,
    network,
    pid: () => child?.pid,
    freeze: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT'),
    kill,
    start,
    logTail: tail,
    async destroy() {
      await kill();
      await network?.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
}
