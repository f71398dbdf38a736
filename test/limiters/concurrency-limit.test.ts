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
            release.push(() => {
              inFlight--;
              resolve();
            });
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
    await expect(
      limit.run(() => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
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

describe('ConcurrencyLimit.release counts what this thread holds', () => {
  test('release() beyond what this thread holds throws a RangeError naming the held count and leaves the limit unchanged', () => {
    const limit = new ConcurrencyLimit({ max: 2 });
    expect(() => limit.release()).toThrow(
      new RangeError('release(1) exceeds the 0 permits held by this thread (taken here with tryAcquire, acquire or run, not yet released)'),
    );
    expect(() => limit.release(2)).toThrow(/release\(2\) exceeds the 0 permits held/);
    expect(limit.inFlight).toBe(0);
    expect(limit.tryAcquire()).toBe(true);
    expect(limit.tryAcquire()).toBe(true);
    expect(limit.tryAcquire()).toBe(false);
    expect(() => limit.release(3)).toThrow(RangeError);
    expect(() => limit.release(3)).toThrow(/release\(3\) exceeds the 2 permits held/);
    expect(limit.inFlight).toBe(2);
    expect(limit.tryAcquire()).toBe(false);
    limit.release(2);
    expect(limit.inFlight).toBe(0);
    expect(limit.tryAcquire(2)).toBe(true);
    expect(limit.tryAcquire()).toBe(false);
    limit.release(2);
  });

  test('a permit from acquire() released through its permit still works with release counting, as does one handed over from the queue', async () => {
    const limit = new ConcurrencyLimit({ max: 2 });
    const first = await limit.acquire();
    expect(limit.tryAcquire()).toBe(true);
    first.release();
    expect(limit.inFlight).toBe(1);
    expect(() => limit.release(2)).toThrow(/release\(2\) exceeds the 1 permit held/);
    limit.release();
    expect(limit.inFlight).toBe(0);
    expect(() => limit.release()).toThrow(RangeError);

    // A call that waited gets its permit from the queue; release(n) may give that one back too.
    const a = await limit.acquire();
    const b = await limit.acquire();
    const queued = limit.acquire();
    await tick();
    expect(limit.size).toBe(1);
    a.release();
    const c = await queued;
    expect(limit.inFlight).toBe(2);
    expect(() => limit.release(3)).toThrow(/release\(3\) exceeds the 2 permits held/);
    b.release();
    limit.release();
    expect(limit.inFlight).toBe(0);
    expect(() => limit.release()).toThrow(RangeError);
    c.release();
    expect(limit.inFlight).toBe(0);
  });

  test('a permit whose slot release(n) already gave back gives back nothing when released, so the limit is never raised', async () => {
    const limit = new ConcurrencyLimit({ max: 2 });
    const a = await limit.acquire();
    const b = await limit.acquire();
    limit.release(2);
    expect(limit.inFlight).toBe(0);
    a.release();
    b[Symbol.dispose]();
    expect(limit.inFlight).toBe(0);
    expect(limit.tryAcquire()).toBe(true);
    expect(limit.tryAcquire()).toBe(true);
    expect(limit.tryAcquire()).toBe(false);
    limit.release(2);
  });
});
