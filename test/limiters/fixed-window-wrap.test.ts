import { describe, expect, test } from 'vitest';
import { ManualClock, type Clock } from '../../src/clock.js';
import { FixedWindow } from '../../src/limiters/fixed-window.js';

// 1 ms windows from a clock starting at 0: window w spans [w, w + 1) ms, and 2^32 windows are
// 4.29e15 ns, inside a double's exact integers, so ManualClock's ms ↔ ns conversions stay exact.
const PERIOD_MS = 1;
const MAX = 3;
const WRAP = 2 ** 32;
const NS = 1_000_000n;

/** Moves `clock` to `ms` (no timers are pending in between, so this is one jump). */
async function moveTo(clock: ManualClock, ms: number): Promise<void> {
  const now = clock.nowMs();
  expect(ms).toBeGreaterThanOrEqual(now);
  await clock.advance(ms - now);
  expect(clock.now()).toBe(BigInt(ms) * NS);
}

/** tryAcquire `tries` times; how many were admitted. */
function burst(fw: FixedWindow, tries = MAX + 2): number {
  let admitted = 0;
  for (let k = 0; k < tries; k++) if (fw.tryAcquire()) admitted++;
  return admitted;
}

describe('FixedWindow across the 32-bit wrap of the window number', () => {
  test('exactly maxCalls per window in the windows before, at and after 2^32 (window number wraps to 0): a window full until its last ns, the next one admitting from its first ns, none skipped or merged', async () => {
    const clock = new ManualClock(0);
    const fw = new FixedWindow({ maxCalls: MAX, periodMs: PERIOD_MS, clock });
    // The state word is touched less than 2^31 windows apart, as a limiter in use is.
    for (const w of [0, 2 ** 31 - 1, WRAP - 3]) {
      await moveTo(clock, w);
      expect(burst(fw), `window ${w}`).toBe(MAX);
    }
    for (const w of [WRAP - 2, WRAP - 1, WRAP, WRAP + 1, WRAP + 2]) {
      await moveTo(clock, w);
      expect(burst(fw), `first ns of window ${w}`).toBe(MAX);
      await clock.advance(PERIOD_MS - 1e-6); // the window's last ns
      expect(burst(fw), `last ns of window ${w}`).toBe(0);
    }
    expect(fw.snapshot().admitted).toBe(8 * MAX);
  });

  test('explicit-time admissions across the wrap: window 2^32 − 1 full, window 2^32 admits maxCalls again, and a reading in window 2^32 − 1 after window 2^32 began is refused (not taken for a new window)', () => {
    const clock = new ManualClock(0);
    const fw = new FixedWindow({ maxCalls: MAX, periodMs: PERIOD_MS, clock });
    const at = (w: number, offsetNs = 0n): bigint => BigInt(w) * NS + offsetNs;
    let admitted: number;
    for (const w of [0, 2 ** 31 - 1, WRAP - 3, WRAP - 1]) {
      admitted = 0;
      for (let k = 0; k < MAX + 2; k++) if (fw.tryAcquireAt(at(w, BigInt(k)))) admitted++;
      expect(admitted, `window ${w}`).toBe(MAX);
    }
    expect(fw.tryAcquireAt(at(WRAP - 1, NS - 1n))).toBe(false);
    admitted = 0;
    for (let k = 0; k < MAX + 2; k++) if (fw.tryAcquireAt(at(WRAP, BigInt(k)))) admitted++;
    expect(admitted).toBe(MAX);
    // A late reading of the previous window may not start a fresh count there.
    expect(fw.tryAcquireAt(at(WRAP - 1, NS - 1n))).toBe(false);
    expect(fw.tryAcquireAt(at(WRAP + 1))).toBe(true);
  });

  test("calls queued in the last window before the wrap are admitted maxCalls per window at the first ns of windows 2^32 and 2^32 + 1 (the waiting queue's wake-up time crosses the wrap)", async () => {
    const clock = new ManualClock(0);
    const fw = new FixedWindow({ maxCalls: MAX, periodMs: PERIOD_MS, clock });
    for (const w of [0, 2 ** 31 - 1, WRAP - 3]) {
      await moveTo(clock, w);
      expect(burst(fw)).toBe(MAX);
    }
    await moveTo(clock, WRAP - 1);
    expect(burst(fw, MAX)).toBe(MAX);
    const admittedAt: bigint[] = [];
    const calls = Array.from({ length: 2 * MAX }, () =>
      fw.run(() => {
        admittedAt.push(clock.now());
      }),
    );
    expect(fw.size).toBe(2 * MAX);
    await clock.advance(0.5);
    expect(admittedAt).toEqual([]);
    await clock.advance(2);
    await Promise.all(calls);
    const first = BigInt(WRAP) * NS;
    expect(admittedAt).toEqual([...new Array<bigint>(MAX).fill(first), ...new Array<bigint>(MAX).fill(first + NS)]);
    expect(fw.size).toBe(0);
  });

  test('a limiter idle for 2^31 windows, or first used 2^31 − 1 windows after its creation, admits at once, and a call queued after such a gap is admitted in its window without a busy loop', async () => {
    const clock = new ManualClock(0);
    const fw = new FixedWindow({ maxCalls: MAX, periodMs: PERIOD_MS, clock });
    expect(burst(fw)).toBe(MAX);
    await moveTo(clock, 2 ** 31);
    expect(burst(fw)).toBe(MAX);
    const fresh = new FixedWindow({ maxCalls: MAX, periodMs: PERIOD_MS, clock: new ManualClock(0) });
    expect(fresh.tryAcquireAt(BigInt(2 ** 31 - 1) * NS)).toBe(true);

    // Full in window 2^31; one more call queues, and is admitted at the next window's first ns.
    const queued = fw.acquire().then(() => clock.now());
    await clock.advance(PERIOD_MS);
    expect(await queued).toBe(BigInt(2 ** 31 + 1) * NS);
  });

  test("a reading up to 2^16 windows behind the state is refused (explicit-time calls), and the queue wakes at the state's window, not at once", async () => {
    const manual = new ManualClock(0);
    // The times the queue arms its timer for.
    const armed: bigint[] = [];
    const clock: Clock = { now: () => manual.now(), setTimer: (at, callback) => (armed.push(at), manual.setTimer(at, callback)) };
    const fw = new FixedWindow({ maxCalls: MAX, periodMs: PERIOD_MS, clock });
    expect(fw.tryAcquireAt(BigInt(2 ** 16) * NS)).toBe(true);
    expect(fw.tryAcquireAt(0n)).toBe(false);
    expect(fw.tryAcquireAt(NS)).toBe(false);
    const queued = fw.acquire();
    expect(armed).toEqual([BigInt(2 ** 16) * NS]);
    fw.clear(new Error('done'));
    await expect(queued).rejects.toThrow('done');
  });
});
