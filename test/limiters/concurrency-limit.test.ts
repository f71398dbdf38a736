import { describe, expect, test } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { QueueTimeoutError } from '../../src/errors.js';
import { ConcurrencyLimit } from '../../src/limiters/concurrency-limit.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('ConcurrencyLimit in one thread', () => {
  test('never more than max in flight; waiters are admitted FIFO as permits are released', async () => {
    const limit = new ConcurrencyLimit({ max: 2 });
    const order: number[] = [];
    let inFlight = 0;
    let most = 0;
    const release: (() => void)[] = [];
    const calls = Array.from({ length: 6 }, (_, i) =>
      limit.run(
        () =>
          new Promise<void>((resolve) => {
            order.push(i);
            most = Math.max(most, ++inFlight);
            release.push(() => { inFlight--; resolve(); });
          }),
      ),
    );
    for (let k = 0; k < 6; k++) {
      await tick();
      expect(limit.inFlight).toBeLessThanOrEqual(2);
      release.shift()!();
    }
    await Promise.all(calls);
    expect(order).toEqual([0, 1, 2, 3, 4, 5]);
    expect(most).toBe(2);
    expect(limit.inFlight).toBe(0);
  });

  test('a permit is released exactly once, however often release() or disposal runs', async () => {
    const limit = new ConcurrencyLimit({ max: 2 });
    const a = await limit.acquire();
    const b = await limit.acquire();
    a.release();
    a.release();
    a[Symbol.dispose]();
    expect(limit.inFlight).toBe(1);
    expect(limit.tryAcquire()).toBe(true);
    expect(limit.tryAcquire()).toBe(false);
    b.release();
  });

  test('`using` releases the permit at the end of the scope', async () => {
    const limit = new ConcurrencyLimit({ max: 1 });
    {
      await using permit = await limit.acquire();
      expect(permit).toBeDefined();
      expect(limit.inFlight).toBe(1);
    }
    expect(limit.inFlight).toBe(0);
  });

  test('a waiter whose deadline passes is refused and takes no permit; an aborted one likewise', async () => {
    const clock = new ManualClock();
    const limit = new ConcurrencyLimit({ max: 1, clock });
    const held = await limit.acquire();
    const timedOut = limit.acquire(1, { maxWaitMs: 10 }).catch((e: unknown) => e);
    const controller = new AbortController();
    const aborted = limit.acquire(1, { signal: controller.signal }).catch((e: unknown) => e);
    const last = limit.acquire();
    await clock.advance(10);
    expect(await timedOut).toBeInstanceOf(QueueTimeoutError);
    controller.abort(new Error('gone'));
    expect(((await aborted) as Error).message).toBe('gone');
    expect(limit.queuedTotal).toBe(1);
    held.release();
    const permit = await last;
    expect(limit.inFlight).toBe(1);
    permit.release();
    expect(limit.inFlight).toBe(0);
  });

  test('a task that throws still releases its permit', async () => {
    const limit = new ConcurrencyLimit({ max: 1 });
    await expect(limit.run(() => { throw new Error('boom'); })).rejects.toThrow('boom');
    await expect(limit.run(() => Promise.reject(new Error('later')))).rejects.toThrow('later');
    await tick();
    expect(limit.inFlight).toBe(0);
  });
});

describe('ConcurrencyLimit.tryAcquire', () => {
  test('permits taken with tryAcquire are given back with release(n)', () => {
    const limit = new ConcurrencyLimit({ max: 3 });
    expect(limit.tryAcquire(2)).toBe(true);
    expect(limit.tryAcquire(2)).toBe(false);
    limit.release(2);
    expect(limit.inFlight).toBe(0);
    expect(limit.tryAcquire(3)).toBe(true);
    expect(() => limit.release(4)).toThrow(RangeError);
    limit.release(3);
  });
});
