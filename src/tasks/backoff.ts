/**
 * Exponential backoff with jitter: attempt 1 waits about `baseMs`, each further attempt
 * doubles it, capped at `maxMs`; the wait is drawn from [50%, 100%] of that ("equal jitter")
 * so that failing partitions of many instances do not retry in lockstep.
 *
 * @example
 *   retryDelayMs(3, 1000, 60000, () => 1); // 4000
 */
export function retryDelayMs(attempt: number, baseMs: number, maxMs = 5 * 60_000, random: () => number = Math.random): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + (exp / 2) * random());
}
