import { describe, expect, it } from 'vitest';
import { adaptivePageSize, APPLY_CHUNK_MAX, applyChunk, applyRates, fixedPageSize } from '../../src/worker/page-size.ts';

describe('page size', () => {
  it('stays fixed when asked to', () => {
    const pages = fixedPageSize(2500);
    pages.observe(2500, 2500, 10_000);
    expect(pages.next()).toBe(2500);
  });

  it('shrinks toward the target when pages are slow and grows back when they are fast again', () => {
    const pages = adaptivePageSize({ initial: 2500, targetMs: 500, min: 100, max: 20_000 });
    // Slow: 10 ms per row, so 50 rows would take 500 ms; the floor is 100.
    const sizes: number[] = [];
    for (let i = 0; i < 12; i++) {
      const n = pages.next();
      pages.observe(n, n, n * 10);
      sizes.push(pages.next());
    }
    expect(sizes[0]).toBe(1275); // halfway to the 50 rows the target allows: (2500 + 50) / 2
    for (let i = 1; i < sizes.length; i++) expect(sizes[i]!).toBeLessThanOrEqual(sizes[i - 1]!);
    expect(pages.next()).toBe(100);
    // Fast again: 0.05 ms per row, 10,000 rows per 500 ms.
    for (let i = 0; i < 20; i++) {
      const n = pages.next();
      pages.observe(n, n, n * 0.05);
    }
    expect(pages.next()).toBeGreaterThan(9000);
    expect(pages.next()).toBeLessThanOrEqual(10_000);
    // And never past the ceiling.
    for (let i = 0; i < 20; i++) pages.observe(pages.next(), pages.next(), 1);
    expect(pages.next()).toBe(20_000);
  });

  it('ignores the short last page of a partition, and clamps its start', () => {
    const pages = adaptivePageSize({ initial: 50, targetMs: 500, min: 100, max: 1000 });
    expect(pages.next()).toBe(100);
    pages.observe(100, 3, 5000);
    expect(pages.next()).toBe(100);
    expect(() => adaptivePageSize({ initial: 1, targetMs: 0, min: 1, max: 2 })).toThrow(RangeError);
  });

  it('bounds the page by what the apply allows, and grows back when the apply is fast again', () => {
    const rates = applyRates();
    const pages = adaptivePageSize({ initial: 400, targetMs: 100, min: 20, max: 400, applyRowsPerMs: () => rates.rowsPerMs('m') });
    // Pages themselves are fast (1,000 rows per 100 ms) and nothing was applied yet: the ceiling.
    pages.observe(400, 400, 40);
    expect(pages.next()).toBe(400);
    // Pages of 0.1 ms per row each applied at `msPerRow`; the sizes after each.
    const walk = (count: number, msPerRow: number) =>
      Array.from({ length: count }, () => {
        const n = pages.next();
        rates.observe('m', n, n * msPerRow);
        pages.observe(n, n, n * 0.1);
        return pages.next();
      });
    // Slow applies: 5 ms per row (a trigger that sleeps), so 20 rows fit in 100 ms.
    const sizes = walk(10, 5);
    expect(sizes[0]).toBe(210); // halfway to 20: (400 + 20) / 2
    for (let i = 1; i < sizes.length; i++) expect(sizes[i]!).toBeLessThanOrEqual(sizes[i - 1]!);
    expect(pages.next()).toBeLessThanOrEqual(22);
    // Fast applies again (0.05 ms per row): the running averages catch up, and pages grow back
    // by at most x2 per page to the ceiling.
    const growing = walk(12, 0.05);
    for (let i = 1; i < growing.length; i++) {
      expect(growing[i]!).toBeGreaterThanOrEqual(growing[i - 1]!);
      expect(growing[i]!).toBeLessThanOrEqual(growing[i - 1]! * 2);
    }
    expect(pages.next()).toBe(400);
    // A slow page still shrinks the page when the apply is fast: the smaller bound wins.
    pages.observe(400, 400, 1000);
    expect(pages.next()).toBe(220); // halfway to the 40 rows a page of 10 rows/ms allows
  });

  it('averages apply statements by rows and time, per migration, and forgets a rate not refreshed', () => {
    let clock = 0;
    const rates = applyRates({ weight: 0.5, forgetAfterMs: 1000, now: () => clock });
    expect(rates.rowsPerMs('m')).toBeNull();
    rates.observe('m', 100, 100); // 1 row per ms
    expect(rates.rowsPerMs('m')).toBe(1);
    rates.observe('m', 300, 100); // averages: 200 rows, 100 ms
    expect(rates.rowsPerMs('m')).toBe(2);
    rates.observe('m', 0, 50); // nothing applied (dead letters only): ignored
    expect(rates.rowsPerMs('m')).toBe(2);
    expect(rates.rowsPerMs('other')).toBeNull();
    rates.observe('other', 10, 0); // a statement faster than the clock
    expect(rates.rowsPerMs('other')).toBe(1000);
    clock = 1001;
    expect(rates.rowsPerMs('m')).toBeNull();
    rates.observe('m', 50, 100); // after a gap, it starts again from the new statement
    expect(rates.rowsPerMs('m')).toBe(0.5);
    // Without an apply rate, pages follow their own time only.
    const pages = adaptivePageSize({ initial: 100, targetMs: 100, min: 1, max: 1000, applyRowsPerMs: () => rates.rowsPerMs('none') });
    pages.observe(100, 100, 50);
    expect(pages.next()).toBe(150);
    expect(() => applyRates({ weight: 0 })).toThrow(RangeError);
  });

  it('sizes apply statements to the target time, between the page floor and the maximum', () => {
    const settings = { pageTargetMs: 500, pageSizeMin: 100 };
    expect(applyChunk(null, settings)).toBe(APPLY_CHUNK_MAX);
    expect(applyChunk(2, settings)).toBe(1000);
    expect(applyChunk(0.01, settings)).toBe(100);
    expect(applyChunk(1000, settings)).toBe(APPLY_CHUNK_MAX);
  });
});
