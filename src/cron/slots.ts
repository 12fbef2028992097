/**
 * Cron slots: the scheduled instants of the nightly trigger. A slot is named by the
 * migration and the scheduled instant (UTC, to the second), never by the moment an
 * instance's timer happened to fire, so instances whose clocks differ by less than a
 * second name the same slot.
 *
 * @example
 *   slotKey('order-totals', new Date('2026-01-01T02:00:00.004Z'));
 *   // 'order-totals@2026-01-01T02:00:00Z'
 */
import { CronExpressionParser } from 'cron-parser';

export function slotInstant(scheduled: Date): Date {
  return new Date(Math.round(scheduled.getTime() / 1000) * 1000);
}

export function slotKey(migration: string, scheduled: Date): string {
  return `${migration}@${slotInstant(scheduled).toISOString().replace('.000Z', 'Z')}`;
}

export function slotTimeOf(key: string): Date | null {
  const at = key.lastIndexOf('@');
  if (at < 0) return null;
  const date = new Date(key.slice(at + 1));
  return Number.isNaN(date.getTime()) ? null : date;
}

/** The latest scheduled instant at or before `now`. */
export function previousSlot(expression: string, timezone: string, now: Date): Date {
  const parsed = CronExpressionParser.parse(expression, { currentDate: new Date(now.getTime() + 1), tz: timezone });
  return parsed.prev().toDate();
}
