import { describe, expect, test } from 'vitest';
import { ManualClock } from '../../src/clock.js';
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

  test('share() / RateLimiter.attach() in the same thread returns one limiter', () => {
    const limiter = new RateLimiter({ maxCalls: 1, periodMs: 1000 });
    const again = RateLimiter.attach(limiter.share());
    expect(again.limiter).toBe(limiter.limiter);
    expect(limiter.tryAcquire()).toBe(true);
    expect(again.tryAcquire()).toBe(false);
  });
});
