/**
 * Reading a topic from the start with a plain kafkajs consumer in a fresh group: what any
 * ordinary Kafka client outside the project sees.
 */
import { Kafka, logLevel } from 'kafkajs';

export interface TopicMessage {
  key: string | null;
  value: string | null;
  headers: Record<string, string>;
}

/**
 * Calls `onMessage` for every message on the topic, at least `expectAtLeast` of them (waiting
 * for late ones up to `timeoutMs`); returns how many were read.
 */
export async function forEachMessage(
  brokers: readonly string[],
  topic: string,
  onMessage: (message: TopicMessage) => void,
  options: { expectAtLeast?: number; timeoutMs?: number } = {},
): Promise<number> {
  const kafka = new Kafka({ brokers: [...brokers], clientId: 'test-reader', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const want = Math.max(offsets.reduce((sum, o) => sum + Number(o.high) - Number(o.low), 0), options.expectAtLeast ?? 0);
  if (want === 0) return 0;
  const consumer = kafka.consumer({ groupId: `reader-${Date.now()}-${Math.random().toString(36).slice(2)}`, maxBytes: 50 * 1024 * 1024 });
  let read = 0;
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`read ${read} of ${want} messages from ${topic}`)), options.timeoutMs ?? 20_000);
      void consumer.run({
        eachBatch: async ({ batch }) => {
          for (const m of batch.messages) {
            onMessage({
              key: m.key?.toString() ?? null,
              value: m.value?.toString() ?? null,
              headers: Object.fromEntries(Object.entries(m.headers ?? {}).map(([k, v]) => [k, String(v)])),
            });
            read++;
          }
          if (read >= want) {
            clearTimeout(timer);
            resolve();
          }
        },
      });
    });
  } finally {
    await consumer.disconnect();
  }
  return read;
}

/** Every message of the topic, in an array. */
export async function readTopic(brokers: readonly string[], topic: string, expectAtLeast: number, timeoutMs = 20_000): Promise<TopicMessage[]> {
  const messages: TopicMessage[] = [];
  await forEachMessage(brokers, topic, (m) => messages.push(m), { expectAtLeast, timeoutMs });
  return messages;
}
