import { afterEach, describe, expect, test } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { KeyedTokenBucket } from '../../src/keyed/keyed-token-bucket.js';
import { killAll, spawnTableWorker } from '../table-workers.js';

afterEach(killAll);

describe('KeyedTokenBucket.reclaimThread', () => {
  test("a worker that dies with calls queued on a key: reclaimThread returns its queued count and its row (snapshot().queued back to the main thread's 1, a new thread can attach under maxThreads 2), and the key's bucket keeps its exact rate for the main thread", async () => {
    // 10 per second per key: T = 100 ms, burst 2. Every thread reads a clock at 0 that only the
    // test moves, so the worker's calls wait for good.
    const clock = new ManualClock(0);
    const bucket = new KeyedTokenBucket({ rate: 10, burst: 2, maxThreads: 2, slots: 64, clock });
    expect(bucket.tryAcquire('k')).toBe(true);
    expect(bucket.tryAcquire('k')).toBe(true);
    const admittedAt: bigint[] = [];
    const mine = bucket.run('k', () => {
      admittedAt.push(clock.now());
    });
    expect(bucket.snapshot().queued).toBe(1);

    const doomed = spawnTableWorker({ descriptor: bucket.share(), manualClockMs: 0 });
    await doomed.next('attached');
    doomed.send({ op: 'acquire', key: 'k', count: 3 });
    expect((await doomed.next('submitted')).size).toBe(3);
    expect(bucket.snapshot().queued).toBe(4);
    expect(bucket.queuedTotal).toBe(4);

    const full = spawnTableWorker({ descriptor: bucket.share(), manualClockMs: 0 });
    const refused = await full.next('attach-failed');
    expect(refused.name).toBe('RangeError');
    expect(refused.message).toMatch(/maxThreads \(2\)/);

    await doomed.kill();
    // Dead, not reclaimed: its queued calls still count and its row is still taken.
    expect(bucket.snapshot().queued).toBe(4);
    expect((await spawnTableWorker({ descriptor: bucket.share(), manualClockMs: 0 }).next('attach-failed')).name).toBe('RangeError');

    expect(bucket.reclaimThread(doomed.threadId)).toEqual({ queuedCalls: 3 });
    expect(bucket.snapshot().queued).toBe(1);
    expect(bucket.queuedTotal).toBe(1);
    expect(bucket.reclaimThread(doomed.threadId)).toEqual({ queuedCalls: 0 }); // nothing twice

    // The freed row takes a new thread, which can use the table.
    const next = spawnTableWorker({ descriptor: bucket.share(), manualClockMs: 0 });
    await next.next('attached');
    next.send({ op: 'try', key: 'other', count: 3 });
    expect((await next.next('tried')).admitted).toBe(2);

    // The key's bucket: the main thread's waiting call at 100 ms, then one every 100 ms, not more.
    await clock.advance(100);
    await mine;
    expect(admittedAt).toEqual([100_000_000n]);
    expect(bucket.snapshot().queued).toBe(0);
    expect(bucket.tryAcquire('k')).toBe(false);
    await clock.advance(100);
    expect(bucket.tryAcquire('k')).toBe(true);
    expect(bucket.tryAcquire('k')).toBe(false);
    expect(bucket.snapshot().admitted).toBe(2 + 1 + 1 + 2);
  });

  test('reclaimThread of a worker that held its row with nothing queued frees the row only: the queued count of the live threads is untouched', async () => {
    const clock = new ManualClock(0);
    const bucket = new KeyedTokenBucket({ rate: 10, burst: 1, maxThreads: 2, slots: 64, clock });
    expect(bucket.tryAcquire('k')).toBe(true);
    const waiting = bucket.acquire('k');
    const idle = spawnTableWorker({ descriptor: bucket.share(), manualClockMs: 0 });
    await idle.next('attached');
    await idle.kill();
    expect(bucket.reclaimThread(idle.threadId)).toEqual({ queuedCalls: 0 });
    expect(bucket.snapshot().queued).toBe(1);
    await spawnTableWorker({ descriptor: bucket.share(), manualClockMs: 0 }).next('attached'); // the row is free again
    await clock.advance(100);
    await waiting;
    expect(bucket.snapshot().queued).toBe(0);
  });
});
