import { threadId } from 'node:worker_threads';
import { afterEach, describe, expect, test } from 'vitest';
import { ConcurrencyLimit } from '../../src/limiters/concurrency-limit.js';
import { LimiterLayout, LimiterRowLayout, SharedState } from '../../src/shared/shared-state.js';
import { killAll, spawnTableWorker } from '../table-workers.js';

afterEach(killAll);

/** The row of the thread table `owner` (a threadId) holds. */
function rowOf(state: SharedState, owner: number): number {
  for (let slot = 0; slot < state.slotCount; slot++) {
    if (Atomics.load(state.i32, state.row(slot, LimiterRowLayout.I32.OWNER)) === owner + 1) return slot;
  }
  throw new Error(`thread ${owner} holds no row`);
}

/**
 * With max 1 held by the main thread and the shared TICKET word set to `start`: a worker queues
 * two calls (labels 1, 2), then the main thread queues two (labels 3, 4), then the main thread's
 * permit is released. Returns the admission order and the head tickets published on the way.
 */
async function acrossTheWrap(start: number): Promise<{ order: number[]; workerHead: number; mainHead: number; published: number[] }> {
  const limit = new ConcurrencyLimit({ max: 1 });
  const state = SharedState.from(limit.share().buffer, 'concurrency');
  const log = new SharedArrayBuffer(4 * 16);
  const logged = new Int32Array(log);
  expect(limit.tryAcquire()).toBe(true);
  Atomics.store(state.i32, LimiterLayout.I32.TICKET, start);

  const worker = spawnTableWorker({ descriptor: limit.share(), log });
  await worker.next('attached');
  worker.send({ op: 'acquire', count: 2, labels: [1, 2] });
  expect((await worker.next('submitted')).size).toBe(2);
  const workerHead = Atomics.load(state.i32, state.row(rowOf(state, worker.threadId), LimiterRowLayout.I32.HEAD_TICKET));

  // Every ticket published from here on, sampled at each admission of the main thread and by
  // the worker's log order; a published 0 would read as "no head" and strand the call.
  const published: number[] = [workerHead];
  const mainRow = rowOf(state, threadId);
  const sample = (): void => {
    for (let slot = 0; slot < state.slotCount; slot++) {
      const t = Atomics.load(state.i32, state.row(slot, LimiterRowLayout.I32.HEAD_TICKET));
      if (t !== 0) published.push(t);
    }
  };
  const mainCalls = [3, 4].map((label) =>
    limit.acquire().then((p) => {
      sample();
      Atomics.store(logged, Atomics.add(logged, 0, 1) + 1, label);
      p.release();
    }),
  );
  const mainHead = Atomics.load(state.i32, state.row(mainRow, LimiterRowLayout.I32.HEAD_TICKET));
  sample();
  const workerDone = worker.next('admitted');
  limit.release(); // the main thread's own permit, taken with tryAcquire
  await Promise.all([...mainCalls, workerDone]);
  expect(limit.inFlight).toBe(0);
  expect(limit.queuedTotal).toBe(0);
  return { order: Array.from(logged.subarray(1, 1 + logged[0]!)), workerHead, mainHead, published };
}

describe('ConcurrencyLimit tickets across the 32-bit wrap', () => {
  test('across the signed wrap (ticket 2^31 − 1 then −2^31): waiters of two threads are served oldest first, taking turns (worker, main, worker, main)', async () => {
    const r = await acrossTheWrap(0x7ffffffe);
    expect(r.workerHead).toBe(0x7fffffff);
    expect(r.mainHead).toBe(-0x80000000);
    expect(r.order).toEqual([1, 3, 2, 4]);
  });

  test('across the unsigned wrap (ticket −1 then 0): ticket 0 is skipped, never published, and waiters of two threads are still served oldest first, taking turns', async () => {
    const r = await acrossTheWrap(-2);
    expect(r.workerHead).toBe(-1);
    expect(r.mainHead).toBe(1); // 0 is reserved for "no head published"
    expect(r.published).not.toContain(0);
    expect(r.order).toEqual([1, 3, 2, 4]);
  });

  test('the TICKET word never yields 0 even when a thread finds it at −1: the next head published is 1', async () => {
    const limit = new ConcurrencyLimit({ max: 1 });
    const state = SharedState.from(limit.share().buffer, 'concurrency');
    expect(limit.tryAcquire()).toBe(true);
    Atomics.store(state.i32, LimiterLayout.I32.TICKET, -1);
    const waiting = limit.acquire();
    expect(Atomics.load(state.i32, state.row(rowOf(state, threadId), LimiterRowLayout.I32.HEAD_TICKET))).toBe(1);
    expect(Atomics.load(state.i32, LimiterLayout.I32.TICKET)).toBe(1);
    limit.release();
    (await waiting).release();
    expect(limit.inFlight).toBe(0);
  });
});
