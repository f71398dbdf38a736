import { afterEach, describe, expect, test } from 'vitest';
import { KeyedTokenBucket } from '../../src/keyed/keyed-token-bucket.js';
import { intervalExcess, type TimedSetting } from './change-bound.js';
import { byKey, runWorkers, stopKeyedWorkers } from './keyed-workers.js';

afterEach(stopKeyedWorkers);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Changes the limit from the test's thread, recording the clock around the change. */
function change(k: KeyedTokenBucket, setting: { rate: number; burst: number }): TimedSetting {
  const before = process.hrtime.bigint();
  k.setLimit(setting);
  return { before, after: process.hrtime.bigint(), ...setting };
}

describe('KeyedTokenBucket.setLimit while 4 worker threads admit', () => {
  test('lowered then raised while 4 threads hammer 6 keys (tryAcquire, and run() calls waiting across the changes): on admission instants, no key ever starts more than the larger bound in any interval around a change, across 4 threads, nor more than its own inside a setting', async () => {
    const settings = [
      { rate: 2000, burst: 20 },
      { rate: 400, burst: 40 }, // a lower rate with a larger burst: a fresh bucket would admit 40 at once
      { rate: 3000, burst: 30 },
    ];
    const k = new KeyedTokenBucket({ ...settings[0]!, slots: 256 });
    const perThread = 40_000;
    const keys = new SharedArrayBuffer(4 * 4 * perThread);
    const instants = new SharedArrayBuffer(8 * 4 * perThread);
    const go = new SharedArrayBuffer(4);
    const changes: TimedSetting[] = [{ before: 0n, after: 0n, ...settings[0]! }];
    let changed: Promise<void> = Promise.resolve();
    await runWorkers(
      [0, 1, 2, 3].map((i) => ({
        mode: 'changing' as const,
        descriptor: k.share(),
        durationMs: 1400,
        keyCount: 6,
        queuedPerKey: 3,
        tryMs: 1,
        keys,
        instants,
        offset: i * perThread,
        max: perThread,
        go,
      })),
      go,
      60_000,
      () => {
        changed = (async () => {
          await sleep(400);
          changes.push(change(k, settings[1]!));
          await sleep(500);
          changes.push(change(k, settings[2]!));
        })();
      },
    );
    await changed;
    expect(k.rate).toBe(3000);
    expect(k.snapshot()).toMatchObject({ queued: 0, tableFull: 0, refused: { queue_full: 0, queue_timeout: 0, aborted: 0 } });
    const admitted = byKey(keys, instants);
    expect(admitted.size).toBe(6);
    let worst = -Infinity;
    for (const [key, times] of admitted) {
      const excess = intervalExcess(times, changes, 1000);
      expect(excess, `key-${key}`).toBeLessThanOrEqual(0);
      worst = Math.max(worst, excess);
      // The lowered setting was in force and the demand held each key to it: about 400/s, once the
      // 40 tokens the change left missing (100 ms at 400/s) have come.
      const lowered = times.filter((t) => t > changes[1]!.after + 150_000_000n && t < changes[2]!.before).length;
      const seconds = Number(changes[2]!.before - changes[1]!.after - 150_000_000n) / 1e9;
      expect(lowered / seconds, `key-${key} while lowered`).toBeGreaterThan(250);
      expect(lowered / seconds, `key-${key} while lowered`).toBeLessThan(450);
    }
    expect(worst, 'the limit was saturated: some interval reaches its bound').toBeGreaterThan(-1);
  });

  test('a raise releases the calls waiting for 3 keys in every thread at once, though their timers were armed for one token every 500 ms', async () => {
    const k = new KeyedTokenBucket({ rate: 2, burst: 1 });
    const perThread = 30;
    const keys = new SharedArrayBuffer(4 * 4 * perThread);
    const instants = new SharedArrayBuffer(8 * 4 * perThread);
    const go = new SharedArrayBuffer(4);
    let raise: TimedSetting | undefined;
    const calls = await runWorkers(
      [0, 1, 2, 3].map((i) => ({
        mode: 'changing' as const,
        descriptor: k.share(),
        durationMs: 0,
        keyCount: 3,
        queuedPerKey: 10,
        tryMs: 0,
        keys,
        instants,
        offset: i * perThread,
        max: perThread,
        go,
      })),
      go,
      30_000,
      () => {
        void sleep(200).then(() => {
          raise = change(k, { rate: 5000, burst: 100 });
        });
      },
    );
    expect(calls).toEqual([30, 30, 30, 30]);
    const t = new BigInt64Array(instants);
    const thread = (index: number): number => Math.floor(index / perThread);
    const all = [...t.keys()].map((index) => ({ t: t[index]!, thread: thread(index) }));
    // Before the raise, each key's burst of 1: at most one call per key.
    expect(all.filter((a) => a.t < raise!.before).length).toBeLessThanOrEqual(3);
    const soon = all.filter((a) => a.t >= raise!.before && a.t < raise!.after + 50_000_000n);
    // Under the old rate at most one more call per key would have started in those 50 ms.
    expect(soon.length).toBeGreaterThanOrEqual(110);
    expect(new Set(soon.map((a) => a.thread)).size).toBe(4);
  });
});
