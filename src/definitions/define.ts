/**
 * A migration definition: what a user writes to move the rows of their own table. tranche
 * cuts the eligible rows into exact partitions over (partitionBy, key), streams one update
 * record per row, and applies each batch of records with ONE statement generated from
 * `set` and `guard`. Identifiers are checked against the catalog and quoted when the
 * definition loads; values only ever travel as bind parameters.
 *
 * SQL snippets (`eligible`, `set`, `guard`) name the row's columns as they are (the table
 * is aliased `t`) and may use two placeholders:
 *   {target}         the group's target (the `target` column of `group.targets`), typed;
 *   {carried.NAME}   the value of column NAME when the record was produced (NAME in `carry`).
 *
 * @example
 *   export default defineMigration({
 *     name: 'order-totals',
 *     table: 'orders',
 *     key: 'id',
 *     partitionBy: 'placed_at',
 *     eligible: 'total_cents IS NULL',
 *     set: { total_cents: '(SELECT coalesce(sum(l.cents), 0) FROM order_lines l WHERE l.order_id = t.id)' },
 *   });
 */

export interface MigrationDefinition {
  /** Names runs, partitions, records, metrics: 1-63 of a-z, 0-9, ".", "_", "-". */
  readonly name: string;
  /** The table whose rows move, optionally schema-qualified (`sales.orders`). */
  readonly table: string;
  /** A unique, non-null key column of the table (bigint, integer, uuid or text). */
  readonly key: string;
  /** The column the work is cut and paged on (a timestamp, date or integer); the key breaks ties. */
  readonly partitionBy: string;
  /**
   * Work grouped by a column, each group with its own target read from another table (the
   * reference case: subscriptions by product_key, the target being products.product_version).
   * Without it the whole table is one group and `{target}` is not available.
   */
  readonly group?: {
    readonly column: string;
    readonly targets: { readonly table: string; readonly key: string; readonly target: string };
  };
  /** SQL predicate: the rows that still need the change. */
  readonly eligible: string;
  /** Columns whose values each update record carries (what the apply, or an audit, needs). */
  readonly carry?: readonly string[];
  /** The change: column to SQL expression. Applied to a batch in one UPDATE. */
  readonly set: Readonly<Record<string, string>>;
  /** SQL predicate that makes applying idempotent (default: `eligible`). */
  readonly guard?: string;
  /**
   * How `tranche verify` tells a row's state, per group: `reached` is true for a row the
   * change has reached (the reference: `product_version = {target}`), `beyond` for a row
   * something else moved past it since (`product_version > {target}`). Without it, verify
   * checks only that no row of a partition is still eligible, counts and checksums.
   * `checksum` names the columns the per-partition checksum covers besides the key (default:
   * every `set` column); naming only columns an index holds keeps verify an index-only read
   * (the reference leaves out `updated_at`, which its index does not hold).
   */
  readonly verify?: { readonly reached: string; readonly beyond?: string; readonly checksum?: readonly string[] };
  /**
   * The inverse of the change, for `tranche undo RUN`: `set` moves a row back (it may use
   * `{carried.NAME}`, the value the row had before the run changed it), `guard` says which
   * rows may be moved back (the reference: `product_version = {target}`). Declaring it makes
   * every run of the definition keep an applied log (key, carried and written values of each
   * changed row, written by the same statement as the batch). Without it, undo is refused.
   */
  readonly undo?: { readonly set: Readonly<Record<string, string>>; readonly guard: string };
  /** Cron expression of the nightly run; null for manual runs only; omitted: CRON_SCHEDULE. */
  readonly schedule?: string | null;
  /** Defaults of this definition's runs (flags and the environment still win). */
  readonly defaults?: { readonly partitionSize?: number; readonly maxPartitions?: number };
  /**
   * Refuse to identify when the index the walk needs is missing (default true): without it
   * every page scans the table. Set false to accept slow runs on a small table.
   */
  readonly requireIndex?: boolean;
}

/**
 * Declares a migration definition. Returns it unchanged (frozen): the checks run when
 * tranche loads it against the database, where the catalog is known.
 */
export function defineMigration<T extends MigrationDefinition>(definition: T): Readonly<T> {
  return Object.freeze(definition);
}
