import { describe, expect, it } from 'vitest';
import { formatDuration, progressBar, rateAndEta } from '../../src/cli/render.ts';

describe('terminal rendering', () => {
  it('draws progress bars of a fixed width', () => {
    expect(progressBar(0, 100, 10)).toBe('··········');
    expect(progressBar(50, 100, 10)).toBe('█████·····');
    expect(progressBar(55, 100, 10)).toBe('█████▌····');
    expect(progressBar(100, 100, 10)).toBe('██████████');
    expect(progressBar(5, 0, 4)).toBe('████');
    expect(progressBar(500, 100, 4)).toBe('████');
  });

  it('formats durations', () => {
    expect(formatDuration(42)).toBe('42s');
    expect(formatDuration(125)).toBe('2m05s');
    expect(formatDuration(7320)).toBe('2h02m');
    expect(formatDuration(Number.POSITIVE_INFINITY)).toBe('—');
  });

  it('computes rate and ETA', () => {
    expect(rateAndEta(500, 1000, 10)).toEqual({ rate: 50, eta: 10 });
    expect(rateAndEta(1000, 1000, 10).eta).toBe(0);
    expect(rateAndEta(0, 1000, 10).eta).toBe(Number.POSITIVE_INFINITY);
  });
});
