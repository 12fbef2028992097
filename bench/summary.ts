/**
 * The one table of `npm run bench`: every benchmark of the suite adds its headline figures
 * here, each with the baseline it was measured against in the same run, and bench/run.ts
 * prints them together at the end. A benchmark run on its own (no BENCH_SUMMARY) adds nothing.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';

export interface SummaryRow {
  /** The benchmark, e.g. "end to end". */
  section: string;
  /** What was measured, e.g. "tranche, 2 instances". */
  what: string;
  /** The figure, formatted with its unit. */
  figure: string;
  /** The baseline it is compared with, formatted with its name and unit; '' when none. */
  baseline: string;
  /** figure / baseline (or the bound it must stay under), e.g. "0.52x"; '' when none. */
  ratio: string;
}

/** Adds a row to the suite's table (the file named by BENCH_SUMMARY), when the suite runs. */
export function addSummaryRow(row: SummaryRow): void {
  const file = process.env.BENCH_SUMMARY;
  if (file) appendFileSync(file, `${JSON.stringify(row)}\n`);
}

/** The table of every row added to `file`, in order. */
export function renderSummary(file: string): string {
  if (!existsSync(file)) return '(no figures were reported)';
  const rows = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as SummaryRow);
  const header: SummaryRow = { section: 'benchmark', what: 'what', figure: 'figure', baseline: 'baseline (same run)', ratio: 'ratio' };
  const all = [header, ...rows];
  const width = (k: keyof SummaryRow) => Math.max(...all.map((r) => r[k].length));
  const w = { section: width('section'), what: width('what'), figure: width('figure'), baseline: width('baseline'), ratio: width('ratio') };
  const line = (r: SummaryRow) =>
    `${r.section.padEnd(w.section)}  ${r.what.padEnd(w.what)}  ${r.figure.padStart(w.figure)}  ${r.baseline.padEnd(w.baseline)}  ${r.ratio.padStart(w.ratio)}`.trimEnd();
  return [line(header), '-'.repeat(line(header).length), ...rows.map(line)].join('\n');
}
