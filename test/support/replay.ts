/**
 * Re-applies the whole updates topic of a test with a new consumer group and the real
 * applier, and returns how many rows that changed: replays must change nothing (I5).
 */
import { consumerLag } from '../../src/consumer/lag.ts';
import { createApplier } from '../../src/consumer/update-consumer.ts';
import { createStreamClient } from '../../src/stream/kafka.ts';
import { quietLog, type TestEnv, testDefinitions, waitFor } from './env.ts';

export async function replayTopic(env: TestEnv): Promise<number> {
  const stream = createStreamClient({ brokers: env.config.kafkaBrokers, clientId: 'replay' }, quietLog);
  const group = `${env.config.kafkaGroupId}-replay`;
  let changed = 0;
  const consumer = await stream.consume({
    groupId: group,
    topic: env.config.topicUpdates,
    handle: createApplier({
      db: env.db, stream, coordination: null, log: quietLog, definitions: await testDefinitions(env), topicDeadLetters: env.config.topicDeadLetters,
      onRunMaybeDone: () => {},
      onApplied: (e) => (changed += e.changed),
    }),
  });
  try {
    await waitFor(async () => (await consumerLag({ ...env.config, kafkaGroupId: group }, { stream })).total === 0, 30_000, 'the replay to catch up');
  } finally {
    await consumer.stop();
    await stream.disconnect();
  }
  return changed;
}
