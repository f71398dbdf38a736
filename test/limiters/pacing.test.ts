/**
 * Pacing with late timers (wait-queue.ts, gcra.ts): a waiter released by a wake-up that came late
 * is counted at the instant it was due, up to the wake-up credit λ (token bucket: max(T, 2 ms);
 * fixed window: 2 ms), so late timers cost no rate; the bound on admissions grows by exactly that
 * credit, and a stall longer than it still releases no backlog. ManualClock fires every timer
 * `timerLatenessMs` after its due time.
 */
import { describe, expect, test } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { FixedWindow } from '../../src/limiters/fixed-window.js';
import { TokenBucket } from '../../src/limiters/token-bucket.js';
import { worstExcess } from '../helpers.js';

/** Submits `count` calls at once through run(); each records the clock (ms) when its task starts. */
function submit(limiter: TokenBucket | FixedWindow, clock: ManualClock, count: number, n = 1): { starts: number[]; done: Promise<unknown> } {
  const starts: number[] = [];
  const done = Promise.all(Array.from({ length: count }, () => limiter.run(() => starts.push(clock.nowMs()), n)));
  return { starts, done };
}

/** A deterministic pseudo-random sequence in [0, 1). */
function prng(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}

/**
 * 3000 steps of random load: each step sets a random timer lateness in [0, `maxLatenessMs`), with
 * probability `arrivalP` submits 0 to `maxArrivals − 1` calls through run() (each records the clock
 * in ms when its task starts: run() starts it at the instant of admission), then advances the clock
 * 0–2 ms; finally drains. Asserts that every call started; returns the start instants in order.
 */
async function randomLoad(
  limiter: TokenBucket | FixedWindow,
  clock: ManualClock,
  seed: number,
  load: { maxLatenessMs: number; arrivalP: number; maxArrivals: number },
): Promise<number[]> {
  const random = prng(seed);
  const starts: number[] = [];
  const calls: Promise<unknown>[] = [];
  for (let step = 0; step < 3000; step++) {
    clock.timerLatenessMs = random() * load.maxLatenessMs;
    const arrivals = random() < load.arrivalP ? Math.floor(random() * load.maxArrivals) : 0;
    for (let i = 0; i < arrivals; i++) calls.push(limiter.run(() => starts.push(clock.nowMs())));
    await clock.advance(random() * 2);
  }
  await clock.advance(20_000);
  expect(starts.length).toBe(calls.length);
  await Promise.all(calls);
  return starts;
}

describe('TokenBucket at burst 1 with late wake-ups', () => {
  test('1000/s with every timer 0.9 ms late: each call starts 0.9 ms after its slot and the rate is kept (1001 calls by 1000.9 ms)', async () => {
    const clock = new ManualClock();
    clock.timerLatenessMs = 0.9;
    const tb = new TokenBucket({ rate: 1000, burst: 1, clock });
    const { starts, done } = submit(tb, clock, 1001);
    await clock.advance(1100);
    // Plain GCRA would count each call at its late start: one call per 1.9 ms, the last at 1900 ms.
    expect(starts).toHaveLength(1001);
    expect(starts).toEqual(starts.map((_, k) => (k === 0 ? 0 : k + 0.9)));
    await done;
  });

  test('1000/s with every timer 1.5 ms late (more than T, within the 2 ms credit): the wake starts both calls that fell due, and the rate is kept', async () => {
    const clock = new ManualClock();
    clock.timerLatenessMs = 1.5;
    const tb = new TokenBucket({ rate: 1000, burst: 1, clock });
    const { starts, done } = submit(tb, clock, 1001);
    await clock.advance(1100);
    // The wake for slot 1 comes at 2.5 ms, when slot 2 is due too: pairs of calls start together.
    expect(starts.slice(0, 6)).toEqual([0, 2.5, 2.5, 4.5, 4.5, 6.5]);
    expect(starts.at(-1)).toBe(1000.5);
    await done;
  });

  test('50/s with every timer 5 ms late (λ = one interval, 20 ms, at this rate): each call starts 5 ms after its slot, none lost', async () => {
    const clock = new ManualClock();
    clock.timerLatenessMs = 5;
    const tb = new TokenBucket({ rate: 50, burst: 1, clock });
    const { starts, done } = submit(tb, clock, 51);
    await clock.advance(1100);
    expect(starts).toHaveLength(51);
    expect(starts).toEqual(starts.map((_, k) => (k === 0 ? 0 : 20 * k + 5)));
    await done;
  });

  test('a wake-up later than the credit loses only what lies beyond it: 1000/s with timers 2.5 ms late starts 3 calls per 3.5 ms', async () => {
    const clock = new ManualClock();
    clock.timerLatenessMs = 2.5;
    const tb = new TokenBucket({ rate: 1000, burst: 1, clock });
    const { starts, done } = submit(tb, clock, 7);
    await clock.advance(100);
    // The wake for the 1 ms slot comes at 3.5 ms: counted from 1.5 ms (λ = 2 ms back), so the slots
    // of 1.5, 2.5 and 3.5 ms start now; 0.5 ms is lost per wake. Plain GCRA: one call per 3.5 ms.
    expect(starts).toEqual([0, 3.5, 3.5, 3.5, 7, 7, 7]);
    await done;
  });

  test('the fast path takes no credit: a call arriving at an idle bucket is counted at its own instant', async () => {
    const clock = new ManualClock();
    const tb = new TokenBucket({ rate: 1000, burst: 1, clock });
    expect(tb.tryAcquire()).toBe(true);
    await clock.advance(1.5);
    expect(tb.tryAcquire()).toBe(true);
    // Counted at 1.5 ms (not at its 1 ms slot): the next token is due at 2.5 ms.
    expect(tb.tryAcquireAt(clock.now() + 999_999n)).toBe(false);
    expect(tb.tryAcquireAt(clock.now() + 1_000_000n)).toBe(true);
  });

  for (const { rate, burst, lambdaMs } of [
    { rate: 1000, burst: 1, lambdaMs: 2 },
    { rate: 200, burst: 1, lambdaMs: 5 },
    { rate: 500, burst: 3, lambdaMs: 2 },
  ]) {
    test(`${rate}/s burst ${burst}, random timer lateness 0–6 ms and random arrivals: admissions in any interval ≤ burst + rate × (L + λ), λ = ${lambdaMs} ms, and that bound is reached`, async () => {
      const clock = new ManualClock();
      const tb = new TokenBucket({ rate, burst, clock });
      const admitted = await randomLoad(tb, clock, rate + burst, { maxLatenessMs: 6, arrivalP: 0.3, maxArrivals: 4 });
      const perMs = rate / 1000;
      // With the credit: never over. Without it the bound is exceeded: the credit is used, and the
      // stated bound is the one that holds, not a looser one.
      const { excess } = worstExcess(admitted, burst, rate);
      expect(excess).toBeLessThanOrEqual(perMs * lambdaMs + 1e-9);
      expect(excess).toBeGreaterThan(0);
    });
  }

  test('a stall longer than the credit releases no backlog: 1000/s burst 1, 50 ms without timers, then burst + rate × λ = 3 calls start and the rest keep their spacing', async () => {
    const clock = new ManualClock();
    const tb = new TokenBucket({ rate: 1000, burst: 1, clock });
    const { starts, done } = submit(tb, clock, 100);
    await clock.advance(10.5);
    expect(starts.length).toBe(11);
    (clock as unknown as { current: bigint }).current += 50_000_000n;
    await clock.advance(0);
    expect(starts.filter((t) => t === 60.5)).toHaveLength(3);
    await clock.advance(200);
    expect(starts.slice(11, 16)).toEqual([60.5, 60.5, 60.5, 61.5, 62.5]);
    await done;
  });

  test('a stall within the credit releases at most burst + rate × λ at once: 1000/s burst 1, a wake-up 1.8 ms late starts the 2 calls that fell due, then the spacing resumes', async () => {
    const clock = new ManualClock();
    const tb = new TokenBucket({ rate: 1000, burst: 1, clock });
    const { starts, done } = submit(tb, clock, 10);
    await clock.advance(0);
    (clock as unknown as { current: bigint }).current += 2_800_000n; // the timer due at 1 ms runs at 2.8
    await clock.advance(0);
    expect(starts).toEqual([0, 2.8, 2.8]);
    await clock.advance(100);
    expect(starts.slice(3, 5)).toEqual([3, 4]);
    await done;
  });
});

describe('FixedWindow with late wake-ups', () => {
  test('1 call per 1 ms window with every timer 1.5 ms late: a missed window that ended less than 2 ms ago still counts, so 1001 calls start by 1000.5 ms', async () => {
    const clock = new ManualClock();
    clock.timerLatenessMs = 1.5;
    const fw = new FixedWindow({ maxCalls: 1, periodMs: 1, clock });
    const { starts, done } = submit(fw, clock, 1001);
    await clock.advance(1100);
    // Without the credit each wake lands in the next window: one call per 2 ms. With it, the wake
    // at 2.5 ms counts one call in window 1 (ended 1.5 ms ago) and one in window 2.
    expect(starts.slice(0, 5)).toEqual([0, 2.5, 2.5, 4.5, 4.5]);
    expect(starts.at(-1)).toBe(1000.5);
    await done;
  });

  test('windows of 10 ms with timers 3 ms late lose nothing and take no credit: 3 per window, starting 3 ms into each', async () => {
    const clock = new ManualClock();
    clock.timerLatenessMs = 3;
    const fw = new FixedWindow({ maxCalls: 3, periodMs: 10, clock });
    const { starts, done } = submit(fw, clock, 9);
    await clock.advance(100);
    expect(starts).toEqual([0, 0, 0, 13, 13, 13, 23, 23, 23]);
    await done;
  });

  test('random timer lateness 0–4 ms on 1 ms windows of 2 calls: starts in any interval ≤ 2 × the windows meeting [a − 2 ms, a + L]', async () => {
    const clock = new ManualClock();
    const fw = new FixedWindow({ maxCalls: 2, periodMs: 1, clock });
    const starts = await randomLoad(fw, clock, 11, { maxLatenessMs: 4, arrivalP: 0.4, maxArrivals: 6 });
    // Windows are [k, k + 1) ms (the limiter was created at 0).
    let worst = -Infinity;
    for (let i = 0; i < starts.length; i++) {
      for (let j = i; j < starts.length && starts[j]! - starts[i]! < 10; j++) {
        const windows = Math.floor(starts[j]!) - Math.floor(starts[i]! - 2) + 1;
        worst = Math.max(worst, j - i + 1 - 2 * windows);
      }
    }
    expect(worst).toBeLessThanOrEqual(0);
    // And the credit was used: some window's calls started after it ended.
    const perWindow = new Map<number, number>();
    for (const t of starts) perWindow.set(Math.floor(t), (perWindow.get(Math.floor(t)) ?? 0) + 1);
    expect(Math.max(...perWindow.values())).toBeGreaterThan(2);
  });

  test('a stall longer than the credit releases no backlog: 1 call per 1 ms window, 50 ms without timers, then the windows that met the last 2 ms only', async () => {
    const clock = new ManualClock();
    const fw = new FixedWindow({ maxCalls: 1, periodMs: 1, clock });
    const { starts, done } = submit(fw, clock, 100);
    await clock.advance(10.5);
    expect(starts.length).toBe(11);
    (clock as unknown as { current: bigint }).current += 50_000_000n;
    await clock.advance(0);
    // At 60.5 ms the credit reaches back to 58.5 ms: windows 58, 59 and 60.
    expect(starts.filter((t) => t === 60.5)).toHaveLength(3);
    await clock.advance(200);
    await done;
  });
});
