/**
 * One load thread of the demo: offers calls on a fixed schedule (open loop, so a slow limiter
 * cannot slow the offered load down) to the shared bucket, and reports what happened.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { TokenBucket } from '../limiters/token-bucket.js';
import type { LimiterDescriptor } from '../limiters/limiter.js';
import type { DemoReport } from './demo.js';

const { descriptor, ratePerThread, durationMs, counter } = workerData as {
  descriptor: LimiterDescriptor;
  ratePerThread: number;
  durationMs: number;
  counter: SharedArrayBuffer;
};
const bucket = TokenBucket.attach(descriptor);
const admittedNow = new Int32Array(counter);
const TICK_MS = 10;

const report: DemoReport = { offered: 0, admitted: 0, refused: 0, waitsMs: [] };
const calls: Promise<void>[] = [];
const start = performance.now();

function offer(): void {
  const queuedAt = performance.now();
  report.offered++;
  calls.push(
    bucket.run(() => {
      report.admitted++;
      Atomics.add(admittedNow, 0, 1);
      report.waitsMs.push(performance.now() - queuedAt);
    }).catch(() => {
      report.refused++;
    }),
  );
}

const timer = setInterval(() => {
  const elapsed = performance.now() - start;
  const due = Math.min(elapsed, durationMs) * (ratePerThread / 1000);
  while (report.offered < due) offer();
  if (elapsed >= durationMs) {
    clearInterval(timer);
    void Promise.all(calls).then(() => parentPort!.postMessage(report));
  }
}, TICK_MS);
