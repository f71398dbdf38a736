import { describe, expect, test } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { QueueFullError, QueueTimeoutError, StoreUnavailableError } from '../../src/errors.js';
import { FairQueue } from '../../src/fair/fair-queue.js';
import { ConcurrencyLimit } from '../../src/limiters/concurrency-limit.js';
import { FixedWindow } from '../../src/limiters/fixed-window.js';
import { TokenBucket } from '../../src/limiters/token-bucket.js';
import { createRedisStore } from '../../src/stores/redis-store.js';
import { worstExcess } from '../helpers.js';
import { freePort } from '../stores/redis-server.js';
import { percentile, simulate, type Scenario } from '../../bench/lib/fair-scenario.js';

// Limit 100/s (token interval T = 10 ms); one heavy client offers 10 × that, nine light clients
// 1/20 of it each (5/s), for 10 s of simulated time. Same total queue room in both modes: the
// FIFO holds 500 calls, the fair queue 50 per flow.
const T = 10;
const overload: Scenario = { rate: 100, burst: 1, heavyRate: 1000, lights: 9, lightRate: 5, durationMs: 10_000, maxQueued: 500 };
const flows = overload.lights + 1;

describe('FairQueue: one heavy client at 10 × the rate, nine light clients at 1/20 of it each', () => {
  test(`fair: every light call is served, light wait p99 ≤ 4 T (${4 * T} ms) and max ≤ flows × T (${flows * T} ms), the heavy client gets the rest, the limit holds`, async () => {
    const r = await simulate(overload, 'fair');
    const lightWaits = r.lights.flatMap((l) => l.waits).sort((a, b) => a - b);
    for (const light of r.lights) {
      expect(light.refused).toBe(0);
      expect(light.served).toBe(light.offered); // the last arrivals are served within 100 ms of the end
    }
    expect(percentile(lightWaits, 99)).toBeLessThanOrEqual(4 * T);
    expect(lightWaits.at(-1)).toBeLessThanOrEqual(flows * T);
    const lightServed = r.lights.reduce((s, l) => s + l.served, 0);
    const ideal = overload.burst + (overload.rate * overload.durationMs) / 1000;
    // The limit is saturated (work conserving) and never exceeded, over any interval.
    expect(r.starts.length).toBeGreaterThanOrEqual(ideal - 2);
    expect(worstExcess(r.starts, overload.burst, overload.rate).excess).toBeLessThanOrEqual(1e-9);
    expect(r.heavy.served).toBe(r.starts.length - lightServed);
    expect(r.heavy.served).toBeGreaterThan(0.5 * ideal);
  });

  test('plain FIFO, same scenario, same queue room: light calls are mostly refused and the served ones wait seconds', async () => {
    const r = await simulate(overload, 'fifo');
    const lightOffered = r.lights.reduce((s, l) => s + l.offered, 0);
    const lightRefused = r.lights.reduce((s, l) => s + l.refused, 0);
    const lightWaits = r.lights.flatMap((l) => l.waits).sort((a, b) => a - b);
    expect(lightRefused).toBeGreaterThan(0.5 * lightOffered);
    expect(percentile(lightWaits, 99)).toBeGreaterThan(100 * T);
    // The limit holds here too: the difference is only who gets the admissions.
    expect(worstExcess(r.starts, overload.burst, overload.rate).excess).toBeLessThanOrEqual(1e-9);
  });
});

/** Submits `count` calls of `flow` in `level`, recording admissions by level. */
function offer(fair: FairQueue, count: number, level: string, flow: string, admitted: Record<string, number>, refused: unknown[] = []): void {
  for (let k = 0; k < count; k++) {
    fair
      .run(
        () => {
          admitted[level] = (admitted[level] ?? 0) + 1;
        },
        { flow, level },
      )
      .catch((e: unknown) => refused.push(e));
  }
}

describe('FairQueue priority levels', () => {
  test('under overload, levels get their configured shares of admissions (3:1 within ±5 %), flows within a level alternate', async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket({ rate: 100, burst: 1, clock });
    const fair = new FairQueue(bucket, { clock, levels: { interactive: { share: 3, methods: ['add'] }, batch: { share: 1 } } });
    const admitted: Record<string, number> = {};
    const byFlow: Record<string, number> = {};
    for (const flow of ['a', 'b']) {
      for (let k = 0; k < 1000; k++)
        fair
          .run(
            () => {
              admitted.interactive = (admitted.interactive ?? 0) + 1;
              byFlow[flow] = (byFlow[flow] ?? 0) + 1;
            },
            { flow, level: 'interactive' },
          )
          .catch(() => {});
    }
    offer(fair, 2000, 'batch', 'c', admitted);
    await clock.advance(8000);
    const total = admitted.interactive! + admitted.batch!;
    expect(total).toBe(801);
    expect(Math.abs(admitted.interactive! / total - 0.75)).toBeLessThanOrEqual(0.05 * 0.75);
    expect(Math.abs(admitted.batch! / total - 0.25)).toBeLessThanOrEqual(0.05 * 0.25);
    // Flow a's first call started at once, before b had any; from then on both were backlogged
    // and their admissions may differ by at most the quantum (1).
    expect(Math.abs(byFlow.a! - 1 - byFlow.b!)).toBeLessThanOrEqual(1);
    expect(fair.levelOf('add')).toBe('interactive');
    expect(fair.levelOf('anything else')).toBe('batch');
    fair.clear();
  });

  test('an idle level lends its share: a level alone gets the whole rate, and banks no credit for when the other returns', async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket({ rate: 100, burst: 1, clock });
    const fair = new FairQueue(bucket, { clock, levels: { interactive: { share: 3, methods: ['add'] }, batch: { share: 1 } } });
    const admitted: Record<string, number> = {};
    offer(fair, 5000, 'batch', 'c', admitted);
    await clock.advance(4000);
    expect(admitted.batch).toBe(401); // the whole rate: burst 1 + 100/s × 4 s
    // interactive arrives after 4 s of idleness: it gets 3/4 from now on, not 4 s of back pay.
    offer(fair, 5000, 'interactive', 'a', admitted);
    await clock.advance(4000);
    expect(admitted.interactive).toBeGreaterThanOrEqual(297);
    expect(admitted.interactive).toBeLessThanOrEqual(303);
    expect(admitted.batch! - 401).toBeGreaterThanOrEqual(97);
    fair.clear();
  });

  test('borrow: false caps a level at its share of the rate even when every other level is idle', async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket({ rate: 100, burst: 4, clock });
    const fair = new FairQueue(bucket, { clock, levels: { interactive: { share: 3, methods: ['add'] }, batch: { share: 1, borrow: false } } });
    const admitted: Record<string, number> = {};
    offer(fair, 2000, 'batch', 'c', admitted);
    await clock.advance(4000);
    // Cap: 25/s with burst 1 (a quarter of the bucket's burst of 4): 1 + 25 × 4 s.
    expect(admitted.batch).toBe(101);
    // The uncapped level still gets everything the capped one leaves.
    offer(fair, 2000, 'interactive', 'a', admitted);
    await clock.advance(4000);
    expect(admitted.batch).toBeLessThanOrEqual(101 + 100);
    expect(admitted.interactive! + admitted.batch! - 101).toBeGreaterThanOrEqual(399);
    fair.clear();
    expect(() => new FairQueue(new ConcurrencyLimit({ max: 2 }), { levels: { a: { share: 1, borrow: false } } })).toThrow(
      /levels\.a\.borrow: false needs a rate limit/,
    );
  });
});

describe('FairQueue bounds', () => {
  test('maxQueuedPerFlow refuses a flow over its bound with QueueFullError while other flows still queue', async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket({ rate: 10, burst: 1, clock });
    const fair = new FairQueue(bucket, { clock, maxQueuedPerFlow: 3 });
    const admitted: Record<string, number> = {};
    const refused: unknown[] = [];
    offer(fair, 5, 'default', 'a', admitted, refused); // 1 at once, 3 wait, 1 refused
    offer(fair, 1, 'default', 'b', admitted, refused);
    await clock.advance(0);
    expect(admitted.default).toBe(1);
    expect(refused).toHaveLength(1);
    expect(refused[0]).toBeInstanceOf(QueueFullError);
    expect((refused[0] as QueueFullError).maxQueued).toBe(3);
    expect(fair.size).toBe(4);
    await clock.advance(400);
    expect(admitted.default).toBe(5);
    expect(fair.stats().default).toEqual({
      share: 1,
      admitted: 5,
      refused: { queue_full: 1, queue_timeout: 0, store_unavailable: 0, aborted: 0 },
      queued: 0,
      flows: 0,
    });
  });

  test('maxWaitMs refuses a call still waiting at its deadline with QueueTimeoutError; it took nothing, and the queue left the limiter', async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket({ rate: 10, burst: 1, clock });
    const fair = new FairQueue(bucket, { clock, maxWaitMs: 50 });
    const starts: number[] = [];
    await fair.run(() => starts.push(clock.nowMs()), { flow: 'a' });
    const late = fair.run(() => starts.push(clock.nowMs()), { flow: 'b' }).catch((e: unknown) => e);
    await clock.advance(50);
    const error = await late;
    expect(error).toBeInstanceOf(QueueTimeoutError);
    expect((error as QueueTimeoutError).atDeadline).toBe(true);
    expect(bucket.size).toBe(0); // the queue's own call on the limiter was withdrawn
    await clock.advance(10);
    const next = fair.run(() => starts.push(clock.nowMs()), { flow: 'c', maxWaitMs: 1000 });
    await clock.advance(100);
    await next;
    expect(starts).toEqual([0, 100]); // the next token (at 100 ms) went to the next call
  });

  test('an aborted call leaves the queue with the abort reason, and the others are served in turn', async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket({ rate: 10, burst: 1, clock });
    const fair = new FairQueue(bucket, { clock });
    const order: string[] = [];
    const controller = new AbortController();
    await fair.run(() => order.push('first'), { flow: 'a' });
    const aborted = fair.run(() => order.push('aborted'), { flow: 'a', signal: controller.signal }).catch((e: unknown) => e);
    const kept = fair.run(() => order.push('kept'), { flow: 'b' });
    controller.abort(new Error('client went away'));
    expect(((await aborted) as Error).message).toBe('client went away');
    expect(fair.size).toBe(1);
    await clock.advance(100);
    await kept;
    expect(order).toEqual(['first', 'kept']);
    expect(fair.stats().default!.refused.aborted).toBe(1);
    await expect(fair.run(() => 1, { flow: 'a', signal: controller.signal })).rejects.toThrow('client went away');
  });

  test("a refusal by the limit's store (down, fail-closed) reaches each call and is counted in its level as store_unavailable, not aborted", async () => {
    // A real Redis client towards a port where nothing listens: every fetch fails, so the limit is
    // down and, fail-closed, refuses the fair queue's call on it.
    const store = createRedisStore({ url: `redis://127.0.0.1:${await freePort()}`, onStoreError: 'fail-closed', timeoutMs: 200, log: () => {} });
    try {
      const bucket = new TokenBucket({ rate: 100, burst: 1, store, key: 'fair-store-down' });
      const fair = new FairQueue(bucket, { levels: { interactive: { share: 3, methods: ['add'] }, batch: { share: 1 } } });
      const outcomes = await Promise.allSettled([
        fair.run(() => 'a', { flow: 'a', level: 'interactive' }),
        fair.run(() => 'b', { flow: 'b', level: 'interactive' }),
        fair.run(() => 'c', { flow: 'c', level: 'batch' }),
      ]);
      expect(outcomes.map((o) => (o.status === 'rejected' ? (o.reason as Error).constructor : o.value))).toEqual([
        StoreUnavailableError,
        StoreUnavailableError,
        StoreUnavailableError,
      ]);
      const none = { queue_full: 0, queue_timeout: 0, aborted: 0 };
      expect(fair.stats().interactive!.refused).toEqual({ ...none, store_unavailable: 2 });
      expect(fair.stats().batch!.refused).toEqual({ ...none, store_unavailable: 1 });
      expect(fair.size).toBe(0);
    } finally {
      await store.close();
    }
  }, 20_000);

  test("the fair queue takes one place in the limiter's queue: behind a limiter with maxQueued 1, every call of three flows is served in turn", async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket({ rate: 10, burst: 1, maxQueued: 1, clock });
    const fair = new FairQueue(bucket, { clock });
    const order: string[] = [];
    const all = Promise.all(['a', 'a', 'b', 'b', 'c', 'c'].map((flow) => fair.run(() => order.push(flow), { flow })));
    await clock.advance(500);
    await all;
    // a's first call took the bucket's one token at once, before b and c had calls; then flows alternate.
    expect(order).toEqual(['a', 'a', 'b', 'c', 'b', 'c']);
    expect(bucket.snapshot().refused.queue_full).toBe(0);
  });

  test('on a concurrency limit, a started call holds its permit until its promise settles', async () => {
    const limit = new ConcurrencyLimit({ max: 2 });
    const fair = new FairQueue(limit);
    let inFlight = 0;
    let most = 0;
    const task = async (): Promise<void> => {
      most = Math.max(most, ++inFlight);
      await new Promise((resolve) => setTimeout(resolve, 2));
      inFlight--;
    };
    await Promise.all(Array.from({ length: 12 }, (_, k) => fair.run(task, { flow: `f${k % 3}` })));
    expect(most).toBe(2);
    expect(limit.inFlight).toBe(0);
    expect(fair.size).toBe(0);
  });

  test('works in front of a fixed window, and options are validated naming the option', async () => {
    const clock = new ManualClock();
    const window = new FixedWindow({ maxCalls: 2, periodMs: 100, clock });
    const fair = new FairQueue(window, { clock });
    const starts: number[] = [];
    const all = Promise.all(Array.from({ length: 4 }, (_, k) => fair.run(() => starts.push(clock.nowMs()), { flow: `f${k}` })));
    await clock.advance(100);
    await all;
    expect(starts).toEqual([0, 0, 100, 100]);
    const bucket = new TokenBucket({ rate: 1 });
    expect(() => new FairQueue(bucket, { maxQueuedPerFlow: 0 })).toThrow(RangeError);
    expect(() => new FairQueue(bucket, { maxQueuedPerFlow: 0 })).toThrow(/maxQueuedPerFlow/);
    expect(() => new FairQueue(bucket, { levels: { a: { share: -1 } } })).toThrow(/levels\.a\.share must be greater than 0/);
    expect(() => new FairQueue(bucket, { levels: { a: { share: 1 }, b: { share: 1 } } })).toThrow(/only one level may be the default/);
    expect(() => new FairQueue(bucket, { levels: { a: { share: 1, methods: ['x'] }, b: { share: 1, methods: ['x'] } } })).toThrow(
      /method x is in levels\.a and levels\.b/,
    );
    expect(() => new FairQueue(bucket, { levels: { a: { share: 1, methods: ['x'] } } }).levelOf('y')).not.toThrow();
    expect(() => new FairQueue(bucket).run(() => 1, { flow: 'a', level: 'nope' })).toThrow(/level "nope" is not one of default/);
    expect(() => new FairQueue(bucket).run(() => 1, { flow: 7 as unknown as string })).toThrow(TypeError);
  });
});
