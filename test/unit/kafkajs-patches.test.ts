import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  crc32c,
  createFastPartitioner,
  decodeRecordFast,
  encodeRecordFast,
  groupMessagesPerPartition,
  murmur2,
  originals,
  PATCHED_KAFKAJS_VERSION,
  type RequestQueueLike,
  scheduleCheckPendingRequests,
} from '../../src/stream/kafkajs-patches.ts';

const require = createRequire(import.meta.url);
const root = join(dirname(require.resolve('kafkajs')), 'src');
// When this worker loaded kafkajs before the patches (another test file), the files in the
// module cache are the originals; otherwise the patch module kept them.
const originalRecord = (originals.encodeRecord ?? require(join(root, 'protocol/recordBatch/record/v0/index.js'))) as (
  input: object,
) => { buffer: Buffer };
const originalGroup = (originals.groupMessagesPerPartition ?? require(join(root, 'producer/groupMessagesPerPartition.js'))) as (
  args: object,
) => Record<number, unknown[]>;
const originalDecode = (originals.decodeRecord ?? require(join(root, 'protocol/recordBatch/record/v0/decoder.js'))) as (
  decoder: object,
  context: object,
) => unknown;
const originalCrc = (originals.crc32c ?? require(join(root, 'protocol/recordBatch/crc32C/index.js'))) as (b: Buffer) => number;
const originalSchedule = (originals.scheduleCheckPendingRequests ??
  (require(join(root, 'network/requestQueue/index.js')) as { prototype: { scheduleCheckPendingRequests(this: RequestQueueLike): void } })
    .prototype.scheduleCheckPendingRequests) as (this: RequestQueueLike) => void;
const Decoder = require(join(root, 'protocol/decoder.js')) as new (buffer: Buffer) => { buffer: Buffer; offset: number; readVarIntBytes(): Buffer };
const originalMurmur2 = require(join(root, 'producer/partitioners/default/murmur2.js')) as (key: Buffer | string) => number;
const { Partitioners } = require('kafkajs') as { Partitioners: { DefaultPartitioner: () => (a: object) => number } };

const randomInt = (n: number) => Math.floor(Math.random() * n);
const keys = (): (string | Buffer)[] => [
  '',
  '1',
  '12',
  '123',
  '1234',
  '12345',
  'é',
  'ü-ß-😀',
  ...Array.from({ length: 3000 }, () => String(1 + randomInt(Number.MAX_SAFE_INTEGER))),
  ...Array.from({ length: 300 }, () => randomBytes(randomInt(40))),
  ...Array.from({ length: 300 }, () => String.fromCodePoint(...Array.from({ length: randomInt(12) }, () => randomInt(0x2ffff)))),
];

describe('kafkajs patches', () => {
  it('are written for the kafkajs version installed', () => {
    expect((require('kafkajs/package.json') as { version: string }).version).toBe(PATCHED_KAFKAJS_VERSION);
  });

  it('murmur2 equals kafkajs (and so the Java client) for ASCII, Unicode and binary keys', () => {
    for (const key of keys()) expect(murmur2(key), JSON.stringify(String(key))).toBe(originalMurmur2(key));
  });

  it('the partitioner picks the partition kafkajs picks, and honours an explicit partition', () => {
    const partitionMetadata = Array.from({ length: 7 }, (_, i) => ({ partitionId: i, leader: 1 }));
    const ours = createFastPartitioner();
    const theirs = Partitioners.DefaultPartitioner();
    for (const key of keys()) {
      const args = { topic: 't', partitionMetadata, message: { key, value: 'x' } };
      expect(ours(args)).toBe(theirs(args));
    }
    expect(ours({ topic: 't', partitionMetadata, message: { key: '1', partition: 5 } })).toBe(5);
    const roundRobin = new Set(Array.from({ length: 14 }, () => ours({ topic: 't', partitionMetadata, message: {} })));
    expect(roundRobin).toEqual(new Set([0, 1, 2, 3, 4, 5, 6]));
  });

  it('groups messages per partition as kafkajs does, in order', () => {
    const partitionMetadata = Array.from({ length: 6 }, (_, i) => ({ partitionId: i, leader: 1 }));
    const messages = Array.from({ length: 2000 }, (_, i) => ({ key: String(i + 1), value: `v${i}` }));
    const partitioner = createFastPartitioner();
    const args = { topic: 't', partitionMetadata, messages, partitioner };
    const ours = groupMessagesPerPartition(args);
    expect(ours).toEqual(originalGroup(args));
    expect(Object.values(ours).flat()).toHaveLength(2000);
    expect(groupMessagesPerPartition({ ...args, partitionMetadata: [] })).toEqual({});
  });

  it('encodes records byte for byte as kafkajs does', () => {
    const values = [
      '{"v":1,"runId":1,"partitionId":2,"id":3,"productKey":"gold","fromVersion":1,"toVersion":2}',
      '',
      'x'.repeat(200),
      'ü-ß-😀'.repeat(30),
      null,
      randomBytes(300),
      Buffer.alloc(0),
    ];
    let compared = 0;
    for (const value of values) {
      for (const key of ['1', '18446744', 'ключ', null, randomBytes(9)]) {
        for (const offsetDelta of [0, 1, 63, 64, 999, 8191, 8192, 1_000_000]) {
          for (const timestampDelta of [0, 1, -1, 5000, 2 ** 31 - 1, -(2 ** 31)]) {
            const input = { key, value, offsetDelta, timestampDelta };
            const fast = encodeRecordFast(input);
            expect(fast).not.toBeNull();
            expect(fast!.buffer.equals(originalRecord(input).buffer), JSON.stringify({ offsetDelta, timestampDelta })).toBe(true);
            compared++;
          }
        }
      }
    }
    expect(compared).toBe(7 * 5 * 8 * 6);
  });

  it('computes the CRC-32C kafkajs computes', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283); // the standard check value
    for (let length = 0; length < 70; length++) {
      const buffer = randomBytes(length);
      expect(crc32c(buffer)).toBe(originalCrc(buffer));
    }
    const big = randomBytes(300_000);
    expect(crc32c(big)).toBe(originalCrc(big));
    expect(crc32c(big.subarray(3, 100_003))).toBe(originalCrc(big.subarray(3, 100_003)));
  });

  /** The fields kafkajs's record decoder gives a record. */
  const FIELDS = ['attributes', 'batchContext', 'headers', 'isControlRecord', 'key', 'magicByte', 'offset', 'timestamp', 'value'];
  const fieldsOf = (record: object | null) =>
    record && Object.fromEntries(FIELDS.map((field) => [field, (record as Record<string, unknown>)[field]]));

  it('decodes records as kafkajs does', () => {
    const contexts = [
      { firstOffset: '0', firstTimestamp: '1732345678901', maxTimestamp: '1732345679901', timestampType: 0, magicByte: 2 },
      { firstOffset: '123456789012', firstTimestamp: '-1', maxTimestamp: '-1', timestampType: 0, magicByte: 2, isControlBatch: true },
      { firstOffset: '9223372036854775000', firstTimestamp: '9007199254740990', maxTimestamp: '0', timestampType: 0, magicByte: 2 },
      { firstOffset: '42', firstTimestamp: '1732345678901', maxTimestamp: '1732345679999', timestampType: 1, magicByte: 2 },
    ];
    let compared = 0;
    for (const context of contexts) {
      for (const key of ['1', null, randomBytes(20)]) {
        for (const value of ['{"v":1}', null, '', randomBytes(500)]) {
          for (const offsetDelta of [0, 1, 700, 100_000]) {
            for (const timestampDelta of [0, 5, -3, 2 ** 31 - 1]) {
              const record = originalRecord({ key, value, offsetDelta, timestampDelta }).buffer;
              const body = new Decoder(record).readVarIntBytes();
              const ours = new Decoder(body);
              const decoded = decodeRecordFast(ours, context);
              const original = originalDecode(new Decoder(body), context) as Record<string, unknown>;
              expect(Object.keys(original).sort()).toEqual(FIELDS);
              expect(fieldsOf(decoded)).toEqual(original);
              expect(ours.offset).toBe(body.length);
              compared++;
            }
          }
        }
      }
    }
    expect(compared).toBe(4 * 3 * 4 * 4 * 4);
  });

  it('leaves records with headers to the kafkajs decoder, untouched', () => {
    const record = originalRecord({ key: '1', value: 'v', headers: { reason: 'x' } }).buffer;
    const body = new Decoder(record).readVarIntBytes();
    const decoder = new Decoder(body);
    expect(decodeRecordFast(decoder, { firstOffset: '0', firstTimestamp: '0', maxTimestamp: '0', timestampType: 0, magicByte: 2 })).toBeNull();
    expect(decoder.offset).toBe(0);
  });

  it('leaves records with headers or 64-bit deltas to kafkajs', () => {
    expect(encodeRecordFast({ key: '1', value: 'v', headers: { reason: 'x' } })).toBeNull();
    expect(encodeRecordFast({ key: '1', value: 'v', timestampDelta: 2 ** 40 })).toBeNull();
    expect(encodeRecordFast({ key: '1', value: 'v', headers: {} })).not.toBeNull();
  });

  it('arm the request queue timer as kafkajs does, except with nothing pending and no throttle', () => {
    const timers: NodeJS.Timeout[] = [];
    // The delay a queue's timer was armed with, or null when none was (Node keeps it as _idleTimeout).
    const armed = (schedule: (this: RequestQueueLike) => void, state: { throttledFor: number; pending: number; armed?: boolean }) => {
      const existing = state.armed ? setTimeout(() => {}, 60_000) : null;
      if (existing) timers.push(existing);
      const queue: RequestQueueLike = {
        throttledUntil: state.throttledFor === 0 ? -1 : Date.now() + state.throttledFor,
        throttleCheckTimeoutId: existing,
        pending: Array.from({ length: state.pending }, () => ({})),
        checkPendingRequests: () => {},
      };
      schedule.call(queue);
      const timer = queue.throttleCheckTimeoutId;
      if (timer === null || timer === existing) return timer === null ? null : 'kept';
      timers.push(timer);
      return (timer as unknown as { _idleTimeout: number })._idleTimeout;
    };
    const near = (delay: number | string | null, expected: number) => typeof delay === 'number' && Math.abs(delay - expected) <= 50;
    try {
      // The case replaced: kafkajs arms a 1 ms timer (asked for a negative delay), the patch none.
      expect(armed(originalSchedule, { throttledFor: 0, pending: 0 })).toBe(1);
      expect(armed(scheduleCheckPendingRequests, { throttledFor: 0, pending: 0 })).toBeNull();
      // Every other case: the same timer.
      for (const state of [
        { throttledFor: 0, pending: 2 },
        { throttledFor: 400, pending: 0 },
        { throttledFor: 400, pending: 3 },
      ]) {
        const kafkajs = armed(originalSchedule, state);
        const patched = armed(scheduleCheckPendingRequests, state);
        const expected = state.throttledFor || 10;
        expect(near(kafkajs, expected), `kafkajs ${JSON.stringify(state)}: ${kafkajs}`).toBe(true);
        expect(near(patched, expected), `patch ${JSON.stringify(state)}: ${patched}`).toBe(true);
      }
      expect(armed(originalSchedule, { throttledFor: 400, pending: 1, armed: true })).toBe('kept');
      expect(armed(scheduleCheckPendingRequests, { throttledFor: 400, pending: 1, armed: true })).toBe('kept');
    } finally {
      for (const timer of timers) clearTimeout(timer);
    }
  });

  it('install in a process that imports the Kafka module, and not when kafkajs came first', () => {
    const check = (first: string) =>
      execFileSync(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `${first}
           const p = await import(${JSON.stringify(join(import.meta.dirname, '../../src/stream/kafkajs-patches.ts'))});
           const { createRequire } = await import('node:module');
           const require = createRequire(${JSON.stringify(import.meta.url)});
           const group = require(${JSON.stringify(join(root, 'producer/groupMessagesPerPartition.js'))});
           const queue = require(${JSON.stringify(join(root, 'network/requestQueue/index.js'))});
           console.log(JSON.stringify({
             patched: p.kafkajsPatched,
             same: group === p.groupMessagesPerPartition,
             queue: queue.prototype.scheduleCheckPendingRequests === p.scheduleCheckPendingRequests,
           }));`,
        ],
        { encoding: 'utf8' },
      ).trim();
    const kafkaModule = JSON.stringify(join(import.meta.dirname, '../../src/stream/kafka.ts'));
    expect(JSON.parse(check(`await import(${kafkaModule});`))).toEqual({ patched: true, same: true, queue: true });
    expect(JSON.parse(check(`await import('kafkajs');`))).toEqual({ patched: false, same: false, queue: false });
  });
});
