/**
 * Structured logs: JSON lines, or human-readable when stderr is a terminal.
 * Pass the logger in and scope it with `child({ runId, partitionId })`.
 *
 * @example
 *   const log = createLogger({ level: 'info', instanceId: 'a' });
 *   log.child({ runId: 3 }).info('run started');
 */
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(options: { level: string; instanceId?: string; pretty?: boolean }): Logger {
  const pretty = options.pretty ?? process.stderr.isTTY === true;
  const base = options.instanceId ? { instance: options.instanceId } : {};
  if (pretty) {
    return pino({
      level: options.level,
      base,
      transport: { target: 'pino-pretty', options: { destination: 2, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } },
    });
  }
  return pino({ level: options.level, base }, pino.destination({ fd: 2, sync: false }));
}

/** A logger that writes nothing, for tests and quiet commands. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
