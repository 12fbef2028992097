import { describe, expect, it } from 'vitest';
import { adaptivePageSize, fixedPageSize } from '../../src/worker/page-size.ts';

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
});
