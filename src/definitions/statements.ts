/**
 * The statements tranche runs for one definition, generated once when it loads: the same
 * shapes the hand-written SQL of a single migration had (row comparisons that become index
 * bounds, one UPDATE per batch), with the definition's quoted identifiers and types.
 * Table alias `t` everywhere; values are bind parameters, listed in each statement's doc.
 */
import { DefinitionError } from '../errors.ts';
import type { Column } from './resolve.ts';
import { buildProofStatements, type ProofStatements, type UndoesOptions } from './proof-statements.ts';


interface Resolvable {
  name: string;
  definition: {
    eligible: string;
    guard?: string;
    set: Readonly<Record<string, string>>;
    verify?: { reached: string; beyond?: string };
  };
  table: { sql: string };
  key: Column;
  position: Column;
  group: { column: Column; targets: { sql: string }; targetsKey: Column; target: Column } | null;
  carried: readonly Column[];
  hashable?: ReadonlySet<string>;
}

/** How the statements of one direction of an undoable definition differ. */
export interface BuildOptions {
  /** The apply statement also writes the applied log (definitions with `undo`, and their inverse). */
  logApplied: boolean;
  /** Runs of this direction may undo runs of the other (pages read through the applied log). */
  undoes: UndoesOptions | null;
}

export interface Statements extends ProofStatements {
  /** $1 group filter text[] (NULL: all), $2 runs whose groups to skip bigint[], $3 migration name → group_key, target. */
  changedGroups: string;
  /** $1 group keys text[] → the ones that exist (k). */
  existingGroups: string;
  /** For tranche_boundaries: $1 group, $2 target → (position::text, key::text) of the eligible rows, in order. */
  boundaryRows: string;
  /** The same, last row only. */
  boundaryLast: string;
  /**
   * A keyset page: $1 group, $2 target, $3/$4 cursor (position, key), $5/$6 the partition's
   * inclusive upper bound, $7 page size → k, p and c0.. (carried values), as text.
   * `firstPage` starts at the cursor inclusive (the lower bound), `nextPage` strictly after.
   */
  firstPage: string;
  nextPage: string;
  /**
   * One batch: $1 keys text[], $2 targets text[], $3 run ids bigint[], $4 partition ids
   * bigint[], $5.. carried values text[] per carried column → run_id, partition_id, n
   * (rows this batch changed, per partition); adds n to each partition's rows_applied.
   */
  apply: string;
  /** $1 keys text[] → the ones whose row no longer exists (k). */
  missing: string;
  /** $1 run id → remaining: does any row of the run's partitions still wait? */
  remaining: string;
  /** Index columns the walk needs, in order. */
  indexColumns: string[];
  /** Statements that must parse when the definition loads, with what they come from. */
  checks: [string, string][];
}

/** Replaces {target} and {carried.NAME} in a definition's SQL snippet. */
export function render(snippet: string, target: string, carried: ((name: string) => string) | null, what: string, definition: string): string {
  return `(${snippet.replace(/\{([^}]*)\}/g, (_, inner: string) => {
    if (inner === 'target') return target;
    if (inner.startsWith('carried.') && carried) return carried(inner.slice('carried.'.length));
    throw new DefinitionError(`definition ${definition}: {${inner}} cannot be used in ${what}`);
  })})`;
}

export function buildStatements(d: Resolvable, options: BuildOptions = { logApplied: false, undoes: null }): Statements {
  const { key: k, position: p, group, carried, table } = d;
  const tt = group ? group.target.type : 'text';
  const eligible = (target: string) => render(d.definition.eligible, target, null, 'eligible', d.name);
  const groupMatch = (value: string) => (group ? `t.${group.column.sql} = ${value}::${group.column.type}` : `${value}::text = ''`);
  const pageColumns = [`t.${k.sql}::text AS k`, `t.${p.sql}::text AS p`, ...carried.map((c, i) => `t.${c.sql}::text AS c${i}`)].join(', ');
  const page = (op: string) =>
    `SELECT ${pageColumns}
FROM ${table.sql} t
WHERE ${groupMatch('$1')}${group ? '' : ' AND $2::text IS NULL'}
  AND (t.${p.sql}, t.${k.sql}) ${op} ($3::${p.type}, $4::${k.type})
  AND (t.${p.sql}, t.${k.sql}) <= ($5::${p.type}, $6::${k.type})
  AND ${eligible(`$2::${tt}`)}
ORDER BY t.${p.sql}, t.${k.sql}
LIMIT $7`;
  const walk = (order: string, limit: string) =>
    // Typed columns: the cursor steps over most rows with MOVE, and only the rows it FETCHes
    // are turned into text (by the assignment to tranche_boundaries' text variables); a ::text
    // here formatted every row of the group and made the walk 3.3x a count (bench/identify.ts).
    `SELECT t.${p.sql}, t.${k.sql} FROM ${table.sql} t WHERE ${groupMatch('$1')} AND ${eligible(`$2::${tt}`)} ORDER BY t.${p.sql}${order}, t.${k.sql}${order}${limit}`;

  const changedGroups = group
    ? `SELECT g.${group.targetsKey.sql}::text AS group_key, g.${group.target.sql}::text AS target
FROM ${group.targets.sql} g
WHERE ($1::text[] IS NULL OR g.${group.targetsKey.sql}::text = ANY ($1::text[]))
  AND NOT EXISTS (SELECT 1 FROM group_progress gp
                  WHERE gp.migration = $3::text AND gp.group_key = g.${group.targetsKey.sql}::text
                    AND gp.target IS NOT DISTINCT FROM g.${group.target.sql}::text)
  AND NOT EXISTS (SELECT 1 FROM run_groups rg
                  WHERE rg.run_id = ANY (coalesce($2::bigint[], '{}')) AND rg.group_key = g.${group.targetsKey.sql}::text)
  AND EXISTS (SELECT 1 FROM ${table.sql} t WHERE t.${group.column.sql} = g.${group.targetsKey.sql} AND ${eligible(`g.${group.target.sql}`)})
ORDER BY 1`
    : `SELECT ''::text AS group_key, NULL::text AS target
WHERE $1::text[] IS NULL AND $3::text IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM run_groups rg WHERE rg.run_id = ANY (coalesce($2::bigint[], '{}')))
  AND EXISTS (SELECT 1 FROM ${table.sql} t WHERE ${eligible('NULL')})`;

  const carriedIndex = (name: string) => carried.findIndex((c) => c.name === name);
  const inRecord = (snippet: string, what: string) =>
    render(snippet, 'r.tranche_target', (name) => `r.tranche_c${carriedIndex(name)}`, what, d.name);
  const sets = Object.entries(d.definition.set)
    .map(([column, expression]) => `${`"${column.replaceAll('"', '""')}"`} = ${inRecord(expression, `set.${column}`)}`)
    .join(', ');
  const guard = inRecord(d.definition.guard ?? d.definition.eligible, 'guard');
  const carriedParams = carried.map((_, i) => `, $${5 + i}::text[]`).join('');
  const carriedNames = carried.map((_, i) => `, c${i}`).join('');
  const carriedCasts = carried.map((c, i) => `, r.c${i}::${c.type} AS tranche_c${i}`).join('');
  const apply = `WITH input AS (
  SELECT r.k::${k.type} AS tranche_key, r.tt::${tt} AS tranche_target, r.run AS tranche_run, r.part AS tranche_partition${carriedCasts}
  FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]${carriedParams}) AS r(k, tt, run, part${carriedNames})
),
changed AS (
  UPDATE ${table.sql} t SET ${sets}
  FROM input r
  WHERE t.${k.sql} = r.tranche_key AND ${guard}${options.logApplied ? `
    -- A late or replayed record of a run that has been undone changes nothing.
    AND NOT EXISTS (SELECT 1 FROM migration_runs u WHERE u.undo_of = r.tranche_run)` : ''}
  RETURNING r.tranche_run, r.tranche_partition${options.logApplied ? `,
    t.${k.sql}::text AS tranche_k, ARRAY[${carried.map((_, i) => `r.tranche_c${i}::text`).join(', ')}]::text[] AS tranche_carried,
    ARRAY[${Object.keys(d.definition.set).map((c) => `t."${c.replaceAll('"', '""')}"::text`).join(', ')}]::text[] AS tranche_written` : ''}
),${options.logApplied ? `
logged AS (
  INSERT INTO applied_batches (run_id, partition_id, keys, carried, written)
  -- One aggregation pass feeds every row to the three aggregates in the same order, so the
  -- arrays stay aligned without sorting them.
  SELECT c.tranche_run, c.tranche_partition, array_agg(c.tranche_k),
         ${carried.length > 0 ? 'array_agg(c.tranche_carried)' : 'NULL'}, array_agg(c.tranche_written)
  FROM changed c GROUP BY 1, 2
),` : ''}
counts AS (
  SELECT c.tranche_run AS run_id, c.tranche_partition AS partition_id, count(*)::bigint AS n
  FROM changed c GROUP BY 1, 2
),
locked AS (
  SELECT pt.id FROM partitions pt WHERE pt.id IN (SELECT partition_id FROM counts) ORDER BY pt.id FOR NO KEY UPDATE
),
counted AS (
  UPDATE partitions pt SET rows_applied = pt.rows_applied + c.n
  FROM (SELECT partition_id, sum(n)::bigint AS n FROM counts GROUP BY partition_id) c, locked l
  WHERE pt.id = c.partition_id AND l.id = pt.id
)
SELECT run_id, partition_id, n FROM counts`;

  const remaining = `SELECT EXISTS (
  SELECT 1 FROM partitions pt
  WHERE pt.run_id = $1 AND pt.rows_applied < pt.row_count
    AND EXISTS (
      SELECT 1 FROM ${table.sql} t
      WHERE ${group ? `t.${group.column.sql} = pt.group_key::${group.column.type}` : 'true'}
        AND (t.${p.sql}, t.${k.sql}) >= (pt.lower_pos::${p.type}, pt.lower_key::${k.type})
        AND (t.${p.sql}, t.${k.sql}) <= (pt.upper_pos::${p.type}, pt.upper_key::${k.type})
        AND ${eligible(`pt.target::${tt}`)}
    )
) AS remaining`;

  const statements: Omit<Statements, 'checks'> = {
    ...buildProofStatements(d, tt, options.undoes),
    changedGroups,
    existingGroups: group
      ? `SELECT g.${group.targetsKey.sql}::text AS k FROM ${group.targets.sql} g WHERE g.${group.targetsKey.sql}::text = ANY ($1::text[])`
      : `SELECT NULL::text AS k WHERE $1::text[] IS NULL`,
    boundaryRows: walk('', ''),
    boundaryLast: walk(' DESC', ' LIMIT 1'),
    firstPage: page('>='),
    nextPage: page('>'),
    apply,
    missing: `SELECT r.k FROM unnest($1::text[]) AS r(k) WHERE NOT EXISTS (SELECT 1 FROM ${table.sql} t WHERE t.${k.sql} = r.k::${k.type})`,
    remaining,
    indexColumns: [...(group ? [group.column.name] : []), p.name, k.name],
  };
  // Parameters of the checks are typed by their casts; EXPLAIN plans them without running.
  const withNulls = (text: string) => text.replace(/\$(\d+)/g, 'NULL');
  return {
    ...statements,
    checks: [
      ['eligible', withNulls(statements.nextPage)],
      ['the group query', withNulls(statements.changedGroups)],
      ['set or guard', withNulls(statements.apply)],
      ['the completion check', withNulls(statements.remaining)],
      ['verify', withNulls(statements.verify)],
      ['the dry run', withNulls(statements.effectSample)],
      ['the dry run counts', withNulls(statements.effectCounts)],
      ...(statements.undoing
        ? ([
            ['the undo pages', withNulls(statements.undoing.nextPage)],
            ['the undo plan', withNulls(statements.undoing.plan)],
            ['the undo completion check', withNulls(statements.undoing.remaining)],
            ['the undo verification', withNulls(statements.undoing.verify)],
          ] as [string, string][])
        : []),
    ],
  };
}
