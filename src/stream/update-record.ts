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

/**
 * Encodes the records of one partition's pages: the fields every row shares are checked and
 * serialized once.
 */
export function createRecordEncoder(shared: { migration: string; runId: number; partitionId: number; target: string | null }) {
  if (!MIGRATION.test(shared.migration)) throw new TypeError(`invalid update record: bad migration name ${JSON.stringify(shared.migration)}`);
  if (!isPositiveId(shared.runId) || !isPositiveId(shared.partitionId)) throw new TypeError('invalid update record: run and partition must be positive integers');
  const head = `{"v":${UPDATE_RECORD_VERSION},"m":${JSON.stringify(shared.migration)},"run":${shared.runId},"p":${shared.partitionId},"k":`;
  const middle = `,"t":${JSON.stringify(shared.target)},"c":`;
  return (key: string, carried: readonly (string | null)[]): string => {
    if (key.length === 0 || key.length > MAX_KEY) throw new TypeError(`invalid update record: key must be 1 to ${MAX_KEY} characters`);
    const value = `${head}${JSON.stringify(key)}${middle}${JSON.stringify(carried)}}`;
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
