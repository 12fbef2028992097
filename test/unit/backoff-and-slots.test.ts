import { describe, expect, it } from 'vitest';
import { previousSlot, slotKey, slotTimeOf } from '../../src/cron/slots.ts';
import { retryDelayMs } from '../../src/tasks/backoff.ts';

describe('retryDelayMs', () => {
  it('doubles per attempt between half and all of the exponential delay', () => {
    expect(retryDelayMs(1, 1000, 60_000, () => 1)).toBe(1000);
    expect(retryDelayMs(3, 1000, 60_000, () => 1)).toBe(4000);
    expect(retryDelayMs(3, 1000, 60_000, () => 0)).toBe(2000);
  });
  it('is capped', () => {
    expect(retryDelayMs(30, 1000, 60_000, () => 1)).toBe(60_000);
  });
});

describe('cron slots', () => {
  it('names a slot by its scheduled second, whatever the fire jitter', () => {
    const a = slotKey('m', new Date('2026-01-01T02:00:00.004Z'));
    const b = slotKey('m', new Date('2026-01-01T01:59:59.700Z'));
    expect(a).toBe('m@2026-01-01T02:00:00Z');
    expect(b).toBe(a);
    expect(slotTimeOf(a)?.toISOString()).toBe('2026-01-01T02:00:00.000Z');
  });

  it('finds the latest scheduled instant, in the schedule time zone', () => {
    const now = new Date('2026-06-10T12:34:56.500Z');
    expect(previousSlot('0 2 * * *', 'UTC', now).toISOString()).toBe('2026-06-10T02:00:00.000Z');
    // 02:00 in Berlin (UTC+2 in June) is 00:00 UTC
    expect(previousSlot('0 2 * * *', 'Europe/Berlin', now).toISOString()).toBe('2026-06-10T00:00:00.000Z');
    expect(previousSlot('*/10 * * * * *', 'UTC', now).toISOString()).toBe('2026-06-10T12:34:50.000Z');
  });
});
