/**
 * Where the services come from. By default the tests use the local stack that `npm test`
 * brought up (scripts/stack.sh) or the URLs in DATABASE_URL, REDIS_URL and KAFKA_BROKERS.
 * With TRANCHE_TESTCONTAINERS=1 and a Docker engine, they start PostgreSQL, Redis and a
 * single-node Kafka in containers with testcontainers instead, and point the tests at them.
 * (The machines this project is built on have no Docker engine, so that path is not
 * exercised by its CI.)
 */
import { freePort } from './ports.ts';

export default async function setup(): Promise<(() => Promise<void>) | undefined> {
  if (process.env.TRANCHE_TESTCONTAINERS !== '1') return undefined;
  const { GenericContainer, Wait } = await import('testcontainers');
  const postgres = await new GenericContainer('postgres:16')
    .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust' })
    .withExposedPorts(5432)
    .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
    .start();
  const redis = await new GenericContainer('redis:7').withExposedPorts(6379).withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/)).start();
  // Kafka advertises the address clients must use, so its host port is fixed up front.
  const kafkaPort = await freePort();
  const kafka = await new GenericContainer('apache/kafka:3.9.1')
    .withEnvironment({
      KAFKA_NODE_ID: '1',
      KAFKA_PROCESS_ROLES: 'broker,controller',
      KAFKA_LISTENERS: `PLAINTEXT://0.0.0.0:${kafkaPort},CONTROLLER://0.0.0.0:9093`,
      KAFKA_ADVERTISED_LISTENERS: `PLAINTEXT://127.0.0.1:${kafkaPort}`,
      KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
      KAFKA_CONTROLLER_LISTENER_NAMES: 'CONTROLLER',
      KAFKA_CONTROLLER_QUORUM_VOTERS: '1@localhost:9093',
      KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: '1',
      KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: '1',
      KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: '1',
      KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: '0',
      KAFKA_AUTO_CREATE_TOPICS_ENABLE: 'false',
    })
    .withExposedPorts({ container: kafkaPort, host: kafkaPort })
    .withWaitStrategy(Wait.forLogMessage(/Kafka Server started/))
    .start();
  process.env.DATABASE_URL = `postgres://postgres@${postgres.getHost()}:${postgres.getMappedPort(5432)}/postgres`;
  process.env.REDIS_URL = `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`;
  process.env.KAFKA_BROKERS = `127.0.0.1:${kafkaPort}`;
  return async () => {
    await Promise.allSettled([kafka.stop(), redis.stop(), postgres.stop()]);
  };
}
