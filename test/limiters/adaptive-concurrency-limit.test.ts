import { describe, expect, test } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { AdaptiveConcurrencyLimit } from '../../src/limiters/adaptive-concurrency-limit.js';
import { nextLimit } from '../../src/limiters/adaptive-gradient.js';
import type { AdaptiveConcurrencyLimitOptions } from '../../src/options.js';

/**
 * A downstream in virtual time: `slots` calls are served at once, each for `serviceMs`; the rest
 * wait in FIFO order. So a call's latency is serviceMs while at most `slots` are in flight and
 * grows with the backlog beyond.
 */
class Downstream {
  private readonly busy: { due: number; done: () => void }[] = [];
  private readonly waiting: (() => void)[] = [];
  /** Most calls inside at once. */
  most = 0;

  constructor(
    private readonly clock: ManualClock,
    public slots: number,
    public serviceMs: number,
  ) {}

  call(): Promise<void> {
    return new Promise((done) => {
      this.most = Math.max(this.most, this.busy.length + this.waiting.length + 1);
      this.waiting.push(done);
      this.startWaiting();
    });
  }

  /** Ends the calls due by now and starts waiting ones in the freed slots. */
  tick(): void {
    const now = this.clock.nowMs();
    for (let i = this.busy.length - 1; i >= 0; i--) {
      if (this.busy[i]!.due <= now) this.busy.splice(i, 1)[0]!.done();
    }
    this.startWaiting();
  }

  private startWaiting(): void {
    while (this.busy.length < this.slots && this.waiting.length > 0) {
      this.busy.push({ due: this.clock.nowMs() + this.serviceMs, done: this.waiting.shift()! });
    }
  }
}

interface Run {
  /** The limit after every millisecond. */
  limits: number[];
  /** Whether the no-load latency was being measured, after every millisecond. */
  measuring: boolean[];
  /** Calls completed. */
  completed: number;
}

/** Offers `offered` calls at once (each ends, the next begins) for `ms` of virtual time, 1 ms per step. */
async function drive(limit: AdaptiveConcurrencyLimit, clock: ManualClock, down: Downstream, offered: number, ms: number): Promise<Run> {
  let stop = false;
  let completed = 0;
  const loops = Array.from({ length: offered }, async () => {
    while (!stop) {
      await limit.run(() => down.call());
      completed++;
    }
  });
  const limits: number[] = [];
  const measuring: boolean[] = [];
  for (let t = 0; t < ms; t++) {
    await clock.advance(1);
    down.tick();
    limits.push(limit.limit);
    measuring.push(limit.measuring);
  }
  stop = true;
  // Let every loop finish its last call.
  for (let t = 0; t < 10_000 && limit.inFlight + limit.queuedTotal > 0; t++) {
    await clock.advance(1);
    down.tick();
  }
  await Promise.all(loops);
  return { limits, measuring, completed };
}

function adaptive(clock: ManualClock, options: AdaptiveConcurrencyLimitOptions = {}): AdaptiveConcurrencyLimit {
  return new AdaptiveConcurrencyLimit({ minLimit: 2, maxLimit: 60, initialLimit: 10, windowMs: 100, minSamples: 10, clock, ...options });
}

describe('AdaptiveConcurrencyLimit with an injected clock and a synthetic downstream', () => {
  test('starts at minLimit measuring the no-load latency, then continues from initialLimit', async () => {
    const clock = new ManualClock();
    const limit = adaptive(clock);
    expect(limit.limit).toBe(2);
    expect(limit.measuring).toBe(true);
    expect(limit.noLoadLatencyMs).toBeUndefined();
    const down = new Downstream(clock, 1000, 10);
    const run = await drive(limit, clock, down, 40, 150);
    expect(limit.noLoadLatencyMs).toBe(10);
    expect(limit.measuring).toBe(false);
    // The measurement took 100 ms (windowMs) at 2 in flight; the limit then went to initialLimit.
    expect(run.limits.slice(0, 99).every((l) => l === 2)).toBe(true);
    expect(run.limits.slice(100, 110).every((l) => l === 10)).toBe(true);
  });

  test('the limit rises while the latency stays at the no-load level, up to maxLimit and never past it', async () => {
    const clock = new ManualClock();
    const limit = adaptive(clock);
    const down = new Downstream(clock, 1000, 10); // never queues
    const run = await drive(limit, clock, down, 100, 6000);
    // Outside the no-load measurements (at minLimit), it only ever rises.
    const after = run.limits.slice(110).filter((_, i) => !run.measuring[110 + i]);
    for (let i = 1; i < after.length; i++) expect(after[i]).toBeGreaterThanOrEqual(after[i - 1]!);
    expect(Math.max(...run.limits)).toBe(60);
    expect(run.limits.at(-1)).toBe(60);
  });

  test('the limit falls when the latency grows, and settles within 25 % of the downstream’s slots', async () => {
    const clock = new ManualClock();
    const limit = adaptive(clock, { initialLimit: 50 });
    const down = new Downstream(clock, 12, 10); // queues beyond 12 in flight
    const run = await drive(limit, clock, down, 100, 4000);
    // From 50, down to about 12 × (1 + tolerance) (outside the no-load measurements, at minLimit).
    expect(run.limits[400]).toBeLessThan(40);
    const settled = run.limits.slice(2000).filter((_, i) => !run.measuring[2000 + i]);
    expect(Math.min(...settled)).toBeGreaterThanOrEqual(12);
    expect(Math.max(...settled)).toBeLessThanOrEqual(15);
    // Throughput: the downstream serves 12 per 10 ms at most.
    expect(run.completed).toBeGreaterThan(0.85 * (4000 / 10) * 12);
  });

  test('follows the downstream when its slots halve and double', async () => {
    const clock = new ManualClock();
    const limit = adaptive(clock, { initialLimit: 20 });
    const down = new Downstream(clock, 20, 10);
    let stop = false;
    const loops = Array.from({ length: 100 }, async () => {
      while (!stop) await limit.run(() => down.call());
    });
    /** The limits outside the no-load measurements over the next `ms` (after `from` ms of them). */
    const at = async (ms: number, from = 0): Promise<number[]> => {
      const seen: number[] = [];
      for (let t = 0; t < ms; t++) {
        await clock.advance(1);
        down.tick();
        if (t >= from && !limit.measuring) seen.push(limit.limit);
      }
      return seen;
    };
    await at(3000);
    down.slots = 10;
    const halved = await at(3000, 2000);
    down.slots = 20;
    const doubled = await at(3000, 2000);
    stop = true;
    down.slots = 1000;
    await at(100);
    await Promise.all(loops);
    // Within 25 % of the slots 2 s after each change, and for the rest of the phase.
    expect(halved.length).toBeGreaterThan(500);
    for (const l of halved) expect(Math.abs(l - 10)).toBeLessThanOrEqual(2.5);
    expect(doubled.length).toBeGreaterThan(500);
    for (const l of doubled) expect(Math.abs(l - 20)).toBeLessThanOrEqual(5);
  });

  test('never leaves [minLimit, maxLimit], even when every added call makes each call slower', async () => {
    const clock = new ManualClock();
    const limit = adaptive(clock, { initialLimit: 30, maxLimit: 40 });
    const down = new Downstream(clock, 1, 10); // one slot: latency grows with every call in flight
    const run = await drive(limit, clock, down, 60, 5000);
    for (const l of run.limits) expect(l).toBeGreaterThanOrEqual(2);
    expect(Math.max(...run.limits)).toBeLessThanOrEqual(40);
    // Down to the floor by the algorithm, not only while measuring (when it is pinned there).
    expect(Math.min(...run.limits.filter((_, i) => !run.measuring[i]))).toBe(2);
    // The downstream never saw more than the limit allowed (maxLimit at worst).
    expect(down.most).toBeLessThanOrEqual(40);
  });

  test('the no-load latency is re-measured at minLimit: it is the service time, not the queued latency', async () => {
    const clock = new ManualClock();
    const limit = adaptive(clock, { initialLimit: 40, probeIntervalMs: 1000 });
    const down = new Downstream(clock, 10, 10);
    await drive(limit, clock, down, 100, 250);
    expect(limit.noLoadLatencyMs).toBe(10);
    // Slower for good: the service time triples. Queueing at first, then the re-measurement.
    down.serviceMs = 30;
    const run = await drive(limit, clock, down, 100, 5000);
    expect(limit.noLoadLatencyMs).toBe(30);
    const settled = run.limits.slice(3500).filter((_, i) => !run.measuring[3500 + i]);
    expect(Math.min(...settled)).toBeGreaterThanOrEqual(10);
    expect(Math.max(...settled)).toBeLessThanOrEqual(13);
    // Faster for good: found at the next periodic measurement (spaced by 20 × the last one's
    // duration, about 250 ms at 30 ms per call, so within 6 s).
    down.serviceMs = 5;
    await drive(limit, clock, down, 100, 6000);
    expect(limit.noLoadLatencyMs).toBe(5);
  });

  test('a measurement that lowered the no-load latency (the first one always does) is checked again 10 windows later, not after the whole interval: a cold start reads high', async () => {
    const clock = new ManualClock();
    const limit = adaptive(clock, { probeIntervalMs: 600_000 });
    const down = new Downstream(clock, 1000, 14); // slow while the process starts
    await drive(limit, clock, down, 40, 150);
    expect(limit.noLoadLatencyMs).toBe(14);
    down.serviceMs = 10; // warm
    await drive(limit, clock, down, 40, 2500);
    expect(limit.noLoadLatencyMs).toBe(10);
  });

  test('five windows at minLimit that still show queueing re-measure at once, without waiting for the interval', async () => {
    const clock = new ManualClock();
    const limit = adaptive(clock, { initialLimit: 8, probeIntervalMs: 600_000 });
    const down = new Downstream(clock, 8, 10);
    await drive(limit, clock, down, 50, 1000);
    expect(limit.noLoadLatencyMs).toBe(10);
    down.serviceMs = 40; // four times slower: at the old no-load latency, every window reads queueing
    const run = await drive(limit, clock, down, 50, 8000);
    expect(limit.noLoadLatencyMs).toBe(40);
    expect(Math.min(...run.limits)).toBe(2);
    expect(run.limits.at(-1)).toBeGreaterThanOrEqual(8);
  });

  test('samples are the latency from admission, not from the call: time spent queued in the limiter is not counted', async () => {
    const clock = new ManualClock();
    const limit = adaptive(clock, { minLimit: 1, maxLimit: 1, initialLimit: 1 });
    const down = new Downstream(clock, 1, 10);
    // 30 calls queue behind one slot: each waits up to 290 ms in the limiter but runs 10 ms.
    await drive(limit, clock, down, 30, 400);
    expect(limit.noLoadLatencyMs).toBe(10);
  });
});

describe('the gradient step', () => {
  const settings = { minLimit: 1, maxLimit: 100, smoothing: 0.2, tolerance: 0.1 };

  test('no queueing: grows by smoothing × k × √limit, k the windows in a row without queueing (at most 4); queueing: moves max(smoothing, 0.5) of the way to limit × gradient', () => {
    const grow = (quiet: number, meanUs: number): [number, boolean, number] => {
      const step = nextLimit(16, 1000, quiet, { meanUs, inFlight: 16 }, settings);
      return [Math.round(step.limit * 1e9) / 1e9, step.queueing, step.quiet];
    };
    expect(grow(0, 1000)).toEqual([16 + 0.2 * 4, false, 1]);
    // Within the tolerance is no queueing.
    expect(grow(1, 1050)).toEqual([16 + 0.2 * 2 * 4, false, 2]);
    expect(grow(9, 1000)).toEqual([16 + 0.2 * 4 * 4, false, 10]);
    // Latency twice the no-load one with tolerance 0.1: gradient 0.55, target 8.8; the streak ends.
    const twice = nextLimit(16, 1000, 3, { meanUs: 2000, inFlight: 16 }, settings);
    expect(twice.limit).toBeCloseTo(16 * 0.5 + 16 * 0.55 * 0.5, 10);
    expect([twice.queueing, twice.quiet]).toEqual([true, 0]);
    // Ten times: the gradient is clamped at 0.5, so one window takes at most a quarter off.
    expect(nextLimit(16, 1000, 0, { meanUs: 10_000, inFlight: 16 }, settings).limit).toBeCloseTo(16 * 0.75, 10);
    // A smoothing above the backoff's floor weighs decreases too.
    expect(nextLimit(16, 1000, 0, { meanUs: 2000, inFlight: 16 }, { ...settings, smoothing: 0.8 }).limit).toBeCloseTo(16 * 0.2 + 16 * 0.55 * 0.8, 10);
  });

  test('never leaves [minLimit, maxLimit]', () => {
    expect(nextLimit(100, 1000, 3, { meanUs: 1000, inFlight: 100 }, settings).limit).toBe(100);
    expect(nextLimit(99.5, 1000, 3, { meanUs: 1000, inFlight: 100 }, settings).limit).toBe(100);
    expect(nextLimit(1, 1000, 0, { meanUs: 10_000, inFlight: 1 }, settings)).toEqual({ limit: 1, queueing: true, quiet: 0 });
  });

  test('a window using under half the limit changes nothing (the load, not the downstream, set its latency)', () => {
    expect(nextLimit(40, 1000, 2, { meanUs: 1000, inFlight: 19 }, settings)).toEqual({ limit: 40, queueing: false, quiet: 2 });
    expect(nextLimit(40, 1000, 2, { meanUs: 5000, inFlight: 19 }, settings)).toEqual({ limit: 40, queueing: true, quiet: 2 });
  });
});

describe('AdaptiveConcurrencyLimit options', () => {
  test('defaults, documented: minLimit 1, maxLimit 1000, initialLimit 20', () => {
    const limit = new AdaptiveConcurrencyLimit();
    expect([limit.minLimit, limit.maxLimit, limit.capacity]).toEqual([1, 1000, 1]);
    expect(limit.share().options).toMatchObject({ initialLimit: 20, windowMs: 100, minSamples: 10, smoothing: 0.2, tolerance: 0.1, probeIntervalMs: 30_000 });
  });

  test('invalid options are refused, naming the option', () => {
    expect(() => new AdaptiveConcurrencyLimit({ minLimt: 2 } as never)).toThrow(/unknown option "minLimt" \(did you mean "minLimit"\?\)/);
    expect(() => new AdaptiveConcurrencyLimit({ minLimit: 0 })).toThrow(RangeError);
    expect(() => new AdaptiveConcurrencyLimit({ minLimit: 10, maxLimit: 5 })).toThrow(/maxLimit \(5\) must be at least minLimit \(10\)/);
    expect(() => new AdaptiveConcurrencyLimit({ minLimit: 10, initialLimit: 5 })).toThrow(/initialLimit \(5\) must be within/);
    expect(() => new AdaptiveConcurrencyLimit({ maxLimit: 2_000_000 })).toThrow(/maxLimit must be at most 1000000/);
    expect(() => new AdaptiveConcurrencyLimit({ smoothing: 1.5 })).toThrow(/smoothing must be at most 1/);
    expect(() => new AdaptiveConcurrencyLimit({ tolerance: -0.1 })).toThrow(/tolerance must be 0 or more/);
    expect(() => new AdaptiveConcurrencyLimit({ windowMs: '100' as never })).toThrow(TypeError);
    expect(() => new AdaptiveConcurrencyLimit({ minSamples: 1.5 })).toThrow(/minSamples must be a whole number/);
  });

  test('a call may ask for at most minLimit permits: more might never fit', () => {
    const limit = new AdaptiveConcurrencyLimit({ minLimit: 2 });
    expect(() => limit.tryAcquire(3)).toThrow(/n \(3\) exceeds minLimit \(2\)/);
  });
});
