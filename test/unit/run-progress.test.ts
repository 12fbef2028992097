import { describe, expect, it } from 'vitest';
import { rateAndEta } from '../../src/runs/run-progress.ts';

describe('rate and ETA from progress samples', () => {
  it('takes the rate over the last minute of samples and the ETA from what remains', () => {
    const samples = [
      { t: 0, applied: 0, lag: 0 },
      { t: 60_000, applied: 60_000, lag: 0 }, // 1,000 rows/s in the first minute: outside the window at the end
      { t: 90_000, applied: 66_000, lag: 5 },
      { t: 120_000, applied: 72_000, lag: 5 }, // 200 rows/s over the last minute
    ];
    expect(rateAndEta(samples, 10_000)).toEqual({ rowsPerSecond: 200, etaSeconds: 50 });
  });

  it('knows no rate from fewer than two samples a second apart, and no ETA without progress', () => {
    expect(rateAndEta([], 100)).toEqual({ rowsPerSecond: null, etaSeconds: null });
    expect(rateAndEta([{ t: 0, applied: 5, lag: null }, { t: 500, applied: 9, lag: null }], 100)).toEqual({ rowsPerSecond: null, etaSeconds: null });
    expect(rateAndEta([{ t: 0, applied: 5, lag: null }, { t: 5000, applied: 5, lag: null }], 100)).toEqual({ rowsPerSecond: 0, etaSeconds: null });
    expect(rateAndEta([{ t: 0, applied: 5, lag: null }, { t: 5000, applied: 100, lag: null }], 0)).toEqual({ rowsPerSecond: 19, etaSeconds: 0 });
  });
});
