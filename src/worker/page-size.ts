/**
 * The size of the next keyset page. Fixed (PAGE_SIZE), or adaptive: aiming at a target page
 * time (pt-online-schema-change's `--chunk-time`), it grows or shrinks the page between a
 * floor and a ceiling from the time the last pages took, so that each page stays near the
 * target whatever the row width or the load.
 *
 * The adaptive rule: from each observed page, rows per second = rows / seconds; the next
 * size is that rate times the target, smoothed (half the old size, half the new) and moved by
 * at most x2 up or /2 down per page, then clamped to [min, max]. A page smaller than the size
 * asked for (the end of a partition) says nothing about speed and is ignored.
 *
 * The resume guarantee does not depend on the size: the offset saved after a page is its last
 * row, so a crash produces at most that one page again, whatever size it had.
 *
 * @example
 *   const pages = adaptivePageSize({ initial: 2500, targetMs: 500, min: 100, max: 20_000 });
 *   const size = pages.next();          // 2500
 *   pages.observe(size, 1000);          // took 1 s: twice the target
 *   pages.next();                       // 1875 (halfway to 1250)
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
  /** Target time of one page, ms. */
  targetMs: number;
  /** Smallest page. */
  min: number;
  /** Largest page. */
  max: number;
}

/** Grows or shrinks the page toward `targetMs` per page. */
export function adaptivePageSize(options: AdaptiveOptions): PageSizer {
  const { targetMs, min, max } = options;
  if (!(targetMs > 0) || !(min >= 1) || !(max >= min)) {
    throw new RangeError(`adaptive pages need targetMs > 0 and 1 <= min <= max (got ${targetMs}, ${min}, ${max})`);
  }
  const clamp = (n: number) => Math.min(max, Math.max(min, Math.round(n)));
  let size = clamp(options.initial);
  return {
    next: () => size,
    observe(asked, rows, ms) {
      if (rows < asked || rows <= 0) return;
      const ideal = (rows * targetMs) / Math.max(ms, 1);
      const smoothed = (size + ideal) / 2;
      size = clamp(Math.min(size * 2, Math.max(size / 2, smoothed)));
    },
  };
}
