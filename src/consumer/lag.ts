/**
 * Consumer lag of the applier group: per partition of the updates topic, how many records
 * are on the topic beyond the group's committed offset (records produced but not applied
 * yet, or applied and not yet committed). A partition the group never committed counts
 * from the start of the log.
 *
 * @example
 *   const lag = await consumerLag(loadConfig());
 *   // { groupId: 'tranche-appliers', topic: 'tranche.subscription-updates', total: 1200,
 *   //   partitions: [{ partition: 0, committed: 4100, high: 5000, lag: 900 }, ...] }
 */
import type { Config } from '../config.ts';
import { silentLogger, type Logger } from '../logger.ts';
import { createStreamClient, type StreamClient } from '../stream/kafka.ts';

export interface PartitionLag {
  partition: number;
  /** The group's committed offset (the next record it will read); -1 when it never committed. */
  committed: number;
  /** The high watermark: the offset the next produced record will get. */
  high: number;
  /** Records not yet committed by the group. */
  lag: number;
}

export interface ConsumerLag {
  groupId: string;
  topic: string;
  partitions: PartitionLag[];
  /** Sum of `lag` over the partitions. */
  total: number;
}

export type LagSettings = Pick<Config, 'kafkaBrokers' | 'kafkaClientId' | 'kafkaGroupId' | 'topicUpdates'>;

/**
 * Reads the lag of `config.kafkaGroupId` on `config.topicUpdates`. Pass `stream` to reuse a
 * connected client (it is left connected); otherwise one is created and disconnected.
 * A topic that does not exist yet has no partitions and no lag. Other Kafka errors throw.
 */
export async function consumerLag(config: LagSettings, deps: { stream?: StreamClient; log?: Logger } = {}): Promise<ConsumerLag> {
  const stream =
    deps.stream ?? createStreamClient({ brokers: config.kafkaBrokers, clientId: `${config.kafkaClientId}-lag` }, deps.log ?? silentLogger());
  try {
    const partitions = await stream.lag(config.kafkaGroupId, config.topicUpdates);
    return {
      groupId: config.kafkaGroupId,
      topic: config.topicUpdates,
      partitions,
      total: partitions.reduce((sum, p) => sum + p.lag, 0),
    };
  } finally {
    if (!deps.stream) await stream.disconnect();
  }
}
