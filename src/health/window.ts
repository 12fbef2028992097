/**
 * Work windows ("night windows"): the times of day, on the wall clock of one time zone, when a
 * run may produce pages. Pure: the caller passes the instant to evaluate (the database clock,
 * so that every instance agrees).
 *
 * A window is `HH:MM-HH:MM`, start included, end excluded, the end after the start (`24:00`
 * is midnight at the end of the day); several are separated by commas, so a window across
 * midnight is `22:00-24:00,00:00-06:00`. Windows follow the wall clock through daylight saving
 * changes: when clocks jump forward over part of a window, that night's window is shorter by
 * the hour skipped; when they fall back, the repeated hour is inside or outside it both times.
 *
 * @example
 *   const w = parseWindows('01:00-05:00', 'Europe/Paris');
 *   isInWindow(w, new Date('2026-12-06T01:30:00Z'));   // true: 02:30 in Paris
 *   nextWindowChange(w, new Date('2026-12-06T12:00:00Z')); // 2026-12-07T00:00:00.000Z (opens)
 */

export interface WindowSpan {
  /** Minutes after local midnight, included. */
  readonly startMinute: number;
  /** Minutes after local midnight, excluded (1440 = end of day). */
  readonly endMinute: number;
}

export interface WorkWindows {
  readonly spans: readonly WindowSpan[];
  readonly timezone: string;
  /** The text it was parsed from, for messages. */
  readonly text: string;
}

/** Thrown with a one-line reason for a window or time zone that cannot be used. */
export class WindowError extends Error {
  override name = 'WindowError';
}

const SPAN = /^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$/;

function minute(hours: string, minutes: string, text: string): number {
  const h = Number(hours);
  const m = Number(minutes);
  if (h > 24 || m > 59 || (h === 24 && m !== 0)) throw new WindowError(`"${text}" is not a time of day from 00:00 to 24:00`);
  return h * 60 + m;
}

/** Throws a WindowError unless `zone` is an IANA time zone this runtime knows. */
export function assertKnownTimezone(zone: string): void {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
  } catch {
    throw new WindowError(`"${zone}" is not an IANA time zone`);
  }
}

/** Parses `HH:MM-HH:MM[,HH:MM-HH:MM…]` in `timezone`; throws a WindowError naming the problem. */
export function parseWindows(text: string, timezone: string): WorkWindows {
  assertKnownTimezone(timezone);
  const parts = text.split(',').map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => p === '')) throw new WindowError(`"${text}" has an empty window`);
  const spans = parts.map((part) => {
    const match = SPAN.exec(part);
    if (!match) throw new WindowError(`"${part}" is not a window of the form HH:MM-HH:MM`);
    const [, sh, sm, eh, em] = match as unknown as [string, string, string, string, string];
    const startMinute = minute(sh, sm, part);
    const endMinute = minute(eh, em, part);
    if (startMinute === 1440) throw new WindowError(`"${part}" starts at 24:00; start at 00:00 instead`);
    if (endMinute <= startMinute) {
      throw new WindowError(`"${part}" ends before it starts; a window across midnight is two: "${part.split('-')[0]}-24:00,00:00-${part.split('-')[1]}"`);
    }
    return { startMinute, endMinute };
  });
  return Object.freeze({ spans: Object.freeze(spans), timezone, text });
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** Minutes after local midnight of `at` on the wall clock of `timezone`. */
export function localMinuteOfDay(at: Date, timezone: string): number {
  let f = formatters.get(timezone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: timezone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    formatters.set(timezone, f);
  }
  let hour = 0;
  let min = 0;
  for (const p of f.formatToParts(at)) {
    if (p.type === 'hour') hour = Number(p.value) % 24;
    else if (p.type === 'minute') min = Number(p.value);
  }
  return hour * 60 + min;
}

/** Whether `at` lies inside one of the windows. */
export function isInWindow(windows: WorkWindows, at: Date): boolean {
  const m = localMinuteOfDay(at, windows.timezone);
  return windows.spans.some((s) => m >= s.startMinute && m < s.endMinute);
}

/**
 * The first whole minute after `at` at which the window opens or closes (whichever comes
 * first), within the next two days; null when it never changes (a window of the whole day).
 */
export function nextWindowChange(windows: WorkWindows, at: Date): Date | null {
  const now = isInWindow(windows, at);
  const start = Math.floor(at.getTime() / 60_000) * 60_000;
  for (let t = start + 60_000; t <= start + 2 * 86_400_000; t += 60_000) {
    const candidate = new Date(t);
    if (isInWindow(windows, candidate) !== now) return candidate;
  }
  return null;
}
