/**
 * Reads a topic with Kafka's own Java client (test/support/java/ReadTopic.java, run by Java's
 * single-file launcher against the kafka-clients jar the stack fetched for the broker): an
 * ordinary client outside the project, which also checks every batch's CRC and says which
 * partition the Java producer would have chosen for each key.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface JavaRecord {
  partition: number;
  /** The partition Kafka's Java default partitioner picks for the key (-1 without key). */
  javaPartition: number;
  headerCount: number;
  key: string;
  value: string;
}

export function readTopicWithJava(brokers: readonly string[], topic: string, expected: number): JavaRecord[] {
  const stackDir = process.env.TRANCHE_STACK_DIR ?? '.cache';
  const libs = `${stackDir.startsWith('/') ? stackDir : ROOT + stackDir}/kafka/libs`;
  if (!existsSync(libs) || !readdirSync(libs).some((f) => f.startsWith('kafka-clients-'))) {
    throw new Error(`no kafka-clients jar in ${libs}: run \`bash scripts/stack.sh up\` once to fetch the Kafka jars`);
  }
  const java = process.env.JAVA_HOME ? `${process.env.JAVA_HOME}/bin/java` : 'java';
  const result = spawnSync(java, ['-cp', `${libs}/*`, 'test/support/java/ReadTopic.java', brokers.join(','), topic, String(expected)], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    timeout: 90_000,
  });
  if (result.status !== 0) throw new Error(`ReadTopic.java exited ${result.status}: ${result.error ?? ''}\n${result.stderr}`);
  return result.stdout
    .split('\n')
    .filter((line) => line.startsWith('REC\t'))
    .map((line) => {
      const [, partition, javaPartition, headerCount, key, ...value] = line.split('\t');
      return { partition: Number(partition), javaPartition: Number(javaPartition), headerCount: Number(headerCount), key: key!, value: value.join('\t') };
    });
}
