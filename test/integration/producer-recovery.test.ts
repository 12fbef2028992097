/**
 * Issue 23: after a send that kafkajs gave up on, the next send uses a new producer, and it
 * works. The failure here is the one cheap to make on a shared broker, a record the broker
 * refuses for good (MESSAGE_TOO_LARGE, which kafkajs does not retry); the faults that matter
 * (a broker killed or hung) go through the same path in broker-faults.test.ts.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTopics } from '../../src/service.ts';
import { createStreamClient, type StreamClient } from '../../src/stream/kafka.ts';
import { createTestEnv, type TestEnv } from '../support/env.ts';
import { deleteTestTopics } from '../support/services.ts';
import { readTopic } from '../support/topics.ts';

describe('the producer after a send kafkajs gave up on', () => {
  let env: TestEnv;
  let stream: StreamClient;
  const lines: { level: number; msg: string }[] = [];
  beforeAll(async () => {
    env = await createTestEnv();
    const log = pino({ level: 'warn' }, new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk))), done()) }));
    stream = createStreamClient({ brokers: env.config.kafkaBrokers, clientId: 'test-producer-recovery' }, log);
    await ensureTopics(stream, env.config);
  });
  afterAll(async () => {
    await stream.disconnect();
    await deleteTestTopics(env);
    await env.cleanup();
  });

  it('is replaced, and the next send is acknowledged', async () => {
    await stream.send(env.config.topicRunEvents, [{ key: 'a', value: 'before' }]);
    // One record over the broker's message.max.bytes (about 1 MB): refused, not retried.
    await expect(stream.send(env.config.topicRunEvents, [{ key: 'b', value: 'x'.repeat(1_200_000) }])).rejects.toThrow(/larger than the max message size/);
    expect(lines.filter((l) => /next send connects a new producer/.test(l.msg))).toHaveLength(1);
    await stream.send(env.config.topicRunEvents, [{ key: 'c', value: 'after' }]);
    const messages = await readTopic(env.config.kafkaBrokers, env.config.topicRunEvents, 2);
    expect(messages.map((m) => m.value).sort()).toEqual(['after', 'before']);
  });
});
