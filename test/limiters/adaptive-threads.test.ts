import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, test } from 'vitest';
import { AdaptiveConcurrencyLimit } from '../../src/limiters/adaptive-concurrency-limit.js';
import { E, EVENT_WORDS } from '../fixtures/adaptive-events.js';
import type { AdaptiveJob } from '../fixtures/adaptive-worker.js';
import { fixture, nextMessage } from '../helpers.js';

const workers: Worker[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.terminate()));
});

interface Call {
  call: bigint;
  start: bigint;
  end: bigint;
}

/**
 * Limit observations sorted by time, and the highest value that could have been in force over
 * [a, b]. The limit changes at most once per window (see the module comment of
 * adaptive-concurrency-limit.ts), so between two observations less than a window apart it changed
 * at most once: every value in force in [a, b] was then observed in [a, b], or is the last one
 * observed before a, or the first after b (two of each side, for the sub-µs between reading the
 * limit and reading the clock). Where observations are a window apart or more (every thread
 * stalled), the history is unknown and the answer is undefined.
 */
class LimitHistory {
  private readonly times: bigint[];
  private readonly values: number[];

  constructor(
    observations: [bigint, number][],
    private readonly windowNs: bigint,
  ) {
    observations.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
    this.times = observations.map((o) => o[0]);
    this.values = observations.map((o) => o[1]);
  }

  /** The most the limit can have been at any instant of [a, b], or undefined if unknown. */
  highest(a: bigint, b: bigint): number | undefined {
    const lo = Math.max(0, this.lowerBound(a) - 2);
    const hi = Math.min(this.times.length - 1, this.lowerBound(b + 1n) + 1);
    let most = this.values[lo]!;
    for (let i = lo + 1; i <= hi; i++) {
      if (this.times[i]! - this.times[i - 1]! >= this.windowNs) return undefined;
      most = Math.max(most, this.values[i]!);
    }
    return most;
  }

  private lowerBound(t: bigint): number {
    let lo = 0;
    let hi = this.times.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.times[mid]! < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

describe('AdaptiveConcurrencyLimit across real worker threads', () => {
  test('4 threads share one limit: at every call start, the calls running never exceed the limit in force at the admission of the latest of them; the limit follows the shared downstream down and up', async () => {
    const windowMs = 100;
    const limit = new AdaptiveConcurrencyLimit({ minLimit: 2, maxLimit: 64, initialLimit: 8, windowMs, minSamples: 10, probeIntervalMs: 1000 });
    const phases = [
      { untilMs: 1500, slots: 6 },
      { untilMs: 3000, slots: 3 },
      { untilMs: 4500, slots: 12 },
    ];
    const capacity = 20_000;
    const threads = 4;
    const events = new SharedArrayBuffer(8 * EVENT_WORDS * capacity * threads);
    const inside = new SharedArrayBuffer(4);
    const go = new SharedArrayBuffer(4);
    const spawned = Array.from({ length: threads }, (_, i) => {
      const job: AdaptiveJob = { descriptor: limit.share(), loops: 12, phases, serviceMs: 10, inside, events, offset: i * capacity, capacity, go };
      const w = new Worker(fixture('adaptive-worker'), { workerData: job });
      workers.push(w);
      return w;
    });
    await Promise.all(spawned.map((w) => nextMessage(w)));
    const done = spawned.map((w) => nextMessage(w));
    const began = process.hrtime.bigint();
    Atomics.store(new Int32Array(go), 0, 1);
    Atomics.notify(new Int32Array(go), 0);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(done),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('workers did not finish in time')), 30_000);
      }),
    ]);
    clearTimeout(timer);

    const e = new BigInt64Array(events);
    const calls: Call[] = [];
    const observations: [bigint, number][] = [];
    for (let k = 0; k < capacity * threads; k++) {
      const at = k * EVENT_WORDS;
      if (e[at + E.END] === 0n) continue;
      calls.push({ call: e[at + E.CALL]!, start: e[at + E.START]!, end: e[at + E.END]! });
      observations.push([e[at + E.START]!, Number(e[at + E.LIMIT_AT_START])], [e[at + E.END]!, Number(e[at + E.LIMIT_AT_END])]);
    }
    expect(calls.length).toBeGreaterThan(2000);
    const history = new LimitHistory(observations, BigInt(windowMs * 1e6));

    // At each start: R = the calls running then (recorded start ≤ t ≤ recorded end; each was
    // admitted at or before its start and released after its end, so all of R were held at the
    // admission of the latest of them, which lies between the latest call time in R and t).
    calls.sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0));
    const running: Call[] = [];
    let checked = 0;
    let tightest = Infinity;
    for (const c of calls) {
      for (let i = running.length - 1; i >= 0; i--) if (running[i]!.end < c.start) running.splice(i, 1);
      running.push(c);
      let latestCall = 0n;
      for (const r of running) if (r.call > latestCall) latestCall = r.call;
      const bound = history.highest(latestCall, c.start);
      if (bound === undefined) continue;
      expect(running.length, `at ${Number(c.start - began) / 1e6} ms: ${running.length} running, limit at most ${bound}`).toBeLessThanOrEqual(bound);
      tightest = Math.min(tightest, bound - running.length);
      checked++;
    }
    // Only a stall of every thread for a whole window leaves a start unchecked.
    expect(checked).toBeGreaterThan(0.95 * calls.length);
    // The check bites: at some starts the limit was exactly full.
    expect(tightest).toBe(0);

    // One limit for all: it moved with the downstream every thread shares, down when its slots
    // halved and up when they quadrupled (means of the limits read in the last second of each
    // phase; how far up depends on how busy the cores are, which the threads' latency includes).
    const meanIn = (fromMs: number, toMs: number): number => {
      const seen = observations.filter(([t]) => t >= began + BigInt(fromMs * 1e6) && t < began + BigInt(toMs * 1e6)).map(([, v]) => v);
      return seen.reduce((a, b) => a + b, 0) / seen.length;
    };
    const six = meanIn(500, 1500);
    const three = meanIn(2000, 3000);
    const twelve = meanIn(3500, 4500);
    expect(three, `limits: ${six.toFixed(1)} (6 slots), ${three.toFixed(1)} (3), ${twelve.toFixed(1)} (12)`).toBeLessThan(six);
    expect(twelve, `limits: ${six.toFixed(1)} (6 slots), ${three.toFixed(1)} (3), ${twelve.toFixed(1)} (12)`).toBeGreaterThan(three);
  }, 60_000);
});
