/**
 * The statements that prove a run and take one back, generated from a definition like the
 * rest (statements.ts): set-based, plain SELECTs for verification and dry runs (no lock an
 * application write could wait on), and, for a run that undoes another, the pages, the
 * completion check and the plan read through the applied log (migrations/0006).
 * Table alias `t`, applied log alias `a`; values are bind parameters, listed in each doc.
 */
import { createHash } from 'node:crypto';
import type { Column } from './resolve.ts';
import { render } from './statements.ts';


/**
 * The prefix of a checksum over a column list the definition chose (verify.checksum), so that
 * a baseline taken over other columns is told apart (verify.ts): `'<8 hex digits>:' || `, or
 * nothing for the default list, whose checksums stay as they were before the option existed.
 */
function checksumTag(columns: readonly string[] | undefined): string {
  return columns ? `'${createHash('sha256').update(JSON.stringify(columns)).digest('hex').slice(0, 8)}:' || ` : '';
}

/** What these statements need of a resolved definition. */
export interface ProofInput {
  name: string;
  definition: {
    eligible: string;
    guard?: string;
    set: Readonly<Record<string, string>>;
    verify?: { reached: string; beyond?: string; checksum?: readonly string[] };
  };
  table: { sql: string };
  key: Column;
  position: Column;
  group: { column: Column } | null;
  carried: readonly Column[];
  /** Columns whose type has a hash function (the checksum hashes them as they are; others as text). */
  hashable?: ReadonlySet<string>;
}

/** A run that moves back the rows another run changed (an undo, or the redo of an undo). */
export interface UndoesOptions {
  /** The `set` columns of the direction being undone: what its applied log `written` holds. */
  writtenBy: readonly string[];
  /** Carried values come from the applied log (an undo: where the row came from), else from the row. */
  carriedFromLog: boolean;
}

export interface ProofStatements {
  /**
   * $1 run id → per partition: partition_id, group_key, seq, target, row_count, rows_applied,
   * present, eligible, reached, beyond (NULL without `verify`), checksum (text).
   */
  verify: string;
  /** $1 group, $2 target, $3..$6 lower_pos, lower_key, upper_pos, upper_key text[] → i (1-based), n: rows each range would change. */
  effectCounts: string;
  /** $1 group, $2 target, $3 limit → k, before text[], after text[] (the `set` columns), computed, not written. */
  effectSample: string;
  /** Pages, completion check, plan and verification of a run that undoes another (null when the definition has no undo pair). */
  undoing: UndoStatements | null;
}

export interface UndoStatements {
  /**
   * $1 undone run id: its applied log (one row per batch) as one row per changed row in
   * applied_rows, the latest batch winning for a row changed twice; inserts nothing once the
   * run's log is there (run it under the undo's advisory lock: two at once would collide).
   */
  expand: string;
  /** The same for a run expanded before: adds only the keys not there yet (logged since). */
  expandAgain: string;
  /** As firstPage/nextPage, plus $8 the undone run id: only rows its applied log names that still hold what it wrote. */
  firstPage: string;
  nextPage: string;
  /** $1 run id (an undo run) → remaining. */
  remaining: string;
  /** $1 undone run id → per partition of it: partition_id, n (rows to move back), logged (rows it changed). */
  plan: string;
  /** As verify, for an undo run (present: logged rows in range; eligible: rows still to move back). */
  verify: string;
}

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

export function buildProofStatements(d: ProofInput, tt: string, undoes: UndoesOptions | null): ProofStatements {
  const { key: k, position: p, group, carried, table } = d;
  const groupMatch = (value: string) => (group ? `t.${group.column.sql} = ${value}::${group.column.type}` : `${value}::text IS NOT NULL`);
  const inRange = (lp: string, lk: string, up: string, uk: string) =>
    `(t.${p.sql}, t.${k.sql}) >= (${lp}::${p.type}, ${lk}::${k.type}) AND (t.${p.sql}, t.${k.sql}) <= (${up}::${p.type}, ${uk}::${k.type})`;
  const fromRow = (name: string) => `t.${quote(name)}`;
  const eligible = (target: string) => render(d.definition.eligible, target, null, 'eligible', d.name);
  const guardOf = (target: string, carriedSql: (name: string) => string) =>
    render(d.definition.guard ?? d.definition.eligible, target, carriedSql, 'guard', d.name);
  // XOR of one 64-bit hash per row (key and the checksum's columns: every `set` column unless
  // verify.checksum names them): order-free, and one changed row changes it. Hashing the
  // values as they are, not their text, keeps verify near a count(*).
  const hashed = (c: string) => (d.hashable?.has(c) ? `t.${quote(c)}` : `t.${quote(c)}::text`);
  const summed = d.definition.verify?.checksum ?? Object.keys(d.definition.set);
  const checksum = `${checksumTag(d.definition.verify?.checksum)}bit_xor(hash_record_extended(ROW(t.${k.sql}, ${summed.map(hashed).join(', ')}), 0))::text`;
  const v = d.definition.verify;
  // The partitions' target and bounds are cast to their types once per partition (a
  // materialized list), not once per row by every test that compares a row with the target.
  const typed = 'pt.tranche_target';
  const reached = v ? `count(*) FILTER (WHERE ${render(v.reached, typed, null, 'verify.reached', d.name)})::bigint` : 'NULL::bigint';
  const beyond = v?.beyond ? `count(*) FILTER (WHERE ${render(v.beyond, typed, null, 'verify.beyond', d.name)})::bigint` : 'NULL::bigint';
  const partitionColumns = 'pt.id AS partition_id, pt.group_key, pt.seq, pt.target, pt.row_count, pt.rows_applied';
  const partitionsOf = (run: string) => `WITH pt AS MATERIALIZED (
  SELECT pt.id, pt.group_key, pt.seq, pt.target, pt.row_count, pt.rows_applied, pt.target::${tt} AS tranche_target,
         pt.lower_pos::${p.type} AS tranche_lp, pt.lower_key::${k.type} AS tranche_lk, pt.upper_pos::${p.type} AS tranche_up, pt.upper_key::${k.type} AS tranche_uk${run === '$1' ? '' : `, ${run} AS tranche_undone`}
  FROM partitions pt${run === '$1' ? '' : ' JOIN migration_runs r ON r.id = pt.run_id'}
  WHERE pt.run_id = $1
)`;
  const inTypedRange = `(t.${p.sql}, t.${k.sql}) >= (pt.tranche_lp, pt.tranche_lk) AND (t.${p.sql}, t.${k.sql}) <= (pt.tranche_up, pt.tranche_uk)`;
  // One statement, one pass over each partition's range (the index range of group, position
  // and key) computing every count and the checksum together.
  const verify = `${partitionsOf('$1')}
SELECT ${partitionColumns},
       coalesce(x.present, 0) AS present, coalesce(x.eligible, 0) AS eligible, x.reached, x.beyond, coalesce(x.checksum, '0') AS checksum
FROM pt
CROSS JOIN LATERAL (
  SELECT count(*)::bigint AS present, count(*) FILTER (WHERE ${eligible(typed)})::bigint AS eligible,
         ${reached} AS reached, ${beyond} AS beyond, ${checksum} AS checksum
  FROM ${table.sql} t
  WHERE ${groupMatch('pt.group_key')} AND ${inTypedRange}
) x
ORDER BY pt.group_key, pt.seq`;

  // $2 is referenced even when the snippets do not use {target}, so that it has a type.
  const changes = `${guardOf(`$2::${tt}`, fromRow)} AND $2::${tt} IS NOT DISTINCT FROM $2::${tt}`;
  const effectCounts = `SELECT b.i::int AS i, (SELECT count(*) FROM ${table.sql} t
  WHERE ${groupMatch('$1')} AND ${inRange('b.lp', 'b.lk', 'b.up', 'b.uk')} AND ${eligible(`$2::${tt}`)} AND ${changes})::bigint AS n
FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS b(lp, lk, up, uk, i)
ORDER BY b.i`;
  const after = Object.entries(d.definition.set).map(([, expression]) => `${render(expression, `$2::${tt}`, fromRow, 'set', d.name)}::text`);
  const effectSample = `SELECT t.${k.sql}::text AS k, ARRAY[${Object.keys(d.definition.set).map((c) => `t.${quote(c)}::text`).join(', ')}] AS before, ARRAY[${after.join(', ')}] AS after
FROM ${table.sql} t
WHERE ${groupMatch('$1')} AND ${eligible(`$2::${tt}`)} AND ${changes}
ORDER BY t.${p.sql}, t.${k.sql}
LIMIT $3`;

  if (!undoes) return { verify, effectCounts, effectSample, undoing: null };

  // A row the undone run changed still holds what it wrote: its `set` columns, as text.
  const holds = `ARRAY[${undoes.writtenBy.map((c) => `t.${quote(c)}::text`).join(', ')}]::text[] IS NOT DISTINCT FROM a.written`;
  const carriedSql = (name: string) => {
    const i = carried.findIndex((c) => c.name === name);
    return undoes.carriedFromLog ? `a.carried[${i + 1}]::${carried[i]!.type}` : fromRow(name);
  };
  const moves = (target: string) => `${guardOf(target, carriedSql)} AND ${holds}`;
  const pageColumns = [
    `t.${k.sql}::text AS k`,
    `t.${p.sql}::text AS p`,
    ...carried.map((c, i) => (undoes.carriedFromLog ? `a.carried[${i + 1}] AS c${i}` : `t.${c.sql}::text AS c${i}`)),
  ].join(', ');
  // Each row of the range looks up its own log row (the primary key), and the lookup decides
  // whether it moves: OFFSET 0 keeps the lookup a subquery, so the planner keeps walking the
  // range in index order and stops at the page's LIMIT. As a plain join with the test in the
  // WHERE, the planner expected few rows to pass it and read the whole range, hashed every log
  // row of the run and sorted, on every page (a page cost grew with the run: 0.16x at 1,000,000).
  const logged = (run: string, only = 'true') => `CROSS JOIN LATERAL (
  SELECT a.carried, a.written FROM applied_rows a WHERE a.run_id = ${run} AND a.row_key = t.${k.sql}::text AND ${only} OFFSET 0
) a`;
  const page = (op: string) => `SELECT ${pageColumns}
FROM ${table.sql} t ${logged('$8::bigint', moves(`$2::${tt}`))}
WHERE ${groupMatch('$1')}${group ? '' : ' AND $2::text IS NULL'}
  AND (t.${p.sql}, t.${k.sql}) ${op} ($3::${p.type}, $4::${k.type})
  AND (t.${p.sql}, t.${k.sql}) <= ($5::${p.type}, $6::${k.type})
ORDER BY t.${p.sql}, t.${k.sql}
LIMIT $7`;
  const remaining = `SELECT EXISTS (
  SELECT 1 FROM partitions pt JOIN migration_runs r ON r.id = pt.run_id
  WHERE pt.run_id = $1 AND pt.rows_applied < pt.row_count
    AND EXISTS (
      SELECT 1 FROM ${table.sql} t ${logged('r.undo_of', moves(`pt.target::${tt}`))}
      WHERE ${groupMatch('pt.group_key')} AND ${inRange('pt.lower_pos', 'pt.lower_key', 'pt.upper_pos', 'pt.upper_key')}
    )
) AS remaining`;
  // The log's arrays are two-dimensional (a row per key); a slice per column, taken once per
  // batch, is one-dimensional in key order, and unnest walks them with the keys in step. (A
  // slice per key read the batch's whole stored array again for every key: 3.5 s per 100,000.)
  // In key order, each row goes to the right end of the primary key's index, and DISTINCT ON
  // keeps the latest batch's entry of a key changed twice: a plain insert, 40 % cheaper than
  // ON CONFLICT DO NOTHING over the rows in batch order (0.55 s against 0.9 s per 100,000).
  const column = (array: string, i: number) => `b.${array}[:][${i}:${i}]`;
  const carriedAs = carried.map((_, i) => `c${i}`);
  const writtenAs = undoes.writtenBy.map((_, i) => `w${i}`);
  const expansion = (first: boolean) => `INSERT INTO applied_rows (run_id, partition_id, row_key, carried, written)
SELECT DISTINCT ON (r.k) b.run_id, b.partition_id, r.k, ${carried.length > 0 ? `ARRAY[${carriedAs.map((c) => `r.${c}`).join(', ')}]` : `'{}'`}::text[], ARRAY[${writtenAs.map((w) => `r.${w}`).join(', ')}]::text[]
FROM applied_batches b
CROSS JOIN LATERAL unnest(b.keys, ${[...carried.map((_, i) => column('carried', i + 1)), ...undoes.writtenBy.map((_, i) => column('written', i + 1))].join(', ')}) AS r(k, ${[...carriedAs, ...writtenAs].join(', ')})
WHERE b.run_id = $1${first ? ' AND NOT EXISTS (SELECT 1 FROM applied_rows x WHERE x.run_id = $1)' : ''}
ORDER BY r.k, b.id DESC${first ? '' : '\nON CONFLICT (run_id, row_key) DO NOTHING'}`;
  const plan = `SELECT a.partition_id, count(*) FILTER (WHERE t.${k.sql} IS NOT NULL AND ${moves(`pt.target::${tt}`)})::bigint AS n, count(*)::bigint AS logged
FROM applied_rows a JOIN partitions pt ON pt.id = a.partition_id
LEFT JOIN ${table.sql} t ON t.${k.sql} = a.row_key::${k.type}
WHERE a.run_id = $1
GROUP BY a.partition_id
ORDER BY a.partition_id`;
  const undoVerify = `${partitionsOf('r.undo_of')}
SELECT ${partitionColumns},
       coalesce(x.present, 0) AS present, coalesce(x.eligible, 0) AS eligible, NULL::bigint AS reached, NULL::bigint AS beyond, coalesce(x.checksum, '0') AS checksum
FROM pt
CROSS JOIN LATERAL (
  SELECT count(*)::bigint AS present, count(*) FILTER (WHERE ${moves(typed)})::bigint AS eligible, ${checksum} AS checksum
  FROM ${table.sql} t ${logged('pt.tranche_undone')}
  WHERE ${groupMatch('pt.group_key')} AND ${inTypedRange}
) x
ORDER BY pt.group_key, pt.seq`;
  return {
    verify,
    effectCounts,
    effectSample,
    undoing: { expand: expansion(true), expandAgain: expansion(false), firstPage: page('>='), nextPage: page('>'), remaining, plan, verify: undoVerify },
  };
}
