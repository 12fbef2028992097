/**
 * Applies update records from Kafka to Postgres, one statement per batch, idempotently.
 *
 * Per fetched batch: validate every record (invalid ones become dead letters), keep one
 * record per row (the highest target), apply them with one statement per chunk that also adds
 * what really changed to each partition's `rows_applied`, record the dead letters, decrement
 * the Redis counters by what changed, then send the dead letters to their topic. Kafka
 * offsets are committed by the caller only after all that returned, so a crash anywhere
 * means a replay, and a replay changes nothing (and so decrements nothing).
 */
import type { Coordination } from '../coordination/redis.ts';
import type { Db } from '../db.ts';
import type { Logger } from '../logger.ts';
import { loadSql } from '../sql.ts';
import type { IncomingBatch, StreamClient } from '../stream/kafka.ts';
import { decodeUpdateRecordBytes, type RecordFields } from '../stream/update-record.ts';

export interface ApplierDeps {
  db: Db;
  stream: StreamClient;
  coordination: Coordination | null;
  log: Logger;
  topicDeadLetters: string;
  /** Most records applied by one statement. */
  chunkSize?: number;
  /** Called with a run whose counter reached zero (or was lost): it may be complete. */
  onRunMaybeDone(runId: number): void;
  /** Called after each applied chunk (metrics, tests). */
  onApplied?(event: { records: number; changed: number; deadLetters: number }): void;
}

interface DeadLetter {
  offset: string;
  key: string | null;
  value: string | null;
  reason: string;
  runId: number | null;
  partitionId: number | null;
}

/**
 * A fetched batch's valid records as columns (index = the message's position in the batch):
 * a batch stays in memory while Postgres applies it, and numbers in typed arrays cost the
 * garbage collector nothing, where an object per record was copied by every young-generation
 * collection it outlived (docs/benchmarks.md).
 */
export interface RecordColumns {
  ids: Float64Array;
  toVersions: Int32Array;
  runIds: Float64Array;
  partitionIds: Float64Array;
}

/**
 * A Postgres array literal of integers, built in one pass: node-postgres would quote and
 * escape every element of a JS array (5 % of an instance's CPU in a profile). Only for
 * validated integers.
 */
export function integerArray(column: ArrayLike<number>, indexes: readonly number[]): string {
  let text = '{';
  for (let i = 0; i < indexes.length; i++) text += (i === 0 ? '' : ',') + column[indexes[i]!]!;
  return `${text}}`;
}

/**
 * Keeps one record per row id, the one with the highest target version (ties: the latest in
 * the batch), and orders them by row id, so that one statement walks the primary key and the
 * table in order (7 % less Postgres CPU per row than Kafka's order, docs/benchmarks.md).
 * Takes indexes into the columns (and sorts that array in place); returns the kept ones.
 */
export function latestPerRow(valid: number[], columns: Pick<RecordColumns, 'ids' | 'toVersions'>): number[] {
  const { ids, toVersions } = columns;
  valid.sort((a, b) => ids[a]! - ids[b]! || toVersions[a]! - toVersions[b]! || a - b);
  const kept: number[] = [];
  for (let i = 0; i < valid.length; i++) {
    const index = valid[i]!;
    const next = valid[i + 1];
    if (next === undefined || ids[next] !== ids[index]) kept.push(index);
  }
  return kept;
}

const text = (bytes: Buffer | null): string | null => (bytes === null ? null : bytes.toString('utf8'));

/** The chunk's records whose row no longer exists, as dead letters. */
async function missingRows(
  db: Db,
  chunk: readonly number[],
  columns: RecordColumns,
  messages: IncomingBatch['messages'],
): Promise<DeadLetter[]> {
  const gone = await db.pool.query<{ id: number }>(loadSql('find-missing-rows'), [integerArray(columns.ids, chunk)]);
  const byId = new Map(chunk.map((index) => [columns.ids[index]!, index]));
  return gone.rows.map(({ id }) => {
    const index = byId.get(id);
    const source = index === undefined ? undefined : messages[index];
    return {
      offset: source?.offset ?? '-1',
      key: String(id),
      value: source ? text(source.value) : null,
      reason: 'row-not-found',
      runId: index === undefined ? null : columns.runIds[index]!,
      partitionId: index === undefined ? null : columns.partitionIds[index]!,
    };
  });
}

export function createApplier(deps: ApplierDeps): (batch: IncomingBatch) => Promise<void> {
  const chunkSize = deps.chunkSize ?? 5000;
  const fields: RecordFields = { runId: 0, partitionId: 0, id: 0, fromVersion: 0, toVersion: 0 };
  return async (batch) => {
    const { messages } = batch;
    const columns: RecordColumns = {
      ids: new Float64Array(messages.length),
      toVersions: new Int32Array(messages.length),
      runIds: new Float64Array(messages.length),
      partitionIds: new Float64Array(messages.length),
    };
    const valid: number[] = [];
    const dead: DeadLetter[] = [];
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i]!;
      const rejected = decodeUpdateRecordBytes(m.key, m.value, fields);
      if (rejected) {
        const { reason, runId, partitionId } = rejected;
        dead.push({ offset: m.offset, key: text(m.key), value: text(m.value), reason, runId, partitionId });
        continue;
      }
      columns.ids[i] = fields.id;
      columns.toVersions[i] = fields.toVersion;
      columns.runIds[i] = fields.runId;
      columns.partitionIds[i] = fields.partitionId;
      valid.push(i);
    }
    const unique = latestPerRow(valid, columns);
    for (let start = 0; start < Math.max(unique.length, 1); start += chunkSize) {
      const chunk = unique.slice(start, start + chunkSize);
      const chunkDead = start === 0 ? dead : [];
      if (chunk.length === 0 && chunkDead.length === 0) break;
      // One statement applies the chunk and counts it on its partitions (one round trip, one
      // transaction). Dead letters are recorded after it, before the caller commits the
      // offsets: a crash in between replays the batch, which changes nothing and records the
      // same dead letters once (they are unique per source offset).
      let changed = 0;
      const changedByRun = new Map<number, number>();
      if (chunk.length > 0) {
        const { rows } = await deps.db.pool.query<{ run_id: number; partition_id: number; n: number }>(loadSql('apply-updates'), [
          integerArray(columns.ids, chunk),
          integerArray(columns.toVersions, chunk),
          integerArray(columns.runIds, chunk),
          integerArray(columns.partitionIds, chunk),
        ]);
        for (const row of rows) {
          changedByRun.set(row.run_id, (changedByRun.get(row.run_id) ?? 0) + row.n);
          changed += row.n;
        }
      }
      let letters = chunkDead;
      try {
        // Only a chunk that changed fewer rows than it holds (a replay, or deleted rows) can
        // name rows that no longer exist.
        if (chunk.length > changed) letters = [...chunkDead, ...(await missingRows(deps.db, chunk, columns, messages))];
        if (letters.length > 0) {
          await deps.db.pool.query(loadSql('record-dead-letters'), [
            batch.topic,
            batch.partition,
            letters.map((d) => d.runId),
            letters.map((d) => d.partitionId),
            letters.map((d) => d.offset),
            letters.map((d) => d.key),
            letters.map((d) => d.reason),
            letters.map((d) => (d.value === null ? null : d.value.slice(0, 100_000))),
          ]);
        }
      } finally {
        // The changes are committed: count them down even when recording the dead letters
        // failed, so that the counter never stays above what Postgres holds (the replay that
        // follows changes nothing and so counts down nothing).
        for (const [runId, n] of changedByRun) {
          const left = deps.coordination ? await deps.coordination.decrementOutstanding(runId, n).catch(() => null) : null;
          if (left === null || left <= 0) deps.onRunMaybeDone(runId);
        }
      }
      if (letters.length > 0) {
        await deps.stream.send(
          deps.topicDeadLetters,
          letters.map((d) => ({
            key: d.key ?? '',
            value: d.value ?? '',
            headers: {
              reason: d.reason,
              'source-topic': batch.topic,
              'source-partition': String(batch.partition),
              'source-offset': d.offset,
            },
          })),
        );
        deps.log.warn({ count: letters.length, reasons: [...new Set(letters.map((d) => d.reason))] }, 'records sent to the dead-letter topic');
      }
      deps.onApplied?.({ records: chunk.length, changed, deadLetters: letters.length });
      // The whole batch is always applied (a replay of it is harmless); after a rebalance the
      // caller skips the offset commit, so the new owner re-reads it.
      await batch.heartbeat().catch(() => {});
    }
  };
}
