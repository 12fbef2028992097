/**
 * Faster, byte-identical versions of kafkajs 2.2.4 hot paths, for producing and consuming.
 * Part of the Kafka boundary: in the service only src/stream/kafka.ts imports this, before
 * kafkajs itself.
 *
 * kafkajs is unmaintained since 2.2.4, so its internals no longer move; package.json pins it
 * to exactly that version, and these patches install only on it. A CPU profile of an instance
 * streaming 1,000,000 rows (docs/benchmarks.md) put a fifth of its busy time, and much of its
 * garbage collection, in these places:
 *
 * 1. `groupMessagesPerPartition` copies the partition's whole array for every message it adds
 *    (`[...current, message]`): quadratic in the messages of a send. Replaced by a push.
 * 2. Every record is encoded into a fresh zero-filled 512-byte buffer, through helpers that
 *    allocate a buffer per varint and a BigInt per 64-bit field. Replaced, for records without
 *    headers (every update record), by one write into a buffer of the exact size; records
 *    with headers, or anything unusual, still go through the original code.
 * 3. The default partitioner computes murmur2 with BigInt-backed 64-bit arithmetic. The
 *    partitioner below computes the same 32-bit hash with `Math.imul`, so a row's key still
 *    lands in the partition the Java client (and kafkajs) would pick.
 * 4. The record batch checksum (CRC-32C) is computed a byte at a time: replaced by the same
 *    checksum eight bytes at a time.
 * 5. Decoding a fetched record builds four BigInt-backed Longs to add two deltas: replaced,
 *    for records without headers, by plain arithmetic (BigInt only past 2^53).
 * 6. Every broker connection's request queue re-arms a timer after each check of its pending
 *    requests, even with nothing pending and no throttling, at a negative delay (Node runs it
 *    after 1 ms and, from Node 23, prints a TimeoutNegativeWarning): a 1 ms loop per
 *    connection for the life of the process (kafkajs issues #1704 and #1751). An idle process
 *    with a producer and an admin client connected used about 36 ms of CPU per second on it.
 *    Replaced by the same method without that case; with requests pending, or a broker
 *    throttling, it arms the same timer as before.
 *
 * Installing works by placing the replacements in Node's module cache before kafkajs loads
 * the files that use them; if kafkajs was loaded earlier in the process (or is another
 * version), nothing is replaced and kafkajs runs unchanged. test/unit/kafkajs-patches.test.ts
 * checks every replacement against the original, byte for byte.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

/** The only kafkajs version these patches are written for. */
export const PATCHED_KAFKAJS_VERSION = '2.2.4';

type Bytes = Buffer | string | null | undefined;

interface RecordInput {
  offsetDelta?: number;
  timestampDelta?: number;
  key?: Bytes;
  value?: Bytes;
  headers?: Record<string, unknown>;
}

/** What kafkajs's record encoder returns: its Encoder, of which the batch reads `buf` and `buffer`. */
interface EncoderLike {
  buf: Buffer;
  offset: number;
  readonly buffer: Buffer;
}

interface PartitionMetadata {
  partitionId: number;
  leader: number;
}

interface PartitionerArgs {
  topic: string;
  partitionMetadata: PartitionMetadata[];
  message: { key?: Bytes; partition?: number | null };
}

const kafkajsRoot = dirname(require.resolve('kafkajs'));
const internal = (path: string): string => join(kafkajsRoot, 'src', path);
const GROUP_PATH = internal('producer/groupMessagesPerPartition.js');
const RECORD_PATH = internal('protocol/recordBatch/record/v0/index.js');
const RECORD_DECODER_PATH = internal('protocol/recordBatch/record/v0/decoder.js');
const CRC_PATH = internal('protocol/recordBatch/crc32C/index.js');
const REQUEST_QUEUE_PATH = internal('network/requestQueue/index.js');

// ---------------------------------------------------------------------------------------------
// murmur2 and the partitioner.

/** Where string keys are written as UTF-8 to be hashed: no buffer per key. */
const KEY_SCRATCH = Buffer.allocUnsafe(256);

/**
 * Kafka's murmur2 (the Java client's `Utils.murmur2`) of a key's UTF-8 bytes, as a signed
 * 32-bit integer: the same value as kafkajs's BigInt-based version.
 */
export function murmur2(key: Buffer | string): number {
  if (typeof key !== 'string') return murmur2Bytes(key, key.length);
  const length = Buffer.byteLength(key, 'utf8');
  if (length > KEY_SCRATCH.length) return murmur2Bytes(Buffer.from(key, 'utf8'), length);
  KEY_SCRATCH.write(key, 0, length, 'utf8');
  return murmur2Bytes(KEY_SCRATCH, length);
}

function murmur2Bytes(data: Uint8Array, length: number): number {
  const m = 0x5bd1e995;
  let h = 0x9747b28c ^ length;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const tail = length & ~3;
  const rest = length & 3;
  if (rest === 3) h ^= data[tail + 2]! << 16;
  if (rest >= 2) h ^= data[tail + 1]! << 8;
  if (rest >= 1) {
    h ^= data[tail]!;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/**
 * kafkajs's default partitioner (a given partition wins; else murmur2 of the key modulo the
 * partition count, as the Java client does; else round robin over partitions with a leader),
 * with the hash computed in 32-bit arithmetic. Pass as `createPartitioner`.
 */
export function createFastPartitioner() {
  const counters = new Map<string, number>();
  return ({ topic, partitionMetadata, message }: PartitionerArgs): number => {
    if (message.partition !== null && message.partition !== undefined) return message.partition;
    if (message.key !== null && message.key !== undefined) {
      const key = typeof message.key === 'string' || Buffer.isBuffer(message.key) ? message.key : String(message.key);
      return (murmur2(key) & 0x7fffffff) % partitionMetadata.length;
    }
    const available = partitionMetadata.filter((p) => p.leader >= 0);
    const next = ((counters.get(topic) ?? Math.floor(Math.random() * 0x7fffffff)) + 1) & 0x7fffffff;
    counters.set(topic, next);
    const pick = available.length > 0 ? available[next % available.length]! : partitionMetadata[next % partitionMetadata.length]!;
    return pick.partitionId;
  };
}

// ---------------------------------------------------------------------------------------------
// Grouping messages per partition.

export function groupMessagesPerPartition<M>(args: {
  topic: string;
  partitionMetadata: PartitionMetadata[];
  messages: M[];
  partitioner: (a: { topic: string; partitionMetadata: PartitionMetadata[]; message: M }) => number;
}): Record<number, M[]> {
  const { topic, partitionMetadata, messages, partitioner } = args;
  const result: Record<number, M[]> = {};
  if (partitionMetadata.length === 0) return result;
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
    (result[partition] ??= []).push(message);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Record encoding.

const uvarintSize = (u: number): number => {
  let n = 1;
  while (u >= 0x80) {
    u >>>= 7;
    n++;
  }
  return n;
};

const writeUVarInt = (buf: Buffer, offset: number, u: number): number => {
  while (u >= 0x80) {
    buf[offset++] = (u & 0x7f) | 0x80;
    u >>>= 7;
  }
  buf[offset++] = u;
  return offset;
};

/** ZigZag of a 32-bit integer, as an unsigned 32-bit number. */
const zigzag = (v: number): number => ((v << 1) ^ (v >> 31)) >>> 0;

const isInt32 = (v: unknown): v is number => typeof v === 'number' && (v | 0) === v;
const isBytes = (v: unknown): v is Bytes => v === null || v === undefined || typeof v === 'string' || Buffer.isBuffer(v);
const byteLength = (v: Bytes): number => (v === null || v === undefined ? -1 : typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : v.length);

/** A length (-1 for null) as a zigzag varint, then the bytes; returns the next offset. */
function writeVarIntBytes(buf: Buffer, at: number, bytes: Bytes, length: number): number {
  let next = writeUVarInt(buf, at, zigzag(length));
  if (typeof bytes === 'string') next += buf.write(bytes, next, length, 'utf8');
  else if (bytes) next += bytes.copy(buf, next);
  return next;
}

class ExactEncoder implements EncoderLike {
  buf: Buffer;
  offset: number;
  constructor(buf: Buffer, offset: number) {
    this.buf = buf;
    this.offset = offset;
  }
  get buffer(): Buffer {
    return this.buf.subarray(0, this.offset);
  }
}

/**
 * Encodes one record (Kafka record format v2) like kafkajs's `record/v0`, for the common case
 * (no headers, 32-bit deltas, string or Buffer key and value); returns null for anything else.
 */
export function encodeRecordFast(input: RecordInput): EncoderLike | null {
  const { offsetDelta = 0, timestampDelta = 0, key, value, headers } = input;
  if (headers !== undefined && (headers === null || typeof headers !== 'object' || Object.keys(headers).length > 0)) return null;
  if (!isInt32(offsetDelta) || !isInt32(timestampDelta) || !isBytes(key) || !isBytes(value)) return null;
  const keyLength = byteLength(key);
  const valueLength = byteLength(value);
  const body =
    1 + // attributes
    uvarintSize(zigzag(timestampDelta)) +
    uvarintSize(zigzag(offsetDelta)) +
    uvarintSize(zigzag(keyLength)) +
    Math.max(keyLength, 0) +
    uvarintSize(zigzag(valueLength)) +
    Math.max(valueLength, 0) +
    1; // header count 0
  const size = uvarintSize(zigzag(body)) + body;
  // Pooled and not zero-filled: every byte up to `size` is written below.
  const buf = Buffer.allocUnsafe(size);
  let at = writeUVarInt(buf, 0, zigzag(body));
  buf[at++] = 0;
  at = writeUVarInt(buf, at, zigzag(timestampDelta));
  at = writeUVarInt(buf, at, zigzag(offsetDelta));
  at = writeVarIntBytes(buf, at, key, keyLength);
  at = writeVarIntBytes(buf, at, value, valueLength);
  buf[at++] = 0; // zigzag(0): no headers
  if (at !== size) throw new Error(`kafkajs-patches: record encoded to ${at} bytes, expected ${size}`);
  return new ExactEncoder(buf, at);
}

// ---------------------------------------------------------------------------------------------
// CRC-32C of a record batch.

const CRC_TABLES = (() => {
  const tables = Array.from({ length: 8 }, () => new Int32Array(256));
  const t0 = tables[0]!;
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t0[n] = c;
  }
  for (let k = 1; k < 8; k++) {
    const prev = tables[k - 1]!;
    const table = tables[k]!;
    for (let n = 0; n < 256; n++) table[n] = (prev[n]! >>> 8) ^ t0[prev[n]! & 0xff]!;
  }
  return tables;
})();

/**
 * CRC-32C (Castagnoli) as an unsigned 32-bit number, eight bytes per step (slicing-by-8)
 * instead of kafkajs's one: the same checksum, a few times faster.
 */
export function crc32c(buffer: Uint8Array): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC_TABLES as [Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array];
  let crc = -1;
  let i = 0;
  const end8 = buffer.length - (buffer.length % 8);
  for (; i < end8; i += 8) {
    const a = crc ^ (buffer[i]! | (buffer[i + 1]! << 8) | (buffer[i + 2]! << 16) | (buffer[i + 3]! << 24));
    crc =
      t7[a & 0xff]! ^
      t6[(a >>> 8) & 0xff]! ^
      t5[(a >>> 16) & 0xff]! ^
      t4[a >>> 24]! ^
      t3[buffer[i + 4]!]! ^
      t2[buffer[i + 5]!]! ^
      t1[buffer[i + 6]!]! ^
      t0[buffer[i + 7]!]!;
  }
  for (; i < buffer.length; i++) crc = t0[(crc ^ buffer[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Record decoding.

interface DecoderLike {
  buffer: Buffer;
  offset: number;
}

interface BatchContext {
  firstOffset: string;
  firstTimestamp: string;
  magicByte: number;
  isControlBatch?: boolean;
  timestampType: number;
  maxTimestamp: string;
}

/** LOG_APPEND_TIME in kafkajs's timestampTypes. */
const LOG_APPEND_TIME = 1;

/** `base + delta` for a decimal 64-bit `base`, as kafkajs's BigInt-backed Long gives it. */
function addToDecimal(base: string, delta: number): string {
  const n = Number(base);
  const sum = n + delta;
  if (Number.isSafeInteger(n) && Number.isSafeInteger(sum)) return String(sum);
  return (BigInt(base) + BigInt(delta)).toString();
}

/**
 * The read position of {@link decodeRecordFast}: one object for the whole module (decoding is
 * synchronous), so that decoding a record allocates nothing but its result.
 */
const reader: { buf: Buffer; at: number } = { buf: Buffer.alloc(0), at: 0 };

/** An unsigned varint of at most 5 bytes whose value fits 32 bits; -1 when not. */
function readUVarInt(): number {
  const { buf } = reader;
  let result = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (reader.at >= buf.length) return -1;
    const byte = buf[reader.at++]!;
    result += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return result <= 0xffffffff ? result : -1;
  }
  return -1;
}

/** The signed value of a zigzag-encoded varint. */
const unzigzag = (u: number): number => (u % 2 === 0 ? u / 2 : -(u + 1) / 2);

/**
 * A zigzag length then that many bytes: skips them, writing their place in the underlying
 * memory to `into` (length -1 for null); false when malformed.
 */
function skipVarIntBytes(into: { start: number; length: number }): boolean {
  const raw = readUVarInt();
  if (raw < 0) return false;
  const length = unzigzag(raw);
  into.start = reader.buf.byteOffset + reader.at;
  into.length = length;
  if (length === -1) return true;
  if (length < 0 || reader.at + length > reader.buf.length) return false;
  reader.at += length;
  return true;
}

/**
 * A fetched record as kafkajs's decoder gives it (the same fields and values), holding its
 * key and value as positions in the fetched bytes and its offset and timestamp as deltas,
 * and building them when read. A consumer keeps a whole fetch of records in memory while it
 * applies them; one object per record, instead of six (the record, two buffers, two strings,
 * the headers), is that much less for every young-generation collection to copy.
 */
class FetchedRecord {
  readonly magicByte: number;
  readonly attributes: number;
  readonly isControlRecord: boolean;
  readonly batchContext: BatchContext;
  readonly #bytes: ArrayBufferLike;
  readonly #keyStart: number;
  readonly #keyLength: number;
  readonly #valueStart: number;
  readonly #valueLength: number;
  readonly #offsetDelta: number;
  readonly #timestampDelta: number;

  constructor(
    batchContext: BatchContext,
    attributes: number,
    bytes: ArrayBufferLike,
    key: { start: number; length: number },
    value: { start: number; length: number },
    offsetDelta: number,
    timestampDelta: number,
  ) {
    this.magicByte = batchContext.magicByte;
    this.attributes = attributes;
    this.isControlRecord = batchContext.isControlBatch ?? false;
    this.batchContext = batchContext;
    this.#bytes = bytes;
    this.#keyStart = key.start;
    this.#keyLength = key.length;
    this.#valueStart = value.start;
    this.#valueLength = value.length;
    this.#offsetDelta = offsetDelta;
    this.#timestampDelta = timestampDelta;
  }

  get key(): Buffer | null {
    return this.#keyLength < 0 ? null : Buffer.from(this.#bytes, this.#keyStart, this.#keyLength);
  }

  get value(): Buffer | null {
    return this.#valueLength < 0 ? null : Buffer.from(this.#bytes, this.#valueStart, this.#valueLength);
  }

  get offset(): string {
    return addToDecimal(this.batchContext.firstOffset, this.#offsetDelta);
  }

  get timestamp(): string {
    const { timestampType, maxTimestamp, firstTimestamp } = this.batchContext;
    return timestampType === LOG_APPEND_TIME && maxTimestamp ? maxTimestamp : addToDecimal(firstTimestamp, this.#timestampDelta);
  }

  get headers(): Record<string, never> {
    return {};
  }
}

/** The key's and the value's place in the fetched bytes, reused by every decode (it is synchronous). */
const keyAt = { start: 0, length: 0 };
const valueAt = { start: 0, length: 0 };

/**
 * Decodes one record like kafkajs's `record/v0/decoder`, for records without headers whose
 * deltas fit 32 bits (every record this project writes); returns null, with the decoder
 * untouched, for anything else.
 */
export function decodeRecordFast(decoder: DecoderLike, batchContext: BatchContext): FetchedRecord | null {
  reader.buf = decoder.buffer;
  reader.at = decoder.offset;
  if (reader.at >= reader.buf.length) return null;
  const attributes = reader.buf.readInt8(reader.at++);
  const timestampRaw = readUVarInt();
  const offsetRaw = readUVarInt();
  if (timestampRaw < 0 || offsetRaw < 0) return null;
  if (!skipVarIntBytes(keyAt) || !skipVarIntBytes(valueAt)) return null;
  const headerCount = readUVarInt();
  // zigzag 0 (none) or 1 (-1: null array, which kafkajs also reads as none)
  if (headerCount !== 0 && headerCount !== 1) return null;
  decoder.offset = reader.at;
  return new FetchedRecord(
    batchContext,
    attributes,
    reader.buf.buffer,
    keyAt,
    valueAt,
    unzigzag(offsetRaw),
    unzigzag(timestampRaw),
  );
}

// ---------------------------------------------------------------------------------------------
// 6. The request queue's timer.

/** The fields of kafkajs's RequestQueue that its scheduling method reads and writes. */
export interface RequestQueueLike {
  throttledUntil: number;
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  pending: unknown[];
  checkPendingRequests(): void;
}

/** kafkajs's CHECK_PENDING_REQUESTS_INTERVAL (not exported by kafkajs). */
const CHECK_PENDING_REQUESTS_INTERVAL = 10;

/**
 * RequestQueue.prototype.scheduleCheckPendingRequests without the timer armed when nothing is
 * pending and no throttle is in force: nothing would be there to check, and the next request
 * pushed either goes out at once or calls this again.
 */
export function scheduleCheckPendingRequests(this: RequestQueueLike): void {
  if (this.throttleCheckTimeoutId) return;
  let scheduleAt = this.throttledUntil - Date.now();
  if (this.pending.length > 0) scheduleAt = scheduleAt > 0 ? scheduleAt : CHECK_PENDING_REQUESTS_INTERVAL;
  else if (scheduleAt <= 0) return;
  this.throttleCheckTimeoutId = setTimeout(() => {
    this.throttleCheckTimeoutId = null;
    this.checkPendingRequests();
  }, scheduleAt);
}

// ---------------------------------------------------------------------------------------------
// Installing.

/** The unpatched kafkajs functions, when installed (for tests comparing both). */
export const originals: {
  groupMessagesPerPartition?: (...a: unknown[]) => unknown;
  encodeRecord?: (input: RecordInput) => EncoderLike;
  decodeRecord?: (decoder: DecoderLike, batchContext: BatchContext) => unknown;
  crc32c?: (buffer: Buffer) => number;
  scheduleCheckPendingRequests?: (this: RequestQueueLike) => void;
} = {};

function install(): boolean {
  const version = (require('kafkajs/package.json') as { version: string }).version;
  if (version !== PATCHED_KAFKAJS_VERSION) return false;
  const cached = (path: string) => require.cache[path];
  // Too late once kafkajs's producer is loaded: the files using these captured them.
  const paths = [GROUP_PATH, RECORD_PATH, RECORD_DECODER_PATH, CRC_PATH];
  if (cached(require.resolve('kafkajs')) || paths.some(cached)) return false;
  for (const path of paths) require(path);
  const [groupModule, recordModule, decoderModule, crcModule] = paths.map(cached);
  if (!groupModule || !recordModule || !decoderModule || !crcModule) return false;
  originals.groupMessagesPerPartition = groupModule.exports;
  const encodeRecord = recordModule.exports as (input: RecordInput) => EncoderLike;
  const decodeRecord = decoderModule.exports as (decoder: DecoderLike, batchContext: BatchContext) => unknown;
  originals.encodeRecord = encodeRecord;
  originals.decodeRecord = decodeRecord;
  originals.crc32c = crcModule.exports;
  groupModule.exports = groupMessagesPerPartition;
  recordModule.exports = (input: RecordInput) => encodeRecordFast(input) ?? encodeRecord(input);
  decoderModule.exports = (decoder: DecoderLike, batchContext: BatchContext) =>
    decodeRecordFast(decoder, batchContext) ?? decodeRecord(decoder, batchContext);
  crcModule.exports = crc32c;
  // A method on the class's prototype: every queue, created before or after, uses it.
  const RequestQueue = require(REQUEST_QUEUE_PATH) as { prototype: { scheduleCheckPendingRequests(this: RequestQueueLike): void } };
  originals.scheduleCheckPendingRequests = RequestQueue.prototype.scheduleCheckPendingRequests;
  RequestQueue.prototype.scheduleCheckPendingRequests = scheduleCheckPendingRequests;
  return true;
}

/** True when the replacements are in place for this process's kafkajs. */
export const kafkajsPatched: boolean = install();
