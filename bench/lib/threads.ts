/**
 * Several worker threads on one shared token bucket: each attaches the bucket from its
 * descriptor (`TokenBucket.attach`) and loops on tryAcquire(); see thread-worker.ts.
 */
import { Worker } from 'node:worker_threads';
import { TokenBucket } from '../../src/limiters/token-bucket.js';
import type { ThreadReport } from './thread-worker.js';

export interface ThreadsResult {
  threads: number;
  /** Calls admitted over all threads. */
  admitted: number;
  /** tryAcquire() calls over all threads. */
  attempts: number;
  /** From the first thread's start to the last thread's end, seconds. */
  spanS: number;
  /** Mean ns per tryAcquire() within one thread. */
  nsPerAttempt: number;
}

/** Runs `threads` workers on one bucket of `rate`/s and `burst` for about `durationMs`. */
export async function sharedBucketRun(threads: number, rate: number, burst: number, durationMs: number): Promise<ThreadsResult> {
  const bucket = new TokenBucket({ rate, burst });
  const go = new SharedArrayBuffer(4);
  const workerData = { descriptor: bucket.share(), durationMs, maxAttempts: 200_000_000, go };
  const workers = Array.from({ length: threads }, () => new Worker(new URL('./thread-worker.js', import.meta.url), { workerData }));
  try {
    const messages = workers.map((w) => {
      const queue: unknown[] = [];
      let wake: (() => void) | undefined;
      w.on('message', (m) => {
        queue.push(m);
        wake?.();
      });
      const failed = new Promise<never>((_, reject) => {
        w.once('error', reject);
        w.once('exit', (code) => reject(new Error(`worker exited early (code ${code})`)));
      });
      failed.catch(() => {}); // observed through the races below; terminate() at the end also "fails" it
      const next = async (): Promise<unknown> => {
        while (queue.length === 0) await Promise.race([new Promise<void>((r) => (wake = r)), failed]);
        return queue.shift();
      };
      return next;
    });
    for (const next of messages) await withTimeout(next(), 30_000, 'worker start');
    const flag = new Int32Array(go);
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
    const reports = (await Promise.all(messages.map((next) => withTimeout(next(), durationMs + 30_000, 'worker run')))) as ThreadReport[];
    const start = reports.reduce((m, r) => (r.startNs < m ? r.startNs : m), reports[0]!.startNs);
    const end = reports.reduce((m, r) => (r.endNs > m ? r.endNs : m), reports[0]!.endNs);
    const attempts = reports.reduce((s, r) => s + r.attempts, 0);
    const threadNs = reports.reduce((s, r) => s + Number(r.endNs - r.startNs), 0);
    return {
      threads,
      admitted: reports.reduce((s, r) => s + r.admitted, 0),
      attempts,
      spanS: Number(end - start) / 1e9,
      nsPerAttempt: threadNs / attempts,
    };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
