/**
 * The update record: one per row, JSON, versioned by `v`. JSON because any Kafka client
 * (kcat, kafka-console-consumer, another language) reads it without a schema registry;
 * the cost is a few bytes per record, small beside the round-trips that bound throughput.
 *
 * Kafka key: the row id as decimal text, so one row's records stay in order.
 *
 * @example
 *   const value = encodeUpdateRecord({ v: 1, runId: 1, partitionId: 2, id: 3,
 *     productKey: 'gold', fromVersion: 1, toVersion: 2 });
 *   const parsed = decodeUpdateRecord(String(3), value); // { ok: true, record }
 */
export const UPDATE_RECORD_VERSION = 1;

/** One update record, schema version 1. */
export interface UpdateRecord {
  v: typeof UPDATE_RECORD_VERSION;
  runId: number;
  partitionId: number;
  /** The row's id; also the Kafka key. */
  id: number;
  productKey: string;
  fromVersion: number;
  toVersion: number;
}

const FIELDS = new Set(['v', 'runId', 'partitionId', 'id', 'productKey', 'fromVersion', 'toVersion']);
const MAX_VERSION = 2_147_483_647;

const isPositiveId = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 1;
const isVersion = (x: unknown): x is number => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= MAX_VERSION;

/**
 * What is wrong with a value as an update record, or null when it is one. Hand-written
 * rather than a schema library: it runs twice per row (producing and applying), and a generic
 * validator cost 16% of an instance's CPU (docs/benchmarks.md).
 */
export function recordProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'record must be a JSON object';
  const r = value as Record<string, unknown>;
  for (const key in r) if (!FIELDS.has(key)) return `${key} is not a field of the record`;
  if (r.v !== UPDATE_RECORD_VERSION) return `v must be ${UPDATE_RECORD_VERSION}`;
  if (!isPositiveId(r.runId)) return 'runId must be a positive integer';
  if (!isPositiveId(r.partitionId)) return 'partitionId must be a positive integer';
  if (!isPositiveId(r.id)) return 'id must be a positive integer';
  if (typeof r.productKey !== 'string' || r.productKey.length < 1 || r.productKey.length > 10_000) {
    return 'productKey must be a string of 1 to 10,000 characters';
  }
  if (!isVersion(r.fromVersion)) return `fromVersion must be an integer from 0 to ${MAX_VERSION}`;
  if (!isVersion(r.toVersion)) return `toVersion must be an integer from 0 to ${MAX_VERSION}`;
  if (r.toVersion <= r.fromVersion) return 'toVersion must be above fromVersion';
  return null;
}

/** Validates and serializes a record; throws if the producer side builds a bad one. */
export function encodeUpdateRecord(record: UpdateRecord): string {
  const problem = recordProblem(record);
  if (problem) throw new TypeError(`invalid update record: ${problem}`);
  return JSON.stringify(record);
}

/**
 * The text between the values of a record as the encoder writes it (JSON.stringify's layout
 * of {@link UpdateRecord}): shared by {@link createRecordEncoder} and the byte-level fast path
 * of {@link decodeUpdateRecordBytes}, so the two cannot drift apart.
 */
const LAYOUT = {
  runId: `{"v":${UPDATE_RECORD_VERSION},"runId":`,
  partitionId: ',"partitionId":',
  id: ',"id":',
  productKey: ',"productKey":',
  fromVersion: ',"fromVersion":',
  toVersion: ',"toVersion":',
  end: '}',
} as const;

/**
 * Encodes the records of one partition's pages, each exactly as {@link encodeUpdateRecord}
 * would (same JSON, same checks), with the fields shared by every row (run, partition,
 * product, target version) checked and serialized once instead of per row: the producer
 * encodes one record per row, and this is most of its CPU that is not Kafka's.
 */
export function createRecordEncoder(shared: Pick<UpdateRecord, 'runId' | 'partitionId' | 'productKey' | 'toVersion'>) {
  const problem = recordProblem({ v: UPDATE_RECORD_VERSION, ...shared, id: 1, fromVersion: 0 });
  if (problem) throw new TypeError(`invalid update record: ${problem}`);
  const head = `${LAYOUT.runId}${shared.runId}${LAYOUT.partitionId}${shared.partitionId}${LAYOUT.id}`;
  const middle = `${LAYOUT.productKey}${JSON.stringify(shared.productKey)}${LAYOUT.fromVersion}`;
  const tail = `${LAYOUT.toVersion}${shared.toVersion}${LAYOUT.end}`;
  return (row: { id: number; fromVersion: number }): string => {
    const { id, fromVersion } = row;
    if (!isPositiveId(id) || !isVersion(fromVersion) || fromVersion >= shared.toVersion) {
      return encodeUpdateRecord({ v: UPDATE_RECORD_VERSION, ...shared, id, fromVersion }); // throws, naming the field
    }
    return head + id + middle + fromVersion + tail;
  };
}

/**
 * A rejected record carries the run and partition it claims to belong to when its JSON
 * names them as positive integers (best effort, so that dead letters can be counted per
 * run); the caller must check that such a run exists before trusting it.
 */
export type DecodeResult =
  | { ok: true; record: UpdateRecord }
  | { ok: false; reason: string; runId: number | null; partitionId: number | null };

function claimedId(json: unknown, field: 'runId' | 'partitionId'): number | null {
  if (typeof json !== 'object' || json === null) return null;
  const value = (json as Record<string, unknown>)[field];
  return isPositiveId(value) ? value : null;
}

/** Parses and validates a record read from Kafka, never throwing. */
export function decodeUpdateRecord(key: string | null, value: string | null): DecodeResult {
  if (value === null) return { ok: false, reason: 'empty-value', runId: null, partitionId: null };
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch {
    return { ok: false, reason: 'invalid-json', runId: null, partitionId: null };
  }
  const problem = recordProblem(json);
  const claimed = () => ({ runId: claimedId(json, 'runId'), partitionId: claimedId(json, 'partitionId') });
  if (problem) return { ok: false, reason: `invalid-record: ${problem}`, ...claimed() };
  const record = json as UpdateRecord;
  if (key !== String(record.id)) return { ok: false, reason: 'key-mismatch: key must equal the row id', ...claimed() };
  return { ok: true, record };
}

/** The fields of a valid record that applying it needs, as {@link decodeUpdateRecordBytes} writes them. */
export interface RecordFields {
  runId: number;
  partitionId: number;
  id: number;
  fromVersion: number;
  toVersion: number;
}

/** A record {@link decodeUpdateRecordBytes} rejected: the reason, and the run and partition it claims. */
export type Rejection = Extract<DecodeResult, { ok: false }>;

const ascii = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0));
const AT_RUN = ascii(LAYOUT.runId);
const AT_PARTITION = ascii(LAYOUT.partitionId);
const AT_ID = ascii(LAYOUT.id);
const AT_KEY = ascii(`${LAYOUT.productKey}"`);
const AT_FROM = ascii(`"${LAYOUT.fromVersion}`);
const AT_TO = ascii(LAYOUT.toVersion);
const AT_END = ascii(LAYOUT.end);
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Where a bytes-level parse stands: one object for the module (parsing is synchronous). */
const cursor = { at: 0 };

function literal(buf: Uint8Array, text: Uint8Array): boolean {
  const { at } = cursor;
  if (at + text.length > buf.length) return false;
  for (let i = 0; i < text.length; i++) if (buf[at + i] !== text[i]) return false;
  cursor.at = at + text.length;
  return true;
}

/**
 * A JSON integer as the encoder writes it: digits, no sign, no leading zero, at most 15
 * digits (always a safe integer); -1 for anything else.
 */
function integer(buf: Uint8Array): number {
  const start = cursor.at;
  let at = start;
  let n = 0;
  while (at < buf.length) {
    const d = buf[at]! - 0x30;
    if (d < 0 || d > 9) break;
    n = n * 10 + d;
    at++;
  }
  const digits = at - start;
  if (digits === 0 || digits > 15 || (digits > 1 && buf[start] === 0x30)) return -1;
  cursor.at = at;
  return n;
}

/**
 * The fast path of {@link decodeUpdateRecordBytes}: true, with `out` written, for a valid
 * record laid out exactly as the encoder writes it; false for anything else (valid or not),
 * which the caller then decodes as text.
 */
function decodeLaidOut(key: Buffer, value: Buffer, out: RecordFields): boolean {
  cursor.at = 0;
  if (!literal(value, AT_RUN)) return false;
  const runId = integer(value);
  if (runId < 1 || !literal(value, AT_PARTITION)) return false;
  const partitionId = integer(value);
  if (partitionId < 1 || !literal(value, AT_ID)) return false;
  const idStart = cursor.at;
  const id = integer(value);
  const idEnd = cursor.at;
  if (id < 1 || !literal(value, AT_KEY)) return false;
  let at = cursor.at;
  const keyStart = at;
  while (at < value.length) {
    const c = value[at]!;
    if (c === QUOTE || c === BACKSLASH || c < 0x20) break;
    at++;
  }
  // Bytes, not characters: UTF-8 never takes fewer bytes than UTF-16 takes code units (an
  // invalid byte decodes to one U+FFFD), so a key within 10,000 bytes is within 10,000
  // characters; a longer one goes to the text decoder.
  const keyLength = at - keyStart;
  cursor.at = at;
  if (keyLength < 1 || keyLength > 10_000 || !literal(value, AT_FROM)) return false;
  const fromVersion = integer(value);
  if (fromVersion < 0 || fromVersion > MAX_VERSION || !literal(value, AT_TO)) return false;
  const toVersion = integer(value);
  if (toVersion <= fromVersion || toVersion > MAX_VERSION || !literal(value, AT_END) || cursor.at !== value.length) return false;
  // The key must be the row id: the same digits.
  if (key.length !== idEnd - idStart || value.compare(key, 0, key.length, idStart, idEnd) !== 0) return false;
  out.runId = runId;
  out.partitionId = partitionId;
  out.id = id;
  out.fromVersion = fromVersion;
  out.toVersion = toVersion;
  return true;
}

/**
 * Decodes and validates a record from its Kafka key and value bytes, with the verdict
 * {@link decodeUpdateRecord} gives on their UTF-8 text. On success it writes the fields into
 * `out` (so a consumer keeps numbers, not one object per record) and returns null; otherwise
 * it returns the rejection.
 *
 * Records laid out exactly as the encoder writes them (fields in its order, plain integers,
 * a product key without escapes) are checked on the bytes, without
 * building strings or parsing JSON; anything else goes through {@link decodeUpdateRecord},
 * so both give the same answer for every input (test/unit/update-record.test.ts compares them).
 */
export function decodeUpdateRecordBytes(key: Buffer | null, value: Buffer | null, out: RecordFields): Rejection | null {
  if (key !== null && value !== null && decodeLaidOut(key, value, out)) return null;
  const decoded = decodeUpdateRecord(key === null ? null : key.toString('utf8'), value === null ? null : value.toString('utf8'));
  if (!decoded.ok) return decoded;
  const { record } = decoded;
  out.runId = record.runId;
  out.partitionId = record.partitionId;
  out.id = record.id;
  out.fromVersion = record.fromVersion;
  out.toVersion = record.toVersion;
  return null;
}
