/**
 * The concurrency limit held in Redis, across processes and threads (real redis-server, real
 * child processes and worker threads): at most `max` calls in flight over all of them, judged on
 * every call's start and end instant (CLOCK_MONOTONIC, one clock for every process); waiting costs
 * a bounded number of round trips per admitted call (no polling); every permit is released exactly
 * once (the store's count is back to 0, no holder left); and the permits of a process killed with
 * SIGKILL while holding them come back when its lease runs out, by themselves.
 */
import { fork } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConcurrencyLimit, StoreUnavailableError } from '../../src/index.js';
import { createRedisStore } from '../../src/stores/redis-store.js';
import type { ConcurrencyConfig, ConcurrencyResult } from '../fixtures/redis-concurrency.js';
import { fixturePath, startLoad } from './redis-load-run.js';
import { startRedis, type TestRedis } from './redis-server.js';

const MAX = 4;
const LEASE_MS = 1500;

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

/** Start (+1) and end (−1) events of `calls`, in time order; at one instant an end comes first (a permit is released after its call ended). */
function events(calls: [bigint, bigint][]): [bigint, number][] {
  const list = calls.flatMap(([s, e]): [bigint, number][] => [
    [s, 1],
    [e, -1],
  ]);
  return list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1]));
}

/** Most calls in flight at once within [from, to] (ns), and the mean number in flight over it. */
function overlap(calls: [bigint, bigint][], from: bigint, to: bigint): { most: number; mean: number } {
  let cur = 0;
  let most = 0;
  let area = 0;
  let last = from;
  for (const [t, d] of events(calls)) {
    if (t > from && t <= to) {
      area += cur * Number(t - last);
      last = t;
    }
    cur += d;
    if (t >= from && t <= to) most = Math.max(most, cur);
  }
  area += cur * Number(to > last ? to - last : 0n);
  return { most, mean: area / Number(to - from) };
}

/** The first instant after `after` at which more than `n` calls are in flight. */
function firstAbove(calls: [bigint, bigint][], n: number, after: bigint): bigint | undefined {
  let cur = 0;
  for (const [t, d] of events(calls)) {
    cur += d;
    if (t > after && cur > n) return t;
  }
  return undefined;
}

const config = (over: Partial<ConcurrencyConfig>): ConcurrencyConfig => ({
  mode: 'load',
  url: redis.url,
  prefix: `cc:${Math.random()}:`,
  max: MAX,
  permitLeaseMs: LEASE_MS,
  threads: 2,
  inFlight: 6,
  holdMs: [5, 15],
  durationMs: 2000,
  ...over,
});

const asBig = (r: ConcurrencyResult[]): [bigint, bigint][] => r.flatMap((x) => x.calls.map(([s, e]) => [BigInt(s), BigInt(e)] as [bigint, bigint]));

describe('ConcurrencyLimit in Redis across 3 processes × 2 threads', () => {
  it('never has more than max calls in flight over all of them, keeps the limit busy, with ≤ 3 round trips per admitted call, and every permit released exactly once', async () => {
    const base = config({});
    const load = await startLoad<ConcurrencyResult>([base, base, base], 'redis-concurrency');
    const results = await load.results;
    const calls = asBig(results);
    const { most, mean } = overlap(calls, load.startAt, load.startAt + 2_000_000_000n);
    const roundTrips = results.reduce((a, r) => a + r.store.roundTrips, 0);
    console.log(
      `${calls.length} calls; most in flight ${most} (max ${MAX}); mean in flight ${mean.toFixed(2)}; round trips ${roundTrips} (${(roundTrips / calls.length).toFixed(2)} per call); per process ${results.map((r) => r.calls.length).join('+')}`,
    );
    expect(results.every((r) => r.store.errors === 0)).toBe(true);
    expect(most).toBeLessThanOrEqual(MAX);
    // The limit was the bottleneck (36 calls waiting for 4 permits): permits did not sit idle.
    expect(mean).toBeGreaterThan(0.5 * MAX);
    // Waiting is notified, not polled: a sync to ask, one to release, sometimes a renewal.
    expect(roundTrips / calls.length).toBeLessThanOrEqual(3);
    // Exactly once: every grant was matched by one release, and every holder left the store.
    expect(redis.cli('HGET', `${base.prefix}{shared}:cl`, 'n')).toBe('0');
    expect(redis.cli('ZCARD', `${base.prefix}{shared}:cl:leases`)).toBe('0');
    expect(results.every((r) => r.store.leased === r.store.givenBack)).toBe(true);
  }, 60_000);

  it('a process killed with SIGKILL while holding 2 of 4 permits: the others never exceed the 2 left, and get the 2 back within permitLeaseMs of the kill', async () => {
    const prefix = `cc:${Math.random()}:`;
    const holder = fork(fixturePath('redis-concurrency'), [JSON.stringify(config({ prefix, mode: 'hold', holdPermits: 2 }))], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        holder.once('message', () => resolve());
        holder.once('exit', (code) => reject(new Error(`holder exited ${code}`)));
      });
      const base = config({ prefix, durationMs: 4000 });
      const load = await startLoad<ConcurrencyResult>([base, base], 'redis-concurrency');
      await new Promise((r) => setTimeout(r, 1000 + Number(load.startAt - process.hrtime.bigint()) / 1e6));
      const killedAt = process.hrtime.bigint();
      holder.kill('SIGKILL');
      const results = await load.results;
      const calls = asBig(results);
      const before = overlap(calls, load.startAt, killedAt);
      const after = overlap(calls, killedAt, load.startAt + 4_000_000_000n);
      // The first instant the others hold more than the 2 permits the dead holder left them.
      const backAt = firstAbove(calls, 2, killedAt);
      const recoveryMs = backAt === undefined ? Infinity : Number(backAt - killedAt) / 1e6;
      console.log(
        `killed holder of 2: before the kill most in flight ${before.most} (mean ${before.mean.toFixed(2)}); after most ${after.most}; permits back ${recoveryMs.toFixed(0)} ms after the kill (lease ${LEASE_MS} ms); logs: ${results.flatMap((r) => r.logs).join(' | ')}`,
      );
      expect(before.most).toBeLessThanOrEqual(2);
      expect(after.most).toBeLessThanOrEqual(MAX);
      // The lease was last renewed at most a third of it before the kill.
      expect(recoveryMs).toBeGreaterThanOrEqual((2 / 3) * LEASE_MS - 50);
      expect(recoveryMs).toBeLessThanOrEqual(LEASE_MS + 300);
      expect(after.most).toBe(MAX);
      expect(redis.cli('HGET', `${prefix}{shared}:cl`, 'n')).toBe('0');
    } finally {
      holder.kill('SIGKILL');
    }
  }, 60_000);
});

describe('ConcurrencyLimit in Redis, one process', () => {
  it('a permit released twice (and disposed) frees one slot: the store counts it once, and release(n) over what this thread holds throws', async () => {
    const prefix = `cc1:${Math.random()}:`;
    const store = createRedisStore({ url: redis.url, prefix, permitLeaseMs: LEASE_MS, timeoutMs: 200 });
    try {
      const limit = new ConcurrencyLimit({ max: 2, store, key: 'once' });
      const a = await limit.acquire();
      const b = await limit.acquire();
      a.release();
      a.release();
      a[Symbol.dispose]();
      expect(() => limit.release(2)).toThrow(RangeError);
      // One slot free, not two: a third acquire is admitted, a fourth waits until b is released.
      const c = await limit.acquire();
      let fourth = false;
      const d = limit.acquire().then((p) => {
        fourth = true;
        return p;
      });
      await new Promise((r) => setTimeout(r, 200));
      expect(fourth).toBe(false);
      expect(redis.cli('HGET', `${prefix}{once}:cl`, 'n')).toBe('2');
      b.release();
      (await d).release();
      c.release();
      await limit.returnLease();
      expect(redis.cli('HGET', `${prefix}{once}:cl`, 'n')).toBe('0');
    } finally {
      await store.close();
    }
  });

  it('setLimit moves the limit the store enforces: max 1 holds a second call back, max 2 admits it at once', async () => {
    const prefix = `cc3:${Math.random()}:`;
    const store = createRedisStore({ url: redis.url, prefix, permitLeaseMs: LEASE_MS, timeoutMs: 200 });
    try {
      const limit = new ConcurrencyLimit({ max: 1, store, key: 'moved' });
      const first = await limit.acquire();
      let second = false;
      const waiting = limit.acquire().then((p) => {
        second = true;
        return p;
      });
      await new Promise((r) => setTimeout(r, 200));
      expect(second).toBe(false);
      limit.setLimit({ max: 2 });
      expect(limit.max).toBe(2);
      // The waiting call asks again under the new max at once, not at the next renewal (500 ms).
      const p = await Promise.race([waiting, new Promise<undefined>((r) => setTimeout(() => r(undefined), 300))]);
      expect(p).toBeDefined();
      expect(redis.cli('HGET', `${prefix}{moved}:cl`, 'n')).toBe('2');
      first.release();
      p!.release();
      await limit.returnLease();
      expect(redis.cli('HGET', `${prefix}{moved}:cl`, 'n')).toBe('0');
    } finally {
      await store.close();
    }
  });

  it('fail-closed: with Redis gone, new calls are refused with StoreUnavailableError; restarted empty, the permits in use count again and the limit works by itself', async () => {
    const own = await startRedis();
    const logs: string[] = [];
    const store = createRedisStore({ url: own.url, prefix: 'cc2:', permitLeaseMs: LEASE_MS, timeoutMs: 200, log: (l) => logs.push(l) });
    try {
      const limit = new ConcurrencyLimit({ max: 2, store, key: 'down' });
      const held = await limit.acquire();
      await own.kill();
      await expect(limit.acquire()).rejects.toBeInstanceOf(StoreUnavailableError);
      await own.restart();
      // The holder re-registers its permit on the reconnection: the restarted store counts it.
      await expect.poll(() => own.cli('HGET', 'cc2:{down}:cl', 'n'), { timeout: 5000 }).toBe('1');
      const next = await limit.acquire();
      expect(own.cli('HGET', 'cc2:{down}:cl', 'n')).toBe('2');
      held.release();
      next.release();
      await limit.returnLease();
      expect(own.cli('HGET', 'cc2:{down}:cl', 'n')).toBe('0');
      expect(limit.snapshot().store!.incidents).toBe(1);
      expect(logs.filter((l) => /unavailable/.test(l))).toHaveLength(1);
      expect(logs.filter((l) => /answers again/.test(l))).toHaveLength(1);
    } finally {
      await store.close();
      await own.stop();
    }
  });
});
