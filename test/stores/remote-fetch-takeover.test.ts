import { threadId } from 'node:worker_threads';
import { describe, expect, test } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { TokenBucket } from '../../src/limiters/token-bucket.js';
import { RemoteLimit, RemotePoolLayout } from '../../src/stores/remote-limit.js';
import type { Grant, LimiterStore, RemoteLimitSpec } from '../../src/stores/store.js';

// White-box: the pool's shared words (layout at the top of src/stores/remote-limit.ts). FETCHING
// holds threadId + 1 of the thread with a fetch in flight, FETCH_STARTED when that fetch was
// sent; SIGNAL is bumped and notified after every fetch.
const { FETCHING, SIGNAL } = RemotePoolLayout.I32;
const { FETCH_STARTED } = RemotePoolLayout.I64;
/** A thread id no thread of this process has: the thread that won FETCHING and died. */
const DEAD = 987_654;
const TIMEOUT_MS = 25;
/** Documented staleness: a fetch older than twice the store timeout is taken over. */
const STALE_MS = 2 * TIMEOUT_MS;

/** A store whose every lease waits until the test answers it. */
function fakeStore(): { store: LimiterStore; leases: { want: number; answer: (granted: number) => void }[] } {
  const leases: { want: number; answer: (granted: number) => void }[] = [];
  const store: LimiterStore = {
    kind: 'redis',
    onStoreError: 'fail-closed',
    expectedProcesses: 1,
    timeoutMs: TIMEOUT_MS,
    leaseSettings: { horizonMs: 0, maxTokens: 0, ttlMs: 1000 },
    log: () => {},
    lease: (_key: string, _spec: RemoteLimitSpec, want: number) =>
      new Promise<Grant>((resolve) => {
        leases.push({
          want,
          answer: (granted) => resolve({ granted, notBeforeUs: 0, retryAfterUs: 0, validUs: Infinity, tag: '1', seen: 1, seenCount: 0, lost: false }),
        });
      }),
    giveBack: () => Promise.resolve(false),
    connected: true,
    connect: () => Promise.resolve(),
    close: () => Promise.resolve(),
    roundTrips: 0,
    epoch: 0,
    up: true,
    droppedAt: 0n,
    onReconnect: () => () => {},
    permitLeaseMs: 10_000,
    beforeClose: () => {},
    syncPermits: () => Promise.reject(new Error('not a concurrency test')),
    watchPermits: () => Promise.resolve(() => {}),
    describe: () => ({ kind: 'redis', id: 'fake', options: {} }),
  };
  return { store, leases };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean, what: string, ms = 2000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe('a fetch left in flight by a dead thread (remote-limit FETCHING word)', () => {
  test("waiting calls take the dead thread's fetch over only once it is 2 × timeoutMs old, with exactly one fetch in flight (no second one from other contenders), and are admitted by its answer", async () => {
    const clock = new ManualClock(1000);
    const { store, leases } = fakeStore();
    const tb = new TokenBucket({ rate: 100, burst: 10, store, key: 'k', clock });
    const remote = tb.share().remote!;
    const i32 = new Int32Array(remote.buffer);
    const i64 = new BigInt64Array(remote.buffer);
    // The dead thread won FETCHING and sent its fetch now; its answer will never come.
    Atomics.store(i32, FETCHING, DEAD + 1);
    Atomics.store(i64, FETCH_STARTED, clock.now());

    const admittedAt: bigint[] = [];
    const calls = [0, 1, 2].map(() =>
      tb.run(() => {
        admittedAt.push(clock.now());
      }),
    );
    expect(leases).toHaveLength(0);
    // The waiting thread wakes every 2 × timeoutMs of real time to look again; until the fetch is
    // stale by the limiter's clock it leaves it alone.
    await sleep(STALE_MS * 2 + 20);
    await clock.advance(STALE_MS - 1e-6);
    await sleep(STALE_MS * 2 + 20);
    expect(leases).toHaveLength(0);
    expect(Atomics.load(i32, FETCHING)).toBe(DEAD + 1);
    expect(admittedAt).toEqual([]);

    await clock.advance(1e-6); // the fetch is now exactly 2 × timeoutMs old
    await until(() => leases.length > 0, 'the takeover fetch');
    expect(Atomics.load(i32, FETCHING)).toBe(threadId + 1);
    expect(Atomics.load(i64, FETCH_STARTED)).toBe(clock.now());
    expect(leases[0]!.want).toBe(3);

    // While the taken-over fetch is in flight, nobody starts another: a new call, another
    // instance on the same shared memory (what a second thread holds), and more real time.
    const more = tb.run(() => {
      admittedAt.push(clock.now());
    });
    const other = new RemoteLimit(store, 'k', { kind: 'token-bucket', intervalUs: 10_000, burst: 10 }, clock, () => 1, 10, remote.buffer);
    let otherWoke = 0;
    other.waitForRelease(() => {
      otherWoke++;
    });
    await sleep(STALE_MS * 2 + 20);
    expect(leases).toHaveLength(1);

    leases[0]!.answer(4);
    await Promise.all([...calls, more]);
    expect(admittedAt).toEqual(Array(4).fill(clock.now()));
    expect(leases).toHaveLength(1);
    expect(Atomics.load(i32, FETCHING)).toBe(0);
    await until(() => otherWoke === 1, 'the other instance to be woken by the answer');
    expect(tb.snapshot().store!.roundTrips).toBe(1);
    other.idle();
  });

  test("the takeover boundary: a dead thread's fetch 1 ns younger than 2 × timeoutMs is left alone, at exactly 2 × timeoutMs one contender takes it over, and a second contender at the same instant does not fetch again", async () => {
    const clock = new ManualClock(5000);
    const { store, leases } = fakeStore();
    const spec: RemoteLimitSpec = { kind: 'token-bucket', intervalUs: 10_000, burst: 10 };
    const first = new RemoteLimit(store, 'k', spec, clock, () => 1, 10);
    const buffer = first.describe().buffer;
    const second = new RemoteLimit(store, 'k', spec, clock, () => 1, 10, buffer);
    const i32 = new Int32Array(buffer);
    const i64 = new BigInt64Array(buffer);
    const sent = clock.now();
    Atomics.store(i32, FETCHING, DEAD + 1);
    Atomics.store(i64, FETCH_STARTED, sent);
    let woke = 0;

    await clock.advance(STALE_MS - 1e-6);
    first.waitForRelease(() => {
      woke++;
    });
    expect(leases).toHaveLength(0);
    expect(Atomics.load(i32, FETCHING)).toBe(DEAD + 1);
    expect(Atomics.load(i64, FETCH_STARTED)).toBe(sent);

    await clock.advance(1e-6);
    expect(first.take(clock.now(), 1)).toBe(false);
    first.waitForRelease(() => {
      woke++;
    });
    second.waitForRelease(() => {
      woke++;
    });
    expect(leases).toHaveLength(1);
    expect(Atomics.load(i32, FETCHING)).toBe(threadId + 1);
    expect(Atomics.load(i64, FETCH_STARTED)).toBe(sent + BigInt(STALE_MS) * 1_000_000n);

    leases[0]!.answer(1);
    await until(() => woke >= 2, 'both waiters to be woken by the one answer');
    expect(Atomics.load(i32, SIGNAL)).toBe(1); // one answer, one signal
    expect(Atomics.load(i32, FETCHING)).toBe(0);
    expect(first.take(clock.now(), 1)).toBe(true);
    expect(second.take(clock.now(), 1)).toBe(false);
    expect(leases).toHaveLength(1);
    first.idle();
    second.idle();
  });
});
