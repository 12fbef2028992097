/**
 * Loads the migration definitions named by TRANCHE_DEFINITIONS (files or glob patterns,
 * comma-separated), checks each against the catalog, and keeps them by name.
 *
 * @example
 *   const definitions = await loadDefinitions(db.pool, ['./migrations/tranche/*.ts']);
 *   const orders = definitions.require('order-totals');
 */
import { glob } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Queryable } from '../db.ts';
import { DefinitionError, UserError } from '../errors.ts';
import type { MigrationDefinition } from './define.ts';
import { type ResolvedDefinition, resolveDefinition } from './resolve.ts';

export interface Definitions {
  /** The loaded definitions, by name order (without the inverse NAME.undo of those with `undo`: get() finds those). */
  readonly all: readonly ResolvedDefinition[];
  get(name: string): ResolvedDefinition | undefined;
  /** The definition, or a UserError naming the loaded ones. */
  require(name: string): ResolvedDefinition;
  /** The only definition when exactly one is loaded (commands may then omit --migration). */
  only(): ResolvedDefinition;
}

const looksLikeDefinition = (value: unknown): value is MigrationDefinition =>
  typeof value === 'object' && value !== null && 'name' in value && 'table' in value && 'set' in value;

/** The files a list of paths and glob patterns names, relative to `cwd`. */
async function definitionFiles(patterns: readonly string[], cwd: string): Promise<string[]> {
  const files = new Set<string>();
  for (const pattern of patterns) {
    const before = files.size;
    if (/[*?[{]/.test(pattern)) {
      for await (const file of glob(pattern, { cwd })) files.add(resolve(cwd, file));
    } else {
      files.add(isAbsolute(pattern) ? pattern : resolve(cwd, pattern));
    }
    if (files.size === before) throw new DefinitionError(`TRANCHE_DEFINITIONS: ${JSON.stringify(pattern)} matches no file`);
  }
  return [...files].sort();
}

/** Imports the definition modules; every exported definition counts (default or named). */
export async function importDefinitions(patterns: readonly string[], cwd = process.cwd()): Promise<MigrationDefinition[]> {
  const found: MigrationDefinition[] = [];
  for (const file of await definitionFiles(patterns, cwd)) {
    let module: Record<string, unknown>;
    try {
      module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    } catch (error) {
      const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
      throw new DefinitionError(`cannot load definitions from ${file}: ${reason}`, { cause: error });
    }
    const exported = Object.values(module).filter(looksLikeDefinition);
    if (exported.length === 0) throw new DefinitionError(`${file} exports no definition (export default defineMigration({...}))`);
    found.push(...new Set(exported));
  }
  return found;
}

export function definitionsOf(resolved: readonly ResolvedDefinition[]): Definitions {
  const byName = new Map<string, ResolvedDefinition>();
  for (const d of resolved) {
    if (byName.has(d.name)) throw new DefinitionError(`two definitions are named ${d.name}`);
    byName.set(d.name, d);
  }
  const all = [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  // The inverse of a definition with `undo` is found by name (its runs' records name it) but
  // is not listed: it has no schedule and no run of its own, only undo runs.
  for (const d of all) {
    if (d.inverse && !byName.has(d.inverse.name)) byName.set(d.inverse.name, d.inverse);
  }
  const names = () => (all.length === 0 ? 'none is loaded (set TRANCHE_DEFINITIONS; `tranche init NAME` writes a starter)' : `loaded: ${all.map((d) => d.name).join(', ')}`);
  return {
    all,
    get: (name) => byName.get(name),
    require(name) {
      const found = byName.get(name);
      if (!found) throw new UserError(`unknown migration ${JSON.stringify(name)}; ${names()}`);
      return found;
    },
    only() {
      const [first, ...rest] = all;
      if (!first || rest.length > 0) throw new UserError(`name the migration with --migration; ${names()}`);
      return first;
    },
  };
}

/** Imports and resolves every definition; the first problem is one DefinitionError. */
export async function loadDefinitions(db: Queryable, patterns: readonly string[], cwd?: string): Promise<Definitions> {
  const imported = patterns.length === 0 ? [] : await importDefinitions(patterns, cwd);
  const resolved: ResolvedDefinition[] = [];
  for (const definition of imported) resolved.push(await resolveDefinition(db, definition));
  return definitionsOf(resolved);
}
