/**
 * The update record: one per row, JSON, versioned by `v`. JSON because any Kafka client
 * (kcat, kafka-console-consumer, another language) reads it without a schema registry.
 *
 * Version 2 (written since migration definitions):
 *   {"v":2,"m":"order-totals","run":7,"p":31,"k":"3f2c…","t":"2","c":["1"]}
 *   m   the migration definition's name
 *   run, p  the run and the partition the row belongs to
 *   k   the row's key, as Postgres prints it (also the Kafka key, so one row's records stay in order)
 *   t   the target of the row's group (null for a definition without groups)
 *   c   the carried columns' values when the record was produced, as text (null for NULL)
 * Version 1 (the single migration before definitions) is still read, so that records
 * produced before an upgrade are applied: its run, partition, id and toVersion/fromVersion
 * become run, p, k and t/c.
 *
 * @example
 *   const encode = createRecordEncoder({ migration: 'order-totals', runId: 7, partitionId: 31, target: null });
 *   const value = encode('42', ['1']);
 */
export const UPDATE_RECORD_VERSION = 2;

/** One update record, as the applier needs it. */
export interface RecordFields {
  /** null for a version 1 record: the run names the migration. */
  migration: string | null;
  runId: number;
  partitionId: number;
  key: string;
  target: string | null;
  carried: (string | null)[];
}

/** A record the decoder rejected: the reason, and the run and partition it claims. */
export interface Rejection {
  reason: string;
  runId: number | null;
  partitionId: number | null;
}

const MIGRATION = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** Kafka's default largest record (message.max.bytes, 1 MB) less room for the key and headers. */
export const MAX_RECORD_CHARS = 1_000_000;
const MAX_KEY = 10_000;
const isPositiveId = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 1;
const isText = (x: unknown): x is string | null => x === null || typeof x === 'string';

/** Characters JSON.stringify writes as they are: no quote, backslash, control or surrogate. */
// eslint-disable-next-line no-control-regex -- the control characters are what JSON escapes
const PLAIN = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/;

/** JSON.stringify of a string or null, without its work for the common plain string. */
function quoted(text: string | null): string {
  if (text === null) return 'null';
  return PLAIN.test(text) ? `"${text}"` : JSON.stringify(text);
}

/**
 * Encodes the records of one partition's pages: the fields every row shares are checked and
 * serialized once.
 */
export function createRecordEncoder(shared: { migration: string; runId: number; partitionId: number; target: string | null }) {
  if (!MIGRATION.test(shared.migration)) throw new TypeError(`invalid update record: bad migration name ${JSON.stringify(shared.migration)}`);
  if (!isPositiveId(shared.runId) || !isPositiveId(shared.partitionId)) throw new TypeError('invalid update record: run and partition must be positive integers');
  const head = `{"v":${UPDATE_RECORD_VERSION},"m":${JSON.stringify(shared.migration)},"run":${shared.runId},"p":${shared.partitionId},"k":`;
  const middle = `,"t":${JSON.stringify(shared.target)},"c":[`;
  return (key: string, carried: readonly (string | null)[]): string => {
    if (key.length === 0 || key.length > MAX_KEY) throw new TypeError(`invalid update record: key must be 1 to ${MAX_KEY} characters`);
    let values = '';
    for (let i = 0; i < carried.length; i++) values += (i === 0 ? '' : ',') + quoted(carried[i]!);
    const value = `${head}${quoted(key)}${middle}${values}]}`;
    if (value.length > MAX_RECORD_CHARS) throw new TypeError(`invalid update record: ${value.length} characters, more than the ${MAX_RECORD_CHARS} a Kafka record may hold`);
    return value;
  };
}

function claimed(json: Record<string, unknown>, run: string, partition: string): Pick<Rejection, 'runId' | 'partitionId'> {
  return { runId: isPositiveId(json[run]) ? json[run] : null, partitionId: isPositiveId(json[partition]) ? json[partition] : null };
}

function decodeV1(r: Record<string, unknown>, key: string | null, out: RecordFields): Rejection | null {
  const bad = (reason: string): Rejection => ({ reason: `invalid-record: ${reason}`, ...claimed(r, 'runId', 'partitionId') });
  if (!isPositiveId(r.runId)) return bad('runId must be a positive integer');
  if (!isPositiveId(r.partitionId)) return bad('partitionId must be a positive integer');
  if (!isPositiveId(r.id)) return bad('id must be a positive integer');
  if (!Number.isInteger(r.toVersion) || !Number.isInteger(r.fromVersion) || (r.toVersion as number) <= (r.fromVersion as number)) {
    return bad('toVersion must be an integer above fromVersion');
  }
  if (key !== String(r.id)) return { reason: 'key-mismatch: key must equal the row id', ...claimed(r, 'runId', 'partitionId') };
  out.migration = null;
  out.runId = r.runId;
  out.partitionId = r.partitionId;
  out.key = String(r.id);
  out.target = String(r.toVersion);
  out.carried = [String(r.fromVersion)];
  return null;
}

/**
 * Decodes and validates a record from its Kafka key and value, never throwing: on success it
 * writes the fields into `out` and returns null; otherwise it returns the rejection.
 */
export function decodeUpdateRecord(keyBytes: Buffer | string | null, valueBytes: Buffer | string | null, out: RecordFields): Rejection | null {
  if (Buffer.isBuffer(keyBytes) && Buffer.isBuffer(valueBytes) && decodeLaidOut(keyBytes, valueBytes, out)) return null;
  return decodeText(keyBytes, valueBytes, out);
}

/** {@link decodeUpdateRecord} through JSON.parse: every input, any layout (exported for the tests). */
export function decodeText(keyBytes: Buffer | string | null, valueBytes: Buffer | string | null, out: RecordFields): Rejection | null {
  if (valueBytes === null) return { reason: 'empty-value', runId: null, partitionId: null };
  const key = keyBytes === null ? null : keyBytes.toString();
  let json: unknown;
  try {
    json = JSON.parse(valueBytes.toString());
  } catch {
    return { reason: 'invalid-json', runId: null, partitionId: null };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return { reason: 'invalid-record: record must be a JSON object', runId: null, partitionId: null };
  const r = json as Record<string, unknown>;
  if (r.v === 1) return decodeV1(r, key, out);
  const bad = (reason: string): Rejection => ({ reason: `invalid-record: ${reason}`, ...claimed(r, 'run', 'p') });
  if (r.v !== UPDATE_RECORD_VERSION) return bad(`v must be 1 or ${UPDATE_RECORD_VERSION}`);
  if (typeof r.m !== 'string' || !MIGRATION.test(r.m)) return bad('m must be a migration name');
  if (!isPositiveId(r.run)) return bad('run must be a positive integer');
  if (!isPositiveId(r.p)) return bad('p must be a positive integer');
  if (typeof r.k !== 'string' || r.k.length === 0 || r.k.length > MAX_KEY) return bad(`k must be a string of 1 to ${MAX_KEY} characters`);
  if (!isText(r.t)) return bad('t must be a string or null');
  if (!Array.isArray(r.c) || !r.c.every(isText)) return bad('c must be an array of strings or nulls');
  for (const field in r) if (!['v', 'm', 'run', 'p', 'k', 't', 'c'].includes(field)) return bad(`${field} is not a field of the record`);
  if (key !== r.k) return { reason: 'key-mismatch: key must equal k', ...claimed(r, 'run', 'p') };
  out.migration = r.m;
  out.runId = r.run;
  out.partitionId = r.p;
  out.key = r.k;
  out.target = r.t;
  out.carried = r.c as (string | null)[];
  return null;
}

/*
 * The fast path: a record laid out exactly as createRecordEncoder writes it, with strings
 * free of escapes, is read off the bytes without JSON.parse or intermediate objects (a
 * consumer decodes one record per row; JSON.parse and its validation were 2.9 µs of the
 * 3.2 µs a record cost, bench/record-codec.ts). Anything else goes to decodeText, so both
 * give the same answer for every input (test/unit/update-record.test.ts compares them).
 */
const ascii = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0));
const AT_NAME = ascii(`{"v":${UPDATE_RECORD_VERSION},"m":"`);
const AT_RUN = ascii('","run":');
const AT_P = ascii(',"p":');
const AT_K = ascii(',"k":"');
const AT_T = ascii('","t":');
const AT_C = ascii(',"c":[');
const NULL = ascii('null');
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const at = { i: 0 };
let lastName: { bytes: Buffer; name: string } | null = null;

function literal(buf: Buffer, text: Uint8Array): boolean {
  const start = at.i;
  if (start + text.length > buf.length) return false;
  for (let j = 0; j < text.length; j++) if (buf[start + j] !== text[j]) return false;
  at.i = start + text.length;
  return true;
}

/** Digits of a positive safe integer as the encoder writes it; -1 otherwise. */
function positive(buf: Buffer): number {
  const start = at.i;
  let i = start;
  let n = 0;
  while (i < buf.length) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) break;
    n = n * 10 + d;
    i++;
  }
  if (i === start || i - start > 15 || buf[start] === 0x30) return -1;
  at.i = i;
  return n;
}

/** The end of a string's bytes (at its closing quote), or -1 if it has an escape or a control character. */
function plainString(buf: Buffer): number {
  let i = at.i;
  while (i < buf.length) {
    const c = buf[i]!;
    if (c === QUOTE) return i;
    if (c === BACKSLASH || c < 0x20) return -1;
    i++;
  }
  return -1;
}

/** A string or null value; undefined when not laid out plainly. */
function textOrNull(buf: Buffer): string | null | undefined {
  if (buf[at.i] === QUOTE) {
    at.i++;
    const end = plainString(buf);
    if (end < 0) return undefined;
    const text = buf.toString('utf8', at.i, end);
    at.i = end + 1;
    return text;
  }
  return literal(buf, NULL) ? null : undefined;
}

function decodeLaidOut(key: Buffer, value: Buffer, out: RecordFields): boolean {
  at.i = 0;
  if (!literal(value, AT_NAME)) return false;
  const nameStart = at.i;
  const nameEnd = plainString(value);
  if (nameEnd < 0 || nameEnd - nameStart > 63) return false;
  let name: string;
  if (lastName && lastName.bytes.length === nameEnd - nameStart && value.compare(lastName.bytes, 0, lastName.bytes.length, nameStart, nameEnd) === 0) {
    name = lastName.name;
  } else {
    name = value.toString('utf8', nameStart, nameEnd);
    if (!MIGRATION.test(name)) return false;
    lastName = { bytes: Buffer.from(value.subarray(nameStart, nameEnd)), name };
  }
  at.i = nameEnd;
  if (!literal(value, AT_RUN)) return false;
  const runId = positive(value);
  if (runId < 1 || !literal(value, AT_P)) return false;
  const partitionId = positive(value);
  if (partitionId < 1 || !literal(value, AT_K)) return false;
  const keyStart = at.i;
  const keyEnd = plainString(value);
  // Bytes, not characters: a key within 10,000 bytes is within 10,000 characters; a longer
  // one goes to the text decoder.
  if (keyEnd <= keyStart || keyEnd - keyStart > MAX_KEY) return false;
  if (key.length !== keyEnd - keyStart || value.compare(key, 0, key.length, keyStart, keyEnd) !== 0) return false;
  at.i = keyEnd;
  if (!literal(value, AT_T)) return false;
  const target = textOrNull(value);
  if (target === undefined || !literal(value, AT_C)) return false;
  const carried: (string | null)[] = [];
  if (value[at.i] !== 0x5d) {
    for (;;) {
      const item = textOrNull(value);
      if (item === undefined) return false;
      carried.push(item);
      if (value[at.i] === 0x2c) at.i++;
      else break;
    }
  }
  if (value[at.i] !== 0x5d || value[at.i + 1] !== 0x7d || at.i + 2 !== value.length) return false;
  out.migration = name;
  out.runId = runId;
  out.partitionId = partitionId;
  out.key = key.toString('utf8');
  out.target = target;
  out.carried = carried;
  return true;
}
