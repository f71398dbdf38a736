import { describe, expect, test } from 'vitest';
import { barChart, histogram, lineChart, roundTicks } from '../../src/report/svg-chart.js';

/** Whether `v` is 0 or 1, 2 or 5 × 10^k. */
function isRoundStep(v: number): boolean {
  const mag = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5].some((m) => Math.abs(v / mag - m) < 1e-9);
}

/** A tick label as the charts write it (`2.5k`, `1.5M`, `0.2`) back as a number. */
function labelValue(text: string): number {
  const m = /^(-?[\d.]+)([kM]?)$/.exec(text);
  expect(m, `tick label ${JSON.stringify(text)}`).not.toBeNull();
  return Number(m![1]) * (m![2] === 'k' ? 1e3 : m![2] === 'M' ? 1e6 : 1);
}

/** The axis tick labels of a chart: texts at font size 11 that are numbers (series and reference names are not). */
function tickLabels(svg: string, anchor: 'end' | 'start' | 'middle'): number[] {
  return [...svg.matchAll(new RegExp(`text-anchor="${anchor}" font-size="11">([^<]*)<`, 'g'))]
    .map((m) => m[1]!)
    .filter((t) => /^-?[\d.]+[kM]?$/.test(t))
    .map(labelValue);
}

/** Ticks evenly spaced from 0 at a round step. */
function expectRoundAxis(ticks: number[]): void {
  expect(ticks[0]).toBe(0);
  expect(ticks.length).toBeGreaterThanOrEqual(2);
  const step = ticks[1]! - ticks[0]!;
  expect(isRoundStep(step), `step ${step} of ${ticks.join(', ')}`).toBe(true);
  ticks.forEach((t, i) => expect(t).toBeCloseTo(i * step, 9));
}

describe('roundTicks', () => {
  const maxima = [1e-6, 0.003, 0.3, 0.7, 1, 1.01, 2.2, 7, 10, 13, 44.2, 99, 100, 253, 999, 1000, 1001, 4400, 12_345, 98_765, 123_456, 2.5e6, 7.7e9];
  test.each(maxima)('%d: 0 to the first multiple at or above it, at a step of 1, 2 or 5 × 10^k, in 2 to 5 intervals, each tick exact', (max) => {
    const ticks = roundTicks(max);
    expectRoundAxis(ticks);
    const step = ticks[1]!;
    expect(ticks.at(-1)!).toBeGreaterThanOrEqual(max);
    expect(ticks.at(-2)!).toBeLessThan(max);
    expect(ticks.length - 1).toBeGreaterThanOrEqual(2);
    expect(ticks.length - 1).toBeLessThanOrEqual(5);
    // Exact decimals, not sums carrying binary rounding (0.1 + 0.2 = 0.30000000000000004).
    for (const t of ticks) expect(t).toBe(Number((Math.round(t / step) * step).toPrecision(12)));
  });

  test('a maximum that is zero, negative or not finite gives the axis [0, 1]', () => {
    for (const max of [0, -5, NaN, Infinity]) expect(roundTicks(max)).toEqual([0, 1]);
  });
});

describe('charts', () => {
  const rate: [number, number][] = Array.from({ length: 65 }, (_, i) => [(i + 1) * 0.25, i === 0 ? 120 : 500 + ((i * 37) % 11) - 5]);
  const queued: [number, number][] = Array.from({ length: 65 }, (_, i) => [(i + 1) * 0.25, i < 32 ? i * 125 : (64 - i) * 125]);

  test('a line chart with a right axis scales each side apart: rate on the left up to its own top, queue depth on the right up to its own', () => {
    const svg = lineChart('demo', 'time (s)', 'admitted calls/s', [{ name: 'admitted/s', points: rate }], [{ name: 'limit 500/s', y: 500 }], {
      label: 'calls waiting',
      series: [{ name: 'calls waiting in the queue', points: queued }],
    });
    const left = tickLabels(svg, 'end');
    const right = tickLabels(svg, 'start');
    expectRoundAxis(left);
    expectRoundAxis(right);
    // Each axis fits its own series: the rate's top near 500, not the queue's 4000.
    expect(left.at(-1)).toBe(600);
    expect(right.at(-1)).toBe(5000);
    expect(svg).toContain('admitted/s (left axis)');
    expect(svg).toContain('calls waiting in the queue (right axis)');
    expect(svg).toContain('>calls waiting</text>');
    // The highest point of each line (the smallest pixel row) on its own axis's scale: the rate's
    // 505 of 600, the queue's 4000 of 5000 (the plot spans rows 40 to 310).
    const rows = [...svg.matchAll(/<polyline [^>]*points="([^"]+)"/g)].map((m) => m[1]!.split(' ').map((p) => Number(p.split(',')[1])));
    expect(rows).toHaveLength(2);
    expect(Math.min(...rows[0]!)).toBeCloseTo(310 - (505 / 600) * 270, 0);
    expect(Math.min(...rows[1]!)).toBeCloseTo(310 - (4000 / 5000) * 270, 0);
  });

  test('without a right axis a line chart has one y axis, and every tick of it and of the time axis is round', () => {
    const svg = lineChart('rate', 'time (s)', 'calls/s', [{ name: 'completed/s', points: rate }], [{ name: 'limit 500/s', y: 500 }]);
    expect(tickLabels(svg, 'start')).toEqual([]);
    expectRoundAxis(tickLabels(svg, 'end'));
    expectRoundAxis(tickLabels(svg, 'middle'));
  });

  test('a histogram puts its bins on a round axis: 0 to the first round tick at or above the largest value', () => {
    const values = Array.from({ length: 2000 }, (_, i) => 44.2 * Math.sqrt(i / 2000));
    const svg = histogram('wait', 'ms', values);
    const x = tickLabels(svg, 'middle');
    expectRoundAxis(x);
    expect(x.at(-1)).toBe(50);
    expectRoundAxis(tickLabels(svg, 'end'));
    expect(svg.match(/<rect x=/g)).toHaveLength(30);
  });

  test('a bar chart has a round y axis whose top holds the tallest bar', () => {
    const svg = barChart('req/s', 'req/s', ['stock', 'threaded'], [{ name: 'echo', values: [26_000, 39_500] }]);
    const y = tickLabels(svg, 'end');
    expectRoundAxis(y);
    expect(y.at(-1)).toBeGreaterThanOrEqual(39_500);
  });
});
