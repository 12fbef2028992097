/**
 * The size of the next keyset page. Fixed (PAGE_SIZE), or adaptive: aiming at a target time
 * (pt-online-schema-change's `--chunk-time`), it grows or shrinks the page between a floor
 * and a ceiling so that both the worker's page and the apply of a page's worth of rows stay
 * near the target whatever the row width or the load, and row locks are held briefly.
 *
 * The adaptive rule: from each observed page, rows per ms of the page = rows / ms; the ideal
 * size is the smaller of that rate and the migration's apply rate (below), times the target.
 * The next size is the ideal smoothed (half the old size, half the ideal) and moved by at
 * most x2 up or /2 down per page, then clamped to [min, max]. A page smaller than the size
 * asked for (the end of a partition) says nothing about speed and is ignored.
 *
 * The apply rate ({@link applyRates}): the applier reports each apply statement (records and
 * ms) of a migration; the rate is the smoothed rows per ms of those statements. It is
 * observed locally, per process: the workers of an instance learn from the applies of the
 * same instance, not of others. That is enough because every instance's consumer applies a
 * share (its Kafka partitions) of every migration's records, so each sees the same rate.
 * A rate not refreshed for a while (this instance applies none of that migration any more)
 * is forgotten, and pages follow their own time only. Records are applied in the consumer's
 * batches, not by page, and after the lag of the topic: when the consumer is behind, a batch
 * holds several pages, so the applier splits it by the same rate ({@link applyChunk}).
 *
 * The resume guarantee does not depend on the size: the offset saved after a page is its last
 * row, so a crash produces at most that one page again, whatever size it had.
 *
 * @example
 *   const rates = applyRates();
 *   const pages = adaptivePageSize({ initial: 2500, targetMs: 500, min: 100, max: 20_000, applyRowsPerMs: () => rates.rowsPerMs('m') });
 *   const size = pages.next();          // 2500
 *   pages.observe(size, size, 1000);    // took 1 s: twice the target
 *   pages.next();                       // 1875 (halfway to 1250)
 *   rates.observe('m', 500, 1000);      // applying 500 rows took 1 s: 250 rows fit in 500 ms
 *   pages.observe(1875, 1875, 100);     // a fast page, but the apply allows 250
 *   pages.next();                       // 1063 (halfway to 250)
 */

export interface PageSizer {
  /** Rows to ask for in the next page. */
  next(): number;
  /** Reports a page: the rows asked for, the rows it had, and how long it took (ms). */
  observe(asked: number, rows: number, ms: number): void;
}

/** Always the same size. */
export function fixedPageSize(size: number): PageSizer {
  return { next: () => size, observe: () => {} };
}

export interface AdaptiveOptions {
  /** First size (PAGE_SIZE), clamped to [min, max]. */
  initial: number;
  /** Target time of one page, and of applying one page's worth of rows, ms. */
  targetMs: number;
  /** Smallest page. */
  min: number;
  /** Largest page. */
  max: number;
  /** Rows per ms the apply of this migration's records takes in this process, or null when unknown. */
  applyRowsPerMs?: () => number | null;
}

/** Grows or shrinks the page toward `targetMs` per page. */
export function adaptivePageSize(options: AdaptiveOptions): PageSizer {
  const { targetMs, min, max, applyRowsPerMs } = options;
  if (!(targetMs > 0) || !(min >= 1) || !(max >= min)) {
    throw new RangeError(`adaptive pages need targetMs > 0 and 1 <= min <= max (got ${targetMs}, ${min}, ${max})`);
  }
  const clamp = (n: number) => Math.min(max, Math.max(min, Math.round(n)));
  let size = clamp(options.initial);
  return {
    next: () => size,
    observe(asked, rows, ms) {
      if (rows < asked || rows <= 0) return;
      const apply = applyRowsPerMs?.() ?? null;
      const ideal = Math.min((rows * targetMs) / Math.max(ms, 1), apply === null ? Infinity : apply * targetMs);
      const smoothed = (size + ideal) / 2;
      size = clamp(Math.min(size * 2, Math.max(size / 2, smoothed)));
    },
  };
}

export interface ApplyRates {
  /** Reports one apply statement of `migration`: the records it applied and how long it took (ms). */
  observe(migration: string, rows: number, ms: number): void;
  /** Smoothed rows per ms of the migration's apply statements, or null (none observed lately). */
  rowsPerMs(migration: string): number | null;
}

export interface ApplyRateOptions {
  /** Weight of each new statement in the running averages, in (0, 1] (0.5). */
  weight?: number;
  /** A rate not observed for this long is forgotten, ms (60 s). */
  forgetAfterMs?: number;
  /** Clock, ms. */
  now?: () => number;
}

/**
 * The apply rate of each migration in this process. The rows and the ms of the statements
 * are averaged separately (exponentially), so a large statement weighs more than a small one
 * and the fixed cost of a statement counts once per statement, as it does when applying.
 */
export function applyRates(options: ApplyRateOptions = {}): ApplyRates {
  const { weight = 0.5, forgetAfterMs = 60_000, now = () => performance.now() } = options;
  if (!(weight > 0 && weight <= 1)) throw new RangeError(`weight must be in (0, 1] (got ${weight})`);
  const rates = new Map<string, { rows: number; ms: number; at: number }>();
  return {
    observe(migration, rows, ms) {
      if (!(rows > 0) || !(ms >= 0)) return;
      const at = now();
      const rate = rates.get(migration);
      if (rate === undefined || at - rate.at > forgetAfterMs) {
        rates.set(migration, { rows, ms, at });
        return;
      }
      rate.rows += (rows - rate.rows) * weight;
      rate.ms += (ms - rate.ms) * weight;
      rate.at = at;
    },
    rowsPerMs(migration) {
      const rate = rates.get(migration);
      if (rate === undefined || now() - rate.at > forgetAfterMs) return null;
      return rate.rows / Math.max(rate.ms, 0.01);
    },
  };
}

/** Most records of one apply statement: 5,000, or with adaptive pages what applies in about the target time. */
export const APPLY_CHUNK_MAX = 5000;

/**
 * The records one apply statement takes with adaptive pages: what the measured apply rate
 * applies in the target time, between the page floor and APPLY_CHUNK_MAX; the maximum while
 * no rate is known yet.
 *
 * @example
 *   applyChunk(2, { pageTargetMs: 500, pageSizeMin: 100 });    // 1000
 *   applyChunk(null, { pageTargetMs: 500, pageSizeMin: 100 }); // 5000
 */
export function applyChunk(rowsPerMs: number | null, settings: { pageTargetMs: number; pageSizeMin: number }): number {
  if (rowsPerMs === null) return APPLY_CHUNK_MAX;
  return Math.min(APPLY_CHUNK_MAX, Math.max(settings.pageSizeMin, Math.round(rowsPerMs * settings.pageTargetMs)));
}
