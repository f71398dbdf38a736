import { Worker } from 'node:worker_threads';

/** Compiled fixture path: tests run from TS, worker threads need the JS that `tsc` wrote to dist/. */
export function fixture(name: string): URL {
  return new URL(`../dist/test/fixtures/${name}.js`, import.meta.url);
}

/**
 * Largest excess, over all intervals [starts[i], starts[j]], of the number of starts in the interval
 * over `burst + rate × length`; a result ≤ 0 means the bound held everywhere. `starts` sorted: ns
 * as bigint (`process.hrtime.bigint()`), or ms as number (a `ManualClock`'s `nowMs()`).
 *
 * With u_k = k − rate·t_k, the count in [t_i, t_j] minus the bound is u_j − u_i + 1 − burst, so one
 * pass keeping the smallest u seen so far finds the worst interval in O(n).
 */
export function worstExcess(
  starts: readonly bigint[] | readonly number[],
  burst: number,
  ratePerSec: number,
): { excess: number; count: number; lengthMs: number } {
  if (starts.length === 0) return { excess: -burst, count: 0, lengthMs: 0 };
  // hrtime ns are past what a double holds exactly, so they are taken from the first start; ms of a
  // test clock are small, and used as they are.
  const [t, unitsPerMs] =
    typeof starts[0] === 'bigint' ? [(starts as readonly bigint[]).map((s) => Number(s - (starts[0] as bigint))), 1e6] : [starts as readonly number[], 1];
  const rate = ratePerSec / (1000 * unitsPerMs);
  let minU = Infinity;
  let minI = 0;
  let worst = { excess: -Infinity, count: 0, lengthMs: 0 };
  for (let k = 0; k < t.length; k++) {
    const u = k - rate * t[k]!;
    if (u < minU) {
      minU = u;
      minI = k;
    }
    const excess = u - minU + 1 - burst;
    if (excess > worst.excess) {
      worst = { excess, count: k - minI + 1, lengthMs: (t[k]! - t[minI]!) / unitsPerMs };
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

/** A time during which a thread's event loop could not run: ns on `process.hrtime.bigint()`, which every thread of a process shares. */
export interface Stall {
  from: bigint;
  to: bigint;
}

/** How often the stall watch's timer is due, and how late it may fire (libuv's timer granularity) without counting as a stall. */
const TICK_MS = 2;
const GRANULARITY_NS = 1_000_000n;

/**
 * Watches this thread's event loop until `stop()`, for wall-clock tolerances derived from what
 * happened instead of guessed. A timer is due every 2 ms; when it fires more than 1 ms late, the
 * thread was held up (descheduled on a loaded machine, paused by GC, or busy in synchronous code)
 * from when it was due until it ran, and that span is a stall. A stalled thread delays whatever
 * it should have done by as long, so a test adds the stalls to the time it allows (or takes them
 * out of the time it expects work in); counts of admissions stay exact, since they are judged on
 * the instants calls were admitted, whatever the delays.
 *
 * In a worker thread the stalls are that thread's (post them to the test). Code running in
 * another process (a CLI under test, Redis) is not watched: the test's own stalls stand for the
 * machine's load there, and the test says so.
 */
export function watchStalls(): { stop(): Stall[] } {
  const stalls: Stall[] = [];
  const tick = BigInt(TICK_MS) * 1_000_000n;
  let due = process.hrtime.bigint() + tick;
  const timer = setInterval(() => {
    const now = process.hrtime.bigint();
    if (now - due > GRANULARITY_NS) stalls.push({ from: due, to: now });
    due = now + tick;
  }, TICK_MS);
  return {
    stop: () => {
      clearInterval(timer);
      const now = process.hrtime.bigint();
      if (now - due > GRANULARITY_NS) stalls.push({ from: due, to: now });
      return stalls;
    },
  };
}

/**
 * Milliseconds within [from, to] (ns) that `stalls` cover; given one list per thread, the
 * milliseconds during which every one of those threads was stalled at once (while any thread of
 * several that share the work can run, the work goes on).
 */
export function stalledMs(stalls: Stall[] | Stall[][], from = 0n, to = 2n ** 63n): number {
  const lists = stalls.length > 0 && Array.isArray(stalls[0]) ? (stalls as Stall[][]) : [stalls as Stall[]];
  // Sweep over every boundary, counting how many threads are stalled in each stretch.
  const edges: [bigint, number][] = [];
  for (const list of lists) {
    for (const s of merged(list)) {
      const a = s.from > from ? s.from : from;
      const b = s.to < to ? s.to : to;
      if (a < b) edges.push([a, 1], [b, -1]);
    }
  }
  edges.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] - y[1]));
  let depth = 0;
  let since = 0n;
  let total = 0n;
  for (const [at, step] of edges) {
    if (depth === lists.length) total += at - since;
    depth += step;
    since = at;
  }
  return Number(total) / 1e6;
}

/** `list`'s stalls with overlapping ones joined, so a thread is never counted twice. */
function merged(list: Stall[]): Stall[] {
  const sorted = [...list].sort((x, y) => (x.from < y.from ? -1 : 1));
  const out: Stall[] = [];
  for (const s of sorted) {
    const last = out.at(-1);
    if (last !== undefined && s.from <= last.to) last.to = s.to > last.to ? s.to : last.to;
    else out.push({ ...s });
  }
  return out;
}
