#!/usr/bin/env node
// Readiness probe for the Kafka broker used by tranche (run by scripts/stack.sh).
//
// "Port 9092 accepts TCP" is not enough: a KRaft node opens its listener before the controller
// has elected itself and before the broker is unfenced. This probe proves a client can really
// write: it creates the topic `tranche.stack-ready` (1 partition) if missing and produces one
// message with acks=-1, retrying until a deadline.
//
// Environment:
//   KAFKA_BROKERS            comma-separated brokers (default 127.0.0.1:9092)
//   KAFKA_READY_TIMEOUT_MS   overall deadline in ms (default 60000)
// Exit 0 when a message was acknowledged, 1 otherwise (with the last error on stderr).
import kafkajs from 'kafkajs';

const { Kafka, logLevel, Partitioners } = kafkajs;

const TOPIC = 'tranche.stack-ready';
const brokers = (process.env.KAFKA_BROKERS || '127.0.0.1:9092')
  .split(',')
  .map((b) => b.trim())
  .filter(Boolean);
const timeoutMs = Number(process.env.KAFKA_READY_TIMEOUT_MS || 60000);
const deadline = Date.now() + timeoutMs;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** One attempt: fresh clients, short timeouts, no kafkajs-internal retries (we loop instead). */
async function attempt() {
  const kafka = new Kafka({
    clientId: 'tranche-stack-ready',
    brokers,
    logLevel: logLevel.NOTHING,
    connectionTimeout: 3000,
    requestTimeout: 10000,
    retry: { retries: 0 },
  });
  const admin = kafka.admin();
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
  });
  try {
    await admin.connect();
    const topics = await admin.listTopics();
    if (!topics.includes(TOPIC)) {
      // createTopics resolves false when the topic already exists (a concurrent probe won).
      await admin.createTopics({
        waitForLeaders: true,
        timeout: 10000,
        topics: [{ topic: TOPIC, numPartitions: 1, replicationFactor: 1 }],
      });
    }
    await producer.connect();
    await producer.send({
      topic: TOPIC,
      acks: -1,
      timeout: 10000,
      messages: [{ key: 'stack', value: JSON.stringify({ at: new Date().toISOString(), pid: process.pid }) }],
    });
  } finally {
    await producer.disconnect().catch(() => {});
    await admin.disconnect().catch(() => {});
  }
}

let lastError;
let attempts = 0;
while (Date.now() < deadline) {
  attempts += 1;
  try {
    // Bound each attempt by the overall deadline so a hung request cannot overrun it.
    const left = Math.max(1000, deadline - Date.now());
    let timer;
    const overrun = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`attempt exceeded ${left} ms`)), left);
    });
    try {
      await Promise.race([attempt(), overrun]);
    } finally {
      clearTimeout(timer);
    }
    process.exit(0);
  } catch (err) {
    lastError = err;
    await sleep(Math.min(1000, Math.max(0, deadline - Date.now())));
  }
}
const detail = lastError instanceof Error ? `${lastError.name}: ${lastError.message}` : String(lastError);
console.error(
  `kafka-ready: could not produce to ${TOPIC} on ${brokers.join(',')} within ${timeoutMs} ms ` +
    `(${attempts} attempts); last error: ${detail}`,
);
process.exit(1);
