/**
 * `thrift-queue-limiter demo`: several worker threads offer calls at twice the rate of one shared
 * token bucket; every call queues until admitted. Prints live admitted/s and queue depth, then a
 * summary, and exits non-zero if a figure is clearly wrong (a call refused, or the rate broken).
 */
import { Worker } from 'node:worker_threads';
import { TokenBucket } from '../limiters/token-bucket.js';
import { parseDuration, parseFlags, parsePositive } from './args.js';

const HELP = `usage: thrift-queue-limiter demo [--duration 5s] [--rate 500] [--burst 20] [--threads 4]

Worker threads offer calls at twice --rate to one token bucket in shared memory. Calls wait in the
queue instead of failing; the summary compares offered and admitted rates and queue waits.`;

/** What each demo worker reports when its offered load is done. */
export interface DemoReport {
  offered: number;
  admitted: number;
  refused: number;
  waitsMs: number[];
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Runs the demo; resolves with the exit code. */
export async function demo(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, {
    duration: { type: 'string', default: '5s' },
    rate: { type: 'string', default: '500' },
    burst: { type: 'string', default: '20' },
    threads: { type: 'string', default: '4' },
    help: { type: 'boolean', default: false },
  });
  if (flags.help) {
    console.log(HELP);
    return 0;
  }
  const durationMs = parseDuration('--duration', flags.duration as string);
  const rate = parsePositive('--rate', flags.rate as string);
  const burst = parsePositive('--burst', flags.burst as string, true);
  const threads = parsePositive('--threads', flags.threads as string, true);
  const bucket = new TokenBucket({ rate, burst });
  console.log(`demo: ${threads} threads offer ${2 * rate} calls/s for ${durationMs / 1000} s to one shared limit of ${rate}/s (burst ${burst})`);

  const counter = new SharedArrayBuffer(4);
  const admittedNow = new Int32Array(counter);
  const started = performance.now();
  const workers = Array.from(
    { length: threads },
    () => new Worker(new URL('./demo-worker.js', import.meta.url), {
      workerData: { descriptor: bucket.share(), ratePerThread: (2 * rate) / threads, durationMs, counter },
    }),
  );
  const reports = workers.map(
    (w) => new Promise<DemoReport>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    }),
  );
  let last = { at: started, admitted: 0 };
  const progress = setInterval(() => {
    const now = performance.now();
    const admitted = Atomics.load(admittedNow, 0);
    const perSec = ((admitted - last.admitted) * 1000) / (now - last.at);
    last = { at: now, admitted };
    process.stdout.write(
      `\r  t=${((now - started) / 1000).toFixed(1).padStart(5)} s  admitted ${String(admitted).padStart(6)}  (${perSec.toFixed(0).padStart(5)}/s)  queued now ${String(bucket.queuedTotal).padStart(5)}   `,
    );
  }, 500);
  let results: DemoReport[];
  try {
    results = await Promise.all(reports);
  } finally {
    clearInterval(progress);
    process.stdout.write('\n');
    await Promise.all(workers.map((w) => w.terminate()));
  }
  const elapsedSec = (performance.now() - started) / 1000;
  const offered = results.reduce((a, r) => a + r.offered, 0);
  const admitted = results.reduce((a, r) => a + r.admitted, 0);
  const refused = results.reduce((a, r) => a + r.refused, 0);
  const waits = results.flatMap((r) => r.waitsMs).sort((a, b) => a - b);
  const bound = burst + rate * elapsedSec;
  console.log(`offered   ${offered} calls (${(offered / (durationMs / 1000)).toFixed(0)}/s for ${durationMs / 1000} s)`);
  console.log(`admitted  ${admitted} calls in ${elapsedSec.toFixed(2)} s (${(admitted / elapsedSec).toFixed(0)}/s; limit ${rate}/s allows at most ${Math.floor(bound)})`);
  console.log(`refused   ${refused}`);
  console.log(`queue wait p50 ${percentile(waits, 50).toFixed(1)} ms, p99 ${percentile(waits, 99).toFixed(1)} ms, max ${(waits.at(-1) ?? 0).toFixed(1)} ms`);
  if (refused > 0) {
    console.error('demo: FAILED: calls were refused although the queue is unbounded');
    return 1;
  }
  if (admitted > bound) {
    console.error(`demo: FAILED: ${admitted} calls admitted, more than the bound ${bound.toFixed(0)}`);
    return 1;
  }
  if (admitted < offered) {
    console.error('demo: FAILED: some offered calls never completed');
    return 1;
  }
  console.log('demo: ok: every call was admitted, none refused, the rate held');
  return 0;
}
