import { describe, expect, test } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { QueueFullError, QueueTimeoutError } from '../../src/errors.js';
import { KeyedTokenBucket } from '../../src/keyed/keyed-token-bucket.js';
import { KeyHasher } from '../../src/keyed/key-hash.js';
import { TokenBucket } from '../../src/limiters/token-bucket.js';
import { worstExcess } from '../helpers.js';
import { GcraModel } from './gcra-model.js';

const ms = (x: number): bigint => BigInt(Math.round(x * 1e6));

/** Submits `count` calls of `key` through run(); each records the clock (ms) when it started. */
function submit(k: KeyedTokenBucket, clock: ManualClock, key: string, count: number, starts: number[]): Promise<unknown>[] {
  return Array.from({ length: count }, () =>
    k.run(key, () => {
      starts.push(clock.nowMs());
    }),
  );
}

describe('KeyedTokenBucket with an injected clock', () => {
  test("per key: burst at once, then exactly one every period/rate; a second key is not delayed by the first one's backlog", async () => {
    const clock = new ManualClock(1000);
    const k = new KeyedTokenBucket({ rate: 10, burst: 3, clock });
    const a: number[] = [];
    const b: number[] = [];
    const done = [...submit(k, clock, 'a', 8, a), ...submit(k, clock, 'b', 4, b)];
    expect(k.waitingKeys).toBe(2);
    await clock.advance(1000);
    await Promise.all(done);
    expect(a).toEqual([1000, 1000, 1000, 1100, 1200, 1300, 1400, 1500]);
    expect(b).toEqual([1000, 1000, 1000, 1100]);
  });

  test('keys are independent: draining one key leaves every other key its full burst (explicit times)', () => {
    const k = new KeyedTokenBucket({ rate: 1, periodMs: 100, burst: 4, clock: new ManualClock(0) });
    const take = (key: string, t: number, tries: number): number => {
      let n = 0;
      for (let i = 0; i < tries; i++) if (k.tryAcquireAt(key, ms(t))) n++;
      return n;
    };
    expect(take('x', 0, 10)).toBe(4);
    for (let i = 0; i < 50; i++) expect(take(`other-${i}`, 0, 10)).toBe(4);
    expect(take('x', 99, 10)).toBe(0);
    expect(take('x', 100, 10)).toBe(1);
    expect(take('other-7', 100, 10)).toBe(1);
  });

  test('tryAcquireAt at random ns times over many keys in a small reclaiming table equals a per-key GCRA model exactly while no key overflows, and never exceeds burst + rate × length in any interval', () => {
    const rate = 5;
    const periodMs = 10; // T = 2000 µs
    const burst = 3;
    const k = new KeyedTokenBucket({ rate, periodMs, burst, slots: 128, probeWindow: 16, clock: new ManualClock(0) });
    const model = new GcraModel(2000, burst);
    let seed = 7;
    const random = (): number => {
      seed ^= seed << 13; // xorshift32
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 2 ** 32;
    };
    const admitted = new Map<string, bigint[]>();
    let tNs = 0;
    let disagreements = 0;
    for (let i = 0; i < 30_000; i++) {
      tNs += Math.floor(random() * 30_000); // ns steps, so most calls fall between whole µs
      // A moving set of 24 keys out of 400: far more keys than slots, so slots are reclaimed.
      const key = `k${(Math.floor(i / 200) * 3 + Math.floor(random() * 24)) % 400}`;
      const ok = k.tryAcquireAt(key, BigInt(tNs));
      if (ok !== model.takeNs(key, tNs)) disagreements++;
      if (ok) {
        let list = admitted.get(key);
        if (list === undefined) admitted.set(key, (list = []));
        list.push(BigInt(tNs));
      }
    }
    const snap = k.snapshot();
    expect(snap.tableFull).toBe(0);
    expect(snap.reclaimed).toBeGreaterThan(100);
    expect(disagreements).toBe(0);
    let tightest = -Infinity;
    for (const [key, times] of admitted) {
      const worst = worstExcess(times, burst, (rate * 1000) / periodMs);
      expect(worst.excess, key).toBeLessThanOrEqual(1e-9);
      tightest = Math.max(tightest, worst.excess);
    }
    expect(tightest).toBeGreaterThan(-1); // the bound was reached, so the check is not vacuous
  });

  test('a reclaimed slot behaves as a fresh key: it holds a full burst, then exactly its rate, and the old key loses nothing', () => {
    const k = new KeyedTokenBucket({ rate: 1, periodMs: 100, burst: 3, slots: 1, overflowRate: 1, overflowBurst: 1, clock: new ManualClock(0) });
    const take = (key: string, t: number): number => {
      let n = 0;
      for (let i = 0; i < 10; i++) if (k.tryAcquireAt(key, ms(t))) n++;
      return n;
    };
    expect(take('old', 0)).toBe(3); // old's TAT: 300 ms
    expect(take('new', 299)).toBe(1); // old still active: new gets the overflow bucket's one token
    expect(k.snapshot()).toMatchObject({ reclaimed: 0, overflowAdmitted: 1, tableFull: 10, keysActive: 1 });
    expect(take('new', 300)).toBe(3); // old's bucket is full now: new takes the slot, with a full burst
    expect(k.snapshot()).toMatchObject({ reclaimed: 1, inserted: 2, keysInUse: 1 });
    expect(take('new', 350)).toBe(0);
    expect(take('new', 400)).toBe(1);
    // old lost its slot while full, as a fresh key would be; with the table full it is served by
    // the overflow bucket, which refilled at 1 per 100 ms since 299 ms.
    expect(take('old', 400)).toBe(1);
  });

  test('a full table sends new keys to the shared overflow bucket, admitted at its own rate at exact times, until a resident goes idle', async () => {
    const clock = new ManualClock(0);
    const k = new KeyedTokenBucket({ rate: 1, periodMs: 1000, burst: 1, slots: 4, probeWindow: 4, overflowRate: 4, overflowBurst: 2, clock });
    for (let i = 0; i < 4; i++) expect(k.tryAcquire(`resident-${i}`)).toBe(true);
    // x and y find no slot: they share the overflow bucket (burst 2, then one per 250 ms), whichever asks.
    const starts: number[] = [];
    const calls = ['x', 'y', 'x', 'y', 'x', 'y'].map((key) => k.run(key, () => starts.push(clock.nowMs())));
    await clock.advance(999);
    expect(starts.sort((p, q) => p - q)).toEqual([0, 0, 250, 500, 750]);
    expect(k.snapshot()).toMatchObject({ overflowAdmitted: 5, keysActive: 4, reclaimed: 0 });
    // At 1000 ms the residents' buckets are full again: the last call takes an idle resident's slot.
    await clock.advance(1);
    await Promise.all(calls);
    expect(starts).toEqual([0, 0, 250, 500, 750, 1000]);
    expect(k.snapshot()).toMatchObject({ overflowAdmitted: 5, reclaimed: 1 });
  });

  test('a flood of 100 000 distinct keys against 256 slots never evicts an active key, and the flood gets at most the free slots plus the overflow bucket', () => {
    const rate = 1; // per key: 1 per second, burst 5
    const overflowRate = 100;
    const overflowBurst = 10;
    const k = new KeyedTokenBucket({ rate, burst: 5, slots: 256, probeWindow: 16, overflowRate, overflowBurst, clock: new ManualClock(0) });
    const active = Array.from({ length: 96 }, (_, i) => `tenant-${i}`);
    for (const key of active) for (let j = 0; j < 5; j++) expect(k.tryAcquireAt(key, 0n)).toBe(true);
    expect(k.snapshot()).toMatchObject({ tableFull: 0, keysActive: 96 });
    let flood = 0;
    const floodKeys = 100_000;
    const stepNs = 10_000; // 100 000 keys over 1 s
    for (let j = 0; j < floodKeys; j++) if (k.tryAcquireAt(`flood-${j}`, BigInt(j * stepNs))) flood++;
    const lengthS = ((floodKeys - 1) * stepNs) / 1e9;
    const snap = k.snapshot();
    // Every flood key that got a slot keeps it for 1 s (its TAT), so at most 256 − 96 of them did.
    expect(flood).toBeLessThanOrEqual(256 - 96 + overflowBurst + overflowRate * lengthS);
    expect(snap.overflowAdmitted).toBeLessThanOrEqual(overflowBurst + overflowRate * lengthS);
    expect(snap.overflowAdmitted).toBeGreaterThanOrEqual(overflowBurst + Math.floor(overflowRate * lengthS) - 2);
    expect(snap.tableFull).toBeGreaterThan(90_000);
    // Each active key still has its own bucket: at 4 s, TAT 5 s, exactly 4 tokens (a fresh or an
    // overflow bucket would give 5 or more).
    const t4 = ms(4000);
    for (const key of active) {
      let n = 0;
      for (let j = 0; j < 8; j++) if (k.tryAcquireAt(key, t4)) n++;
      expect(n, key).toBe(4);
    }
  });

  test('per-key queues exist only while calls wait: FIFO per key, and the thread holds no queue once they are served', async () => {
    const clock = new ManualClock();
    const k = new KeyedTokenBucket({ rate: 1, periodMs: 10, burst: 4, clock });
    const order: string[] = [];
    const calls = [
      k.run('a', () => order.push('a4'), 4),
      k.run('a', () => order.push('a1'), 1),
      k.run('a', () => order.push('a3'), 3),
      ...Array.from({ length: 200 }, (_, i) => k.run(`many-${i}`, () => undefined, 4)),
      ...Array.from({ length: 200 }, (_, i) => k.run(`many-${i}`, () => undefined, 1)),
    ];
    expect(k.size).toBe(202);
    expect(k.waitingKeys).toBe(201);
    expect(k.tryAcquire('a')).toBe(false); // calls of 'a' wait in this thread: no overtaking
    await clock.advance(200);
    await Promise.all(calls);
    expect(order).toEqual(['a4', 'a1', 'a3']);
    expect(k.size).toBe(0);
    expect(k.waitingKeys).toBe(0);
    expect(k.queuedTotal).toBe(0);
    expect(clock.pendingTimers()).toBe(0);
    expect(k.snapshot()).toMatchObject({ waited: 202, queued: 0 });
  });

  test('maxQueued counts waiting calls over all keys: one over it is refused with QueueFullError, having taken nothing', async () => {
    const clock = new ManualClock();
    const k = new KeyedTokenBucket({ rate: 1, periodMs: 100, burst: 1, maxQueued: 2, clock });
    const refused: string[] = [];
    k.on('refused', (e) => refused.push(`${e.key}:${e.reason}`));
    k.tryAcquire('a');
    k.tryAcquire('b');
    const waiting = [k.acquire('a'), k.acquire('b')];
    await expect(k.acquire('c')).resolves.toBeDefined(); // c is admissible at once: not queued
    await expect(k.acquire('a')).rejects.toBeInstanceOf(QueueFullError);
    expect(refused).toEqual(['a:queue_full']);
    await clock.advance(100);
    await Promise.all(waiting);
    expect(k.snapshot().refused.queue_full).toBe(1);
  });

  test("maxWaitMs refuses up front when the key's wait is over the bound, and at the deadline; abort rejects with the signal's reason", async () => {
    const clock = new ManualClock();
    const k = new KeyedTokenBucket({ rate: 1, periodMs: 100, burst: 1, clock });
    expect(k.tryAcquire('a')).toBe(true);
    const limited: number[] = [];
    k.on('limited', (e) => limited.push(e.waitMs));
    await expect(k.acquire('a', 1, { maxWaitMs: 50 })).rejects.toThrow(QueueTimeoutError);
    const first = k.acquire('a', 1, { maxWaitMs: 150 });
    expect(limited).toEqual([100]);
    const controller = new AbortController();
    const aborted = k.acquire('a', 1, { signal: controller.signal });
    controller.abort(new Error('client went away'));
    await expect(aborted).rejects.toThrow('client went away');
    await clock.advance(100);
    await expect(first).resolves.toBeDefined();
    // Behind nothing, a 150 ms bound on a 100 ms wait is fine; a slot that never frees is not.
    const full = new KeyedTokenBucket({ rate: 1, periodMs: 1000, burst: 1, slots: 1, overflowRate: 1e-3, overflowBurst: 1, clock });
    full.tryAcquire('resident');
    full.tryAcquire('spill'); // takes the overflow bucket's only token
    const late = full.acquire('spill');
    const bounded = full.acquire('other', 1, { maxWaitMs: 10 });
    await expect(bounded).rejects.toThrow(/estimated wait/);
    full.clear(new Error('shutting down'));
    await expect(late).rejects.toThrow('shutting down');
    expect(full.waitingKeys).toBe(0);
    expect(k.snapshot().refused).toEqual({ queue_full: 0, queue_timeout: 1, aborted: 1 });
  });

  test("a key's estimated wait ('limited', estimateWaitMs) behind calls still waiting counts from now once its bucket's TAT has passed (a late timer): never 0 or less while calls wait ahead, in its slot and in the overflow bucket", async () => {
    for (const spill of [false, true]) {
      const clock = new ManualClock();
      // Own slot: 10/s, burst 1. Overflow: one slot held by an active resident (1/s), the spilling
      // key in the overflow bucket at 10/s, burst 1. Either way the key's tokens come every 100 ms.
      const k = spill
        ? new KeyedTokenBucket({ rate: 1, burst: 1, slots: 1, probeWindow: 1, overflowRate: 10, overflowBurst: 1, clock })
        : new KeyedTokenBucket({ rate: 10, burst: 1, clock });
      if (spill) expect(k.tryAcquire('resident')).toBe(true); // its bucket stays active for 1 s
      const limited: number[] = [];
      k.on('limited', (e) => limited.push(e.waitMs));
      expect(k.tryAcquire('a')).toBe(true); // the key's TAT: 100 ms
      clock.timerLatenessMs = 500; // the queue's wake-up, due at 100 ms, fires at 600 ms
      const waiting = [k.acquire('a'), k.acquire('a')];
      expect(limited).toEqual([100, 200]);
      await clock.advance(300);
      expect(k.size).toBe(2); // both still wait, and the key's TAT (100 ms) is in the past
      // From a full bucket now, the two calls ahead take the tokens of 300 and 400 ms, this one 500 ms.
      expect(k.estimateWaitMs('a')).toBe(200);
      waiting.push(k.acquire('a'));
      expect(limited).toEqual([100, 200, 200]);
      expect(k.estimateWaitMs('a', 1)).toBe(300); // one more behind the three
      await clock.advance(1000);
      await Promise.all(waiting);
      expect(limited.every((w) => w >= 0)).toBe(true);
    }
  });

  test('share() is structured-cloneable, attach() in the same thread returns the same instance, and a foreign descriptor is refused', () => {
    const k = new KeyedTokenBucket({ rate: 5, slots: 100 });
    const d = structuredClone(k.share());
    expect(d.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(KeyedTokenBucket.attach(d)).toBe(k);
    expect(KeyedTokenBucket.attach(k.share())).toBe(k);
    const tb = new TokenBucket({ rate: 1 });
    expect(() => KeyedTokenBucket.attach(tb.share() as never)).toThrow(/descriptor must come from KeyedTokenBucket.share/);
    expect(() => KeyedTokenBucket.attach({ ...d, id: 'other', buffer: tb.share().buffer })).toThrow(TypeError);
  });

  test('the key hash is FNV-1a 64 over the UTF-16LE bytes of the key (seed 0), compared on all 64 bits', () => {
    const reference = (key: string): bigint => {
      let h = 0xcbf29ce484222325n;
      for (const byte of Buffer.from(key, 'utf16le')) h = BigInt.asUintN(64, (h ^ BigInt(byte)) * 0x100000001b3n);
      return h;
    };
    const hasher = new KeyHasher(0, 0, 4096);
    for (const key of ['', 'a', 'tenant-42', '10.0.0.1:5353', 'ключ', '🔑 key', 'x'.repeat(300)]) {
      hasher.hash(key);
      const got = (BigInt(hasher.hi >>> 0) << 32n) | BigInt(hasher.lo >>> 0);
      expect(got, key).toBe(reference(key));
      expect(hasher.home).toBeGreaterThanOrEqual(0);
      expect(hasher.home).toBeLessThan(4096);
    }
  });
});

describe('KeyedTokenBucket options are validated, naming the option and the value', () => {
  type Case = [label: string, make: () => unknown, error: typeof TypeError | typeof RangeError, message: RegExp];
  const cases: Case[] = [
    ['rate missing', () => new KeyedTokenBucket({} as never), TypeError, /rate is required/],
    ['rate negative', () => new KeyedTokenBucket({ rate: -2 }), RangeError, /rate must be greater than 0, got -2/],
    ['slots 0', () => new KeyedTokenBucket({ rate: 1, slots: 0 }), RangeError, /slots must be at least 1, got 0/],
    ['slots fractional', () => new KeyedTokenBucket({ rate: 1, slots: 10.5 }), RangeError, /slots must be a whole number, got 10.5/],
    ['slots too large', () => new KeyedTokenBucket({ rate: 1, slots: 2 ** 25 }), RangeError, /slots must be at most 16777216/],
    ['slots as string', () => new KeyedTokenBucket({ rate: 1, slots: '64' as never }), TypeError, /slots must be a number, got "64"/],
    [
      'capacity, the old name of slots',
      () => new KeyedTokenBucket({ rate: 1, capacity: 64 } as never),
      TypeError,
      /^KeyedTokenBucket options: option "capacity" was renamed "slots"$/,
    ],
    ['probeWindow 0', () => new KeyedTokenBucket({ rate: 1, probeWindow: 0 }), RangeError, /probeWindow must be at least 1, got 0/],
    ['probeWindow 65', () => new KeyedTokenBucket({ rate: 1, probeWindow: 65 }), RangeError, /probeWindow must be at most 64, got 65/],
    ['overflowRate NaN', () => new KeyedTokenBucket({ rate: 1, overflowRate: NaN }), RangeError, /overflowRate must be a finite number, got NaN/],
    ['overflowBurst 0', () => new KeyedTokenBucket({ rate: 1, overflowBurst: 0 }), RangeError, /overflowBurst must be at least 1, got 0/],
    ['burst span too long', () => new KeyedTokenBucket({ rate: 1e-9, burst: 10 }), RangeError, /spans more than 2\^46 µs/],
    ['maxThreads 0', () => new KeyedTokenBucket({ rate: 1, maxThreads: 0 }), RangeError, /maxThreads must be at least 1, got 0/],
    ['options null', () => new KeyedTokenBucket(null as never), TypeError, /KeyedTokenBucket options must be an options object/],
  ];
  test.each(cases)('%s', (_label, make, error, message) => {
    expect(make).toThrow(error);
    expect(make).toThrow(message);
  });

  test('calls check the key, n against burst and overflowBurst, and the explicit time', () => {
    const k = new KeyedTokenBucket({ rate: 10, burst: 5, overflowBurst: 3 });
    expect(() => k.tryAcquire(42 as never)).toThrow(/key must be a string, got 42/);
    expect(() => k.acquire('a', 4)).toThrow(/n \(4\) exceeds overflowBurst \(3\)/);
    expect(() => k.tryAcquire('a', 0)).toThrow(/n must be a whole number of at least 1, got 0/);
    expect(() => k.tryAcquireAt('a', 5 as never)).toThrow(/now must be a bigint/);
    expect(() => k.tryAcquireAt('a', -1n)).toThrow(/before the table was created/);
    expect(() => k.run('a', 'not a task' as never)).toThrow(/task must be a function/);
    expect(() => k.acquire('a', 1, { maxWaitMs: -1 })).toThrow(/maxWaitMs must be 0 or more, got -1/);
  });
});
