/**
 * The admission front end, through both limiter kinds that use it: the same scenarios against a
 * TokenBucket and a KeyedTokenBucket (rate 10/s, burst 1, one key), checking the rejection, the
 * exact event payloads (a keyed bucket's name the key, a limiter's have no key field), the shared
 * counters and the queued counts.
 */
import { describe, expect, test } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { QueueFullError, QueueTimeoutError, type RefusalCounts } from '../../src/errors.js';
import { KeyedTokenBucket } from '../../src/keyed/keyed-token-bucket.js';
import type { Permit } from '../../src/limiters/permit.js';
import { TokenBucket } from '../../src/limiters/token-bucket.js';
import type { AcquireOptions } from '../../src/options.js';

/** One limit seen through the calls the scenarios need, whatever its kind. */
interface Subject {
  clock: ManualClock;
  /** Added to every expected event payload: `{ key }` for the keyed bucket, nothing for a limiter. */
  keyField: { key?: string };
  acquire(options?: AcquireOptions): Promise<Permit>;
  run<T>(task: () => T, options?: AcquireOptions): Promise<T>;
  tryAcquire(): boolean;
  /** The explicit-time step, ignoring this thread's queue: what another thread's call does. */
  takeAt(now: bigint): boolean;
  on(event: 'limited' | 'refused', listener: (e: object) => void): void;
  off(event: 'limited' | 'refused', listener: (e: object) => void): void;
  size(): number;
  queuedTotal(): number;
  snapshot(): { refused: RefusalCounts; waited: number; waitMsTotal: number; queued: number };
}

const KINDS: [string, (maxQueued?: number) => Subject][] = [
  [
    'TokenBucket',
    (maxQueued) => {
      const clock = new ManualClock();
      const l = new TokenBucket({ rate: 10, burst: 1, clock, ...(maxQueued === undefined ? {} : { maxQueued }) });
      return {
        clock,
        keyField: {},
        acquire: (o) => l.acquire(1, o),
        run: (task, o) => l.run(task, 1, o),
        tryAcquire: () => l.tryAcquire(),
        takeAt: (now) => l.tryAcquireAt(now),
        on: (e, f) => void l.on(e, f),
        off: (e, f) => void l.off(e, f),
        size: () => l.size,
        queuedTotal: () => l.queuedTotal,
        snapshot: () => l.snapshot(),
      };
    },
  ],
  [
    'KeyedTokenBucket',
    (maxQueued) => {
      const clock = new ManualClock();
      const k = new KeyedTokenBucket({ rate: 10, burst: 1, clock, ...(maxQueued === undefined ? {} : { maxQueued }) });
      return {
        clock,
        keyField: { key: 'k' },
        acquire: (o) => k.acquire('k', 1, o),
        run: (task, o) => k.run('k', task, 1, o),
        tryAcquire: () => k.tryAcquire('k'),
        takeAt: (now) => k.tryAcquireAt('k', now),
        on: (e, f) => void k.on(e, f),
        off: (e, f) => void k.off(e, f),
        size: () => k.size,
        queuedTotal: () => k.queuedTotal,
        snapshot: () => k.snapshot(),
      };
    },
  ],
];

/** Records every event of `s`. */
function record(s: Subject): { limited: object[]; refused: object[] } {
  const events = { limited: [] as object[], refused: [] as object[] };
  s.on('limited', (e) => events.limited.push(e));
  s.on('refused', (e) => events.refused.push(e));
  return events;
}

describe.each(KINDS)('the admission front end of %s', (_name, make) => {
  test("a call that has to wait emits 'limited' with its estimated wait and the calls queued, then is admitted in its turn and counted as waited", async () => {
    const s = make();
    const events = record(s);
    expect(s.tryAcquire()).toBe(true);
    let startedAt = -1;
    const first = s.run(() => (startedAt = s.clock.nowMs()));
    const second = s.acquire();
    expect(events.limited).toStrictEqual([
      { ...s.keyField, n: 1, waitMs: 100, queued: 1 },
      { ...s.keyField, n: 1, waitMs: 200, queued: 2 },
    ]);
    expect(s.size()).toBe(2);
    expect(s.queuedTotal()).toBe(2);
    expect(s.tryAcquire()).toBe(false); // no overtaking the calls waiting in this thread
    await s.clock.advance(200);
    await Promise.all([first, second]);
    expect(startedAt).toBe(100);
    expect(s.size()).toBe(0);
    expect(s.snapshot()).toMatchObject({ waited: 2, waitMsTotal: 300, queued: 0, refused: { queue_full: 0, queue_timeout: 0, aborted: 0 } });
    expect(events.refused).toStrictEqual([]);
  });

  test('over maxQueued: QueueFullError at once, one queue_full event and count, nothing queued or taken', async () => {
    const s = make(1);
    const events = record(s);
    s.tryAcquire();
    const waiting = s.acquire();
    await expect(s.acquire()).rejects.toBeInstanceOf(QueueFullError);
    expect(events.refused).toStrictEqual([{ ...s.keyField, reason: 'queue_full', n: 1 }]);
    expect(events.limited).toHaveLength(1);
    expect(s.snapshot().refused).toStrictEqual({ queue_full: 1, queue_timeout: 0, aborted: 0 });
    expect(s.queuedTotal()).toBe(1);
    await s.clock.advance(100);
    await waiting;
  });

  test('an estimated wait over maxWaitMs: QueueTimeoutError at once (not at a deadline), a queue_timeout event and count, no limited event', async () => {
    const s = make();
    const events = record(s);
    s.tryAcquire();
    const error = await s.acquire({ maxWaitMs: 50 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QueueTimeoutError);
    expect(error).toMatchObject({ atDeadline: false, estimatedWaitMs: 100, maxWaitMs: 50, code: 'QUEUE_TIMEOUT', reason: 'queue_timeout' });
    expect(events.refused).toStrictEqual([{ ...s.keyField, reason: 'queue_timeout', n: 1 }]);
    expect(events.limited).toStrictEqual([]);
    expect(s.snapshot().refused).toStrictEqual({ queue_full: 0, queue_timeout: 1, aborted: 0 });
    expect(s.queuedTotal()).toBe(0);
  });

  test('a call still waiting at its deadline: QueueTimeoutError with the time it waited, a queue_timeout event and count; the queue empties', async () => {
    const s = make();
    const events = record(s);
    s.tryAcquire();
    const waiting = s.acquire({ maxWaitMs: 150 }).catch((e: unknown) => e); // estimated 100 ms: queued
    expect(s.size()).toBe(1);
    // Another thread's call takes the token at 100 ms, just before the waiter could.
    await s.clock.advance(99);
    expect(s.takeAt(s.clock.now() + 1_000_000n)).toBe(true);
    await s.clock.advance(100);
    const error = await waiting;
    expect(error).toBeInstanceOf(QueueTimeoutError);
    expect(error).toMatchObject({ atDeadline: true, estimatedWaitMs: 150, maxWaitMs: 150 });
    expect(events.refused).toStrictEqual([{ ...s.keyField, reason: 'queue_timeout', n: 1 }]);
    expect(s.snapshot().refused).toStrictEqual({ queue_full: 0, queue_timeout: 1, aborted: 0 });
    expect(s.size()).toBe(0);
    expect(s.queuedTotal()).toBe(0);
    expect(s.clock.pendingTimers()).toBe(0);
  });

  test('a waiting call whose signal aborts: rejected with the signal reason, an aborted event and count, its queued count given back', async () => {
    const s = make();
    const events = record(s);
    s.tryAcquire();
    const controller = new AbortController();
    const aborted = s.acquire({ signal: controller.signal });
    const after = s.acquire();
    expect(s.queuedTotal()).toBe(2);
    controller.abort(new Error('client went away'));
    await expect(aborted).rejects.toThrow('client went away');
    expect(events.refused).toStrictEqual([{ ...s.keyField, reason: 'aborted', n: 1 }]);
    expect(s.snapshot().refused).toStrictEqual({ queue_full: 0, queue_timeout: 0, aborted: 1 });
    expect(s.queuedTotal()).toBe(1);
    expect(s.size()).toBe(1);
    await s.clock.advance(100);
    await after; // takes the token the aborted call never took, at 100 ms
    expect(s.snapshot().waited).toBe(1);
  });

  test('a signal aborted before the call: refused at once with its reason, counted, never queued', async () => {
    const s = make();
    const events = record(s);
    s.tryAcquire();
    await expect(s.acquire({ signal: AbortSignal.abort(new Error('already gone')) })).rejects.toThrow('already gone');
    expect(events.refused).toStrictEqual([{ ...s.keyField, reason: 'aborted', n: 1 }]);
    expect(events.limited).toStrictEqual([]);
    expect(s.snapshot().refused.aborted).toBe(1);
    expect(s.queuedTotal()).toBe(0);
  });

  test('on() refuses an unknown event with a TypeError; off() removes a listener', () => {
    const s = make();
    expect(() => s.on('nope' as 'limited', () => {})).toThrow(new TypeError('unknown event nope'));
    const seen: object[] = [];
    const listener = (e: object): number => seen.push(e);
    s.on('refused', listener);
    s.off('refused', listener);
    s.tryAcquire();
    void s.acquire({ signal: AbortSignal.abort() }).catch(() => {});
    expect(seen).toStrictEqual([]);
  });
});
