// One thread of the core benchmark's multi-thread run: tryAcquire on a shared bucket in a tight
// loop for a fixed time, then report how many succeeded.
import { parentPort, workerData } from 'node:worker_threads';
import { TokenBucket } from '../src/limiters/token-bucket.js';
import type { LimiterDescriptor } from '../src/limiters/limiter.js';

const { descriptor, durationMs, go } = workerData as { descriptor: LimiterDescriptor; durationMs: number; go: SharedArrayBuffer };
const bucket = TokenBucket.attach(descriptor);
const flag = new Int32Array(go);
parentPort!.postMessage({ ready: true });
Atomics.wait(flag, 0, 0);
let admitted = 0;
const end = performance.now() + durationMs;
while (performance.now() < end) {
  for (let i = 0; i < 1000; i++) if (bucket.tryAcquire()) admitted++;
}
parentPort!.postMessage({ admitted });
