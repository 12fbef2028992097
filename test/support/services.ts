/** Starts in-process service instances on an isolated test environment. */
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
