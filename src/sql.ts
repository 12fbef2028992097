/**
 * Loads the statements in `sql/` by name, once, and caches them.
 *
 * @example
 *   const text = loadSql('claim-due-tasks');
 *   await pool.query(text, [instanceId, 4, 10000]);
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const SQL_DIR = fileURLToPath(new URL('../sql/', import.meta.url));
const cache = new Map<string, string>();

export function loadSql(name: string): string {
  let text = cache.get(name);
  if (text === undefined) {
    if (!/^[a-z0-9-]+$/.test(name)) throw new Error(`bad SQL file name: ${name}`);
    text = readFileSync(`${SQL_DIR}${name}.sql`, 'utf8');
    cache.set(name, text);
  }
  return text;
}
