/** Strict parsers for CLI arguments: one clear message for bad input. */
import { InvalidArgumentError } from 'commander';

export function positiveInt(value: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError(`expected a whole number of 1 or more, got "${value}"`);
  }
  return Number(value);
}

export function nonNegativeInt(value: string): number {
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError(`expected a whole number of 0 or more, got "${value}"`);
  }
  return Number(value);
}

/** Parses a run or partition id (positional argument). */
export function parseId(value: string, what: string): number {
  if (!/^\d{1,15}$/.test(value) || Number(value) < 1) {
    throw new InvalidArgumentError(`${what} must be a positive whole number, got "${value}"`);
  }
  return Number(value);
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/**
 * For the scripts (benchmarks, chaos run): a whole-number flag of at least `min`, written
 * with optional `_` or `,` separators; on anything else one line naming the flag, exit 2.
 */
export function wholeFlag(name: string, raw: string | undefined, min: number): number {
  const n = Number(String(raw).replaceAll('_', '').replaceAll(',', ''));
  if (raw === undefined || raw.trim() === '' || !Number.isSafeInteger(n) || n < min) {
    console.error(`--${name} must be a whole number, ${min} or more (got "${raw}")`);
    process.exit(2);
  }
  return n;
}
