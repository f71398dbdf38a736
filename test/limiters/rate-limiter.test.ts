import { describe, expect, test } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import type { FixedWindow } from '../../src/limiters/fixed-window.js';
import type { TokenBucket } from '../../src/limiters/token-bucket.js';
import { RateLimiter } from '../../src/rate-limiter.js';
import { fixture } from '../helpers.js';

describe('RateLimiter facade', () => {
  test('wrap(fn) returns a function whose calls queue, keep `this` and resolve with fn results', async () => {
    const clock = new ManualClock();
    const limiter = new RateLimiter({ maxCalls: 10, periodMs: 1000, burst: 1, clock });
    const obj = {
      base: 5,
      add: limiter.wrap(function (this: { base: number }, x: number) {
        return this.base + x;
      }),
    };
    const results = Promise.all([obj.add(1), obj.add(2), obj.add(3)]);
    await clock.advance(200);
    expect(await results).toEqual([6, 7, 8]);
  });

  test('onLimited is called with the estimated wait whenever a call has to wait', async () => {
    const clock = new ManualClock();
    const waits: number[] = [];
    const limiter = new RateLimiter({ maxCalls: 10, periodMs: 1000, burst: 1, clock, onLimited: (e) => waits.push(e.waitMs) });
    const calls = [limiter.acquire(), limiter.acquire(), limiter.acquire()];
    await clock.advance(300);
    await Promise.all(calls);
    expect(waits).toEqual([100, 200]);
  });

  test("algorithm 'fixed-window' admits maxCalls per period", async () => {
    const clock = new ManualClock();
    const limiter = new RateLimiter({ maxCalls: 2, periodMs: 50, algorithm: 'fixed-window', clock });
    const starts: number[] = [];
    const calls = Array.from({ length: 5 }, () => limiter.run(() => starts.push(clock.nowMs())));
    await clock.advance(200);
    await Promise.all(calls);
    expect(starts).toEqual([0, 0, 50, 50, 100]);
  });

  test('@limiter.limit (TC39 decorator, compiled by tsc) makes method calls queue like the seed @rate_limit', async () => {
    const mod = (await import(fixture('decorated').href)) as typeof import('../fixtures/decorated.js');
    const client = new mod.Client();
    const sent = Promise.all([client.send('a'), client.send('b'), client.send('c')]);
    await mod.clock.advance(100);
    expect(await sent).toEqual(['sent a', 'sent b', 'sent c']);
    expect(client.calls).toEqual([0, 50, 100]);
  });

  test("setLimit({ maxCalls, periodMs, burst }) changes the token bucket it wraps, with the constructor's defaults (burst = maxCalls, periodMs 1000)", () => {
    const clock = new ManualClock();
    const limiter = new RateLimiter({ maxCalls: 2, periodMs: 100, clock });
    expect([limiter.tryAcquire(), limiter.tryAcquire(), limiter.tryAcquire()]).toEqual([true, true, false]);
    limiter.setLimit({ maxCalls: 5, periodMs: 100 });
    const bucket = limiter.limiter as TokenBucket;
    expect([bucket.rate, bucket.periodMs, bucket.burst]).toEqual([5, 100, 5]);
    // A raise keeps the tokens missing (2 of 5): 3 more at once, then none.
    expect(Array.from({ length: 4 }, () => limiter.tryAcquire())).toEqual([true, true, true, false]);
    limiter.setLimit({ maxCalls: 3, burst: 1 });
    expect([bucket.rate, bucket.periodMs, bucket.burst]).toEqual([3, 1000, 1]);
  });

  test("setLimit changes a 'fixed-window' limiter's maxCalls and period", async () => {
    const clock = new ManualClock();
    const limiter = new RateLimiter({ maxCalls: 2, periodMs: 50, algorithm: 'fixed-window', clock });
    limiter.setLimit({ maxCalls: 3, periodMs: 100 });
    const window = limiter.limiter as FixedWindow;
    expect([window.maxCalls, window.periodMs]).toEqual([3, 100]);
    const starts: number[] = [];
    const calls = Array.from({ length: 7 }, () => limiter.run(() => starts.push(clock.nowMs())));
    await clock.advance(300);
    await Promise.all(calls);
    expect(starts).toEqual([0, 0, 0, 100, 100, 100, 200]);
  });

  test('setLimit validates like the constructor, naming the option, and changes nothing when invalid', () => {
    const bucket = new RateLimiter({ maxCalls: 2, periodMs: 100 });
    const window = new RateLimiter({ maxCalls: 2, periodMs: 100, algorithm: 'fixed-window' });
    const cases: [RateLimiter, unknown, ErrorConstructor, RegExp][] = [
      [bucket, {}, TypeError, /^maxCalls is required$/],
      [bucket, { maxCalls: 0 }, RangeError, /^maxCalls must be at least 1/],
      [bucket, { maxCalls: 1.5 }, RangeError, /^maxCalls must be a whole number/],
      [bucket, { maxCalls: 2, periodMs: 0 }, RangeError, /periodMs/],
      [bucket, { maxCalls: 2, burst: 0 }, RangeError, /burst/],
      [bucket, { maxCalls: 2, algorithm: 'fixed-window' }, TypeError, /RateLimiter.setLimit options: unknown option "algorithm"/],
      [bucket, { maxCals: 2 }, TypeError, /unknown option "maxCals" \(did you mean "maxCalls"\?\)/],
      [window, { maxCalls: 2, burst: 2 }, RangeError, /^burst applies to algorithm 'token-bucket' only$/],
      [window, { maxCalls: 2 ** 24 }, RangeError, /maxCalls/],
    ];
    for (const [limiter, setting, type, message] of cases) {
      expect(() => limiter.setLimit(setting as never)).toThrow(type);
      expect(() => limiter.setLimit(setting as never)).toThrow(message);
    }
    expect([(bucket.limiter as TokenBucket).rate, bucket.limiter.periodMs, (bucket.limiter as TokenBucket).burst]).toEqual([2, 100, 2]);
    expect([(window.limiter as FixedWindow).maxCalls, window.limiter.periodMs]).toEqual([2, 100]);
  });

  test('share() / RateLimiter.attach() in the same thread returns one limiter', () => {
    const limiter = new RateLimiter({ maxCalls: 1, periodMs: 1000 });
    const again = RateLimiter.attach(limiter.share());
    expect(again.limiter).toBe(limiter.limiter);
    expect(limiter.tryAcquire()).toBe(true);
    expect(again.tryAcquire()).toBe(false);
  });
});
