/**
 * Process CPU time from /proc (Linux): the benchmarks print it beside wall time, because
 * wall time suffers when other work shares the cores and CPU time does not.
 */
import { readFileSync } from 'node:fs';

/** Clock ticks per second of the times in /proc (USER_HZ, 100 on Linux). */
export const CLK_TCK = 100;

/** The program name and CPU seconds (user + system) in the text of a /proc/<pid>/stat. */
export function parseStat(stat: string): { comm: string; cpu: number } {
  const close = stat.lastIndexOf(')');
  const fields = stat.slice(close + 2).split(' ');
  return { comm: stat.slice(stat.indexOf('(') + 1, close), cpu: (Number(fields[11]) + Number(fields[12])) / CLK_TCK };
}

/** CPU seconds a process has used so far, or null when it is not on this machine (or gone). */
export function processCpu(pid: number): number | null {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8')).cpu;
  } catch {
    return null;
  }
}
