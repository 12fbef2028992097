/**
 * A small hand-written SVG chart: rows per second against instance count, with the
 * baselines as horizontal dashed lines. No dependency; the output is plain SVG text.
 *
 * @example
 *   writeFileSync('chart.svg', renderChart({ title: 'e2e', points: [{ instances: 1, rowsPerSecond: 9000 }], baselines: [] }));
 */

export interface ChartInput {
  title: string;
  points: { instances: number; rowsPerSecond: number }[];
  baselines: { name: string; rowsPerSecond: number }[];
}

const esc = (s: string) => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

function niceMax(v: number): number {
  const p = 10 ** Math.floor(Math.log10(Math.max(v, 1)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

export function renderChart(input: ChartInput): string {
  const W = 640;
  const H = 400;
  const L = 80;
  const R = 190;
  const T = 40;
  const B = 50;
  const maxX = Math.max(1, ...input.points.map((p) => p.instances));
  const maxY = niceMax(1.1 * Math.max(1, ...input.points.map((p) => p.rowsPerSecond), ...input.baselines.map((b) => b.rowsPerSecond)));
  const x = (n: number) => Math.round(10 * (L + ((W - L - R) * (n - 0.5)) / maxX)) / 10;
  const y = (v: number) => Math.round(10 * (H - B - ((H - T - B) * v) / maxY)) / 10;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2 - R / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">${esc(input.title)}</text>`);
  // Axes and grid.
  for (let i = 0; i <= 5; i++) {
    const v = (maxY * i) / 5;
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${Math.round(v).toLocaleString('en-US')}</text>`);
  }
  parts.push(`<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="black"/>`);
  parts.push(`<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="black"/>`);
  for (let n = 1; n <= maxX; n++) parts.push(`<text x="${x(n)}" y="${H - B + 18}" text-anchor="middle">${n}</text>`);
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">instances</text>`);
  parts.push(`<text transform="translate(18 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">rows per second</text>`);
  // Baselines.
  const colors = ['#c0392b', '#7f8c8d', '#8e44ad'];
  input.baselines.forEach((b, i) => {
    const c = colors[i % colors.length];
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(b.rowsPerSecond)}" y2="${y(b.rowsPerSecond)}" stroke="${c}" stroke-dasharray="6 4"/>`);
    parts.push(`<text x="${W - R + 6}" y="${y(b.rowsPerSecond) + 4}" fill="${c}">${esc(b.name)}: ${Math.round(b.rowsPerSecond).toLocaleString('en-US')}</text>`);
  });
  // The series.
  const pts = [...input.points].sort((a, b) => a.instances - b.instances);
  if (pts.length > 1) parts.push(`<polyline fill="none" stroke="#2471a3" stroke-width="2" points="${pts.map((p) => `${x(p.instances)},${y(p.rowsPerSecond)}`).join(' ')}"/>`);
  for (const p of pts) {
    parts.push(`<circle cx="${x(p.instances)}" cy="${y(p.rowsPerSecond)}" r="4" fill="#2471a3"/>`);
    parts.push(`<text x="${x(p.instances)}" y="${y(p.rowsPerSecond) - 9}" text-anchor="middle" fill="#2471a3">${Math.round(p.rowsPerSecond).toLocaleString('en-US')}</text>`);
  }
  parts.push(`<text x="${W - R + 6}" y="${T + 10}" fill="#2471a3">tranche (rows/s)</text>`);
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
