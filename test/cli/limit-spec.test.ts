import { describe, expect, test } from 'vitest';
import { parseLimit } from '../../src/cli/limit-spec.js';

describe('--limit METHOD=SPEC', () => {
  test.each([
    ['work=100/s', ['work', { rate: 100, periodMs: 1000 }]],
    ['*=1000/s,burst=50', ['*', { rate: 1000, periodMs: 1000, burst: 50 }]],
    ['report=600/min,window', ['report', { maxCalls: 600, periodMs: 60_000 }]],
    ['slow=2.5/1500ms', ['slow', { rate: 2.5, periodMs: 1500 }]],
    ['export=concurrency=4', ['export', { concurrency: 4 }]],
  ])('%s', (text, expected) => {
    expect(parseLimit(text)).toEqual(expected);
  });

  test.each([
    ['work', /expected METHOD=SPEC/],
    ['work=100', /expected RATE\/PERIOD/],
    ['work=100/fortnight', /unknown period 'fortnight'/],
    ['work=100/s,burst=x', /unknown setting 'burst=x'/],
    ['work=100/s,window,burst=2', /burst does not apply to a fixed window/],
    ['work=concurrency=2,burst=1', /takes no other settings/],
  ])('rejects %s naming the flag', (text, message) => {
    expect(() => parseLimit(text)).toThrow(RangeError);
    expect(() => parseLimit(text)).toThrow(message);
  });
});
