import { describe, expect, test } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { ConcurrencyLimit } from '../../src/limiters/concurrency-limit.js';
import { FixedWindow } from '../../src/limiters/fixed-window.js';
import { gcraConvertDebt } from '../../src/limiters/gcra.js';
import { TokenBucket } from '../../src/limiters/token-bucket.js';
import { LimiterLayout } from '../../src/shared/shared-state.js';

const ms = (x: number): bigint => BigInt(Math.round(x * 1e6));
/** Lets promise callbacks and the limit-change notification (a waitAsync resolution) run. */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
};

describe('gcraConvertDebt: the debt a token bucket carries over a change of its limit', () => {
  test('rate raised or kept: the tokens missing are kept (debt × T′/T, rounded up), whatever the bursts', () => {
    // T 10 ns → 5 ns: 90 ns of debt is 9 tokens missing, 45 ns at the new interval.
    expect(gcraConvertDebt(90n, 10n, 10, 5n, 10)).toBe(45n);
    expect(gcraConvertDebt(90n, 10n, 10, 5n, 2)).toBe(45n); // 9 missing of a new burst of 2: wait for 7 first
    expect(gcraConvertDebt(90n, 10n, 1, 5n, 100)).toBe(45n);
    expect(gcraConvertDebt(91n, 10n, 10, 5n, 10)).toBe(46n); // 45.5 rounds up: fewer calls, never more
    expect(gcraConvertDebt(0n, 10n, 10, 5n, 10)).toBe(0n); // a full bucket stays full
    expect(gcraConvertDebt(30n, 10n, 4, 10n, 8)).toBe(30n); // same rate, larger burst: 3 missing of 8
  });

  test('rate lowered: the tokens available are kept, at most the new burst', () => {
    // T 10 → 20, b 10 → 10, 30 ns of debt: 7 available, so 3 missing at 20 ns each.
    expect(gcraConvertDebt(30n, 10n, 10, 20n, 10)).toBe(60n);
    // b 10 → 4: 7 available capped at 4, a full new bucket.
    expect(gcraConvertDebt(30n, 10n, 10, 20n, 4)).toBe(0n);
    // b 10 → 20: still 7 available, so 13 missing of 20.
    expect(gcraConvertDebt(30n, 10n, 10, 20n, 20)).toBe(260n);
    // An empty bucket stays empty: b' missing.
    expect(gcraConvertDebt(100n, 10n, 10, 20n, 3)).toBe(60n);
  });
});

/**
 * Largest excess over `bound(length)` of the admissions in any interval [times[i], times[j]]
 * (sorted ns) with lo ≤ times[i] and times[j] < hi, by brute force.
 */
function worstOver(times: bigint[], lo: bigint, hi: bigint, bound: (lengthNs: number) => number): number {
  const inside = times.filter((t) => t >= lo && t < hi);
  let worst = -Infinity;
  for (let i = 0; i < inside.length; i++) {
    for (let j = i; j < inside.length; j++) worst = Math.max(worst, j - i + 1 - bound(Number(inside[j]! - inside[i]!)));
  }
  return worst;
}

describe('TokenBucket.setLimit', () => {
  test('over 30 random changes with random demand, no interval around a change admits more than the larger of the old bound (b + L/T) and the new (b′ + L/T′); the bound is reached', async () => {
    const clock = new ManualClock(0);
    const tb = new TokenBucket({ rate: 10, periodMs: 100, burst: 5, clock });
    let seed = 11;
    const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const settings: { at: bigint; rate: number; burst: number }[] = [{ at: 0n, rate: 10, burst: 5 }];
    const admitted: bigint[] = [];
    let t = 0;
    for (let change = 1; change <= 30; change++) {
      const end = t + 200 + random() * 300;
      while (t < end) {
        t += random() < 0.3 ? random() * 20 : 0;
        if (tb.tryAcquireAt(ms(t))) admitted.push(ms(t));
      }
      await clock.advance(t - clock.nowMs());
      const next = { at: clock.now(), rate: 1 + Math.floor(random() * 60), burst: 1 + Math.floor(random() * 15) };
      tb.setLimit({ rate: next.rate, periodMs: 100, burst: next.burst });
      expect(tb.rate).toBe(next.rate);
      expect(tb.burst).toBe(next.burst);
      settings.push(next);
    }
    const end = t + 300;
    while (t < end) {
      t += random() < 0.3 ? random() * 20 : 0;
      if (tb.tryAcquireAt(ms(t))) admitted.push(ms(t));
    }
    let worst = -Infinity;
    for (let k = 1; k < settings.length; k++) {
      const before = settings[k - 1]!;
      const after = settings[k]!;
      const bound = (lengthNs: number): number => Math.max(before.burst + (before.rate * lengthNs) / 1e8, after.burst + (after.rate * lengthNs) / 1e8) + 1e-9;
      // Every interval that holds this change and no other (calls admitted at the very instant of
      // a change may come before or after it, so an interval starting there holds that change too).
      const lo = before.at + 1n;
      const hi = settings[k + 1]?.at ?? ms(t + 1);
      const inside = admitted.filter((a) => a >= lo && a < hi);
      for (let i = 0; i < inside.length && inside[i]! <= after.at; i++) {
        for (let j = inside.length - 1; j >= i && inside[j]! >= after.at; j--) {
          worst = Math.max(worst, j - i + 1 - bound(Number(inside[j]! - inside[i]!)));
        }
      }
      // And intervals inside one setting keep the plain bound.
      worst = Math.max(
        worst,
        worstOver(admitted, lo, after.at, (l) => before.burst + (before.rate * l) / 1e8 + 1e-9),
      );
    }
    expect(worst).toBeLessThanOrEqual(0);
    expect(worst).toBeGreaterThan(-1);
    expect(admitted.length).toBeGreaterThan(300);
  });

  test('a raise releases the waiting calls at once where the new burst allows, then at the new rate', async () => {
    const clock = new ManualClock(0);
    const tb = new TokenBucket({ rate: 10, periodMs: 1000, burst: 1, clock }); // one every 100 ms
    const starts: number[] = [];
    const calls = Array.from({ length: 6 }, () => tb.run(() => starts.push(clock.nowMs())));
    await clock.advance(10);
    expect(starts).toEqual([0]);
    // At 10 ms the bucket misses 0.9 token; at 1000/s that is 0.9 ms, so 4 of a burst of 5 are there.
    tb.setLimit({ rate: 1000, burst: 5 });
    await settle();
    expect(starts).toEqual([0, 10, 10, 10, 10]);
    await clock.advance(5);
    await Promise.all(calls);
    expect(starts).toEqual([0, 10, 10, 10, 10, 10.9]);
  });

  test('a lower limit holds the waiting calls to it at once: the tokens left are kept, up to the new burst', async () => {
    const clock = new ManualClock(0);
    const tb = new TokenBucket({ rate: 1000, burst: 10, clock });
    const starts: number[] = [];
    const calls = Array.from({ length: 13 }, () => tb.run(() => starts.push(clock.nowMs())));
    expect(starts.length).toBe(10);
    tb.setLimit({ rate: 10, burst: 1 }); // empty bucket: the next token comes 100 ms later
    await clock.advance(350);
    await Promise.all(calls);
    expect(starts.slice(10)).toEqual([100, 200, 300]);
  });

  test('a limiter idle past its clock span (2^55 ns) moves its base and keeps its limit exactly', async () => {
    const clock = new ManualClock(0);
    const tb = new TokenBucket({ rate: 10, burst: 3, clock });
    await clock.advance(2 ** 55 / 1e6 + 5);
    let admitted = 0;
    for (let k = 0; k < 5; k++) if (tb.tryAcquire()) admitted++;
    expect(admitted).toBe(3);
    await clock.advance(100);
    expect(tb.tryAcquire()).toBe(true);
    expect(tb.tryAcquire()).toBe(false);
    expect(tb.rate).toBe(10);
  });

  test('the setting is shared: share() describes the current limit, and estimates use it', () => {
    const clock = new ManualClock(0);
    const tb = new TokenBucket({ rate: 10, burst: 2, clock });
    tb.setLimit({ rate: 50, periodMs: 500 });
    expect(tb.share().options).toMatchObject({ rate: 50, periodMs: 500, burst: 50 });
    expect(tb.capacity).toBe(50);
    for (let k = 0; k < 50; k++) expect(tb.tryAcquire()).toBe(true);
    expect(tb.estimateWaitMs()).toBe(10); // one token every 10 ms
  });

  test('an invalid setting throws naming the option and changes nothing', () => {
    const tb = new TokenBucket({ rate: 10, burst: 2, clock: new ManualClock(0) });
    expect(() => tb.setLimit({ rate: -1 })).toThrow(RangeError);
    expect(() => tb.setLimit({ rate: -1 })).toThrow(/rate must be greater than 0/);
    expect(() => tb.setLimit({ rate: 10, brust: 3 } as never)).toThrow(/unknown option "brust" \(did you mean "burst"\?\)/);
    expect(() => tb.setLimit({ rate: 10, maxQueued: 3 } as never)).toThrow(TypeError);
    expect(() => tb.setLimit({ rate: 1e-6, burst: 1e6 })).toThrow(/more than 2\^52 ns/);
    expect(tb.rate).toBe(10);
    expect(tb.burst).toBe(2);
  });

  test('a change left unfinished by a dead thread (WRITER held) is cleared by reclaimThread of that thread', () => {
    const tb = new TokenBucket({ rate: 10, clock: new ManualClock(0) });
    const words = new Int32Array(tb.share().buffer);
    Atomics.store(words, LimiterLayout.I32.WRITER, 4242 + 1);
    tb.reclaimThread(4242);
    expect(Atomics.load(words, LimiterLayout.I32.WRITER)).toBe(0);
    tb.setLimit({ rate: 20 });
    expect(tb.rate).toBe(20);
  });
});

describe('FixedWindow.setLimit', () => {
  test('the window in progress keeps its start and count: a raise admits the waiting calls up to the new maxCalls at once', async () => {
    const clock = new ManualClock(0);
    const fw = new FixedWindow({ maxCalls: 3, periodMs: 100, clock });
    const starts: number[] = [];
    const calls = Array.from({ length: 8 }, () => fw.run(() => starts.push(clock.nowMs())));
    await clock.advance(10);
    fw.setLimit({ maxCalls: 5, periodMs: 100 });
    await settle();
    expect(starts).toEqual([0, 0, 0, 10, 10]);
    await clock.advance(100);
    await Promise.all(calls);
    expect(starts).toEqual([0, 0, 0, 10, 10, 100, 100, 100]);
  });

  test('a lower maxCalls below the count admits no one more in that window', async () => {
    const clock = new ManualClock(0);
    const fw = new FixedWindow({ maxCalls: 5, periodMs: 100, clock });
    for (let k = 0; k < 4; k++) expect(fw.tryAcquire()).toBe(true);
    await clock.advance(10);
    fw.setLimit({ maxCalls: 2, periodMs: 100 });
    expect(fw.tryAcquire()).toBe(false);
    await clock.advance(89);
    expect(fw.tryAcquire()).toBe(false);
    await clock.advance(1);
    expect(fw.tryAcquire()).toBe(true);
    expect(fw.tryAcquire()).toBe(true);
    expect(fw.tryAcquire()).toBe(false);
  });

  test('a longer period stretches the window in progress (count kept); a shorter one it has outlived starts a new window at the change', async () => {
    const clock = new ManualClock(0);
    const fw = new FixedWindow({ maxCalls: 2, periodMs: 100, clock });
    expect(fw.tryAcquire() && fw.tryAcquire()).toBe(true);
    await clock.advance(50);
    fw.setLimit({ maxCalls: 2, periodMs: 300 }); // window [0, 300), 2 counted
    await clock.advance(200); // 250: the old 100 ms windows would have renewed twice
    expect(fw.tryAcquire()).toBe(false);
    await clock.advance(50); // 300: the next window
    expect(fw.tryAcquire() && fw.tryAcquire()).toBe(true);
    expect(fw.tryAcquire()).toBe(false);
    await clock.advance(80); // 380, 80 ms into [300, 600)
    fw.setLimit({ maxCalls: 3, periodMs: 50 }); // outlived: a new window [380, 430), nothing counted
    expect(fw.tryAcquire() && fw.tryAcquire() && fw.tryAcquire()).toBe(true);
    expect(fw.tryAcquire()).toBe(false);
    await clock.advance(50);
    expect(fw.tryAcquire()).toBe(true);
    expect(fw.periodMs).toBe(50);
  });

  test('repeated changes never reset the count of the window in progress', async () => {
    const clock = new ManualClock(0);
    const fw = new FixedWindow({ maxCalls: 3, periodMs: 1000, clock });
    let admitted = 0;
    for (let k = 0; k < 300; k++) {
      fw.setLimit({ maxCalls: 3, periodMs: 1000 });
      if (fw.tryAcquire()) admitted++;
      await clock.advance(1);
    }
    expect(admitted).toBe(3);
  });

  test('an invalid setting throws naming the option; maxCalls is at most 2^24 − 1', () => {
    const fw = new FixedWindow({ maxCalls: 3, clock: new ManualClock(0) });
    expect(() => fw.setLimit({ maxCalls: 2 ** 24 })).toThrow(/maxCalls must be at most 16777215/);
    expect(() => fw.setLimit({ maxCalls: 3, rate: 2 } as never)).toThrow(/FixedWindow.setLimit options: unknown option "rate"/);
    expect(() => new FixedWindow({ maxCalls: 2 ** 24 })).toThrow(RangeError);
    expect(fw.maxCalls).toBe(3);
  });
});

describe('ConcurrencyLimit.setLimit', () => {
  test('a lower max lets the held permits finish and admits no one until fewer than it are held; a raise admits the waiting calls at once', async () => {
    const limit = new ConcurrencyLimit({ max: 4 });
    const held = await Promise.all(Array.from({ length: 4 }, () => limit.acquire()));
    const waiting = Array.from({ length: 3 }, () => limit.acquire());
    limit.setLimit({ max: 2 });
    expect(limit.max).toBe(2);
    held.pop()!.release();
    held.pop()!.release();
    await settle();
    expect(limit.inFlight).toBe(2);
    expect(limit.size).toBe(3);
    held.pop()!.release(); // 1 held: one waiting call gets the second permit
    await settle();
    expect(limit.inFlight).toBe(2);
    expect(limit.size).toBe(2);
    expect(limit.tryAcquire()).toBe(false);
    limit.setLimit({ max: 10 });
    await settle();
    expect(limit.size).toBe(0);
    expect(limit.inFlight).toBe(4);
    for (const p of [...held, ...(await Promise.all(waiting))]) p.release();
    expect(limit.inFlight).toBe(0);
  });

  test('an invalid setting throws naming the option and changes nothing', () => {
    const limit = new ConcurrencyLimit({ max: 3 });
    expect(() => limit.setLimit({ max: 0 })).toThrow(/max must be at least 1/);
    expect(() => limit.setLimit({ mx: 2 } as never)).toThrow(/did you mean "max"/);
    expect(limit.max).toBe(3);
  });
});
