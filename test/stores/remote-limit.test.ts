/**
 * RemoteLimit against a scripted in-memory store on a ManualClock: what it does between store
 * answers, timed by the clock alone (no Redis, no sleeps).
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { RemoteLimit } from '../../src/stores/remote-limit.js';
import type { Grant, LimiterStore, StoreDescriptor } from '../../src/stores/store.js';

/** A store that rejects every lease while `down` and otherwise grants what is asked. */
interface ScriptedStore extends LimiterStore {
  down: boolean;
  leases: number;
  /** What a grant answers for notBeforeUs. */
  notBeforeUs: number;
}

function scriptedStore(timeoutMs: number): ScriptedStore {
  const store: ScriptedStore = {
    down: true,
    leases: 0,
    notBeforeUs: 0,
    kind: 'redis',
    onStoreError: 'fail-closed',
    expectedProcesses: 1,
    timeoutMs,
    leaseSettings: { horizonMs: 0, maxTokens: 10, ttlMs: 1000 },
    log: () => {},
    connected: true,
    roundTrips: 0,
    epoch: 0,
    up: true,
    droppedAt: 0n,
    onReconnect: () => () => {},
    permitLeaseMs: 10_000,
    beforeClose: () => {},
    syncPermits: () => Promise.reject(new Error('not a concurrency test')),
    watchPermits: () => Promise.resolve(() => {}),
    lease(_key, _spec, want): Promise<Grant> {
      store.leases++;
      if (store.down) return Promise.reject(new Error('store down'));
      return Promise.resolve({
        granted: want,
        notBeforeUs: store.notBeforeUs,
        retryAfterUs: 0,
        validUs: Infinity,
        tag: '0',
        seen: 0,
        seenCount: 0,
        lost: false,
      });
    },
    giveBack: () => Promise.resolve(false),
    connect: () => Promise.resolve(),
    close: () => Promise.resolve(),
    describe: () => ({ kind: 'redis' }) as StoreDescriptor,
  };
  return store;
}

describe('RemoteLimit retry', () => {
  it('probes a failing store once per retry interval of its clock, with no call asking, and stops once it answers', async () => {
    const clock = new ManualClock();
    const store = scriptedStore(200); // retry interval: the timeout, within [100, 1000] ms
    const limit = new RemoteLimit(store, 'k', { kind: 'token-bucket', intervalUs: 1000, burst: 10 }, clock, () => 1, 10);
    let woken = 0;
    limit.waitForRelease(() => woken++);
    await clock.advance(0);
    expect(store.leases).toBe(1);
    expect(limit.snapshot().down).toBe(true);
    expect(woken).toBe(1);

    await clock.advance(199);
    expect(store.leases).toBe(1);
    await clock.advance(1);
    expect(store.leases).toBe(2);

    store.down = false;
    await clock.advance(200);
    expect(store.leases).toBe(3);
    expect(limit.snapshot().down).toBe(false);
    await clock.advance(1000);
    expect(store.leases).toBe(3);
    expect(clock.pendingTimers()).toBe(0);
  });
});

describe('RemoteLimit grants counted before the store read its clock', () => {
  it('a grant the store counted 1.5 ms before its reading (a late request given the wake-up credit) is usable at once and held from then: maxHoldMs shows the 1.5 ms', async () => {
    const clock = new ManualClock(100);
    const store = scriptedStore(200);
    store.down = false;
    store.notBeforeUs = -1500;
    const limit = new RemoteLimit(store, 'k', { kind: 'token-bucket', intervalUs: 1000, burst: 1 }, clock, () => 1, 1);
    expect(limit.take(clock.now(), 1, true)).toBe(false);
    let woken = 0;
    limit.waitForRelease(() => woken++);
    await clock.advance(0);
    expect(woken).toBe(1);
    expect(limit.take(clock.now(), 1, true)).toBe(true);
    expect(limit.snapshot().maxHoldMs).toBe(1.5);
  });
});
