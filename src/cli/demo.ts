/**
 * `thrift-queue-limiter demo` (what `npm start` runs): the example Calculator service on the
 * threaded server with a limit on `add`, driven at twice that limit by a load generator in another
 * thread. Shows live admitted/s and queue depth, then a summary; exits non-zero if a figure is
 * clearly wrong (a call refused or failed, the limit exceeded, or the limit not reached while calls
 * were waiting).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { lineChart } from '../report/svg-chart.js';
import { createThreadedServer } from '../server/threaded-server.js';
import { parseDuration, parseFlags, parsePositive } from './args.js';
import { DemoCountersLayout, type DemoLoadData, type DemoLoadReport } from './demo-protocol.js';
import { progressLine } from './progress.js';

const HELP = `usage: thrift-queue-limiter demo [--duration 8s] [--rate 500] [--burst 20] [--workers 2] [--out demo-report]

Starts the example Calculator service on the threaded server (embedded in-process store, a free
port on 127.0.0.1) with \`add\` limited to --rate calls/s, and offers twice that rate for
--duration from a load generator thread. Calls over the limit wait in the queue instead of
failing; the queue drains after the offered load stops, so a run lasts about twice --duration.
Shows a progress bar on a terminal (elsewhere, one plain line a second). Writes a report (demo.md)
and a chart (demo.svg) to --out: admitted calls/s against the limit on the left axis, calls waiting
in the queue on the right.`;

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** Runs the demo; resolves with the exit code. */
export async function demo(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, {
    duration: { type: 'string', default: '8s' },
    rate: { type: 'string', default: '500' },
    burst: { type: 'string', default: '20' },
    workers: { type: 'string', default: '2' },
    out: { type: 'string', default: 'demo-report' },
    help: { type: 'boolean', default: false },
  });
  if (flags.help) {
    console.log(HELP);
    return 0;
  }
  const durationMs = parseDuration('--duration', flags.duration as string);
  const rate = parsePositive('--rate', flags.rate as string);
  const burst = parsePositive('--burst', flags.burst as string, true);
  const workers = parsePositive('--workers', flags.workers as string, true);
  const servicePath = fileURLToPath(new URL('../../../examples/gen-nodejs/Calculator.js', import.meta.url));
  const server = createThreadedServer({
    service: servicePath,
    handler: fileURLToPath(new URL('../../../examples/calculator-handler.js', import.meta.url)),
    workers,
    limits: { add: { rate, burst } },
  });
  const { port } = await server.listen(0, '127.0.0.1');
  const offered = 2 * rate;
  console.log(`demo: Calculator on the threaded server (127.0.0.1:${port}, ${workers} workers), add limited to ${rate}/s (burst ${burst});`);
  console.log(`      a load thread offers ${offered} add calls/s for ${durationMs / 1000} s, then waits for every reply`);

  const counterBuffer = new SharedArrayBuffer(DemoCountersLayout.BYTES);
  const counters = new Int32Array(counterBuffer);
  const load = new Worker(new URL('./demo-load.js', import.meta.url), {
    workerData: { port, ratePerSec: offered, durationMs, connections: 8, servicePath, counters: counterBuffer } satisfies DemoLoadData,
  });
  const started = performance.now();
  const finished = new Promise<DemoLoadReport>((resolve, reject) => {
    load.once('message', resolve);
    load.once('error', reject);
  });
  let last = { at: started, admitted: 0 };
  const timeline: { t: number; perSec: number; queued: number }[] = [];
  const line = progressLine(process.stdout);
  const progress = setInterval(() => {
    const now = performance.now();
    const s = server.stats();
    const perSec = ((s.admitted - last.admitted) * 1000) / (now - last.at);
    last = { at: now, admitted: s.admitted };
    timeline.push({ t: (now - started) / 1000, perSec, queued: s.queued });
    const t = (now - started) / 1000;
    const width = 30;
    const filled = Math.min(width, Math.round((Atomics.load(counters, DemoCountersLayout.I32.REPLIED) / Math.max(1, (offered * durationMs) / 1000)) * width));
    const bar = line.live ? `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ` : '';
    line.update(
      `  ${bar}t=${t.toFixed(1).padStart(5)} s  sent ${String(Atomics.load(counters, DemoCountersLayout.I32.SENT)).padStart(6)}  admitted ${perSec.toFixed(0).padStart(5)}/s  queued ${String(s.queued).padStart(5)}  replied ${String(Atomics.load(counters, DemoCountersLayout.I32.REPLIED)).padStart(6)}`,
    );
  }, 250);
  let report: DemoLoadReport;
  try {
    report = await finished;
  } finally {
    clearInterval(progress);
    line.done();
  }
  const elapsed = (performance.now() - started) / 1000;
  const stats = server.stats();
  const waits = server.takeWaitPercentiles();
  await load.terminate();
  await server.close({ timeoutMs: 1000 });

  const sent = Atomics.load(counters, DemoCountersLayout.I32.SENT);
  const failed = Atomics.load(counters, DemoCountersLayout.I32.FAILED);
  const refused = Object.values(stats.refused).reduce((a, b) => a + b, 0);
  const latencies = report.latenciesMs.sort((a, b) => a - b);
  const bound = burst + rate * elapsed;
  // The rate the limit let through: admissions after the initial burst, over the time from the
  // first to the last admission (start-up and the last replies' round trips excluded).
  const admitting = (stats.lastAdmittedAt - stats.firstAdmittedAt) / 1000;
  const achieved = admitting > 0 ? (stats.admitted - burst) / admitting : 0;
  console.log(`offered   ${sent} calls at ${offered}/s for ${durationMs / 1000} s`);
  console.log(
    `admitted  ${stats.admitted} calls in ${elapsed.toFixed(2)} s: ${achieved.toFixed(1)}/s after the burst, from first to last admission (limit ${rate}/s; at most ${Math.floor(bound)} allowed)`,
  );
  console.log(`refused   ${refused}   failed ${failed}`);
  console.log(
    `queue wait p50 ${waits.p50.toFixed(1)} ms, p99 ${waits.p99.toFixed(1)} ms, max ${waits.max.toFixed(1)} ms; client latency p50 ${percentile(latencies, 0.5).toFixed(1)} ms, p99 ${percentile(latencies, 0.99).toFixed(1)} ms`,
  );
  const problems: string[] = [];
  if (refused > 0) problems.push(`${refused} calls were refused although the queue is unbounded`);
  if (failed > 0) problems.push(`${failed} calls failed: ${report.errors.join('; ')}`);
  if (stats.admitted > bound) problems.push(`${stats.admitted} calls admitted, more than the limit allows (${Math.floor(bound)})`);
  if (achieved < rate * 0.9) problems.push(`admitted only ${achieved.toFixed(1)}/s while calls were waiting (limit ${rate}/s)`);
  if (stats.admitted !== sent) problems.push(`${sent} calls sent but ${stats.admitted} admitted`);
  const outDir = resolve(flags.out as string);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(
    join(outDir, 'demo.svg'),
    lineChart(
      `Demo: add limited to ${rate}/s, offered ${offered}/s for ${durationMs / 1000} s`,
      'time (s)',
      'admitted calls/s',
      [{ name: 'admitted/s (250 ms samples)', points: timeline.map((p) => [p.t, p.perSec]) }],
      [{ name: `limit ${rate}/s`, y: rate }],
      { label: 'calls waiting', series: [{ name: 'calls waiting in the queue', points: timeline.map((p) => [p.t, p.queued]) }] },
    ),
  );
  writeFileSync(
    join(outDir, 'demo.md'),
    [
      '# thrift-queue-limiter demo',
      '',
      `${new Date().toISOString()}: the example Calculator service on the threaded server (${workers} workers), \`add\` limited to ${rate}/s (burst ${burst}), offered ${offered}/s for ${durationMs / 1000} s.`,
      '',
      `| offered | admitted | admitted rate (first to last admission) | refused | failed | queue wait p50 / p99 / max | client latency p50 / p99 |`,
      '| --- | --- | --- | --- | --- | --- | --- |',
      `| ${sent} | ${stats.admitted} | ${achieved.toFixed(1)}/s (limit ${rate}/s) | ${refused} | ${failed} | ${waits.p50.toFixed(1)} / ${waits.p99.toFixed(1)} / ${waits.max.toFixed(1)} ms | ${percentile(latencies, 0.5).toFixed(1)} / ${percentile(latencies, 0.99).toFixed(1)} ms |`,
      '',
      problems.length === 0 ? 'Every call was admitted and answered, none refused, and the limit held.' : `FAILED: ${problems.join('; ')}`,
      '',
      '![admitted calls/s and queue depth over time](demo.svg)',
      '',
    ].join('\n'),
  );
  console.log(`report: ${join(outDir, 'demo.md')}   chart: ${join(outDir, 'demo.svg')}`);
  for (const p of problems) console.error(`demo: FAILED: ${p}`);
  if (problems.length === 0) console.log('demo: ok: every call was admitted and answered, none refused, and the limit held');
  return problems.length === 0 ? 0 : 1;
}
