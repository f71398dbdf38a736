/**
 * Minimal SVG charts for the benchmark and demo reports, written by hand: a line chart (series over
 * time, with optional horizontal reference lines such as a configured limit, and an optional second
 * y axis on the right for a quantity in another unit), a histogram and a grouped bar chart. Plain
 * SVG opens in any browser and renders on GitHub; no charting package needed for three chart kinds.
 */

const W = 720;
const H = 360;
const M = { left: 70, right: 20, top: 40, bottom: 50 };
/** The right margin when a right axis needs room for its tick labels and its name. */
const RIGHT_AXIS_MARGIN = 70;
const PLOT_H = H - M.top - M.bottom;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd'];

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * Axis ticks covering [0, max] at a round step (1, 2 or 5 × 10^k) giving at most five intervals;
 * the last tick, the top of the axis, is the first multiple of the step at or above `max`.
 */
export function roundTicks(max: number): number[] {
  if (!(max > 0) || !Number.isFinite(max)) return [0, 1];
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw * (1 - 1e-12))!;
  const out = [0];
  // Each tick a multiple computed afresh and trimmed to 12 digits, not a running sum: 0.1 + 0.2 is 0.30000000000000004.
  while (out.at(-1)! < max * (1 - 1e-12)) out.push(Number((out.length * step).toPrecision(12)));
  return out;
}

function label(v: number): string {
  if (Math.abs(v) >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (Math.abs(v) >= 1000) return `${+(v / 1000).toFixed(1)}k`;
  return Math.abs(v) >= 100 ? `${Math.round(v)}` : `${+v.toFixed(2)}`;
}

/** The pixel row of `v` on an axis whose ticks end at `top`. */
function row(v: number, top: number): number {
  return M.top + PLOT_H - (v / top) * PLOT_H;
}

/** A y axis on the right, with its own scale: its name and round ticks. */
interface RightAxisFrame {
  label: string;
  ticks: number[];
}

function frame(title: string, xLabel: string, yLabel: string, yTicks: number[], body: string, xAxis: string, right?: RightAxisFrame): string {
  const edge = W - (right === undefined ? M.right : RIGHT_AXIS_MARGIN);
  const top = yTicks.at(-1)!;
  const grid = yTicks
    .map(
      (t) =>
        `<line x1="${M.left}" x2="${edge}" y1="${row(t, top)}" y2="${row(t, top)}" stroke="#ddd"/><text x="${M.left - 6}" y="${row(t, top) + 4}" text-anchor="end" font-size="11">${label(t)}</text>`,
    )
    .join('');
  let rightAxis = '';
  if (right !== undefined) {
    const rightTop = right.ticks.at(-1)!;
    const marks = right.ticks
      .map(
        (t) =>
          `<line x1="${edge}" x2="${edge + 4}" y1="${row(t, rightTop)}" y2="${row(t, rightTop)}" stroke="#333"/><text x="${edge + 7}" y="${row(t, rightTop) + 4}" text-anchor="start" font-size="11">${label(t)}</text>`,
      )
      .join('');
    rightAxis = `<line x1="${edge}" x2="${edge}" y1="${M.top}" y2="${H - M.bottom}" stroke="#333"/>${marks}
<text x="${W - 14}" y="${H / 2}" text-anchor="middle" font-size="12" transform="rotate(90 ${W - 14} ${H / 2})">${esc(right.label)}</text>
`;
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>
${grid}
<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${H - M.bottom}" stroke="#333"/>
<line x1="${M.left}" x2="${edge}" y1="${H - M.bottom}" y2="${H - M.bottom}" stroke="#333"/>
${rightAxis}${xAxis}
<text x="${(M.left + edge) / 2}" y="${H - 10}" text-anchor="middle" font-size="12">${esc(xLabel)}</text>
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

/** Series of another unit than the left axis's, drawn against a y axis on the right with its own scale. */
export interface RightAxis {
  /** The right axis's name. */
  label: string;
  series: Series[];
}

/**
 * Line chart; `references` draws dashed horizontal lines on the left axis's scale (e.g. the
 * configured limit); `right` adds series on a second y axis on the right, dashed, named in the
 * legend as such.
 */
export function lineChart(
  title: string,
  xLabel: string,
  yLabel: string,
  series: Series[],
  references: { name: string; y: number }[] = [],
  right?: RightAxis,
): string {
  const rightSeries = right?.series ?? [];
  const xMax = Math.max(1e-9, ...[...series, ...rightSeries].flatMap((s) => s.points.map((p) => p[0])));
  const yTicks = roundTicks(Math.max(1e-9, ...series.flatMap((s) => s.points.map((p) => p[1])), ...references.map((r) => r.y)) * 1.1);
  const rightTicks = right === undefined ? undefined : roundTicks(Math.max(1e-9, ...rightSeries.flatMap((s) => s.points.map((p) => p[1]))) * 1.1);
  const edge = W - (right === undefined ? M.right : RIGHT_AXIS_MARGIN);
  const plotW = edge - M.left;
  const px = (x: number): number => M.left + (x / xMax) * plotW;
  const xTicks = roundTicks(xMax).filter((t) => t <= xMax * 1.0001);
  const xAxis = xTicks.map((t) => `<text x="${px(t)}" y="${H - M.bottom + 16}" text-anchor="middle" font-size="11">${label(t)}</text>`).join('');
  const polyline = (s: Series, color: string, top: number, dashed: boolean): string =>
    `<polyline fill="none" stroke="${color}" stroke-width="1.8"${dashed ? ' stroke-dasharray="5 3"' : ''} points="${s.points.map(([x, v]) => `${px(x).toFixed(1)},${row(v, top).toFixed(1)}`).join(' ')}"/>`;
  const all = [
    ...series.map((s) => ({ s, top: yTicks.at(-1)!, dashed: false, name: right === undefined ? s.name : `${s.name} (left axis)` })),
    ...rightSeries.map((s) => ({ s, top: rightTicks!.at(-1)!, dashed: true, name: `${s.name} (right axis)` })),
  ];
  const lines = all.map((l, i) => polyline(l.s, COLORS[i % COLORS.length]!, l.top, l.dashed)).join('\n');
  const refs = references
    .map(
      (r) =>
        `<line x1="${M.left}" x2="${edge}" y1="${row(r.y, yTicks.at(-1)!)}" y2="${row(r.y, yTicks.at(-1)!)}" stroke="#555" stroke-dasharray="6 4"/><text x="${edge - 4}" y="${row(r.y, yTicks.at(-1)!) - 5}" text-anchor="end" font-size="11">${esc(r.name)}</text>`,
    )
    .join('\n');
  const legend = all
    .map((l, i) => `<text x="${M.left + 10}" y="${M.top + 14 + 16 * i}" font-size="12" fill="${COLORS[i % COLORS.length]}">${esc(l.name)}</text>`)
    .join('');
  return frame(
    title,
    xLabel,
    yLabel,
    yTicks,
    `${refs}\n${lines}\n${legend}`,
    xAxis,
    right === undefined ? undefined : { label: right.label, ticks: rightTicks! },
  );
}

/** Histogram of `values` in `bins` equal-width bins over [0, the first round tick at or above the largest value]. */
export function histogram(title: string, xLabel: string, values: number[], bins = 30): string {
  const xTicks = roundTicks(Math.max(1e-9, ...values));
  const xTop = xTicks.at(-1)!;
  const counts = new Array<number>(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.floor((v / xTop) * bins))]!++;
  const yTicks = roundTicks(Math.max(1, ...counts) * 1.1);
  const top = yTicks.at(-1)!;
  const plotW = W - M.left - M.right;
  const bw = plotW / bins;
  const bars = counts
    .map(
      (c, i) =>
        `<rect x="${(M.left + i * bw + 1).toFixed(1)}" y="${row(c, top).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${((c / top) * PLOT_H).toFixed(1)}" fill="${COLORS[0]}"/>`,
    )
    .join('');
  const xAxis = xTicks
    .map((t) => `<text x="${M.left + (t / xTop) * plotW}" y="${H - M.bottom + 16}" text-anchor="middle" font-size="11">${label(t)}</text>`)
    .join('');
  return frame(title, xLabel, 'calls', yTicks, bars, xAxis);
}

/** Grouped bars: one group per category, one bar per series. */
export function barChart(title: string, yLabel: string, categories: string[], series: { name: string; values: number[] }[]): string {
  const yTicks = roundTicks(Math.max(1e-9, ...series.flatMap((s) => s.values)) * 1.1);
  const top = yTicks.at(-1)!;
  const plotW = W - M.left - M.right;
  const gw = plotW / categories.length;
  const bw = (gw * 0.8) / series.length;
  const bars = categories
    .map((_, c) =>
      series
        .map((s, i) => {
          const v = s.values[c] ?? 0;
          const x = M.left + c * gw + gw * 0.1 + i * bw;
          const h = (v / top) * PLOT_H;
          return `<rect x="${x.toFixed(1)}" y="${(M.top + PLOT_H - h).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[i % COLORS.length]}"/><text x="${(x + bw / 2).toFixed(1)}" y="${(M.top + PLOT_H - h - 4).toFixed(1)}" text-anchor="middle" font-size="10">${label(v)}</text>`;
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
  return frame(title, '', yLabel, yTicks, `${bars}\n${legend}`, xAxis);
}
