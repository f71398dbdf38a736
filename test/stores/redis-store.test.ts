/**
 * The Redis store against a real redis-server: the scripts' bounds, NOSCRIPT recovery, key layout
 * and expiry, clear errors for bad configuration, option validation.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FixedWindow, RateLimiter, TokenBucket } from '../../src/index.js';
import { createRedisStore, StoreConnectionError, type RedisStore } from '../../src/stores/redis-store.js';
import { STATE_KEEP_MS } from '../../src/stores/redis-scripts.js';
import type { LeaseHint } from '../../src/stores/store.js';
import { stalledMs, watchStalls } from '../helpers.js';
import { freePort, sharedRedis, startRedis, type TestRedis } from './redis-server.js';
import { startSentinel } from './redis-sentinel.js';

let redis: Pick<TestRedis, 'url' | 'cli' | 'stop'>;
const stores: RedisStore[] = [];
beforeAll(async () => {
  redis = await sharedRedis();
});
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await redis?.stop();
});

function store(options: Parameters<typeof createRedisStore>[0] = {}): RedisStore {
  const s = createRedisStore({ url: redis.url, prefix: `t${stores.length}:`, ...options });
  stores.push(s);
  return s;
}

/** Starts `count` calls at once and records when each started (ms since the first call). */
async function burstOf(limiter: { run<T>(task: () => T): Promise<T> }, count: number): Promise<number[]> {
  const t0 = performance.now();
  const starts: number[] = [];
  await Promise.all(Array.from({ length: count }, () => limiter.run(() => starts.push(performance.now() - t0))));
  return starts.sort((a, b) => a - b);
}

describe('Redis store: token bucket', () => {
  it('admits burst at once and the rest at the rate, all calls waiting rather than failing', async () => {
    const tb = new TokenBucket({ rate: 200, burst: 10, store: store(), key: 'tb' });
    const starts = await burstOf(tb, 110);
    expect(starts).toHaveLength(110);
    // 100 calls beyond the burst at 200/s take ≥ 0.5 s (the bucket starts full: 10 at once).
    expect(starts.at(-1)!).toBeGreaterThanOrEqual(495);
    // Never more than burst + rate × t by time t (t measured from the first call's start).
    starts.forEach((t, i) => expect(i + 1).toBeLessThanOrEqual(10 + Math.floor((200 * (t + 5)) / 1000) + 1));
  });

  it('setLimit applies to this process from its next fetch: the same 25 calls past the burst take 0.5 s at 50/s, then about 50 ms at 500/s', async () => {
    const tb = new TokenBucket({ rate: 50, burst: 5, store: store(), key: 'changed' });
    const slow = await burstOf(tb, 30);
    expect(slow.at(-1)!).toBeGreaterThanOrEqual(490);
    tb.setLimit({ rate: 500, burst: 5 });
    expect(tb.rate).toBe(500);
    const fast = await burstOf(tb, 30);
    expect(fast.at(-1)!).toBeLessThan(250);
    expect(tb.snapshot().store!.errors).toBe(0);
  });

  it('keeps one key per limit, under the prefix with a hash tag, expiring STATE_KEEP_MS after the bucket is full again', async () => {
    const s = store({ prefix: 'keys:' });
    const tb = new TokenBucket({ rate: 100, burst: 5, store: s, key: 'calc.add' });
    await burstOf(tb, 5);
    expect(redis.cli('EXISTS', 'keys:{calc.add}:tb')).toBe('1');
    const ttl = Number(redis.cli('PTTL', 'keys:{calc.add}:tb'));
    // Full again 5 tokens × 10 ms after the burst, plus the state's keep time.
    expect(ttl).toBeGreaterThan(STATE_KEEP_MS - 1000);
    expect(ttl).toBeLessThanOrEqual(STATE_KEEP_MS + 50);
  });

  it('recovers from SCRIPT FLUSH by reloading the script (NOSCRIPT), with no store error', async () => {
    const tb = new TokenBucket({ rate: 1000, burst: 5, store: store(), key: 'flush' });
    await burstOf(tb, 20);
    expect(redis.cli('SCRIPT', 'FLUSH')).toBe('OK');
    await burstOf(tb, 20);
    const snap = tb.snapshot().store!;
    expect(snap.errors).toBe(0);
    expect(tb.snapshot().admitted).toBe(40);
  });

  it('shares one limit between two limiter instances (as two processes would) through the key', async () => {
    const a = new TokenBucket({ rate: 100, burst: 10, store: store({ prefix: 'two:' }), key: 'two' });
    const b = new TokenBucket({ rate: 100, burst: 10, store: store({ prefix: 'two:' }), key: 'two' });
    const t0 = performance.now();
    await Promise.all([burstOf(a, 30), burstOf(b, 30)]);
    // 60 calls, burst 10, 100/s: at least 0.5 s in all.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(495);
  });

  it('returnLease() gives tokens this process holds unused back to Redis, so another process can take the whole burst at once', async () => {
    const s = store({ prefix: 'giveback:' });
    await s.connect();
    const a = new TokenBucket({ rate: 10, burst: 10, store: s, key: 'gb' });
    // A call asks for five tokens and is aborted before Redis answers, so the five granted tokens
    // end up held by this process, unused.
    const controller = new AbortController();
    const call = a.acquire(5, { signal: controller.signal }).catch(() => 'aborted');
    controller.abort();
    expect(await call).toBe('aborted');
    await expect.poll(() => a.snapshot().store!.held).toBe(5);
    await a.returnLease();
    expect(a.snapshot().store).toMatchObject({ held: 0, givenBack: 5, lapsed: 0 });
    // Another process (its own store connection) finds the bucket full again: 10 at once.
    const b = new TokenBucket({ rate: 10, burst: 10, store: store({ prefix: 'giveback:' }), key: 'gb' });
    const watch = watchStalls();
    const t0 = performance.now();
    await burstOf(b, 10);
    // Without the give-back, 5 of them wait 0.1 s each; this process's stalls delay the burst too.
    expect(performance.now() - t0).toBeLessThan(250 + stalledMs(watch.stop()));
  });

  it('leasing: calls made one at a time cost ≥ 10 × fewer round trips than calls (one each without leasing)', async () => {
    const sequential = async (lease: boolean): Promise<number> => {
      const tb = new TokenBucket({ rate: 100_000, burst: 1000, store: store({ lease }), key: 'seq' });
      for (let i = 0; i < 500; i++) await tb.acquire();
      expect(tb.snapshot().admitted).toBe(500);
      return tb.snapshot().store!.roundTrips;
    };
    expect(await sequential(false)).toBe(500);
    expect(await sequential(true)).toBeLessThanOrEqual(50);
  });

  it('the lease script counts a request late by less than λ = max(T, 2 ms) at its slot (a negative notBefore, TAT moved by exactly T) and a later one λ before the Redis clock', async () => {
    const s = store({ prefix: 'credit:' });
    const spec = { kind: 'token-bucket', intervalUs: 300_000, burst: 1 } as const; // λ = T = 300 ms
    const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    const hint = (seen: number): LeaseHint => ({ seen, seenCount: 0, doubt: false, reserveUs: 0 });
    const first = await s.lease('c', spec, 1, 1, hint(-1)); // an empty key: counted now, the next slot in 300 ms
    expect(first).toMatchObject({ granted: 1, notBeforeUs: 0, lost: false });
    await sleep(400); // 100 ms after the next slot: within λ
    const second = await s.lease('c', spec, 1, 1, hint(first.seen));
    expect(second).toMatchObject({ granted: 1, lost: false });
    expect(second.notBeforeUs).toBeLessThan(-50_000);
    expect(second.notBeforeUs).toBeGreaterThanOrEqual(-300_000);
    expect(Number(second.tag)).toBe(Number(first.tag) + 300_000);
    await sleep(700); // about 500 ms after the next slot: beyond λ, so counted from λ ago
    const third = await s.lease('c', spec, 1, 1, hint(second.seen));
    expect(third).toMatchObject({ granted: 1, notBeforeUs: -300_000, lost: false });
    expect(Number(third.tag) - Number(second.tag)).toBeGreaterThan(400_000);
  });

  it('the wake-up credit never reaches back before a restart: a lost state restarts behind the look-ahead and the next grant is booked after it; a doubt books ahead too', async () => {
    const s = store({ prefix: 'credit-lost:' });
    const spec = { kind: 'token-bucket', intervalUs: 100_000, burst: 1 } as const; // λ = T = 100 ms, look-ahead 250 ms
    const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    const hint = (seen: number, doubt = false): LeaseHint => ({ seen, seenCount: 0, doubt, reserveUs: 0 });
    const first = await s.lease('l', spec, 1, 1, hint(-1));
    await sleep(150); // 50 ms after the next slot: credited
    const second = await s.lease('l', spec, 1, 1, hint(first.seen));
    expect(second.notBeforeUs).toBeLessThan(0);
    redis.cli('DEL', 'credit-lost:{l}:tb');
    await sleep(150); // late again: a credit would count from before this request
    const third = await s.lease('l', spec, 1, 1, hint(second.seen));
    // Restarted at now + b·T + A = now + 350 ms: nothing fits the look-ahead, ask again in T.
    expect(third).toMatchObject({ granted: 0, notBeforeUs: 0, lost: true });
    expect(third.retryAfterUs).toBeGreaterThan(0);
    await sleep(third.retryAfterUs / 1000);
    const fourth = await s.lease('l', spec, 1, 1, hint(third.seen));
    expect(fourth).toMatchObject({ granted: 1, lost: false });
    expect(fourth.notBeforeUs).toBeGreaterThan(0);
    expect(Number(fourth.tag)).toBe(Number(third.tag) + 100_000);

    const d = await s.lease('d', spec, 1, 1, hint(-1));
    await sleep(150);
    const doubted = await s.lease('d', spec, 1, 1, hint(d.seen, true));
    expect(doubted).toMatchObject({ granted: 1, lost: false });
    expect(doubted.notBeforeUs).toBeGreaterThan(0);
  });

  it('works under RateLimiter, the seed-style facade', async () => {
    const limiter = new RateLimiter({ maxCalls: 50, periodMs: 100, burst: 5, store: store(), key: 'facade' });
    const starts = await burstOf(limiter, 25);
    expect(starts.at(-1)!).toBeGreaterThanOrEqual(38); // 20 beyond the burst at 2 ms each
  });
});

describe('Redis store: fixed window', () => {
  it('admits at most maxCalls per window of the Redis clock; calls over it wait for the next window', async () => {
    const fw = new FixedWindow({ maxCalls: 10, periodMs: 200, store: store(), key: 'fw' });
    const t0 = Date.now();
    const windows = new Map<number, number>();
    await Promise.all(
      Array.from({ length: 35 }, () =>
        fw.run(() => {
          const w = Math.floor(Date.now() / 200);
          windows.set(w, (windows.get(w) ?? 0) + 1);
        }),
      ),
    );
    // 35 calls at 10 per window need at least 4 windows, so at least 3 boundaries passed.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
    expect(windows.size).toBeGreaterThanOrEqual(4);
    // Date.now() and Redis TIME read the same wall clock here; 1 ms of reading lag is allowed for
    // by counting a start in its window or the one before, whichever has room.
    const counts = [...windows.entries()].sort((x, y) => x[0] - y[0]).map(([, c]) => c);
    expect(counts.reduce((a, c) => a + c, 0)).toBe(35);
    expect(Math.max(...counts)).toBeLessThanOrEqual(10);
  });
});

describe('Redis store: configuration', () => {
  it('connect() to an address where nothing listens fails with StoreConnectionError naming it', async () => {
    const port = await freePort();
    const s = createRedisStore({ url: `redis://127.0.0.1:${port}` });
    const error = await s.connect().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StoreConnectionError);
    expect((error as Error).message).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}.*nothing listens there`));
    await s.close();
  });

  it('a wrong password fails with StoreConnectionError saying authentication failed (and the password is not printed)', async () => {
    const secured = await startRedis({ password: 'right-password' });
    try {
      const wrong = createRedisStore({ url: `redis://:wrong-password@127.0.0.1:${secured.port}` });
      const error = (await wrong.connect().then(
        () => undefined,
        (e: unknown) => e,
      )) as Error;
      expect(error).toBeInstanceOf(StoreConnectionError);
      expect(error.message).toMatch(/authentication failed/);
      expect(error.message).not.toMatch(/wrong-password/);
      await wrong.close();
      const right = createRedisStore({ url: secured.url });
      await right.connect();
      const tb = new TokenBucket({ rate: 10, store: right, key: 'auth' });
      expect(await tb.acquire().then(() => 'admitted')).toBe('admitted');
      await right.close();
    } finally {
      await secured.stop();
    }
  });

  it('connect() through sentinels that do not answer, or do not know the master, fails with StoreConnectionError instead of never settling', async () => {
    const settled = (s: RedisStore): Promise<unknown> =>
      Promise.race([
        s.connect().then(
          () => 'connected',
          (e: unknown) => e,
        ),
        new Promise((r) => setTimeout(() => r('still pending after 10 s'), 10_000)),
      ]);
    const nobody = createRedisStore({ sentinel: { sentinels: [`127.0.0.1:${await freePort()}`], name: 'mymaster' } });
    const unreachable = await settled(nobody);
    expect(unreachable).toBeInstanceOf(StoreConnectionError);
    expect((unreachable as Error).message).toMatch(/master "mymaster" of sentinels 127\.0\.0\.1:\d+: no sentinel gave the master's address/);
    await nobody.close();
    const sentinel = await startSentinel();
    try {
      const wrongName = createRedisStore({ sentinel: { sentinels: sentinel.sentinels, name: 'not-the-master' } });
      const unknown = await settled(wrongName);
      expect(unknown).toBeInstanceOf(StoreConnectionError);
      expect((unknown as Error).message).toMatch(/no sentinel gave the master's address \(last error: ERR No such master with that name\)/);
      await wrongName.close();
      const right = createRedisStore({ sentinel: { sentinels: sentinel.sentinels, name: sentinel.name } });
      expect(await settled(right)).toBe('connected');
      const tb = new TokenBucket({ rate: 10, store: right, key: 'sentinel-start' });
      expect(await tb.acquire().then(() => 'admitted')).toBe('admitted');
      await right.close();
    } finally {
      await sentinel.stop();
    }
  }, 60_000);

  it.each([
    [{ url: 'http://x' }, TypeError, /url must be a redis:\/\/ or rediss:\/\/ URL/],
    [{ onStoreError: 'retry' }, RangeError, /onStoreError must be 'fail-open', 'fail-closed' or 'local-share'/],
    [{ timeoutMs: 0 }, RangeError, /timeoutMs must be greater than 0/],
    [{ expectedProcesses: 0.5 }, RangeError, /expectedProcesses must be a whole number/],
    [{ lease: { maxTokens: 0 } }, RangeError, /lease.maxTokens must be at least 1/],
    [{ prefix: 3 }, TypeError, /prefix must be a string/],
  ])('createRedisStore(%j) throws naming the option', (options, type, message) => {
    expect(() => createRedisStore(options as never)).toThrow(type);
    expect(() => createRedisStore(options as never)).toThrow(message);
  });

  it('a store without a key, or a store that is not one, throws TypeError naming the option', () => {
    const s = store();
    expect(() => new TokenBucket({ rate: 1, store: s })).toThrow(/key is required with a store/);
    expect(() => new FixedWindow({ maxCalls: 1, store: s, key: '' })).toThrow(/key is required with a store/);
    expect(() => new TokenBucket({ rate: 1, store: {} as never, key: 'k' })).toThrow(/store must be a store from createRedisStore/);
  });
});
