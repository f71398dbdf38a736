import { describe, expect, test } from 'vitest';
import { stalledMs, worstExcess, type Stall } from './helpers.js';

const ms = (from: number, to: number): Stall => ({ from: BigInt(from * 1e6), to: BigInt(to * 1e6) });

describe('stalledMs: the wall-clock slack integration tests take from measured stalls', () => {
  test('one thread: its stalls within the window, overlapping ones counted once', () => {
    expect(stalledMs([])).toBe(0);
    expect(stalledMs([ms(10, 20), ms(15, 25), ms(40, 41)])).toBe(16);
    expect(stalledMs([ms(10, 20), ms(40, 50)], 15n * 1_000_000n, 45n * 1_000_000n)).toBe(10);
  });

  test('several threads: only the time every one of them was stalled at once', () => {
    expect(stalledMs([[ms(0, 10)], [ms(5, 20)]])).toBe(5);
    expect(stalledMs([[ms(0, 10), ms(30, 40)], [ms(5, 35)], [ms(0, 100)]])).toBe(10);
    expect(stalledMs([[ms(0, 10)], []])).toBe(0);
    expect(stalledMs([[ms(0, 10)], [ms(10, 20)]])).toBe(0);
  });
});

describe('worstExcess: admissions over burst + rate × L in the worst interval', () => {
  test('4 starts in [0, 1.5 ms] at 1000/s burst 1 are 1.5 over; the same instants as hrtime ns (far from 0) or as ms give the same answer', () => {
    const ms = [0, 0, 1, 1.5];
    const worst = { excess: 1.5, count: 4, lengthMs: 1.5 };
    expect(worstExcess(ms, 1, 1000)).toEqual(worst);
    expect(
      worstExcess(
        ms.map((t) => 10n ** 15n + BigInt(t * 1e6)),
        1,
        1000,
      ),
    ).toEqual(worst);
  });

  test('starts within the bound give an excess ≤ 0; none give −burst', () => {
    expect(worstExcess([0, 1, 2, 3], 1, 1000).excess).toBe(0);
    expect(worstExcess([0, 10, 20], 2, 1000).excess).toBeLessThan(0);
    expect(worstExcess([], 3, 1000)).toEqual({ excess: -3, count: 0, lengthMs: 0 });
  });
});
