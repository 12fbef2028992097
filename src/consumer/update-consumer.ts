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
import type { Definitions } from '../definitions/load.ts';
import type { ResolvedDefinition } from '../definitions/resolve.ts';
import type { Logger } from '../logger.ts';
import { loadSql } from '../sql.ts';
import type { IncomingBatch, StreamClient } from '../stream/kafka.ts';
import { decodeUpdateRecord, type RecordFields } from '../stream/update-record.ts';
import { APPLY_CHUNK_MAX } from '../worker/page-size.ts';

export interface ApplierDeps {
  db: Db;
  stream: StreamClient;
  coordination: Coordination | null;
  log: Logger;
  topicDeadLetters: string;
  /** The definitions this instance applies records of; a record of another is a dead letter. */
  definitions: Definitions;
  /**
   * Most records applied by one statement (default APPLY_CHUNK_MAX, 5,000), or a function of the migration
   * asked once per batch (adaptive pages: what applies in about the target time), so that a
   * backlog of several pages is applied in statements no longer than one page's.
   */
  chunkSize?: number | ((migration: string) => number);
  /** Called with a run whose counter reached zero (or was lost): it may be complete. */
  onRunMaybeDone(runId: number): void;
  /**
   * Called after each applied chunk (metrics, tests, the apply rate adaptive pages follow):
   * `applyMs` is how long its apply statement took (0 for the dead letters of a batch).
   */
  onApplied?(event: { migration: string; records: number; changed: number; deadLetters: number; applyMs: number }): void;
}

interface DeadLetter {
  offset: string;
  key: string | null;
  value: string | null;
  reason: string;
  runId: number | null;
  partitionId: number | null;
}

/** The valid records of a batch for one definition, as columns (index = position in the batch). */
interface RecordColumns {
  keys: string[];
  targets: (string | null)[];
  runIds: number[];
  partitionIds: number[];
  carried: (string | null)[][];
  /** Message index of each record. */
  source: number[];
}

const NEEDS_ESCAPE = /[\\"]/;

/**
 * A Postgres text[] literal, built in one pass (node-postgres would walk the array with a
 * generic serializer): every element quoted, `"` and `\` escaped, NULL for null.
 */
export function textArray(values: readonly (string | null)[], indexes: readonly number[]): string {
  let out = '{';
  for (let i = 0; i < indexes.length; i++) {
    const v = values[indexes[i]!]!;
    if (i > 0) out += ',';
    out += v === null ? 'NULL' : `"${NEEDS_ESCAPE.test(v) ? v.replace(/[\\"]/g, '\\$&') : v}"`;
  }
  return `${out}}`;
}

/** An integer array literal (validated integers only). */
export function integerArray(values: readonly number[], indexes: readonly number[]): string {
  let out = '{';
  for (let i = 0; i < indexes.length; i++) out += (i === 0 ? '' : ',') + values[indexes[i]!]!;
  return `${out}}`;
}

/**
 * Keeps one record per row key, the last one in the batch (a row's records share a Kafka
 * partition, so the last is the newest), ordered by key (numeric keys by value) so that one
 * statement walks the key index in order. Returns indexes into the columns.
 */
export function latestPerKey(columns: Pick<RecordColumns, 'keys'>, numeric: boolean): number[] {
  const { keys } = columns;
  const last = new Map<string, number>();
  for (let i = 0; i < keys.length; i++) last.set(keys[i]!, i);
  const kept = [...last.values()];
  const compare = numeric
    ? (a: string, b: string) => (a.length - b.length) || (a < b ? -1 : a > b ? 1 : 0)
    : (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return kept.sort((a, b) => compare(keys[a]!, keys[b]!));
}

const text = (bytes: Buffer | null): string | null => (bytes === null ? null : bytes.toString('utf8'));
const NUMERIC_KEY = /^(bigint|integer|smallint)$/;

export function createApplier(deps: ApplierDeps): (batch: IncomingBatch) => Promise<void> {
  const fixedChunk = typeof deps.chunkSize === 'number' ? deps.chunkSize : APPLY_CHUNK_MAX;
  const chunkSizeOf = typeof deps.chunkSize === 'function' ? deps.chunkSize : () => fixedChunk;
  const fields: RecordFields = { migration: null, runId: 0, partitionId: 0, key: '', target: null, carried: [] };
  // Version 1 records name no migration: their run does (runs never change migration).
  const runMigration = new Map<number, string | null>();
  const migrationOf = async (runIds: number[]): Promise<void> => {
    const missing = [...new Set(runIds)].filter((id) => !runMigration.has(id));
    if (missing.length === 0) return;
    const { rows } = await deps.db.pool.query<{ id: number; migration: string }>('SELECT id, migration FROM migration_runs WHERE id = ANY ($1::bigint[])', [missing]);
    for (const id of missing) runMigration.set(id, rows.find((r) => r.id === id)?.migration ?? null);
  };

  /** Applies one definition's records of a batch, chunk by chunk; returns its dead letters. */
  const applyRecords = async (definition: ResolvedDefinition, columns: RecordColumns, batch: IncomingBatch): Promise<DeadLetter[]> => {
    const { messages } = batch;
    const unique = latestPerKey(columns, NUMERIC_KEY.test(definition.key.type));
    const letters: DeadLetter[] = [];
    const chunkSize = Math.max(1, chunkSizeOf(definition.name));
    for (let start = 0; start < unique.length; start += chunkSize) {
      const chunk = unique.slice(start, start + chunkSize);
      // One statement applies the chunk and counts it on its partitions (one round trip, one
      // transaction).
      const applyStarted = performance.now();
      const { rows } = await deps.db.pool.query<{ run_id: number; partition_id: number; n: number }>(definition.statements.apply, [
        textArray(columns.keys, chunk),
        textArray(columns.targets, chunk),
        integerArray(columns.runIds, chunk),
        integerArray(columns.partitionIds, chunk),
        ...definition.carried.map((_, c) => textArray(chunk.map((i) => columns.carried[i]![c] ?? null), chunk.map((_, j) => j))),
      ]);
      const applyMs = performance.now() - applyStarted;
      let changed = 0;
      const changedByRun = new Map<number, number>();
      for (const row of rows) {
        changedByRun.set(row.run_id, (changedByRun.get(row.run_id) ?? 0) + row.n);
        changed += row.n;
      }
      let missing: DeadLetter[] = [];
      try {
        // Only a chunk that changed fewer rows than it holds (a replay, or deleted rows) can
        // name rows that no longer exist.
        if (chunk.length > changed) {
          const gone = await deps.db.pool.query<{ k: string }>(definition.statements.missing, [textArray(columns.keys, chunk)]);
          const byKey = new Map(chunk.map((i) => [columns.keys[i]!, i]));
          missing = gone.rows.map(({ k }) => {
            const i = byKey.get(k)!;
            const source = messages[columns.source[i]!];
            return { offset: source?.offset ?? '-1', key: k, value: source ? text(source.value) : null, reason: 'row-not-found', runId: columns.runIds[i]!, partitionId: columns.partitionIds[i]! };
          });
        }
      } finally {
        // The changes are committed: count them down even when looking for missing rows
        // failed, so that the counter never stays above what Postgres holds (the replay that
        // follows changes nothing and so counts down nothing).
        for (const [runId, n] of changedByRun) {
          const left = deps.coordination ? await deps.coordination.decrementOutstanding(runId, n).catch(() => null) : null;
          if (left === null || left <= 0) deps.onRunMaybeDone(runId);
        }
      }
      letters.push(...missing);
      deps.onApplied?.({ migration: definition.name, records: chunk.length, changed, deadLetters: missing.length, applyMs });
      await batch.heartbeat().catch(() => {});
    }
    return letters;
  };

  return async (batch) => {
    const { messages } = batch;
    const dead: DeadLetter[] = [];
    const decoded: { index: number; migration: string | null; runId: number; partitionId: number; key: string; target: string | null; carried: (string | null)[] }[] = [];
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i]!;
      const rejected = decodeUpdateRecord(m.key, m.value, fields);
      if (rejected) {
        dead.push({ offset: m.offset, key: text(m.key), value: text(m.value), ...rejected });
        continue;
      }
      decoded.push({ index: i, ...fields });
    }
    const legacy = decoded.filter((r) => r.migration === null).map((r) => r.runId);
    if (legacy.length > 0) await migrationOf(legacy);
    const byDefinition = new Map<ResolvedDefinition, RecordColumns>();
    for (const r of decoded) {
      const name = r.migration ?? runMigration.get(r.runId) ?? null;
      const definition = name === null ? undefined : deps.definitions.get(name);
      const reject = (reason: string) => {
        const m = messages[r.index]!;
        dead.push({ offset: m.offset, key: text(m.key), value: text(m.value), reason, runId: r.runId, partitionId: r.partitionId });
      };
      if (!definition) {
        reject(name === null ? 'unknown-run: no run has this id' : `unknown-migration: ${name} is not loaded by this instance`);
        continue;
      }
      if (r.carried.length !== definition.carried.length) {
        reject(`invalid-record: c must hold ${definition.carried.length} values for ${definition.name}`);
        continue;
      }
      if ((r.target === null) !== (definition.group === null)) {
        reject(`invalid-record: t must be ${definition.group ? 'a string' : 'null'} for ${definition.name}`);
        continue;
      }
      let columns = byDefinition.get(definition);
      if (!columns) {
        columns = { keys: [], targets: [], runIds: [], partitionIds: [], carried: [], source: [] };
        byDefinition.set(definition, columns);
      }
      columns.keys.push(r.key);
      columns.targets.push(r.target);
      columns.runIds.push(r.runId);
      columns.partitionIds.push(r.partitionId);
      columns.carried.push(r.carried);
      columns.source.push(r.index);
    }
    for (const [definition, columns] of byDefinition) dead.push(...(await applyRecords(definition, columns, batch)));
    if (dead.length === 0) return;
    // Dead letters are recorded before the caller commits the offsets: a crash in between
    // replays the batch, which changes nothing and records the same dead letters once (they
    // are unique per source offset).
    await deps.db.pool.query(loadSql('record-dead-letters'), [
      batch.topic,
      batch.partition,
      dead.map((d) => d.runId),
      dead.map((d) => d.partitionId),
      dead.map((d) => d.offset),
      dead.map((d) => d.key),
      dead.map((d) => d.reason),
      dead.map((d) => (d.value === null ? null : d.value.slice(0, 100_000))),
    ]);
    await deps.stream.send(
      deps.topicDeadLetters,
      dead.map((d) => ({
        key: d.key ?? '',
        value: d.value ?? '',
        headers: { reason: d.reason, 'source-topic': batch.topic, 'source-partition': String(batch.partition), 'source-offset': d.offset },
      })),
    );
    deps.log.warn({ count: dead.length, reasons: [...new Set(dead.map((d) => d.reason))] }, 'records sent to the dead-letter topic');
    deps.onApplied?.({ migration: '', records: 0, changed: 0, deadLetters: dead.length, applyMs: 0 });
  };
}
