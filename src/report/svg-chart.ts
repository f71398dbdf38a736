/**
 * Minimal SVG charts for the benchmark reports, written by hand: a line chart (series over time,
 * with optional horizontal reference lines such as a configured limit), a histogram and a grouped
 * bar chart. Plain SVG opens in any browser and renders on GitHub; no charting package needed for
 * three chart kinds.
 */

const W = 720;
const H = 360;
const M = { left: 70, right: 20, top: 40, bottom: 50 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd'];

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Round axis ticks covering [0, max]. */
function ticks(max: number): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = 0; v <= max * 1.0001 + step; v += step) out.push(v);
  return out;
}

function label(v: number): string {
  if (Math.abs(v) >= 1000) return `${+(v / 1000).toFixed(1)}k`;
  return Math.abs(v) >= 100 ? `${Math.round(v)}` : `${+v.toFixed(2)}`;
}

function frame(title: string, xLabel: string, yLabel: string, yTicks: number[], yMax: number, body: string, xAxis: string): string {
  const plotH = H - M.top - M.bottom;
  const y = (v: number): number => M.top + plotH - (v / yMax) * plotH;
  const grid = yTicks
    .map(
      (t) =>
        `<line x1="${M.left}" x2="${W - M.right}" y1="${y(t)}" y2="${y(t)}" stroke="#ddd"/><text x="${M.left - 6}" y="${y(t) + 4}" text-anchor="end" font-size="11">${label(t)}</text>`,
    )
    .join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>
${grid}
<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${H - M.bottom}" stroke="#333"/>
<line x1="${M.left}" x2="${W - M.right}" y1="${H - M.bottom}" y2="${H - M.bottom}" stroke="#333"/>
${xAxis}
<text x="${W / 2}" y="${H - 10}" text-anchor="middle" font-size="12">${esc(xLabel)}</text>
<text x="16" y="${H / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 16 ${H / 2})">${esc(yLabel)}</text>
${body}
</svg>
`;
}

/** A named series of (x, y) points. */
export interface Series {
  name: string;
  points: [number, number][];
}

/** Line chart; `references` draws dashed horizontal lines (e.g. the configured limit). */
export function lineChart(title: string, xLabel: string, yLabel: string, series: Series[], references: { name: string; y: number }[] = []): string {
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const xMax = Math.max(1e-9, ...xs);
  const yMax = Math.max(1e-9, ...series.flatMap((s) => s.points.map((p) => p[1])), ...references.map((r) => r.y)) * 1.1;
  const yTicks = ticks(yMax);
  const top = yTicks.at(-1)!;
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const px = (x: number): number => M.left + (x / xMax) * plotW;
  const py = (v: number): number => M.top + plotH - (v / top) * plotH;
  const xTicks = ticks(xMax).filter((t) => t <= xMax * 1.0001);
  const xAxis = xTicks.map((t) => `<text x="${px(t)}" y="${H - M.bottom + 16}" text-anchor="middle" font-size="11">${label(t)}</text>`).join('');
  const lines = series
    .map(
      (s, i) =>
        `<polyline fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.8" points="${s.points.map(([x, v]) => `${px(x).toFixed(1)},${py(v).toFixed(1)}`).join(' ')}"/>`,
    )
    .join('\n');
  const refs = references
    .map(
      (r) =>
        `<line x1="${M.left}" x2="${W - M.right}" y1="${py(r.y)}" y2="${py(r.y)}" stroke="#555" stroke-dasharray="6 4"/><text x="${W - M.right - 4}" y="${py(r.y) - 5}" text-anchor="end" font-size="11">${esc(r.name)}</text>`,
    )
    .join('\n');
  const legend = series
    .map((s, i) => `<text x="${M.left + 10}" y="${M.top + 14 + 16 * i}" font-size="12" fill="${COLORS[i % COLORS.length]}">${esc(s.name)}</text>`)
    .join('');
  return frame(title, xLabel, yLabel, yTicks, top, `${refs}\n${lines}\n${legend}`, xAxis);
}

/** Histogram of `values` in `bins` equal-width bins. */
export function histogram(title: string, xLabel: string, values: number[], bins = 30): string {
  const max = Math.max(1e-9, ...values);
  const counts = new Array<number>(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.floor((v / max) * bins))]!++;
  const yMax = Math.max(1, ...counts) * 1.1;
  const yTicks = ticks(yMax);
  const top = yTicks.at(-1)!;
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const bw = plotW / bins;
  const bars = counts
    .map(
      (c, i) =>
        `<rect x="${(M.left + i * bw + 1).toFixed(1)}" y="${(M.top + plotH - (c / top) * plotH).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${((c / top) * plotH).toFixed(1)}" fill="${COLORS[0]}"/>`,
    )
    .join('');
  const xAxis = [0, 0.25, 0.5, 0.75, 1]
    .map((f) => `<text x="${M.left + f * plotW}" y="${H - M.bottom + 16}" text-anchor="middle" font-size="11">${label(f * max)}</text>`)
    .join('');
  return frame(title, xLabel, 'calls', yTicks, top, bars, xAxis);
}

/** Grouped bars: one group per category, one bar per series. */
export function barChart(title: string, yLabel: string, categories: string[], series: { name: string; values: number[] }[]): string {
  const yMax = Math.max(1e-9, ...series.flatMap((s) => s.values)) * 1.1;
  const yTicks = ticks(yMax);
  const top = yTicks.at(-1)!;
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const gw = plotW / categories.length;
  const bw = (gw * 0.8) / series.length;
  const bars = categories
    .map((_, c) =>
      series
        .map((s, i) => {
          const v = s.values[c] ?? 0;
          const x = M.left + c * gw + gw * 0.1 + i * bw;
          const h = (v / top) * plotH;
          return `<rect x="${x.toFixed(1)}" y="${(M.top + plotH - h).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[i % COLORS.length]}"/><text x="${(x + bw / 2).toFixed(1)}" y="${(M.top + plotH - h - 4).toFixed(1)}" text-anchor="middle" font-size="10">${label(v)}</text>`;
        })
        .join(''),
    )
    .join('\n');
  const xAxis = categories
    .map((c, i) => `<text x="${M.left + (i + 0.5) * gw}" y="${H - M.bottom + 16}" text-anchor="middle" font-size="11">${esc(c)}</text>`)
    .join('');
  const legend = series
    .map((s, i) => `<text x="${M.left + 10}" y="${M.top + 14 + 16 * i}" font-size="12" fill="${COLORS[i % COLORS.length]}">${esc(s.name)}</text>`)
    .join('');
  return frame(title, '', yLabel, yTicks, top, `${bars}\n${legend}`, xAxis);
}
