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
import { z } from 'zod';

export const UPDATE_RECORD_VERSION = 1;

const positiveId = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
const version = z.number().int().min(0).max(2_147_483_647);

export const updateRecordSchema = z
  .object({
    v: z.literal(UPDATE_RECORD_VERSION),
    runId: positiveId,
    partitionId: positiveId,
    id: positiveId,
    productKey: z.string().min(1).max(10_000),
    fromVersion: version,
    toVersion: version,
  })
  .strict()
  .refine((r) => r.toVersion > r.fromVersion, { message: 'toVersion must be above fromVersion' });

export type UpdateRecord = z.infer<typeof updateRecordSchema>;

/** Validates and serializes a record; throws if the producer side builds a bad one. */
export function encodeUpdateRecord(record: UpdateRecord): string {
  return JSON.stringify(updateRecordSchema.parse(record));
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
  return positiveId.safeParse(value).success ? (value as number) : null;
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
  const claimed = { runId: claimedId(json, 'runId'), partitionId: claimedId(json, 'partitionId') };
  const parsed = updateRecordSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return {
      ok: false,
      reason: `invalid-record: ${issue ? `${issue.path.join('.') || 'record'} ${issue.message}` : 'unknown'}`,
      ...claimed,
    };
  }
  if (key !== String(parsed.data.id)) return { ok: false, reason: 'key-mismatch: key must equal the row id', ...claimed };
  return { ok: true, record: parsed.data };
}
