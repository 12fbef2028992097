/**
 * Applies update records from Kafka to Postgres, one statement per batch, idempotently.
 *
 * Per fetched batch: validate every record (invalid ones become dead letters), keep one
 * record per row (the highest target), apply them in one transaction that also adds what
 * really changed to each partition's `rows_applied` and records dead letters, then decrement
 * the Redis counters by what changed, then send the dead letters to their topic. Kafka
 * offsets are committed by the caller only after all that returned, so a crash anywhere
 * means a replay, and a replay changes nothing (and so decrements nothing).
 */
import type { Coordination } from '../coordination/redis.ts';
import { type Db, inTransaction } from '../db.ts';
import type { Logger } from '../logger.ts';
import { loadSql } from '../sql.ts';
import type { IncomingBatch, StreamClient } from '../stream/kafka.ts';
import { decodeUpdateRecord, type UpdateRecord } from '../stream/update-record.ts';

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

interface Valid {
  offset: string;
  record: UpdateRecord;
}

/**
 * A Postgres array literal of integers, built in one join: node-postgres would quote and
 * escape every element of a JS array (5 % of an instance's CPU in a profile). Only for
 * validated integers.
 */
export function integerArray(values: number[]): string {
  return `{${values.join(',')}}`;
}

/** Keeps one record per row id: the one with the highest target version (ties: the latest). */
export function latestPerRow(records: Valid[]): Valid[] {
  const byId = new Map<number, Valid>();
  for (const r of records) {
    const seen = byId.get(r.record.id);
    if (!seen || r.record.toVersion >= seen.record.toVersion) byId.set(r.record.id, r);
  }
  return [...byId.values()];
}

export function createApplier(deps: ApplierDeps): (batch: IncomingBatch) => Promise<void> {
  const chunkSize = deps.chunkSize ?? 5000;
  return async (batch) => {
    const valid: Valid[] = [];
    const dead: DeadLetter[] = [];
    for (const m of batch.messages) {
      const decoded = decodeUpdateRecord(m.key, m.value);
      if (decoded.ok) valid.push({ offset: m.offset, record: decoded.record });
      else {
        const { reason, runId, partitionId } = decoded;
        dead.push({ offset: m.offset, key: m.key, value: m.value, reason, runId, partitionId });
      }
    }
    const unique = latestPerRow(valid);
    for (let start = 0; start < Math.max(unique.length, 1); start += chunkSize) {
      const chunk = unique.slice(start, start + chunkSize);
      const chunkDead = start === 0 ? dead : [];
      if (chunk.length === 0 && chunkDead.length === 0) break;
      const missing: DeadLetter[] = [];
      const { changed, changedByRun } = await inTransaction(deps.db.pool, async (tx) => {
        const perPartition = new Map<number, number>();
        const changedByRun = new Map<number, number>();
        if (chunk.length > 0) {
          const { rows } = await tx.query<{ run_id: number; partition_id: number; n: number }>(loadSql('apply-updates'), [
            integerArray(chunk.map((c) => c.record.id)),
            integerArray(chunk.map((c) => c.record.toVersion)),
            integerArray(chunk.map((c) => c.record.runId)),
            integerArray(chunk.map((c) => c.record.partitionId)),
          ]);
          let changedRows = 0;
          for (const row of rows) {
            perPartition.set(row.partition_id, (perPartition.get(row.partition_id) ?? 0) + row.n);
            changedByRun.set(row.run_id, (changedByRun.get(row.run_id) ?? 0) + row.n);
            changedRows += row.n;
          }
          // Only a batch that changed fewer rows than it holds (a replay, or deleted rows) can
          // name rows that no longer exist.
          if (changedRows < chunk.length) {
            const gone = await tx.query<{ id: number }>(loadSql('find-missing-rows'), [integerArray(chunk.map((c) => c.record.id))]);
            const byId = new Map(chunk.map((c) => [c.record.id, c]));
            for (const { id } of gone.rows) {
              const source = byId.get(id);
              missing.push({
                offset: source?.offset ?? '-1',
                key: String(id),
                value: source ? JSON.stringify(source.record) : null,
                reason: 'row-not-found',
                runId: source?.record.runId ?? null,
                partitionId: source?.record.partitionId ?? null,
              });
            }
          }
        }
        if (perPartition.size > 0) {
          // Lock partition rows in id order so concurrent batches cannot deadlock.
          const ids = [...perPartition.keys()].sort((a, b) => a - b);
          await tx.query('SELECT id FROM partitions WHERE id = ANY ($1::bigint[]) ORDER BY id FOR NO KEY UPDATE', [ids]);
          await tx.query(
            `UPDATE partitions p SET rows_applied = p.rows_applied + c.n
             FROM unnest($1::bigint[], $2::bigint[]) AS c(id, n) WHERE p.id = c.id`,
            [ids, ids.map((id) => perPartition.get(id) ?? 0)],
          );
        }
        const letters = [...chunkDead, ...missing];
        if (letters.length > 0) {
          await tx.query(loadSql('record-dead-letters'), [
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
        return { changed: [...perPartition.values()].reduce((a, b) => a + b, 0), changedByRun };
      });
      // Committed: count it down at once, so that a failure further on (the dead-letter send)
      // cannot leave the counter above what Postgres holds.
      for (const [runId, n] of changedByRun) {
        const left = deps.coordination ? await deps.coordination.decrementOutstanding(runId, n).catch(() => null) : null;
        if (left === null || left <= 0) deps.onRunMaybeDone(runId);
      }
      const letters = [...chunkDead, ...missing];
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
