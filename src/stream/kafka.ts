/**
 * The only module that imports kafkajs. kafkajs is unmaintained since 2.2.4 and its
 * idempotent producer is experimental (issue #1005), so nothing here is trusted for
 * exactly-once: correctness comes from idempotent application and from advancing partition
 * offsets only after acknowledgement. This module only sends with acks=all and one request
 * in flight, consumes with manual commits, and reads lag.
 */
import { createRequire } from 'node:module';
import type { Consumer, EachBatchPayload, Producer } from 'kafkajs';
import type { Logger } from '../logger.ts';
import { createFastPartitioner } from './kafkajs-patches.ts';

/** Whether kafkajs runs with the hot-path patches of kafkajs-patches.ts (logged at start). */
export { kafkajsPatched } from './kafkajs-patches.ts';

// Loaded with require in the module body, not a static import: Node may run a CommonJS
// module that an ES module imports before that module's other imports (here the patches,
// which must first replace kafkajs hot paths in the module cache).
const { Kafka, logLevel } = createRequire(import.meta.url)('kafkajs') as typeof import('kafkajs');

/**
 * kafkajs 2.2.4 (unmaintained) arms timers with negative delays, which Node 23+ reports as a
 * TimeoutNegativeWarning on every start; it is harmless (Node uses 1 ms). Entry points call this
 * once to keep that one warning out of their output; every other warning still prints.
 */
export function silenceKafkajsTimerWarning(): void {
  process.removeAllListeners('warning');
  process.on('warning', (warning) => {
    if (warning.name !== 'TimeoutNegativeWarning') process.stderr.write(`${warning.name}: ${warning.message}\n`);
  });
}

export interface KafkaSettings {
  brokers: readonly string[];
  clientId: string;
}

export interface OutgoingMessage {
  key: string;
  value: string;
  headers?: Record<string, string>;
}

/** A fetched message as kafkajs decoded it: its bytes, not copies as strings. */
export interface IncomingMessage {
  readonly offset: string;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
}

export interface IncomingBatch {
  topic: string;
  partition: number;
  messages: IncomingMessage[];
  /** False once a rebalance took the partition away: stop and let the new owner go on. */
  isRunning(): boolean;
  isStale(): boolean;
  heartbeat(): Promise<void>;
}

export interface StreamClient {
  ensureTopics(topics: { topic: string; partitions: number; replication: number }[]): Promise<void>;
  /** Sends and resolves once every message is acknowledged by all in-sync replicas. */
  send(topic: string, messages: OutgoingMessage[]): Promise<void>;
  /** Starts a consumer in `groupId`; `handle` runs per fetched batch; offsets are committed after it returns. */
  consume(options: {
    groupId: string;
    topic: string;
    fromBeginning?: boolean;
    /** Topic partitions whose batches are applied at once (kafkajs partitionsConsumedConcurrently). */
    concurrency?: number;
    /** Most bytes fetched at once over all partitions (kafkajs maxBytes; default 10 MiB). */
    maxBytes?: number;
    handle: (batch: IncomingBatch) => Promise<void>;
    onJoined?: () => void;
    onCrash?: (error: Error) => void;
  }): Promise<ConsumerHandle>;
  /** Per partition: committed offset of `groupId` and the high watermark; [] when the topic does not exist. */
  lag(groupId: string, topic: string): Promise<{ partition: number; committed: number; high: number; lag: number }[]>;
  /** Deletes topics (tests and demo cleanup); missing ones are ignored. */
  deleteTopics(topics: string[]): Promise<void>;
  disconnect(): Promise<void>;
}

export interface ConsumerHandle {
  stop(): Promise<void>;
}

function toKafkaLogger(log: Logger) {
  return () =>
    ({ level, log: entry }: { level: number; log: { message: string } & Record<string, unknown> }) => {
      const { message, ...rest } = entry;
      const fields = { kafka: rest.logger ?? 'kafkajs', broker: rest.broker, error: rest.error };
      if (level === logLevel.ERROR) log.warn(fields, `kafka: ${message}`);
      else if (level === logLevel.WARN) log.debug(fields, `kafka: ${message}`);
    };
}

export function createStreamClient(settings: KafkaSettings, log: Logger): StreamClient {
  const kafka = new Kafka({
    clientId: settings.clientId,
    brokers: [...settings.brokers],
    logLevel: logLevel.WARN,
    logCreator: toKafkaLogger(log),
    retry: { initialRetryTime: 200, retries: 10, maxRetryTime: 5000 },
    connectionTimeout: 5000,
  });
  let producer: Producer | undefined;
  let producerReady: Promise<Producer> | undefined;
  const consumers = new Set<Consumer>();

  const getProducer = (): Promise<Producer> => {
    producerReady ??= (async () => {
      const p = kafka.producer({
        allowAutoTopicCreation: false,
        maxInFlightRequests: 1,
        idempotent: false,
        createPartitioner: createFastPartitioner,
      });
      await p.connect();
      producer = p;
      return p;
    })().catch((error: unknown) => {
      producerReady = undefined;
      throw error;
    });
    return producerReady;
  };

  return {
    async ensureTopics(topics) {
      const admin = kafka.admin();
      await admin.connect();
      try {
        const existing = new Set(await admin.listTopics());
        const missing = topics.filter((t) => !existing.has(t.topic));
        if (missing.length > 0) {
          await admin.createTopics({
            waitForLeaders: true,
            topics: missing.map((t) => ({ topic: t.topic, numPartitions: t.partitions, replicationFactor: t.replication })),
          });
        }
      } catch (error) {
        // Two instances creating the same topic at once: the loser sees "already exists".
        if (!(error instanceof Error && /already exists/i.test(error.message))) throw error;
      } finally {
        await admin.disconnect();
      }
    },

    async send(topic, messages) {
      if (messages.length === 0) return;
      const p = await getProducer();
      await p.send({ topic, acks: -1, messages });
    },

    async consume({ groupId, topic, fromBeginning = true, concurrency = 1, maxBytes, handle, onJoined, onCrash }) {
      const consumer = kafka.consumer({
        groupId,
        allowAutoTopicCreation: false,
        sessionTimeout: 10_000,
        heartbeatInterval: 1000,
        rebalanceTimeout: 20_000,
        maxWaitTimeInMs: 100,
        ...(maxBytes === undefined ? {} : { maxBytes, maxBytesPerPartition: Math.min(maxBytes, 1_048_576) }),
      });
      consumers.add(consumer);
      consumer.on(consumer.events.GROUP_JOIN, () => onJoined?.());
      consumer.on(consumer.events.CRASH, (event) => onCrash?.(event.payload.error));
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning });
      await consumer.run({
        partitionsConsumedConcurrently: concurrency,
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: async (payload: EachBatchPayload) => {
          const { batch } = payload;
          if (batch.messages.length === 0) return;
          await handle({
            topic: batch.topic,
            partition: batch.partition,
            messages: batch.messages,
            isRunning: payload.isRunning,
            isStale: payload.isStale,
            heartbeat: payload.heartbeat,
          });
          const last = batch.messages[batch.messages.length - 1];
          if (!last || payload.isStale()) return;
          payload.resolveOffset(last.offset);
          await consumer.commitOffsets([
            { topic: batch.topic, partition: batch.partition, offset: (BigInt(last.offset) + 1n).toString() },
          ]);
        },
      });
      return {
        async stop() {
          consumers.delete(consumer);
          await consumer.disconnect();
        },
      };
    },

    async lag(groupId, topic) {
      const admin = kafka.admin();
      await admin.connect();
      try {
        // A missing topic has no lag (fetchTopicOffsets would retry for half a minute).
        if (!(await admin.listTopics()).includes(topic)) return [];
        // allSettled, not all: disconnecting while the other request is still in flight
        // leaks its connection (kafkajs reconnects for it), keeping the process alive.
        const [highResult, committedResult] = await Promise.allSettled([
          admin.fetchTopicOffsets(topic),
          admin.fetchOffsets({ groupId, topics: [topic] }),
        ]);
        if (highResult.status === 'rejected') throw highResult.reason;
        if (committedResult.status === 'rejected') throw committedResult.reason;
        const high = highResult.value;
        const committed = committedResult.value;
        const committedByPartition = new Map<number, number>();
        for (const t of committed) {
          for (const p of t.partitions) committedByPartition.set(p.partition, Number(p.offset));
        }
        return high
          .map((h) => {
            const hw = Number(h.high);
            const c = committedByPartition.get(h.partition) ?? -1;
            const base = c < 0 ? Number(h.low) : c;
            return { partition: h.partition, committed: c, high: hw, lag: Math.max(0, hw - base) };
          })
          .sort((a, b) => a.partition - b.partition);
      } finally {
        await admin.disconnect();
      }
    },

    async deleteTopics(topics) {
      const admin = kafka.admin();
      await admin.connect();
      try {
        const existing = new Set(await admin.listTopics());
        const present = topics.filter((t) => existing.has(t));
        if (present.length > 0) await admin.deleteTopics({ topics: present });
      } finally {
        await admin.disconnect();
      }
    },

    async disconnect() {
      await Promise.allSettled([...consumers].map((c) => c.disconnect()));
      consumers.clear();
      if (producer) await producer.disconnect().catch(() => {});
      producer = undefined;
      producerReady = undefined;
    },
  };
}
