import { describe, expect, it } from 'vitest';
import { isInWindow, localMinuteOfDay, nextWindowChange, parseWindows, WindowError } from '../../src/health/window.ts';

describe('work windows', () => {
  it('evaluates a window on the wall clock of its time zone', () => {
    const w = parseWindows('01:00-05:00', 'Europe/Paris');
    expect(isInWindow(w, new Date('2026-12-06T00:00:00Z'))).toBe(true); // 01:00 Paris (UTC+1), start included
    expect(isInWindow(w, new Date('2026-12-06T03:59:00Z'))).toBe(true); // 04:59
    expect(isInWindow(w, new Date('2026-12-06T04:00:00Z'))).toBe(false); // 05:00, end excluded
    expect(isInWindow(w, new Date('2026-12-05T23:59:00Z'))).toBe(false); // 00:59
    // Summer time (UTC+2): the same window is an hour earlier in UTC.
    expect(isInWindow(w, new Date('2026-07-01T23:30:00Z'))).toBe(true); // 01:30 Paris
    expect(isInWindow(w, new Date('2026-07-02T03:00:00Z'))).toBe(false); // 05:00 Paris
  });

  it('follows daylight saving changes without an hour too many or too few', () => {
    const w = parseWindows('01:00-05:00', 'Europe/Paris');
    // 29 March 2026: 02:00 jumps to 03:00; the window lasts 3 hours that night.
    let open = 0;
    for (let t = Date.parse('2026-03-28T22:00:00Z'); t < Date.parse('2026-03-29T06:00:00Z'); t += 60_000) {
      if (isInWindow(w, new Date(t))) open++;
    }
    expect(open).toBe(180);
    // 25 October 2026: 03:00 falls back to 02:00; the window lasts 5 hours that night.
    open = 0;
    for (let t = Date.parse('2026-10-24T22:00:00Z'); t < Date.parse('2026-10-25T06:00:00Z'); t += 60_000) {
      if (isInWindow(w, new Date(t))) open++;
    }
    expect(open).toBe(300);
    expect(localMinuteOfDay(new Date('2026-10-25T00:30:00Z'), 'Europe/Paris')).toBe(150); // 02:30 CEST
    expect(localMinuteOfDay(new Date('2026-10-25T01:30:00Z'), 'Europe/Paris')).toBe(150); // 02:30 CET
  });

  it('finds the next opening or closing, and takes several windows', () => {
    const w = parseWindows('22:00-24:00,00:00-06:00', 'UTC');
    expect(isInWindow(w, new Date('2026-12-06T23:59:00Z'))).toBe(true);
    expect(isInWindow(w, new Date('2026-12-07T00:00:00Z'))).toBe(true);
    expect(nextWindowChange(w, new Date('2026-12-06T12:00:30Z'))?.toISOString()).toBe('2026-12-06T22:00:00.000Z');
    expect(nextWindowChange(w, new Date('2026-12-06T23:00:00Z'))?.toISOString()).toBe('2026-12-07T06:00:00.000Z');
    expect(nextWindowChange(parseWindows('00:00-24:00', 'UTC'), new Date())).toBeNull();
  });

  it.each([
    ['05:00-01:00', 'UTC', /ends before it starts/],
    ['01:00-01:00', 'UTC', /ends before it starts/],
    ['1-5', 'UTC', /HH:MM-HH:MM/],
    ['25:00-26:00', 'UTC', /time of day/],
    ['01:00-05:00,', 'UTC', /empty/],
    ['01:00-05:00', 'Mars/Olympus', /IANA/],
  ])('refuses %s in %s', (text, zone, message) => {
    expect(() => parseWindows(text, zone)).toThrow(WindowError);
    expect(() => parseWindows(text, zone)).toThrow(message);
  });
});
