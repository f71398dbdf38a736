import { describe, expect, test } from 'vitest';
import { ConcurrencyLimit } from '../../src/limiters/concurrency-limit.js';
import { FixedWindow } from '../../src/limiters/fixed-window.js';
import { TokenBucket } from '../../src/limiters/token-bucket.js';
import { RateLimiter } from '../../src/rate-limiter.js';
import { attachLimiter } from '../../src/limiters/attach.js';

type Case = [label: string, make: () => unknown, error: typeof TypeError | typeof RangeError, message: RegExp];

const cases: Case[] = [
  ['rate NaN', () => new TokenBucket({ rate: NaN }), RangeError, /rate must be a finite number, got NaN/],
  ['rate Infinity', () => new TokenBucket({ rate: Infinity }), RangeError, /rate must be a finite number, got Infinity/],
  ['rate negative', () => new TokenBucket({ rate: -1 }), RangeError, /rate must be greater than 0, got -1/],
  ['rate as string', () => new TokenBucket({ rate: '10' as unknown as number }), TypeError, /rate must be a number, got "10"/],
  ['rate missing', () => new TokenBucket({} as never), TypeError, /rate is required/],
  ['zero period', () => new TokenBucket({ rate: 1, periodMs: 0 }), RangeError, /periodMs must be greater than 0, got 0/],
  ['fractional burst', () => new TokenBucket({ rate: 1, burst: 1.5 }), RangeError, /burst must be a whole number, got 1.5/],
  ['zero burst', () => new TokenBucket({ rate: 1, burst: 0 }), RangeError, /burst must be at least 1, got 0/],
  ['negative maxQueued', () => new TokenBucket({ rate: 1, maxQueued: -1 }), RangeError, /maxQueued must be 0 or more, got -1/],
  ['NaN maxWaitMs', () => new TokenBucket({ rate: 1, maxWaitMs: NaN }), RangeError, /maxWaitMs must be a finite number, got NaN/],
  ['fractional maxCalls', () => new FixedWindow({ maxCalls: 2.5 }), RangeError, /maxCalls must be a whole number, got 2.5/],
  ['negative window', () => new FixedWindow({ maxCalls: 2, periodMs: -5 }), RangeError, /periodMs must be greater than 0, got -5/],
  ['max 0', () => new ConcurrencyLimit({ max: 0 }), RangeError, /max must be at least 1, got 0/],
  ['options not an object', () => new ConcurrencyLimit(null as never), TypeError, /ConcurrencyLimit options must be an options object/],
  [
    'unknown algorithm',
    () => new RateLimiter({ maxCalls: 1, algorithm: 'sliding' as never }),
    RangeError,
    /algorithm must be 'token-bucket' or 'fixed-window', got "sliding"/,
  ],
  [
    'burst on a fixed window',
    () => new RateLimiter({ maxCalls: 1, algorithm: 'fixed-window', burst: 2 }),
    RangeError,
    /burst applies to algorithm 'token-bucket' only/,
  ],
  [
    'bad descriptor',
    () => attachLimiter({ kind: 'token-bucket', id: 'x', options: {}, buffer: new SharedArrayBuffer(8) }),
    TypeError,
    /descriptor.buffer must be the SharedArrayBuffer of a limiter/,
  ],
];

describe('options are validated in one place, naming the option and the value', () => {
  test.each(cases)('%s', (_label, make, error, message) => {
    expect(make).toThrow(error);
    expect(make).toThrow(message);
  });

  test('a request for more tokens than the burst is a RangeError naming burst', () => {
    const tb = new TokenBucket({ rate: 10, burst: 3 });
    expect(() => tb.acquire(4)).toThrow(RangeError);
    expect(() => tb.acquire(4)).toThrow(/n \(4\) exceeds burst \(3\)/);
    expect(() => tb.tryAcquire(0)).toThrow(/n must be a whole number of at least 1, got 0/);
    expect(() => tb.acquire(1, { maxWaitMs: -1 })).toThrow(/maxWaitMs must be 0 or more, got -1/);
  });

  test('a descriptor of one kind cannot be attached as another', () => {
    const d = new TokenBucket({ rate: 1 }).share();
    expect(() => FixedWindow.attach(d)).toThrow(/does not hold a fixed-window limiter/);
  });
});
