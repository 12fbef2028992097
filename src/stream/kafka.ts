/**
 * The only module that imports kafkajs. kafkajs is unmaintained since 2.2.4 and its
 * idempotent producer is experimental (issue #1005), so nothing here is trusted for
 * exactly-once: correctness comes from idempotent application and from advancing partition
 * offsets only after acknowledgement. This module only sends with acks=all and one request
 * in flight, consumes with manual commits, and reads lag.
 */
import { createRequire } from 'node:module';
import type { Admin, Consumer, Producer } from 'kafkajs';
import type { Logger } from '../logger.ts';
import { createFastPartitioner } from './kafkajs-patches.ts';
import { type ConsumeOptions, type ConsumerHandle, superviseConsumer } from './supervised-consumer.ts';

export type { ConsumeOptions, ConsumerHandle } from './supervised-consumer.ts';
export { CONSUMER_RESTART_BASE_MS, CONSUMER_RESTART_MAX_MS } from './supervised-consumer.ts';

/** Whether kafkajs runs with the hot-path patches of kafkajs-patches.ts (logged at start). */
export { kafkajsPatched } from './kafkajs-patches.ts';

// Loaded with require in the module body, not a static import: Node may run a CommonJS
// module that an ES module imports before that module's other imports (here the patches,
// which must first replace kafkajs hot paths in the module cache).
const { Kafka, logLevel } = createRequire(import.meta.url)('kafkajs') as typeof import('kafkajs');

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
  /**
   * Creates the missing topics, then waits until every topic has a leader for each of its
   * partitions (at most `waitMs`, default 30 s), so that producing to them works at once. An
   * existing topic keeps its partition count; a count other than the configured one is logged.
   */
  ensureTopics(topics: { topic: string; partitions: number; replication: number }[], waitMs?: number): Promise<void>;
  /**
   * Sends and resolves once every message is acknowledged by all in-sync replicas, in requests
   * of at most {@link MAX_REQUEST_BYTES}, one after the other.
   */
  send(topic: string, messages: OutgoingMessage[]): Promise<void>;
  /**
   * Starts a consumer in `groupId` in the background and keeps it alive until the handle's
   * `stop()` (see {@link ConsumerHandle}); `handle` runs per fetched batch; offsets are
   * committed after it returns.
   */
  consume(options: ConsumeOptions): Promise<ConsumerHandle>;
  /** Per partition: committed offset of `groupId` and the high watermark; [] when the topic does not exist. */
  lag(groupId: string, topic: string): Promise<{ partition: number; committed: number; high: number; lag: number }[]>;
  /** Deletes topics (tests and demo cleanup); missing ones are ignored. */
  deleteTopics(topics: string[]): Promise<void>;
  disconnect(): Promise<void>;
}


/** Partition metadata as a broker reports it: leader -1 while none is elected. */
export interface TopicMetadata {
  name: string;
  partitions: { partitionId: number; leader: number }[];
}

/**
 * Why the topics are not ready for use yet, one line per topic, or [] when each is in the
 * metadata with every one of its partitions led.
 */
export function topicsNotReady(wanted: readonly string[], metadata: readonly TopicMetadata[]): string[] {
  const byName = new Map(metadata.map((t) => [t.name, t.partitions]));
  const reasons: string[] = [];
  for (const topic of wanted) {
    const partitions = byName.get(topic);
    if (!partitions || partitions.length === 0) reasons.push(`${topic}: not in the metadata yet`);
    else {
      const leaderless = partitions.filter((p) => p.leader < 0).map((p) => p.partitionId);
      if (leaderless.length > 0) reasons.push(`${topic}: no leader for partition ${leaderless.join(', ')}`);
    }
  }
  return reasons;
}

/**
 * Most bytes of records one produce request carries. A broker refuses a record batch larger
 * than its `message.max.bytes` (default 1,048,588) and kafkajs puts all of a send's records
 * for one topic partition into one batch, so a send is cut into requests under this bound
 * (over all partitions, so it holds for a topic of one partition too). The Java client's
 * `max.request.size` plays the same part, with a default of 1,048,576.
 */
export const MAX_REQUEST_BYTES = 1_000_000;

/** A record's bytes in a batch, over-estimated: key, value, headers and up to 24 bytes of framing. */
function recordBytes(m: OutgoingMessage): number {
  let n = 24 + Buffer.byteLength(m.key, 'utf8') + Buffer.byteLength(m.value, 'utf8');
  if (m.headers) for (const [k, v] of Object.entries(m.headers)) n += 10 + Buffer.byteLength(k, 'utf8') + Buffer.byteLength(v, 'utf8');
  return n;
}

/**
 * Cuts messages, in order, into consecutive runs of at most `maxBytes` each (by
 * {@link recordBytes}); a message larger than that alone is a run of its own, and the broker
 * judges it.
 */
export function splitByBytes<M extends OutgoingMessage>(messages: readonly M[], maxBytes = MAX_REQUEST_BYTES): M[][] {
  // A UTF-16 code unit is at most 3 UTF-8 bytes: when even that bound fits (a page of
  // ordinary update records), no string is measured.
  let bound = 0;
  for (const m of messages) bound += m.headers ? Number.POSITIVE_INFINITY : 24 + 3 * (m.key.length + m.value.length);
  if (bound <= maxBytes) return messages.length === 0 ? [] : [[...messages]];
  const runs: M[][] = [];
  let run: M[] = [];
  let bytes = 0;
  for (const m of messages) {
    const n = recordBytes(m);
    if (run.length > 0 && bytes + n > maxBytes) {
      runs.push(run);
      run = [];
      bytes = 0;
    }
    run.push(m);
    bytes += n;
  }
  if (run.length > 0) runs.push(run);
  return runs;
}

/** Errors a broker gives for a topic it is still setting up. */
const SETTLING = new Set(['UNKNOWN_TOPIC_OR_PARTITION', 'LEADER_NOT_AVAILABLE']);

/** Waits until the topics are ready (topicsNotReady), and returns their metadata. */
async function waitForTopics(admin: Admin, wanted: readonly string[], waitMs: number): Promise<TopicMetadata[]> {
  const deadline = Date.now() + waitMs;
  let delay = 50;
  for (;;) {
    let reasons: string[];
    try {
      const { topics } = await admin.fetchTopicMetadata({ topics: [...wanted] });
      reasons = topicsNotReady(wanted, topics);
      if (reasons.length === 0) return topics;
    } catch (error) {
      // kafkajs may have retried already and wrapped the broker's error ("retries exceeded").
      const { type, cause } = error as { type?: unknown; cause?: { type?: unknown } };
      const settling = [type, cause?.type].some((t) => typeof t === 'string' && SETTLING.has(t));
      if (!settling) throw error;
      reasons = [(error as Error).message];
    }
    if (Date.now() + delay > deadline) {
      throw new Error(`Kafka topics not ready after ${(waitMs / 1000).toFixed(1)} s: ${reasons.join('; ')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 1000);
  }
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
  // The producer in use, and those replaced after a failed send that still have sends in
  // flight (each is disconnected once its last send settles).
  interface ProducerEntry {
    producer: Producer;
    inFlight: number;
    replaced: boolean;
  }
  let producerReady: Promise<ProducerEntry> | undefined;
  const producers = new Set<ProducerEntry>();
  const consumers = new Set<Consumer>();

  const connectProducer = (): Promise<ProducerEntry> => {
    producerReady ??= (async () => {
      const producer = kafka.producer({
        allowAutoTopicCreation: false,
        maxInFlightRequests: 1,
        idempotent: false,
        createPartitioner: createFastPartitioner,
      });
      const entry: ProducerEntry = { producer, inFlight: 0, replaced: false };
      producers.add(entry);
      try {
        await producer.connect();
      } catch (error) {
        producers.delete(entry);
        await producer.disconnect().catch(() => {});
        throw error;
      }
      return entry;
    })().catch((error: unknown) => {
      producerReady = undefined;
      throw error;
    });
    return producerReady;
  };
  const getProducer = async (): Promise<ProducerEntry> => {
    const ready = connectProducer();
    const entry = await ready;
    if (!entry.replaced) return entry;
    if (producerReady === ready) producerReady = undefined;
    return connectProducer();
  };

  /**
   * After a send that kafkajs gave up on, the next send uses a new producer. kafkajs retries a
   * send itself (reconnecting when its cluster disconnected, refreshing stale metadata) and
   * throws only once it stops retrying: a non-retriable error (bailed at once, e.g. "The
   * producer is disconnecting") or retries exhausted. It never replaces the producer, and a
   * producer left disconnected fails every send ("The producer is disconnected"): a new one
   * starts from fresh connections and metadata.
   */
  const replaceProducer = (entry: ProducerEntry, error: unknown) => {
    if (entry.replaced) return;
    entry.replaced = true;
    log.warn({ err: error instanceof Error ? `${error.name}: ${error.message}` : String(error) }, 'kafka: a send failed (kafkajs retried what it retries); the next send connects a new producer');
  };
  const release = (entry: ProducerEntry) => {
    entry.inFlight--;
    if (entry.replaced && entry.inFlight === 0 && producers.delete(entry)) void entry.producer.disconnect().catch(() => {});
  };

  return {
    async ensureTopics(topics, waitMs = 30_000) {
      const admin = kafka.admin();
      await admin.connect();
      try {
        const existing = new Set(await admin.listTopics());
        const missing = topics.filter((t) => !existing.has(t.topic));
        if (missing.length > 0) {
          try {
            // Not kafkajs's waitForLeaders: it retries only "leader not available", while a
            // KRaft broker may first answer that it does not know the new topic at all.
            await admin.createTopics({
              waitForLeaders: false,
              topics: missing.map((t) => ({ topic: t.topic, numPartitions: t.partitions, replicationFactor: t.replication })),
            });
          } catch (error) {
            // Two instances creating the same topic at once: the loser sees "already exists".
            if (!(error instanceof Error && /already exists/i.test(error.message))) throw error;
          }
        }
        const ready = await waitForTopics(admin, topics.map((t) => t.topic), waitMs);
        for (const { topic, partitions } of topics) {
          const actual = ready.find((t) => t.name === topic)?.partitions.length;
          if (actual !== undefined && actual !== partitions) {
            // Kafka never shrinks a topic, and growing one moves keys between partitions: the
            // operator decides. Correctness does not depend on the count.
            log.warn({ topic, partitions: actual, configured: partitions }, `kafka: topic ${topic} has ${actual} partitions, configured ${partitions}; using it as it is`);
          }
        }
      } finally {
        await admin.disconnect();
      }
    },

    async send(topic, messages) {
      if (messages.length === 0) return;
      const entry = await getProducer();
      entry.inFlight++;
      try {
        // One request at a time, in order: a key's records keep their order across requests.
        for (const part of splitByBytes(messages)) await entry.producer.send({ topic, acks: -1, messages: part });
      } catch (error) {
        replaceProducer(entry, error);
        throw error;
      } finally {
        release(entry);
      }
    },

    consume(options) {
      return Promise.resolve(superviseConsumer(kafka, consumers, options));
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
      producerReady = undefined;
      await Promise.allSettled([...producers].map((p) => p.producer.disconnect()));
      producers.clear();
    },
  };
}
