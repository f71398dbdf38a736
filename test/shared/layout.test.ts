import { describe, expect, test } from 'vitest';
import { assertLayout } from '../../src/shared/layout.js';

describe('shared-memory layout checks', () => {
  test('a word past the end of its region, or an Int32 word inside a 64-bit one, is refused with the layout named', () => {
    expect(() => assertLayout('demo', { i32: [0, 1], i64: [1, 3], bytes: 32 })).not.toThrow();
    expect(() => assertLayout('demo', { i32: [0], i64: [4], bytes: 32 })).toThrow(/demo: BigInt64 word 4 \(bytes 32–40\) lies outside its 32 bytes/);
    expect(() => assertLayout('demo', { i32: [8], i64: [], bytes: 32 })).toThrow(/demo: Int32 word 8/);
    expect(() => assertLayout('demo', { i32: [3], i64: [1], bytes: 32 })).toThrow(/demo: Int32 word 3 overlaps BigInt64 word 1/);
  });

  test('every layout of the library passes its check when its module loads', async () => {
    await expect(import('../../src/index.js')).resolves.toBeDefined();
  });
});
