import { describe, expect, test } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { QueueTimeoutError } from '../../src/errors.js';
import { FixedWindow } from '../../src/limiters/fixed-window.js';

describe('FixedWindow with an injected clock', () => {
  test('admits maxCalls per window and starts the rest at the next boundaries, never failing', async () => {
    const clock = new ManualClock(5);
    const fw = new FixedWindow({ maxCalls: 3, periodMs: 100, clock });
    const starts: number[] = [];
    const done = Array.from({ length: 8 }, () => fw.run(() => starts.push(clock.nowMs())));
    await clock.advance(300);
    await Promise.all(done);
    // Windows are counted from creation (t = 5): [5,105), [105,205), [205,305).
    expect(starts).toEqual([5, 5, 5, 105, 105, 105, 205, 205]);
  });

  test('counts each window afresh: a call at the last nanosecond of a window and one at the first of the next', () => {
    const clock = new ManualClock();
    const fw = new FixedWindow({ maxCalls: 2, periodMs: 10, clock });
    const end = 10_000_000n;
    expect(fw.tryAcquireAt(end - 1n, 2)).toBe(true);
    expect(fw.tryAcquireAt(end - 1n)).toBe(false);
    expect(fw.tryAcquireAt(end)).toBe(true);
    expect(fw.tryAcquireAt(end + 1n)).toBe(true);
    expect(fw.tryAcquireAt(end + 2n)).toBe(false);
  });

  test('never admits more than maxCalls in any window, over random explicit times', () => {
    const fw = new FixedWindow({ maxCalls: 4, periodMs: 10, clock: new ManualClock() });
    const perWindow = new Map<number, number>();
    let t = 0;
    let seed = 7;
    for (let i = 0; i < 10_000; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      t += (seed % 1000) * 1000; // up to 1 ms steps, in ns
      if (fw.tryAcquireAt(BigInt(t))) perWindow.set(Math.floor(t / 1e7), (perWindow.get(Math.floor(t / 1e7)) ?? 0) + 1);
    }
    expect(Math.max(...perWindow.values())).toBe(4);
  });

  test('estimates the wait from the current window and the queued demand, and maxWaitMs uses it', async () => {
    const clock = new ManualClock();
    const fw = new FixedWindow({ maxCalls: 2, periodMs: 100, clock });
    const queued = Array.from({ length: 5 }, () => fw.acquire()); // 2 now, 2 at 100, 1 at 200
    await clock.advance(10);
    expect(fw.estimateWaitMs()).toBe(190); // the next free place is in window [200, 300)
    await expect(fw.acquire(1, { maxWaitMs: 150 })).rejects.toBeInstanceOf(QueueTimeoutError);
    await clock.advance(300);
    await Promise.all(queued);
  });
});
