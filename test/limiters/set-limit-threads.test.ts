import { afterEach, describe, expect, test } from 'vitest';
import { ConcurrencyLimit } from '../../src/limiters/concurrency-limit.js';
import { FixedWindow, FixedWindowSettingsLayout } from '../../src/limiters/fixed-window.js';
import { TokenBucket } from '../../src/limiters/token-bucket.js';
import { LimiterLayout, paramsIndex } from '../../src/shared/shared-state.js';
import { runTogether, sortedStarts, stopLimiterWorkers } from '../limiter-workers.js';

afterEach(stopLimiterWorkers);

const THREADS = [0, 1, 2, 3];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A change made from the test's thread, between two clock readings. */
interface Change {
  before: bigint;
  after: bigint;
}

/** Calls `change` and records the clock around it. */
function timed(change: () => void): Change {
  const before = process.hrtime.bigint();
  change();
  return { before, after: process.hrtime.bigint() };
}

/** Which worker each admission instant came from (4 workers, `perThread` slots each), sorted by instant. */
function byThread(buffer: SharedArrayBuffer, perThread: number): { t: bigint; thread: number }[] {
  return Array.from(new BigInt64Array(buffer), (t, k) => ({ t, thread: Math.floor(k / perThread) })).sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : 0));
}

describe('setLimit while calls wait in 4 worker threads', () => {
  test('TokenBucket lowered then raised: on admission instants, no interval around a change admits more than the larger of the two bounds (burst + rate × (L + λ), λ the wake-up credit), and none inside a setting more than its own', async () => {
    const perThread = 600;
    const settings = [
      { rate: 2000, burst: 20 },
      { rate: 400, burst: 5 },
      { rate: 3000, burst: 30 },
    ];
    const tb = new TokenBucket(settings[0]!);
    const admissions = new SharedArrayBuffer(8 * 4 * perThread);
    const go = new SharedArrayBuffer(4);
    const changes: Change[] = [];
    let changed: Promise<void> = Promise.resolve();
    await runTogether(
      THREADS.map((i) => ({ mode: 'run' as const, descriptor: tb.share(), count: perThread, admissions, offset: i * perThread, go })),
      30_000,
      () => {
        changed = (async () => {
          await sleep(400);
          changes.push(timed(() => tb.setLimit(settings[1]!)));
          await sleep(500);
          changes.push(timed(() => tb.setLimit(settings[2]!)));
        })();
      },
    );
    await changed;
    expect(tb.rate).toBe(3000);
    const admitted = sortedStarts(admissions);
    expect(admitted.every((t) => t > 0n)).toBe(true);
    // Waiters released by late timers are counted up to λ = max(1 / rate, 2 ms) back (gcra.ts).
    const creditNs = (rate: number): number => Math.max(1e9 / rate, 2e6);
    const bound = (s: { rate: number; burst: number }, lengthNs: number, credited: boolean): number =>
      s.burst + (s.rate * (lengthNs + (credited ? creditNs(s.rate) : 0))) / 1e9;
    let worst = -Infinity;
    /** Against the bound without the credit: how close the busiest interval came to it. */
    let busiest = -Infinity;
    for (let k = 0; k < changes.length; k++) {
      // The intervals that hold change k and no other: start after change k − 1, end before k + 1.
      const lo = k === 0 ? 0n : changes[k - 1]!.after;
      const hi = changes[k + 1]?.before ?? admitted.at(-1)! + 1n;
      const seg = admitted.filter((t) => t > lo && t < hi);
      const { before, after } = changes[k]!;
      for (let i = 0; i < seg.length; i++) {
        for (let j = i; j < seg.length; j++) {
          const length = Number(seg[j]! - seg[i]!);
          const limit = (credited: boolean): number => {
            const old = bound(settings[k]!, length, credited);
            const next = bound(settings[k + 1]!, length, credited);
            return seg[j]! < before ? old : seg[i]! > after ? next : Math.max(old, next);
          };
          worst = Math.max(worst, j - i + 1 - limit(true));
          busiest = Math.max(busiest, j - i + 1 - limit(false));
        }
      }
    }
    expect(worst, 'admissions over the bound in the worst interval').toBeLessThanOrEqual(1e-6);
    expect(busiest, 'the limit was saturated: some interval reaches its bound').toBeGreaterThan(-1);
    // Each setting was in force long enough to be seen: about 2000/s, then 400/s.
    const during = (a: bigint, b: bigint): number => admitted.filter((t) => t >= a && t < b).length;
    const lowered = during(changes[0]!.after + 100_000_000n, changes[1]!.before) / (Number(changes[1]!.before - changes[0]!.after - 100_000_000n) / 1e9);
    expect(lowered).toBeGreaterThan(300);
    expect(lowered).toBeLessThan(450);
  });

  test('a raise releases the calls waiting in every thread at once, though their timers were armed for the old rate (one token every 500 ms)', async () => {
    const perThread = 40;
    const tb = new TokenBucket({ rate: 2, burst: 1 });
    const admissions = new SharedArrayBuffer(8 * 4 * perThread);
    const go = new SharedArrayBuffer(4);
    let change: Change | undefined;
    await runTogether(
      THREADS.map((i) => ({ mode: 'run' as const, descriptor: tb.share(), count: perThread, admissions, offset: i * perThread, go })),
      30_000,
      () => {
        void sleep(200).then(() => {
          change = timed(() => tb.setLimit({ rate: 5000, burst: 100 }));
        });
      },
    );
    const admitted = byThread(admissions, perThread);
    const soon = admitted.filter((a) => a.t >= change!.before && a.t < change!.after + 50_000_000n);
    // Under the old rate at most one more call would have started in those 50 ms.
    expect(soon.length).toBeGreaterThanOrEqual(100);
    expect(new Set(soon.map((a) => a.thread)).size).toBe(4);
    expect(admitted.filter((a) => a.t < change!.before).length).toBeLessThanOrEqual(2);
  });

  test('FixedWindow raised mid-window: the window in progress keeps its count, no window of either setting admits more than the larger maxCalls, and waiting calls take the new room at once (the old rate would have had them wait for the next window)', async () => {
    const perThread = 120;
    const fw = new FixedWindow({ maxCalls: 20, periodMs: 100 });
    const admissions = new SharedArrayBuffer(8 * 4 * perThread);
    const go = new SharedArrayBuffer(4);
    let change: Change | undefined;
    await runTogether(
      THREADS.map((i) => ({ mode: 'run' as const, descriptor: fw.share(), count: perThread, admissions, offset: i * perThread, go })),
      30_000,
      () => {
        void sleep(250).then(() => {
          change = timed(() => fw.setLimit({ maxCalls: 60, periodMs: 100 }));
        });
      },
    );
    // The windows as the limiter counts them, from its settings records: record 0 before the
    // change, record 1 after it.
    const i64 = new BigInt64Array(fw.share().buffer);
    const { PERIOD, EPOCH } = FixedWindowSettingsLayout.I64;
    const grid = (record: number): { period: bigint; epoch: bigint } => ({
      period: i64[paramsIndex(record, PERIOD)]!,
      epoch: i64[paramsIndex(record, EPOCH)]!,
    });
    const [old, next] = [grid(0), grid(1)];
    const window = (g: { period: bigint; epoch: bigint }, t: bigint): bigint => (t - g.epoch) / g.period;
    const inProgress = window(old, change!.before);
    expect(window(next, change!.after)).toBe(inProgress + 1n); // renumbered, same start
    expect(next.epoch + (inProgress + 1n) * next.period).toBe(old.epoch + inProgress * old.period);
    const counts = new Map<string, number>();
    const admitted = byThread(admissions, perThread);
    for (const { t } of admitted) {
      const w = t < change!.before ? window(old, t) : window(next, t) - 1n;
      const key = t < change!.before && w < inProgress ? `old ${w}` : `new ${w}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    for (const [key, count] of counts) expect(count, `window ${key}`).toBeLessThanOrEqual(key.startsWith('old') ? 20 : 60);
    expect(counts.get(`new ${inProgress}`)).toBe(60);
    const end = next.epoch + (inProgress + 2n) * next.period;
    const soon = admitted.filter((a) => a.t >= change!.before && a.t < change!.after + 10_000_000n && a.t < end);
    expect(soon.length).toBeGreaterThanOrEqual(40);
  });

  test('ConcurrencyLimit lowered under the permits held admits no one until fewer than the new max are held, and a raise fills the room at once', async () => {
    const perThread = 150;
    const limit = new ConcurrencyLimit({ max: 6 });
    const starts = new SharedArrayBuffer(8 * 4 * perThread);
    const inFlightAtStart = new SharedArrayBuffer(4 * 4 * perThread);
    const gauge = new SharedArrayBuffer(8);
    const go = new SharedArrayBuffer(4);
    const changes: Change[] = [];
    await runTogether(
      THREADS.map((i) => ({
        mode: 'run' as const,
        descriptor: limit.share(),
        count: perThread,
        starts,
        inFlightAtStart,
        gauge,
        holdMs: 4,
        offset: i * perThread,
        go,
      })),
      30_000,
      () => {
        void (async () => {
          await sleep(150);
          changes.push(timed(() => limit.setLimit({ max: 2 })));
          await sleep(150);
          changes.push(timed(() => limit.setLimit({ max: 8 })));
        })();
      },
    );
    const t = new BigInt64Array(starts);
    const g = new Int32Array(inFlightAtStart);
    const calls = Array.from(t, (at, k) => ({ at, inFlight: g[k]! })).sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
    const [lower, raise] = changes as [Change, Change];
    const phase = (a: bigint, b: bigint): { at: bigint; inFlight: number }[] => calls.filter((c) => c.at > a && c.at < b);
    expect(Math.max(...phase(0n, lower.before).map((c) => c.inFlight))).toBe(6);
    const lowered = phase(lower.after, raise.before);
    expect(lowered.length).toBeGreaterThan(20);
    // Permits reserved before the change (granted to a thread, whose call starts when that thread
    // wakes) are held permits: they may start after it, over the new max, and there are at most
    // old max of them. Every call admitted after the change starts with at most 2 in flight; a
    // lowering that did not hold would start dozens over it in this phase.
    expect(lowered.filter((c) => c.inFlight > 2).length).toBeLessThanOrEqual(6);
    const raised = phase(raise.after, raise.after + 1_000_000_000n);
    expect(Math.max(...raised.map((c) => c.inFlight))).toBe(8);
    expect(Math.max(...phase(raise.after, raise.after + 20_000_000n).map((c) => c.inFlight))).toBeGreaterThanOrEqual(6);
    expect(limit.inFlight).toBe(0);
  });

  test('a change held up by a thread that died changing the limit fails after a second, naming it, and works once reclaimThread gave that thread back', () => {
    const tb = new TokenBucket({ rate: 10 });
    const words = new Int32Array(tb.share().buffer);
    Atomics.store(words, LimiterLayout.I32.WRITER, 999 + 1); // held by a thread 999 that died changing the limit
    const started = performance.now();
    expect(() => tb.setLimit({ rate: 20 })).toThrow(/being changed by thread 999 for over 1000 ms: if that thread died, call reclaimThread\(999\)/);
    expect(performance.now() - started).toBeGreaterThanOrEqual(1000);
    expect(tb.rate).toBe(10);
    tb.reclaimThread(999);
    tb.setLimit({ rate: 20 });
    expect(tb.rate).toBe(20);
  });
});
