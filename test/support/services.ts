/** Starts in-process service instances on an isolated test environment. */
import { Kafka, logLevel } from 'kafkajs';
import { loadConfig } from '../../src/config.ts';
import { type Service, type ServiceOptions, startService } from '../../src/service.ts';
import { createStreamClient } from '../../src/stream/kafka.ts';
import { quietLog, type TestEnv } from './env.ts';

export async function startInstances(
  env: TestEnv,
  count: number,
  overrides: Record<string, string> = {},
  options: ServiceOptions = {},
): Promise<Service[]> {
  const services: Service[] = [];
  for (let i = 1; i <= count; i++) {
    const config = loadConfig({ ...env.env, ...overrides, INSTANCE_ID: `${env.id}-i${i}` });
    services.push(await startService(config, quietLog, { migrate: false, ...options }));
  }
  return services;
}

export async function stopAll(services: Service[]): Promise<void> {
  await Promise.all(services.map((s) => s.stop(5000)));
}

export async function deleteTestTopics(env: TestEnv): Promise<void> {
  const stream = createStreamClient({ brokers: env.config.kafkaBrokers, clientId: 'test-cleanup' }, quietLog);
  await stream
    .deleteTopics([env.config.topicUpdates, env.config.topicDeadLetters, env.config.topicRunEvents])
    .catch(() => {});
  await stream.disconnect();
}

/** Reads every message of a topic with a plain kafkajs consumer (an "ordinary client"). */
export async function readTopic(
  brokers: readonly string[],
  topic: string,
  expectAtLeast: number,
  timeoutMs = 20_000,
): Promise<{ key: string | null; value: string | null; headers: Record<string, string> }[]> {
  const kafka = new Kafka({ brokers: [...brokers], clientId: 'test-reader', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const total = offsets.reduce((sum, o) => sum + Number(o.high) - Number(o.low), 0);
  const consumer = kafka.consumer({ groupId: `reader-${Math.random().toString(36).slice(2)}` });
  const messages: { key: string | null; value: string | null; headers: Record<string, string> }[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const want = Math.max(total, expectAtLeast);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`read ${messages.length} of ${want} messages from ${topic}`)), timeoutMs);
    if (want === 0) {
      clearTimeout(timer);
      resolve();
      return;
    }
    void consumer.run({
      eachMessage: async ({ message }) => {
        messages.push({
          key: message.key?.toString() ?? null,
          value: message.value?.toString() ?? null,
          headers: Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)])),
        });
        if (messages.length >= want) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  return messages;
}
