import { afterEach, describe, expect, test } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { KeyedTokenBucket } from '../../src/keyed/keyed-token-bucket.js';
import { worstExcess } from '../helpers.js';
import { GcraModel } from './gcra-model.js';
import { byKey, runWorkers, stopKeyedWorkers } from './keyed-workers.js';
import { demand, phaseKey, phaseTime, type PhasePlan } from './keyed-phases.js';

afterEach(stopKeyedWorkers);

describe('KeyedTokenBucket across real worker threads', () => {
  test("4 threads replaying fixed instants with tryAcquireAt over 2 960 keys in 1 024 slots (concurrent inserts of one key, reclaims): every key's admissions summed over threads equal the single-threaded model exactly (none lost, none doubled)", async () => {
    const plan: PhasePlan = { phases: 60, keysPerPhase: 128, shift: 48, stepUs: 2500, workers: 4 };
    const rate = 1000; // per key per second: T = 1000 µs
    const burst = 4;
    const k = new KeyedTokenBucket({ rate, burst, slots: 1024, probeWindow: 32, clock: new ManualClock(0) });
    const counts = new SharedArrayBuffer(4 * plan.phases * plan.keysPerPhase);
    const barrier = new SharedArrayBuffer(4);
    await runWorkers(
      Array.from({ length: plan.workers }, (_, worker) => ({ mode: 'phases' as const, descriptor: k.share(), worker, plan, counts, barrier })),
      undefined,
      60_000,
    );
    const snap = k.snapshot();
    // Preconditions of an exact comparison: no key went to the overflow bucket, and slots were
    // reclaimed many times over (distinct keys far exceed the slots).
    expect(snap.tableFull).toBe(0);
    expect(snap.reclaimed).toBeGreaterThan(1000);
    const model = new GcraModel(1000, burst);
    const got = new Int32Array(counts);
    const mismatches: string[] = [];
    let expectedTotal = 0;
    for (let p = 0; p < plan.phases; p++) {
      for (let j = 0; j < plan.keysPerPhase; j++) {
        const key = phaseKey(plan, p, j);
        let total = 0;
        for (let w = 0; w < plan.workers; w++) total += demand(p, j, w);
        let expected = 0;
        for (let c = 0; c < total; c++) if (model.takeNs(key, phaseTime(plan, p))) expected++;
        expectedTotal += expected;
        if (got[p * plan.keysPerPhase + j] !== expected) mismatches.push(`phase ${p} ${key}: ${got[p * plan.keysPerPhase + j]} admitted, model ${expected}`);
      }
    }
    expect(mismatches.slice(0, 10)).toEqual([]);
    expect(snap.admitted).toBe(expectedTotal);
  });

  test('4 threads released together 3 000 times to insert the same new key, 3 tries each, into a 64-slot table: every key is admitted exactly its burst of 4 (never inserted twice)', async () => {
    const rounds = 3000;
    const burst = 4;
    const k = new KeyedTokenBucket({ rate: 1000, burst, slots: 64, probeWindow: 8, clock: new ManualClock(0) });
    const counts = new SharedArrayBuffer(4 * rounds);
    const barrier = new SharedArrayBuffer(4);
    await runWorkers(
      [0, 1, 2, 3].map(() => ({ mode: 'race' as const, descriptor: k.share(), rounds, tries: 3, stepUs: 10_000, counts, barrier, workers: 4 })),
      undefined,
      60_000,
    );
    const got = new Int32Array(counts);
    const wrong = [...got].map((n, r) => ({ r, n })).filter(({ n }) => n !== burst);
    expect(wrong.slice(0, 10)).toEqual([]);
    expect(k.snapshot()).toMatchObject({ tableFull: 0, admitted: rounds * burst });
  });

  test('4 threads calling tryAcquire on the real clock over a moving window of keys (400+ keys, 256 slots): no key is ever admitted more than burst + rate × length in any interval', async () => {
    const rate = 100;
    const burst = 3;
    const k = new KeyedTokenBucket({ rate, burst, slots: 256, probeWindow: 16, overflowRate: 1e-6, overflowBurst: 1 });
    const perThread = 20_000;
    const keys = new SharedArrayBuffer(4 * 4 * perThread);
    const instants = new SharedArrayBuffer(8 * 4 * perThread);
    const go = new SharedArrayBuffer(4);
    const recorded = await runWorkers(
      [0, 1, 2, 3].map((i) => ({
        mode: 'try' as const,
        descriptor: k.share(),
        durationMs: 1000,
        windowKeys: 16,
        shiftKeys: 8,
        shiftMs: 20,
        keys,
        instants,
        offset: i * perThread,
        max: perThread,
        go,
      })),
      go,
      60_000,
    );
    expect(recorded.every((n) => n < perThread)).toBe(true); // nothing admitted went unrecorded
    const snap = k.snapshot();
    expect(snap.reclaimed).toBeGreaterThan(0);
    // The overflow bucket (one token for the whole run) could let one call of some key past its
    // own bucket; count it in.
    expect(snap.overflowAdmitted).toBeLessThanOrEqual(1);
    const admitted = byKey(keys, instants);
    expect(admitted.size).toBeGreaterThan(350);
    let tightest = -Infinity;
    for (const [key, times] of admitted) {
      const worst = worstExcess(times, burst, rate);
      expect(worst.excess, `key-${key}: ${worst.count} admissions in ${worst.lengthMs} ms`).toBeLessThanOrEqual(snap.overflowAdmitted + 1e-6);
      tightest = Math.max(tightest, worst.excess);
    }
    expect(tightest).toBeGreaterThan(-1); // some key was held exactly at its bound
  });

  test('4 threads queueing run() calls for a moving window of keys: every call is admitted, no key more than burst + rate × length in any interval, and no queue is left behind', async () => {
    const rate = 100;
    const burst = 2;
    const k = new KeyedTokenBucket({ rate, burst, slots: 128, probeWindow: 16, overflowRate: 1e-6, overflowBurst: 1 });
    const waves = 40;
    const windowKeys = 12;
    const perThread = waves * windowKeys;
    const keys = new SharedArrayBuffer(4 * 4 * perThread);
    const instants = new SharedArrayBuffer(8 * 4 * perThread);
    const go = new SharedArrayBuffer(4);
    const calls = await runWorkers(
      [0, 1, 2, 3].map((i) => ({
        mode: 'queued' as const,
        descriptor: k.share(),
        durationMs: waves * 20,
        windowKeys,
        shiftKeys: 6,
        shiftMs: 20,
        keys,
        instants,
        offset: i * perThread,
        max: perThread,
        go,
      })),
      go,
      60_000,
    );
    expect(calls).toEqual([perThread, perThread, perThread, perThread]);
    const snap = k.snapshot();
    expect(snap.queued).toBe(0);
    expect(snap.reclaimed).toBeGreaterThan(0);
    expect(snap.overflowAdmitted).toBeLessThanOrEqual(1);
    const admitted = byKey(keys, instants);
    let recorded = 0;
    for (const [key, times] of admitted) {
      recorded += times.length;
      const worst = worstExcess(times, burst, rate);
      expect(worst.excess, `key-${key}: ${worst.count} admissions in ${worst.lengthMs} ms`).toBeLessThanOrEqual(snap.overflowAdmitted + 1e-6);
    }
    expect(recorded).toBe(4 * perThread);
  });
});
