import { describe, expect, test } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { KeyedTableLayout } from '../../src/keyed/keyed-table.js';
import { KeyedTokenBucket } from '../../src/keyed/keyed-token-bucket.js';
import { intervalExcess, type TimedSetting } from './change-bound.js';

const ms = (x: number): bigint => BigInt(Math.round(x * 1e6));
/** Lets promise callbacks and the limit-change notification (a waitAsync resolution) run. */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
};

/** Tokens of `key` taken one by one at `t` ms until refused (at most `max`). */
function drain(k: KeyedTokenBucket, key: string, t: number, max = 100): number {
  let n = 0;
  while (n < max && k.tryAcquireAt(key, ms(t))) n++;
  return n;
}

describe('KeyedTokenBucket.setLimit with an injected clock: each key keeps its bucket', () => {
  test('a raise keeps the tokens each key is missing (converted to the new interval), not a fresh burst', async () => {
    const clock = new ManualClock(0);
    const k = new KeyedTokenBucket({ rate: 10, burst: 5, clock }); // one token every 100 ms
    expect(drain(k, 'a', 0)).toBe(5);
    expect(drain(k, 'b', 0, 2)).toBe(2);
    await clock.advance(10);
    // 'a' misses 4.9 tokens; at 1000/s that is 4.9 ms of debt: 0.1 token now, its next at 10.9 ms.
    // 'b' misses 1.9 (3.1 held): 3 now.
    k.setLimit({ rate: 1000, burst: 5 });
    expect(k.rate).toBe(1000);
    expect(drain(k, 'a', 10)).toBe(0);
    expect(drain(k, 'a', 10.899)).toBe(0);
    expect(drain(k, 'a', 10.9)).toBe(1);
    expect(drain(k, 'b', 10)).toBe(3);
    expect(drain(k, 'a', 20)).toBe(5); // then the new rate and burst in full
    expect(drain(k, 'never-seen', 10)).toBe(5); // a key without a bucket has a full one of the new burst
  });

  test('a lower rate keeps the tokens each key holds, at most the new burst; an empty key stays empty', () => {
    const clock = new ManualClock(0);
    const k = new KeyedTokenBucket({ rate: 1000, burst: 10, clock });
    expect(drain(k, 'empty', 0)).toBe(10);
    expect(drain(k, 'half', 0, 4)).toBe(4); // 6 held
    expect(drain(k, 'some', 0, 8)).toBe(2 + 6); // 2 held
    k.setLimit({ rate: 10, burst: 4 }); // one every 100 ms
    expect(drain(k, 'empty', 0)).toBe(0);
    expect(drain(k, 'empty', 99.999)).toBe(0);
    expect(drain(k, 'empty', 100)).toBe(1);
    expect(drain(k, 'half', 0)).toBe(4); // 6 held, capped at the new burst
    expect(drain(k, 'some', 0)).toBe(2);
    expect(drain(k, 'some', 100)).toBe(1);
  });

  test('a key untouched for long is a full bucket at the change: a raise gives it the new burst, a lower rate with a larger burst only the tokens it held (as a key never seen)', async () => {
    const clock = new ManualClock(0);
    const k = new KeyedTokenBucket({ rate: 10, burst: 2, clock });
    expect(drain(k, 'old', 0)).toBe(2);
    await clock.advance(10_000);
    k.setLimit({ rate: 100, burst: 6 });
    expect(drain(k, 'old', 10_000)).toBe(6);
    expect(drain(k, 'other', 10_000, 3)).toBe(3);
    await clock.advance(10_000);
    // Rate lowered to 1/s, burst raised to 8: a full bucket of 6 keeps its 6 tokens (2 missing),
    // and so does a key that has no bucket yet; the two missing come at the new rate.
    k.setLimit({ rate: 1, burst: 8 });
    expect(drain(k, 'old', 20_000)).toBe(6);
    expect(drain(k, 'new', 20_000)).toBe(6);
    expect(drain(k, 'new', 20_999)).toBe(0);
    expect(drain(k, 'new', 21_000)).toBe(1);
    // Once a whole new bucket's time has passed, a new key gets the full new burst.
    expect(drain(k, 'later', 28_000)).toBe(8);
    expect(drain(k, 'old', 28_000)).toBe(8);
  });

  test('the calls waiting for a key, in several keys, are timed again at once: a raise releases them as the new buckets allow, then at the new rate', async () => {
    const clock = new ManualClock(0);
    const k = new KeyedTokenBucket({ rate: 10, burst: 1, clock }); // one every 100 ms per key
    const starts = new Map<string, number[]>([
      ['a', []],
      ['b', []],
    ]);
    const calls = ['a', 'b'].flatMap((key) => Array.from({ length: 6 }, () => k.run(key, () => starts.get(key)!.push(clock.nowMs()))));
    await clock.advance(10);
    expect(starts.get('a')).toEqual([0]);
    expect(k.size).toBe(10);
    // At 10 ms each key misses 0.9 token; at 1000/s that is 0.9 ms, so 4 of a burst of 5 are there.
    k.setLimit({ rate: 1000, burst: 5 });
    await settle();
    expect(starts.get('a')).toEqual([0, 10, 10, 10, 10]);
    expect(starts.get('b')).toEqual([0, 10, 10, 10, 10]);
    await clock.advance(5);
    await Promise.all(calls);
    expect(starts.get('a')).toEqual([0, 10, 10, 10, 10, 10.9]);
    expect(starts.get('b')).toEqual([0, 10, 10, 10, 10, 10.9]);
    expect(k.snapshot()).toMatchObject({ admitted: 12, queued: 0, refused: { queue_full: 0, queue_timeout: 0, aborted: 0 } });
  });

  test('a lower limit holds the waiting calls of a key to it at once, and estimates use it', async () => {
    const clock = new ManualClock(0);
    const k = new KeyedTokenBucket({ rate: 1000, burst: 10, clock });
    const starts: number[] = [];
    const calls = Array.from({ length: 13 }, () => k.run('a', () => starts.push(clock.nowMs())));
    expect(starts.length).toBe(10);
    k.setLimit({ rate: 10, burst: 1 }); // empty bucket: the next token 100 ms later
    expect(k.estimateWaitMs('a')).toBe(400); // behind the 3 waiting here
    expect(k.estimateWaitMs('fresh')).toBe(0);
    await clock.advance(350);
    await Promise.all(calls);
    expect(starts.slice(10)).toEqual([100, 200, 300]);
  });

  test('over 40 random changes with random demand on 6 keys, no interval of a key around a change admits more than the larger of the old bound (b + L/T) and the new (b′ + L/T′); the bound is reached', async () => {
    const clock = new ManualClock(0);
    const first = { rate: 10, burst: 5 };
    const k = new KeyedTokenBucket({ ...first, periodMs: 100, clock });
    let seed = 11;
    const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const changes: TimedSetting[] = [{ before: 0n, after: 0n, ...first }];
    const keys = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5'];
    const admitted = new Map<string, bigint[]>(keys.map((key) => [key, []]));
    let t = 0;
    const load = (until: number): void => {
      while (t < until) {
        t += random() * 4;
        // Keys k0 and k1 are asked for often enough to be held to their limit; the others less,
        // and some are left alone for whole settings, so they cross changes untouched.
        const key = keys[Math.floor(random() * (random() < 0.5 ? 2 : keys.length))]!;
        for (let tries = 1 + Math.floor(random() * 8); tries > 0; tries--) if (k.tryAcquireAt(key, ms(t))) admitted.get(key)!.push(ms(t));
      }
    };
    for (let change = 1; change <= 40; change++) {
      load(t + 100 + random() * 400);
      await clock.advance(t - clock.nowMs());
      const next = { before: clock.now(), after: clock.now(), rate: 1 + Math.floor(random() * 60), burst: 1 + Math.floor(random() * 15) };
      k.setLimit({ rate: next.rate, periodMs: 100, burst: next.burst });
      expect([k.rate, k.burst]).toEqual([next.rate, next.burst]);
      changes.push(next);
    }
    load(t + 300);
    let worst = -Infinity;
    for (const key of keys) worst = Math.max(worst, intervalExcess(admitted.get(key)!, changes, 100));
    expect(worst).toBeLessThanOrEqual(0);
    expect(worst).toBeGreaterThan(-1);
    expect([...admitted.values()].every((a) => a.length > 100)).toBe(true);
  });

  test('setLimit keeps the table: keys, counters and the threads attached (share() still builds the same table); every change reaches every slot, however many', async () => {
    const clock = new ManualClock(0);
    const k = new KeyedTokenBucket({ rate: 10, burst: 3, slots: 64, clock });
    for (let i = 0; i < 40; i++) expect(drain(k, `key-${i}`, 0)).toBe(3);
    // Three changes in a row: the settings records alternate, every bucket converted each time.
    k.setLimit({ rate: 20, burst: 3 });
    k.setLimit({ rate: 5, burst: 2 });
    k.setLimit({ rate: 10, burst: 3 });
    const snap = k.snapshot();
    expect(snap).toMatchObject({ admitted: 120, keysInUse: 40, keysActive: 40, inserted: 40 });
    // Each bucket converted three times: 3 missing at 20/s, then 2 missing of a burst of 2 at 5/s
    // (the tokens held, none), then those 2 missing of a burst of 3 at 10/s: 1 token each.
    for (let i = 0; i < 40; i++) expect(drain(k, `key-${i}`, 0)).toBe(1);
    expect(k.share().options).toMatchObject({ slots: 64, overflowRate: 10, overflowBurst: 3 });
    await clock.advance(100);
    expect(drain(k, 'key-0', 100)).toBe(1);
  });

  test('slots, probeWindow and the overflow bucket cannot change: refused by name with why; invalid settings name the option; nothing changes then', () => {
    const k = new KeyedTokenBucket({ rate: 10, burst: 2, clock: new ManualClock(0) });
    expect(() => k.setLimit({ rate: 10, slots: 8192 } as never)).toThrow(TypeError);
    expect(() => k.setLimit({ rate: 10, slots: 8192 } as never)).toThrow(/slots cannot change at runtime \(the table is allocated once with its slots\)/);
    expect(() => k.setLimit({ rate: 10, probeWindow: 8 } as never)).toThrow(/probeWindow cannot change at runtime/);
    expect(() => k.setLimit({ rate: 10, overflowRate: 8 } as never)).toThrow(/overflowRate cannot change at runtime/);
    expect(() => k.setLimit({ rate: 10, overflowBurst: 8 } as never)).toThrow(/overflowBurst cannot change at runtime/);
    expect(() => k.setLimit({ rate: 10, brust: 3 } as never)).toThrow(/KeyedTokenBucket.setLimit options: unknown option "brust" \(did you mean "burst"\?\)/);
    expect(() => k.setLimit({ rate: 10, capacity: 3 } as never)).toThrow(/renamed "slots"/);
    expect(() => k.setLimit({ rate: -1 })).toThrow(RangeError);
    expect(() => k.setLimit({ rate: 2e6 })).toThrow(/more than one token per microsecond/);
    expect(() => k.setLimit({ burst: 3 } as never)).toThrow(/rate is required/);
    expect(() => k.setLimit(null as never)).toThrow(TypeError);
    expect([k.rate, k.periodMs, k.burst]).toEqual([10, 1000, 2]);
  });

  test('a call asking for more than the new burst is refused naming it', () => {
    const k = new KeyedTokenBucket({ rate: 10, burst: 8, overflowBurst: 8, clock: new ManualClock(0) });
    expect(k.tryAcquire('a', 6)).toBe(true);
    k.setLimit({ rate: 10, burst: 4 });
    expect(() => k.tryAcquire('a', 6)).toThrow(/burst/);
  });

  test('a change left unfinished by a dead thread (WRITER held) is cleared by reclaimThread of that thread', () => {
    const k = new KeyedTokenBucket({ rate: 10, clock: new ManualClock(0) });
    const words = new Int32Array(k.share().buffer);
    Atomics.store(words, KeyedTableLayout.I32.WRITER, 4242 + 1);
    k.reclaimThread(4242);
    expect(Atomics.load(words, KeyedTableLayout.I32.WRITER)).toBe(0);
    k.setLimit({ rate: 20 });
    expect(k.rate).toBe(20);
  });
});
