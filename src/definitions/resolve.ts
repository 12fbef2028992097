/**
 * Checks a migration definition against the database catalog and turns it into quoted
 * identifiers and column types, once, when it loads. Every problem is one
 * {@link DefinitionError} line naming the definition; nothing is written.
 *
 * @example
 *   const resolved = await resolveDefinition(db.pool, definition);   // throws DefinitionError
 */
import { assertCronExpression } from '../config.ts';
import type { Queryable } from '../db.ts';
import { DefinitionError } from '../errors.ts';
import type { MigrationDefinition } from './define.ts';
import { buildStatements, type Statements } from './statements.ts';

export interface Column {
  name: string;
  /** Quoted identifier. */
  sql: string;
  /** The column's type as Postgres spells it (format_type), used in casts. */
  type: string;
}

export interface ResolvedTable {
  /** Quoted, schema-qualified. */
  sql: string;
  oid: number;
  display: string;
}

export interface ResolvedDefinition {
  readonly definition: MigrationDefinition;
  readonly name: string;
  readonly table: ResolvedTable;
  readonly key: Column;
  readonly position: Column;
  readonly group: { column: Column; targets: ResolvedTable; targetsKey: Column; target: Column } | null;
  readonly carried: readonly Column[];
  /** Columns whose type has a default hash operator class (the verify checksum hashes them directly). */
  readonly hashable: ReadonlySet<string>;
  readonly statements: Statements;
  /**
   * The inverse direction of a definition that declares `undo` (named NAME.undo; its runs
   * only ever undo a run of NAME), or null. Runs of the inverse are undone by NAME (a redo).
   */
  readonly inverse: ResolvedDefinition | null;
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const KEY_TYPES = /^(bigint|integer|smallint|uuid|text|character varying(\(\d+\))?)$/;
const POSITION_TYPES = /^(bigint|integer|smallint|numeric(\(.*\))?|date|timestamp( with(out)? time zone)?(\(\d\))?)$/;

/** Quotes an identifier: a hostile name stays a name. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

async function resolveTable(db: Queryable, def: MigrationDefinition, name: string, what: string): Promise<ResolvedTable> {
  if (typeof name !== 'string' || name.length === 0) throw new DefinitionError(`definition ${def.name}: ${what} must be a table name`);
  const dot = name.indexOf('.');
  const parts = dot > 0 ? [name.slice(0, dot), name.slice(dot + 1)] : [null, name];
  const { rows } = await db.query<{ oid: number; nspname: string; relname: string }>(
    `SELECT c.oid::int AS oid, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relname = $2 AND c.relkind IN ('r', 'p')
       AND (CASE WHEN $1::text IS NULL THEN n.oid = ANY (current_schemas(false)::regnamespace[]) ELSE n.nspname = $1 END)
     ORDER BY array_position(current_schemas(false)::text[], n.nspname::text) LIMIT 1`,
    parts,
  );
  const row = rows[0];
  if (!row) throw new DefinitionError(`definition ${def.name}: ${what} ${JSON.stringify(name)} does not exist`);
  return { oid: row.oid, sql: `${quoteIdent(row.nspname)}.${quoteIdent(row.relname)}`, display: `${row.nspname}.${row.relname}` };
}

async function columnsOf(db: Queryable, table: ResolvedTable): Promise<Map<string, { type: string; notNull: boolean }>> {
  const { rows } = await db.query<{ attname: string; type: string; attnotnull: boolean }>(
    `SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull FROM pg_attribute
     WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped`,
    [table.oid],
  );
  return new Map(rows.map((r) => [r.attname, { type: r.type, notNull: r.attnotnull }]));
}

function column(def: MigrationDefinition, columns: Map<string, { type: string }>, table: ResolvedTable, name: unknown, what: string): Column {
  if (typeof name !== 'string' || name.length === 0) throw new DefinitionError(`definition ${def.name}: ${what} must be a column name`);
  const found = columns.get(name);
  if (!found) throw new DefinitionError(`definition ${def.name}: ${what} ${JSON.stringify(name)} is not a column of ${table.display}`);
  return { name, sql: quoteIdent(name), type: found.type };
}

/** Checks the definition's shape (before the catalog): names, required fields, placeholders. */
export function checkShape(def: MigrationDefinition): void {
  const label = typeof def?.name === 'string' ? def.name : '(unnamed)';
  if (typeof def !== 'object' || def === null) throw new DefinitionError('a definition must be an object made with defineMigration()');
  if (typeof def.name !== 'string' || !NAME.test(def.name)) {
    throw new DefinitionError(`definition ${JSON.stringify(def.name)}: name must be 1-63 of a-z, 0-9, ".", "_" or "-", starting with a letter or digit`);
  }
  for (const field of ['table', 'key', 'partitionBy', 'eligible'] as const) {
    if (typeof def[field] !== 'string' || def[field].trim() === '') throw new DefinitionError(`definition ${label}: ${field} is required`);
  }
  if (typeof def.set !== 'object' || def.set === null || Object.keys(def.set).length === 0) {
    throw new DefinitionError(`definition ${label}: set must name at least one column and its new value`);
  }
  if (def.schedule !== undefined && def.schedule !== null) {
    try {
      assertCronExpression(def.schedule as string, 'schedule');
    } catch {
      throw new DefinitionError(`definition ${label}: schedule must be a cron expression of 5 or 6 fields, or null (got ${JSON.stringify(def.schedule)})`);
    }
  }
  if (def.verify !== undefined && (typeof def.verify !== 'object' || def.verify === null || typeof def.verify.reached !== 'string' || def.verify.reached.trim() === '')) {
    throw new DefinitionError(`definition ${label}: verify needs reached, a SQL predicate (e.g. 'version = {target}')`);
  }
  const summed = def.verify?.checksum;
  if (summed !== undefined && (!Array.isArray(summed) || summed.length === 0 || !summed.every((c) => typeof c === 'string' && c !== ''))) {
    throw new DefinitionError(`definition ${label}: verify.checksum must list at least one column name (or be left out: every set column)`);
  }
  if (def.undo !== undefined) {
    const u = def.undo as { set?: unknown; guard?: unknown } | null;
    if (typeof u !== 'object' || u === null || typeof u.set !== 'object' || u.set === null || Object.keys(u.set).length === 0 || typeof u.guard !== 'string' || u.guard.trim() === '') {
      throw new DefinitionError(`definition ${label}: undo needs set (column to SQL expression) and guard (which rows may be moved back)`);
    }
    if (def.name.length > 58) throw new DefinitionError(`definition ${label}: with undo, the name may be at most 58 characters (its undo runs are named NAME.undo)`);
  }
  const snippets = [
    def.eligible,
    def.guard ?? '',
    ...Object.values(def.set),
    def.verify?.reached ?? '',
    def.verify?.beyond ?? '',
    def.undo?.guard ?? '',
    ...Object.values(def.undo?.set ?? {}),
  ];
  for (const snippet of snippets) {
    if (typeof snippet !== 'string') throw new DefinitionError(`definition ${label}: every SQL snippet must be a string`);
    for (const [placeholder] of snippet.matchAll(/\{[^}]*\}/g)) {
      if (placeholder === '{target}') {
        if (!def.group) throw new DefinitionError(`definition ${label}: {target} needs a group with targets`);
      } else if (placeholder.startsWith('{carried.')) {
        const name = placeholder.slice('{carried.'.length, -1);
        if (!(def.carry ?? []).includes(name)) throw new DefinitionError(`definition ${label}: ${placeholder} names a column that carry does not list`);
      } else {
        throw new DefinitionError(`definition ${label}: unknown placeholder ${placeholder} (use {target} or {carried.COLUMN})`);
      }
    }
  }
  const d = def.defaults ?? {};
  for (const [k, v] of Object.entries(d)) {
    if (!Number.isSafeInteger(v) || (v as number) < 1) throw new DefinitionError(`definition ${label}: defaults.${k} must be a whole number, 1 or more`);
  }
}

/** True when a unique index (or primary key) of the table covers exactly `key`. */
async function isUnique(db: Queryable, table: ResolvedTable, key: string): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>(
    `SELECT EXISTS (
       SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
       WHERE i.indrelid = $1 AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = $2
     ) AS ok`,
    [table.oid, key],
  );
  return rows[0]?.ok === true;
}

/**
 * Resolves a definition against the catalog: the tables and columns exist, the key is
 * unique, the types are usable, and every generated statement parses (EXPLAIN, nothing run).
 */
export async function resolveDefinition(db: Queryable, def: MigrationDefinition): Promise<ResolvedDefinition> {
  checkShape(def);
  const table = await resolveTable(db, def, def.table, 'table');
  const columns = await columnsOf(db, table);
  const key = column(def, columns, table, def.key, 'key');
  if (!KEY_TYPES.test(key.type)) throw new DefinitionError(`definition ${def.name}: key ${JSON.stringify(key.name)} is ${key.type}; use a bigint, integer, uuid or text key`);
  if (!columns.get(key.name)?.notNull || !(await isUnique(db, table, key.name))) {
    throw new DefinitionError(`definition ${def.name}: key ${JSON.stringify(key.name)} of ${table.display} is not unique and not null (it needs a primary key or a unique index on it alone)`);
  }
  const position = column(def, columns, table, def.partitionBy, 'partitionBy');
  if (!POSITION_TYPES.test(position.type)) {
    throw new DefinitionError(`definition ${def.name}: partitionBy ${JSON.stringify(position.name)} is ${position.type}; use a timestamp, date or integer column`);
  }
  let group: ResolvedDefinition['group'] = null;
  if (def.group) {
    const targets = await resolveTable(db, def, def.group.targets?.table, 'group.targets.table');
    const targetColumns = await columnsOf(db, targets);
    group = {
      column: column(def, columns, table, def.group.column, 'group.column'),
      targets,
      targetsKey: column(def, targetColumns, targets, def.group.targets.key, 'group.targets.key'),
      target: column(def, targetColumns, targets, def.group.targets.target, 'group.targets.target'),
    };
  }
  const carried = (def.carry ?? []).map((name) => column(def, columns, table, name, 'carry'));
  for (const name of Object.keys(def.set)) column(def, columns, table, name, 'set');
  for (const name of Object.keys(def.undo?.set ?? {})) column(def, columns, table, name, 'undo.set');
  for (const name of def.verify?.checksum ?? []) column(def, columns, table, name, 'verify.checksum');
  const resolved = { definition: def, name: def.name, table, key, position, group, carried, hashable: await hashableColumns(db, table) };
  const statements = buildStatements(resolved, {
    logApplied: def.undo !== undefined,
    undoes: def.undo ? { writtenBy: Object.keys(def.undo.set), carriedFromLog: false } : null,
  });
  await explainAll(db, def.name, statements);
  let inverse: ResolvedDefinition | null = null;
  if (def.undo) {
    const inverseDefinition: MigrationDefinition = {
      ...def,
      name: `${def.name}.undo`,
      eligible: def.undo.guard,
      guard: def.undo.guard,
      set: def.undo.set,
      verify: undefined,
      undo: undefined,
      schedule: null,
    };
    const inverseResolved = { ...resolved, definition: inverseDefinition, name: inverseDefinition.name };
    const inverseStatements = buildStatements(inverseResolved, {
      logApplied: true,
      undoes: { writtenBy: Object.keys(def.set), carriedFromLog: true },
    });
    await explainAll(db, `${def.name} (undo)`, inverseStatements);
    inverse = { ...inverseResolved, statements: inverseStatements, inverse: null };
  }
  return { ...resolved, statements, inverse };
}

/** The table's columns whose type (or a domain's base type) has a default hash operator class. */
async function hashableColumns(db: Queryable, table: ResolvedTable): Promise<Set<string>> {
  const { rows } = await db.query<{ attname: string }>(
    `SELECT a.attname FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
     WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
       AND EXISTS (SELECT 1 FROM pg_opclass o JOIN pg_am am ON am.oid = o.opcmethod
                   WHERE am.amname = 'hash' AND o.opcdefault
                     AND o.opcintype = CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.oid END)`,
    [table.oid],
  );
  return new Set(rows.map((r) => r.attname));
}

/** Every generated statement parses and plans (EXPLAIN, nothing runs). */
async function explainAll(db: Queryable, name: string, statements: Statements): Promise<void> {
  for (const [what, text] of statements.checks) {
    try {
      await db.query(`EXPLAIN ${text}`);
    } catch (error) {
      throw new DefinitionError(`definition ${name}: ${what} does not work: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  }
}
