import { describe, expect, test } from 'vitest';
import { stalledMs, type Stall } from './helpers.js';

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
