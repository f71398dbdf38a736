/**
 * Worker side of the shared-limiter thread benchmark: attaches the token bucket it is given,
 * waits for the common start signal, calls tryAcquire() in a tight loop until its time is up (or
 * a fixed number of attempts, whichever comes first), and reports its counts and start/end times
 * on the process-wide monotonic clock.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { TokenBucket } from '../../src/limiters/token-bucket.js';
import type { LimiterDescriptor } from '../../src/limiters/limiter.js';

export interface ThreadReport {
  admitted: number;
  attempts: number;
  startNs: bigint;
  endNs: bigint;
}

const { descriptor, durationMs, maxAttempts, go } = workerData as {
  descriptor: LimiterDescriptor;
  durationMs: number;
  maxAttempts: number;
  go: SharedArrayBuffer;
};
const bucket = TokenBucket.attach(descriptor);
// Warm the call path before the clock starts, so both threads are measured in optimized code.
for (let i = 0; i < 20_000; i++) bucket.tryAcquire();
const flag = new Int32Array(go);
parentPort!.postMessage('ready');
Atomics.wait(flag, 0, 0, 10_000);
let admitted = 0;
let attempts = 0;
const startNs = process.hrtime.bigint();
const deadline = startNs + BigInt(Math.round(durationMs * 1e6));
let endNs = startNs;
while (attempts < maxAttempts) {
  for (let i = 0; i < 1024; i++) if (bucket.tryAcquire()) admitted++;
  attempts += 1024;
  endNs = process.hrtime.bigint();
  if (endNs >= deadline) break;
}
const report: ThreadReport = { admitted, attempts, startNs, endNs };
parentPort!.postMessage(report);
