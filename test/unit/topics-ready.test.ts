import { describe, expect, it } from 'vitest';
import { topicsNotReady } from '../../src/stream/kafka.ts';

const led = (count: number) => Array.from({ length: count }, (_, partitionId) => ({ partitionId, leader: 1 }));

describe('topicsNotReady', () => {
  it('is empty when every topic is there with each partition led', () => {
    expect(topicsNotReady(['a', 'b'], [{ name: 'a', partitions: led(3) }, { name: 'b', partitions: led(1) }])).toEqual([]);
  });

  it('names a topic missing from the metadata, or listed with no partitions', () => {
    expect(topicsNotReady(['a', 'b'], [{ name: 'a', partitions: [] }])).toEqual(['a: not in the metadata yet', 'b: not in the metadata yet']);
  });

  it('names the partitions still without a leader', () => {
    const partitions = [...led(2), { partitionId: 2, leader: -1 }, { partitionId: 3, leader: -1 }];
    expect(topicsNotReady(['a'], [{ name: 'a', partitions }])).toEqual(['a: no leader for partition 2, 3']);
  });
});
