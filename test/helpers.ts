import { Worker } from 'node:worker_threads';

/** Compiled fixture path: tests run from TS, worker threads need the JS that `tsc` wrote to dist/. */
export function fixture(name: string): URL {
  return new URL(`../dist/test/fixtures/${name}.js`, import.meta.url);
}

/**
 * Largest excess, over all intervals [starts[i], starts[j]], of the number of starts in the interval
 * over `burst + rate × length`; a result ≤ 0 means the bound held everywhere. `starts` in ns, sorted.
 *
 * With u_k = k − rate·t_k, the count in [t_i, t_j] minus the bound is u_j − u_i + 1 − burst, so one
 * pass keeping the smallest u seen so far finds the worst interval in O(n).
 */
export function worstExcess(starts: bigint[], burst: number, ratePerSec: number): { excess: number; count: number; lengthMs: number } {
  if (starts.length === 0) return { excess: -burst, count: 0, lengthMs: 0 };
  const t0 = starts[0]!;
  const rate = ratePerSec / 1e9;
  let minU = Infinity;
  let minI = 0;
  let worst = { excess: -Infinity, count: 0, lengthMs: 0 };
  for (let k = 0; k < starts.length; k++) {
    const t = Number(starts[k]! - t0);
    const u = k - rate * t;
    if (u < minU) {
      minU = u;
      minI = k;
    }
    const excess = u - minU + 1 - burst;
    if (excess > worst.excess) {
      worst = { excess, count: k - minI + 1, lengthMs: (t - Number(starts[minI]! - t0)) / 1e6 };
    }
  }
  return worst;
}

/** Most elements of sorted `starts` (ns) inside any window of `windowMs`. */
export function mostInWindow(starts: bigint[], windowMs: number): number {
  const w = BigInt(Math.round(windowMs * 1e6));
  let best = 0;
  let i = 0;
  for (let j = 0; j < starts.length; j++) {
    while (starts[j]! - starts[i]! >= w) i++;
    best = Math.max(best, j - i + 1);
  }
  return best;
}

/** Resolves with the first message of `worker` and rejects on its error or early exit. */
export function nextMessage<T>(worker: Worker): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onMessage = (m: T): void => {
      cleanup();
      resolve(m);
    };
    const onError = (e: Error): void => {
      cleanup();
      reject(e);
    };
    const onExit = (code: number): void => {
      cleanup();
      reject(new Error(`worker exited with code ${code} before answering`));
    };
    const cleanup = (): void => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}
