import { afterEach, describe, expect, test } from 'vitest';
import { ConcurrencyLimit } from '../../src/limiters/concurrency-limit.js';
import { TokenBucket } from '../../src/limiters/token-bucket.js';
import { killAll, spawnTableWorker } from '../table-workers.js';

afterEach(killAll);

describe('thread-table exhaustion (maxThreads) and reclaimThread', () => {
  test("TokenBucket with maxThreads 2: a third thread's attach throws a RangeError naming maxThreads, still after the second thread died, and attaches and is admitted once reclaimThread freed the dead thread's row", async () => {
    const tb = new TokenBucket({ rate: 1000, burst: 10, maxThreads: 2 });
    const second = spawnTableWorker({ descriptor: tb.share() });
    await second.next('attached');
    second.send({ op: 'try', count: 1 });
    expect((await second.next('tried')).admitted).toBe(1);

    const third = spawnTableWorker({ descriptor: tb.share() });
    const refused = await third.next('attach-failed');
    expect(refused.name).toBe('RangeError');
    expect(refused.message).toMatch(/maxThreads \(2\)/);

    await second.kill();
    // A terminated thread runs no finalizer: its row stays taken until its owner reclaims it.
    const beforeReclaim = spawnTableWorker({ descriptor: tb.share() });
    expect((await beforeReclaim.next('attach-failed')).message).toMatch(/maxThreads \(2\)/);

    expect(tb.reclaimThread(second.threadId)).toEqual({ permits: 0, queuedCalls: 0 });
    const fourth = spawnTableWorker({ descriptor: tb.share() });
    await fourth.next('attached');
    fourth.send({ op: 'acquire', count: 2 });
    expect(await fourth.next('admitted')).toEqual({ op: 'admitted', count: 2 });
    // The main thread's own row was never touched.
    expect(tb.tryAcquire()).toBe(true);
    expect(tb.snapshot().admitted).toBe(4);
  });

  test("ConcurrencyLimit with maxThreads 2: a third thread's attach throws a RangeError naming maxThreads; after the second thread dies holding every permit, reclaimThread gives them back, a waiting call of the main thread is admitted, and a new thread attaches and takes the other permit", async () => {
    const limit = new ConcurrencyLimit({ max: 2, maxThreads: 2 });
    const second = spawnTableWorker({ descriptor: limit.share() });
    await second.next('attached');
    second.send({ op: 'acquire', count: 2, hold: true });
    await second.next('admitted');
    expect(limit.inFlight).toBe(2);

    let admitted = false;
    const waiting = limit.acquire().then((p) => {
      admitted = true;
      return p;
    });
    expect(limit.queuedTotal).toBe(1);

    const third = spawnTableWorker({ descriptor: limit.share() });
    const refused = await third.next('attach-failed');
    expect(refused.name).toBe('RangeError');
    expect(refused.message).toMatch(/maxThreads \(2\)/);

    await second.kill();
    await new Promise((r) => setTimeout(r, 20));
    expect(admitted).toBe(false); // the dead thread's permits stay taken until reclaimed
    expect(limit.reclaimThread(second.threadId)).toEqual({ permits: 2, queuedCalls: 0 });
    const permit = await waiting;
    expect(limit.inFlight).toBe(1);
    expect(limit.queuedTotal).toBe(0);

    const fourth = spawnTableWorker({ descriptor: limit.share() });
    await fourth.next('attached');
    fourth.send({ op: 'acquire', count: 1, hold: true });
    await fourth.next('admitted');
    expect(limit.inFlight).toBe(2);
    expect(limit.tryAcquire()).toBe(false);
    permit.release();
    expect(limit.inFlight).toBe(1);
  });
});
