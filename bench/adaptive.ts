/**
 * Adaptive concurrency benchmark: a simulated downstream of M slots and service time S (a FIFO of
 * M servers, bench/lib/downstream.ts) offered far more concurrency than M, through no limit, a
 * static limit too high, a static limit too low, and the adaptive limit; M halves a third of the
 * way through the run and doubles back at two thirds. Writes bench/results/adaptive.md and two
 * charts.
 *
 *   npm run bench:adaptive              full run (about 80 s)
 *   node dist/bench/adaptive.js --quick a few seconds: checks the suite runs and writes its report
 *
 * Every figure is measured in the run that writes the report; every target line is computed from
 * those figures.
 */
import { loadavg } from 'node:os';
import { basename } from 'node:path';
import { AdaptiveConcurrencyLimit } from '../src/limiters/adaptive-concurrency-limit.js';
import { ConcurrencyLimit } from '../src/limiters/concurrency-limit.js';
import { lineChart } from '../src/report/svg-chart.js';
import { SimulatedDownstream } from './lib/downstream.js';
import { fmt, machine, percentile, quick, table, verdict, writeResult } from './lib/report.js';

/** The downstream: M slots of S ms each, so M / S calls per ms at most. */
const M = 40;
const S = 20;
/** Callers, each making its next call as soon as its previous one returns. */
const OFFERED = 400;
const PHASE_MS = quick ? 1000 : 6000;
const PHASES = [M, M / 2, M];
const SAMPLE_MS = 50;
const ADAPTIVE = { minLimit: 2, maxLimit: 200 };
const TOO_HIGH = 2 * M;
const TOO_LOW = M / 4;

const t0 = performance.now();
function progress(what: string): void {
  console.log(`[${((performance.now() - t0) / 1000).toFixed(1)} s] ${what}`);
}

interface Subject {
  name: string;
  run<T>(task: () => Promise<T>): Promise<T>;
  /** The limit in force now, if the subject has one. */
  limit?: () => number;
  /** The no-load latency an adaptive limit judges by, ms. */
  noLoadMs?: () => number | undefined;
}

interface Sample {
  atMs: number;
  limit: number | undefined;
  noLoadMs: number | undefined;
  inside: number;
}

interface PhaseResult {
  slots: number;
  /** Calls the downstream completed per ms of the phase over its capacity (slots / S). */
  throughput: number;
  p50: number;
  p99: number;
  /** Adaptive only: mean limit over the phase's last half. */
  meanLimit?: number;
  /** Adaptive only: ms after the phase began until the limit was, and stayed, within 25 % of M (NaN: never). */
  settledMs?: number;
}

interface RunResult {
  name: string;
  phases: PhaseResult[];
  throughput: number;
  p99: number;
  samples: Sample[];
  /** p99 downstream latency per 500 ms, for the chart. */
  p99Series: [number, number][];
}

async function runSubject(subject: Subject): Promise<RunResult> {
  const down = new SimulatedDownstream(PHASES[0]!, S);
  const endMs = PHASES.length * PHASE_MS;
  const began = performance.now();
  let stop = false;
  const callers = Array.from({ length: OFFERED }, async () => {
    while (!stop) await subject.run(() => down.call());
  });
  const samples: Sample[] = [];
  const sampler = setInterval(() => {
    samples.push({ atMs: performance.now() - began, limit: subject.limit?.(), noLoadMs: subject.noLoadMs?.(), inside: down.inside });
  }, SAMPLE_MS);
  for (let p = 1; p < PHASES.length; p++) {
    await sleep(began + p * PHASE_MS - performance.now());
    down.slots = PHASES[p]!;
  }
  await sleep(began + endMs - performance.now());
  stop = true;
  clearInterval(sampler);
  down.slots = OFFERED; // let the callers' last calls through at once
  await Promise.all(callers);

  const calls = down.calls.map((c) => ({ atMs: c.endMs - began, latencyMs: c.latencyMs })).filter((c) => c.atMs <= endMs);
  const phases: PhaseResult[] = PHASES.map((slots, p) => {
    const from = p * PHASE_MS;
    const to = from + PHASE_MS;
    const inPhase = calls.filter((c) => c.atMs > from && c.atMs <= to);
    const latencies = inPhase.map((c) => c.latencyMs).sort((a, b) => a - b);
    const result: PhaseResult = {
      slots,
      throughput: inPhase.length / ((slots / S) * PHASE_MS),
      p50: percentile(latencies, 0.5),
      p99: percentile(latencies, 0.99),
    };
    if (subject.limit !== undefined) {
      const seen = samples.filter((s) => s.atMs > from && s.atMs <= to);
      const lastHalf = seen.filter((s) => s.atMs > from + PHASE_MS / 2).map((s) => s.limit!);
      result.meanLimit = lastHalf.reduce((a, b) => a + b, 0) / lastHalf.length;
      const lastOutside = seen.findLast((s) => Math.abs(s.limit! - slots) > 0.25 * slots);
      result.settledMs = lastOutside === undefined ? 0 : lastOutside === seen.at(-1) ? NaN : lastOutside.atMs + SAMPLE_MS - from;
    }
    return result;
  });
  const capacity = PHASES.reduce((sum, slots) => sum + (slots / S) * PHASE_MS, 0);
  const all = calls.map((c) => c.latencyMs).sort((a, b) => a - b);
  const p99Series: [number, number][] = [];
  for (let from = 0; from < endMs; from += 500) {
    const l = calls
      .filter((c) => c.atMs > from && c.atMs <= from + 500)
      .map((c) => c.latencyMs)
      .sort((a, b) => a - b);
    p99Series.push([(from + 500) / 1000, percentile(l, 0.99)]);
  }
  return { name: subject.name, phases, throughput: calls.length / capacity, p99: percentile(all, 0.99), samples, p99Series };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

function subjects(): (() => Subject)[] {
  return [
    () => ({ name: 'no limit', run: (task) => task() }),
    () => {
      const l = new ConcurrencyLimit({ max: TOO_HIGH });
      return { name: `static limit too high: ConcurrencyLimit max ${TOO_HIGH}`, run: (task) => l.run(task), limit: () => l.limit };
    },
    () => {
      const l = new ConcurrencyLimit({ max: TOO_LOW });
      return { name: `static limit too low: ConcurrencyLimit max ${TOO_LOW}`, run: (task) => l.run(task), limit: () => l.limit };
    },
    () => {
      const l = new AdaptiveConcurrencyLimit(ADAPTIVE);
      return {
        name: `adaptive: AdaptiveConcurrencyLimit minLimit ${ADAPTIVE.minLimit}, maxLimit ${ADAPTIVE.maxLimit}`,
        run: (task) => l.run(task),
        limit: () => l.limit,
        noLoadMs: () => l.noLoadLatencyMs,
      };
    },
  ];
}

async function main(): Promise<void> {
  const loadBefore = loadavg()[0]!;
  const results: RunResult[] = [];
  for (const make of subjects()) {
    const subject = make();
    progress(`${subject.name}: ${PHASES.length} phases of ${PHASE_MS / 1000} s`);
    results.push(await runSubject(subject));
  }
  const adaptive = results.at(-1)!;
  const loadAfter = loadavg()[0]!;
  const percent = (x: number): string => `${fmt(100 * x, 1)} %`;
  const phaseNames = PHASES.map((slots, p) => `${(p * PHASE_MS) / 1000}–${((p + 1) * PHASE_MS) / 1000} s, M = ${slots}`);
  const lines = [
    `# Adaptive concurrency benchmark${quick ? ' (QUICK: a smoke run, not a measurement)' : ''}`,
    '',
    `Machine: ${machine()}; load average (1 min) ${fmt(loadBefore, 1)} before the run, ${fmt(loadAfter, 1)} after. Command: \`${quick ? 'node dist/bench/adaptive.js --quick' : 'npm run bench:adaptive'}\`.`,
    `Method: one process. A simulated downstream (\`bench/lib/downstream.ts\`: a FIFO of M servers, each call served for S = ${S} ms on a real timer) ` +
      `starts with M = ${M} slots, so its capacity is M / S = ${fmt((M / S) * 1000, 0)} calls/s; ${OFFERED} callers (${OFFERED / M} × M) each make their next call as soon as the last returns. ` +
      `M halves at ${PHASE_MS / 1000} s and doubles back at ${(2 * PHASE_MS) / 1000} s. Each subject gets a fresh downstream and limit and runs the same ${(PHASES.length * PHASE_MS) / 1000} s. ` +
      `Throughput is the downstream's completed calls over its capacity in the same time; latency is the downstream's (arrival to completion, the time a call spends in the limit's queue not included). ` +
      `The adaptive limit uses its defaults (window 100 ms, 10 samples, smoothing 0.2, tolerance 0.1, no-load re-measured every 30 s) with minLimit ${ADAPTIVE.minLimit} and maxLimit ${ADAPTIVE.maxLimit}, ` +
      `as \`--limit 'work=adaptive,min=${ADAPTIVE.minLimit},max=${ADAPTIVE.maxLimit}'\`; it starts at minLimit to measure the no-load latency, then at initialLimit 20.`,
    '',
    '## Throughput and downstream latency, side by side',
    '',
    table(
      ['subject', ...phaseNames.map((n) => `${n}: throughput, latency p50 / p99 (ms)`), 'whole run: throughput, p99 (ms)'],
      results.map((r) => [
        r.name,
        ...r.phases.map((p) => `${percent(p.throughput)}, ${fmt(p.p50, 1)} / ${fmt(p.p99, 1)}`),
        `${percent(r.throughput)}, ${fmt(r.p99, 1)}`,
      ]),
    ),
    '',
    '## The adaptive limit',
    '',
    `No-load latency the adaptive limit measured: ${[...new Set(adaptive.samples.map((s) => s.noLoadMs).filter((v) => v !== undefined))].map((v) => `${fmt(v, 3)} ms`).join(', then ')}; ` +
      `the downstream's latency at no queueing in this process (p50 of the too-low static run): ${fmt(results[2]!.phases[0]!.p50, 2)} ms.`,
    '',
    table(
      ['phase', 'within 25 % of M after', 'mean limit, phase’s last half', 'calls inside the downstream (mean of samples), phase’s last half'],
      adaptive.phases.map((p, i) => {
        const lastHalf = adaptive.samples.filter((s) => s.atMs > (i + 0.5) * PHASE_MS && s.atMs <= (i + 1) * PHASE_MS);
        return [
          phaseNames[i]!,
          Number.isNaN(p.settledMs) ? 'never' : `${fmt(p.settledMs! / 1000, 2)} s${i === 0 ? ' (from the start: initial limit 20)' : ''}`,
          `${fmt(p.meanLimit!, 1)} (${fmt(p.meanLimit! / p.slots, 2)} × M)`,
          fmt(lastHalf.reduce((a, s) => a + s.inside, 0) / lastHalf.length, 1),
        ];
      }),
    ),
    '',
    '## Targets',
    '',
    'With L calls kept inside, a FIFO of M servers gives each call about S × L / M, so a limit at 1.1 × M costs the median call about 10 % over S; ' +
      'what sets the p99 is the time the limit spends far above M: the windows after M halves, before the limit comes down (calls then take about 2.2 × S), and any overshoot while it grows.',
    '',
    `- adaptive throughput ≥ 90 % of the downstream's capacity: ${percent(adaptive.throughput)} over the run — ${verdict(adaptive.throughput >= 0.9)}`,
    `- downstream p99 latency ≤ 2 × S = ${2 * S} ms: ${fmt(adaptive.p99, 1)} ms over the run — ${verdict(adaptive.p99 <= 2 * S)}`,
    ...adaptive.phases.slice(1).map((p, i) => {
      const ok = !Number.isNaN(p.settledMs) && p.settledMs! <= 2000;
      return `- limit within 25 % of M at most 2 s after the change at ${((i + 1) * PHASE_MS) / 1000} s (M → ${p.slots}): ${Number.isNaN(p.settledMs) ? 'never' : `${fmt(p.settledMs! / 1000, 2)} s`} — ${verdict(ok)}`;
    }),
    '',
  ];
  const charts = {
    limit: writeResult(
      'adaptive-limit.svg',
      lineChart(`Adaptive limit vs the downstream's slots M (S = ${S} ms, ${OFFERED} callers)`, 'time (s)', 'permits', [
        { name: 'adaptive limit', points: adaptive.samples.map((s) => [s.atMs / 1000, s.limit!]) },
        {
          name: 'downstream slots M',
          points: adaptive.samples.map((s) => [s.atMs / 1000, PHASES[Math.min(PHASES.length - 1, Math.floor(s.atMs / PHASE_MS))]!]),
        },
      ]),
    ),
    latency: writeResult(
      'adaptive-latency.svg',
      lineChart(
        'Downstream latency p99 per 500 ms, by subject',
        'time (s)',
        'ms',
        results.map((r) => ({ name: r.name, points: r.p99Series })),
        [{ name: `2 × S = ${2 * S} ms`, y: 2 * S }],
      ),
    ),
  };
  lines.push('## Charts', '', `![adaptive limit](${basename(charts.limit)})`, '', `![downstream latency](${basename(charts.latency)})`, '');
  const path = writeResult('adaptive.md', lines.join('\n'));
  console.log(lines.join('\n'));
  console.log(`\nwrote ${path}`);
}

await main();
