/**
 * The update consumer side of the Kafka module (used through kafka.ts's StreamClient): a
 * kafkajs consumer kept alive for as long as it is wanted.
 *
 * kafkajs restarts a crashed consumer by itself only after a retriable error (its
 * `restartOnFailure`); after any other (KafkaJSNonRetriableError, such as "The coordinator is
 * not aware of this member" when the broker dropped the member during a hang longer than the
 * session timeout) it disconnects the consumer, emits CRASH with restart=false and does
 * nothing more (node_modules/kafkajs/src/consumer/index.js, onCrash). Here kafkajs is told
 * never to restart it, and every crash takes one path: the consumer is disconnected and a new
 * one joins the group after a capped, jittered exponential backoff.
 */
import type { Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import { retryDelayMs } from '../tasks/backoff.ts';
import type { IncomingBatch } from './kafka.ts';

export interface ConsumeOptions {
  groupId: string;
  topic: string;
  fromBeginning?: boolean;
  /** Topic partitions whose batches are applied at once (kafkajs partitionsConsumedConcurrently). */
  concurrency?: number;
  /** Most bytes fetched at once over all partitions (kafkajs maxBytes; default 10 MiB). */
  maxBytes?: number;
  /**
   * Session timeout of the group member (kafkajs sessionTimeout; default 10 s): a member
   * that has not heartbeated for this long is dropped by the broker. The heartbeat interval
   * is a tenth of it (at most 1 s) and the rebalance timeout twice it.
   */
  sessionTimeoutMs?: number;
  handle: (batch: IncomingBatch) => Promise<void>;
  /** Called each time the consumer (re)joins its group. */
  onJoined?: () => void;
  /**
   * Called when the consumer crashed (or could not start) and was stopped; a new consumer
   * is started in `restartInMs`. kafkajs itself never restarts it: this module does.
   */
  onCrash?: (error: Error, restartInMs: number) => void;
  /** Called when a new consumer replaces a crashed one (before it has joined). */
  onRestart?: () => void;
}

/**
 * A consumer kept alive by this module: whatever makes the kafkajs consumer crash, it is
 * disconnected and a new one joins the group after a capped, jittered exponential backoff,
 * until `stop()`.
 */
export interface ConsumerHandle {
  stop(): Promise<void>;
  /**
   * True while the current consumer is a member of its group: it joined, has not crashed,
   * and its last heartbeat (or join) is younger than the session timeout (a member that has
   * not heartbeated for that long has been dropped by the broker, or is about to be).
   */
  joined(): boolean;
  /** Since when (Date.now()) the consumer has not been joined; null while joined. */
  downSince(): number | null;
  /** How many times a crashed consumer was replaced by a new one. */
  restarts(): number;
}

/** Backoff between consumer restarts: about 1 s, doubling, at most 30 s, with jitter. */
export const CONSUMER_RESTART_BASE_MS = 1000;
export const CONSUMER_RESTART_MAX_MS = 30_000;

export function superviseConsumer(kafka: Kafka, consumers: Set<Consumer>, options: ConsumeOptions): ConsumerHandle {
  const { groupId, topic, fromBeginning = true, concurrency = 1, maxBytes, sessionTimeoutMs = 10_000, handle, onJoined, onCrash, onRestart } = options;
  let current: Consumer | null = null;
  let stopped = false;
  let failures = 0;
  let restarts = 0;
  let joined = false;
  let downSince: number | null = Date.now();
  let lastHeartbeat = 0;
  const heartbeatFresh = () => Date.now() - lastHeartbeat < sessionTimeoutMs;
  let restartTimer: NodeJS.Timeout | undefined;
  let launchedAt = 0;
  // A consumer that neither joins nor crashes within this time (a join that hangs), or that
  // joined and then neither heartbeats nor crashes for as long (kafkajs stuck), is treated as
  // crashed: the broker dropped it long ago (rebalance timeout, session timeout and a
  // request timeout).
  const stuckAfterMs = 3 * sessionTimeoutMs + 30_000;
  const watchdog = setInterval(() => {
    const consumer = current;
    if (!consumer) return;
    const now = Date.now();
    if (!joined && now - launchedAt > stuckAfterMs) crashed(consumer, new Error(`the consumer did not join group ${groupId} within ${stuckAfterMs} ms`));
    else if (joined && now - lastHeartbeat > stuckAfterMs) crashed(consumer, new Error(`the consumer sent no heartbeat for ${now - lastHeartbeat} ms`));
  }, Math.max(1000, Math.floor(sessionTimeoutMs / 2)));
  watchdog.unref();

  const markDown = () => {
    // Out of the group since its last heartbeat when that is older than a session.
    if (joined && !heartbeatFresh()) downSince = lastHeartbeat;
    joined = false;
    downSince ??= Date.now();
  };

  // Called for every way a consumer dies: kafkajs's CRASH event (whether or not kafkajs
  // would restart it: restartOnFailure below tells it not to, so that there is one path),
  // a failed connect/subscribe/run, or a join that never ends. Once per consumer.
  const crashed = (consumer: Consumer, error: Error) => {
    if (stopped || current !== consumer) return;
    current = null;
    markDown();
    failures++;
    const delay = retryDelayMs(failures, CONSUMER_RESTART_BASE_MS, CONSUMER_RESTART_MAX_MS);
    consumers.delete(consumer);
    // kafkajs disconnects a consumer before it reports the crash; this covers the others.
    void consumer.disconnect().catch(() => {});
    onCrash?.(error, delay);
    restartTimer = setTimeout(() => {
      if (stopped) return;
      restarts++;
      onRestart?.();
      void launch();
    }, delay);
  };

  let launching: Promise<void> | undefined;
  const launch = (): Promise<void> => (launching = start());
  const start = async (): Promise<void> => {
    const consumer = kafka.consumer({
      groupId,
      allowAutoTopicCreation: false,
      sessionTimeout: sessionTimeoutMs,
      heartbeatInterval: Math.max(100, Math.min(1000, Math.floor(sessionTimeoutMs / 10))),
      rebalanceTimeout: 2 * sessionTimeoutMs,
      maxWaitTimeInMs: 100,
      // kafkajs restarts a crashed consumer only after a retriable error and gives up for
      // good after any other (KafkaJSNonRetriableError, "The coordinator is not aware of
      // this member"): it is told never to, and crashed() restarts it every time.
      retry: { restartOnFailure: async () => false },
      ...(maxBytes === undefined ? {} : { maxBytes, maxBytesPerPartition: Math.min(maxBytes, 1_048_576) }),
    });
    current = consumer;
    launchedAt = Date.now();
    consumers.add(consumer);
    consumer.on(consumer.events.GROUP_JOIN, () => {
      if (current !== consumer) return;
      joined = true;
      downSince = null;
      lastHeartbeat = Date.now();
      failures = 0;
      onJoined?.();
    });
    consumer.on(consumer.events.HEARTBEAT, () => {
      if (current === consumer) lastHeartbeat = Date.now();
    });
    consumer.on(consumer.events.CRASH, (event) => crashed(consumer, event.payload.error));
    try {
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
      // Stopped while it started: stop() found nothing to disconnect yet.
      if (stopped) await consumer.disconnect().catch(() => {});
    } catch (error) {
      if (stopped) await consumer.disconnect().catch(() => {});
      else crashed(consumer, error instanceof Error ? error : new Error(String(error)));
    }
  };

  // Not awaited: joining may wait for a dead member's session to expire, and a start that
  // fails is retried like a crash.
  void launch();
  return {
    joined: () => joined && heartbeatFresh(),
    downSince: () => (!joined ? downSince : heartbeatFresh() ? null : lastHeartbeat),
    restarts: () => restarts,
    async stop() {
      stopped = true;
      clearTimeout(restartTimer);
      clearInterval(watchdog);
      joined = false;
      // A start under way is given a moment (a join can take a rebalance timeout); whatever
      // it still does afterwards, it disconnects its consumer itself once it sees `stopped`.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([launching, new Promise((resolve) => (timer = setTimeout(resolve, 2000)))]);
      clearTimeout(timer);
      const consumer = current;
      current = null;
      if (consumer) {
        consumers.delete(consumer);
        await consumer.disconnect();
      }
    },
  };
}
