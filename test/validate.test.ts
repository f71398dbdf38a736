import { describe, expect, test } from 'vitest';
import { FairQueue } from '../src/fair/fair-queue.js';
import { KeyedTokenBucket } from '../src/keyed/keyed-token-bucket.js';
import { AdaptiveConcurrencyLimit } from '../src/limiters/adaptive-concurrency-limit.js';
import { ConcurrencyLimit } from '../src/limiters/concurrency-limit.js';
import { FixedWindow } from '../src/limiters/fixed-window.js';
import { TokenBucket } from '../src/limiters/token-bucket.js';
import { RateLimiter } from '../src/rate-limiter.js';
import { createRedisStore } from '../src/stores/redis-store.js';
import { wrapHandler } from '../src/handler/wrap-handler.js';
import { closest } from '../src/validate.js';
import { handlerPath, serverModule, servicePath } from './server/calculator.js';

const { createThreadedServer } = await serverModule();
const base = { service: servicePath, handler: handlerPath };
const bucket = new TokenBucket({ rate: 10 });

/** The message a thrown error carries, or a failure when nothing is thrown. */
function messageOf(make: () => unknown): string {
  try {
    make();
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('expected a throw');
}

type Level = [level: string, make: () => unknown, message: string];

const unknownKeys: Level[] = [
  ['TokenBucket', () => new TokenBucket({ rate: 1, brust: 2 } as never), 'TokenBucket options: unknown option "brust" (did you mean "burst"?)'],
  ['FixedWindow', () => new FixedWindow({ maxCalls: 1, periodMS: 10 } as never), 'FixedWindow options: unknown option "periodMS" (did you mean "periodMs"?)'],
  [
    'ConcurrencyLimit',
    () => new ConcurrencyLimit({ max: 1, maxQueue: 3 } as never),
    'ConcurrencyLimit options: unknown option "maxQueue" (did you mean "maxQueued"?)',
  ],
  [
    'AdaptiveConcurrencyLimit',
    () => new AdaptiveConcurrencyLimit({ maxLimt: 10 } as never),
    'AdaptiveConcurrencyLimit options: unknown option "maxLimt" (did you mean "maxLimit"?)',
  ],
  [
    'RateLimiter',
    () => new RateLimiter({ maxCalls: 1, algoritm: 'fixed-window' } as never),
    'RateLimiter options: unknown option "algoritm" (did you mean "algorithm"?)',
  ],
  ['KeyedTokenBucket', () => new KeyedTokenBucket({ rate: 1, slost: 8 } as never), 'KeyedTokenBucket options: unknown option "slost" (did you mean "slots"?)'],
  ['createRedisStore', () => createRedisStore({ prefx: 'a:' } as never), 'createRedisStore options: unknown option "prefx" (did you mean "prefix"?)'],
  [
    'createRedisStore lease',
    () => createRedisStore({ lease: { ttl: 5 } } as never),
    'lease: unknown option "ttl" (known options: horizonMs, maxTokens, ttlMs)',
  ],
  ['FairQueue', () => new FairQueue(bucket, { quantim: 2 } as never), 'FairQueue options: unknown option "quantim" (did you mean "quantum"?)'],
  ['FairQueue level', () => new FairQueue(bucket, { levels: { a: { shares: 1 } } } as never), 'levels.a: unknown option "shares" (did you mean "share"?)'],
  ['server', () => createThreadedServer({ ...base, worker: 2 } as never), 'createThreadedServer options: unknown option "worker" (did you mean "workers"?)'],
  [
    'server services.<name>',
    () => createThreadedServer({ services: { Calc: { ...base, handlr: 'x' } } } as never),
    'services.Calc: unknown option "handlr" (did you mean "handler"?)',
  ],
  [
    'server limits.<method> rate',
    () => createThreadedServer({ ...base, limits: { add: { rate: 1, brust: 2 } } } as never),
    'limits.add: unknown option "brust" (did you mean "burst"?)',
  ],
  [
    'server limits.<method> maxCalls',
    () => createThreadedServer({ ...base, limits: { add: { maxCalls: 1, burst: 2 } } }),
    'limits.add: unknown option "burst" (known options: maxCalls, periodMs, store, key)',
  ],
  [
    'server limits.<method> concurrency',
    () => createThreadedServer({ ...base, limits: { add: { concurrency: 1, maxQueued: 2 } } }),
    'limits.add: unknown option "maxQueued" (known options: concurrency, store, key)',
  ],
  [
    'server limits.<method> adaptive',
    () => createThreadedServer({ ...base, limits: { add: { adaptive: { minLimt: 2 } } } } as never),
    'limits.add.adaptive: unknown option "minLimt" (did you mean "minLimit"?)',
  ],
  [
    'server limits.<method> adaptive, a queue option',
    () => createThreadedServer({ ...base, limits: { add: { adaptive: { maxQueued: 2 } } } } as never),
    'limits.add.adaptive: unknown option "maxQueued" (known options: minLimit, maxLimit, initialLimit, windowMs, minSamples, smoothing, tolerance, probeIntervalMs)',
  ],
  [
    'server limits.<method> kind misspelt',
    () => createThreadedServer({ ...base, limits: { add: { rte: 1 } } } as never),
    'limits.add: unknown option "rte" (did you mean "rate"?)',
  ],
  [
    'server limits.<method> per key',
    () => createThreadedServer({ ...base, limits: { add: { rate: 1, perKey: 'address', slost: 8 } } } as never),
    'limits.add: unknown option "slost" (did you mean "slots"?)',
  ],
  ['server queue', () => createThreadedServer({ ...base, queue: { maxWait: 5 } } as never), 'queue: unknown option "maxWait" (did you mean "maxWaitMs"?)'],
  [
    'server fairness',
    () => createThreadedServer({ ...base, fairness: { flows: 'method' } } as never),
    'fairness: unknown option "flows" (did you mean "flow"?)',
  ],
  [
    'server fairness.levels.<name>',
    () => createThreadedServer({ ...base, fairness: { levels: { a: { share: 1, borow: false } } } } as never),
    'fairness.levels.a: unknown option "borow" (did you mean "borrow"?)',
  ],
  ['wrapHandler limits.<method>', () => wrapHandler({}, { add: { rate: 1, brust: 2 } } as never), 'limits.add: unknown option "brust" (did you mean "burst"?)'],
  ['wrapHandler queue', () => wrapHandler({}, {}, { maxQueue: 1 } as never), 'queue: unknown option "maxQueue" (did you mean "maxQueued"?)'],
  [
    'wrapHandler fairness',
    () => wrapHandler({}, {}, {}, { flow: () => '', quantun: 2 } as never),
    'wrapHandler fairness: unknown option "quantun" (did you mean "quantum"?)',
  ],
];

describe('an unknown option is a TypeError naming it and the closest known one, at every level', () => {
  test.each(unknownKeys)('%s', (_level, make, message) => {
    expect(make).toThrow(TypeError);
    expect(messageOf(make)).toBe(message);
  });

  test('the suggestion is the nearest known option, and none when nothing is near', () => {
    expect(closest('brust', ['rate', 'periodMs', 'burst'])).toBe('burst');
    expect(closest('MAXQUEUED', ['maxQueued', 'maxWaitMs'])).toBe('maxQueued');
    expect(closest('maxWait', ['maxQueued', 'maxWaitMs'])).toBe('maxWaitMs');
    expect(closest('colour', ['rate', 'burst'])).toBeUndefined();
  });

  test('every option the server documents is known, and descriptors re-attach', () => {
    const server = createThreadedServer({
      ...base,
      workers: 1,
      protocol: 'all',
      transport: 'all',
      maxFrameBytes: 1024,
      limits: { add: { rate: 5 } },
      queue: { maxQueued: 1, maxWaitMs: 5 },
      fairness: { flow: 'method' },
      handlerTimeoutMs: 0,
      idleTimeoutMs: 0,
      frameTimeoutMs: 0,
      maxInFlightPerConnection: 1,
      maxPendingReplyBytes: 1,
      maxConnections: 1,
      startTimeoutMs: 1,
      log: () => {},
    });
    expect(server.limits.for('add')).toBeDefined();
    expect(TokenBucket.attach(new TokenBucket({ rate: 1, maxThreads: 2 }).share())).toBeInstanceOf(TokenBucket);
    expect(RateLimiter.attach(new RateLimiter({ maxCalls: 1 }).share(), { onLimited: () => {} })).toBeInstanceOf(RateLimiter);
    expect(KeyedTokenBucket.attach(new KeyedTokenBucket({ rate: 1 }).share())).toBeInstanceOf(KeyedTokenBucket);
    const adaptive = new AdaptiveConcurrencyLimit({ minLimit: 2, maxLimit: 50, windowMs: 50, tolerance: 0.2 });
    // What attach in another thread validates again: the descriptor's options.
    expect(new AdaptiveConcurrencyLimit(adaptive.share().options).maxLimit).toBe(50);
  });
});

describe('the same invalid value gives the same message wherever it is given', () => {
  const values: [option: string, value: number, message: string][] = [
    ['burst', 1.5, 'burst must be a whole number, got 1.5'],
    ['periodMs', 0, 'periodMs must be greater than 0, got 0'],
    ['rate', -1, 'rate must be greater than 0, got -1'],
  ];
  test.each(values)('%s %s', (option, value, message) => {
    const spec = { rate: 1, [option]: value };
    expect(messageOf(() => new TokenBucket(spec as never))).toBe(message);
    expect(messageOf(() => createThreadedServer({ ...base, limits: { add: spec as never } }))).toBe(`limits.add: ${message}`);
    expect(messageOf(() => wrapHandler({}, { add: spec as never }))).toBe(`limits.add: ${message}`);
  });

  test('queue bounds are named queue.maxQueued and queue.maxWaitMs, with the checks of a limiter', () => {
    expect(messageOf(() => new TokenBucket({ rate: 1, maxQueued: 1.5 }))).toBe('maxQueued must be a whole number, got 1.5');
    expect(messageOf(() => createThreadedServer({ ...base, limits: { add: { rate: 1 } }, queue: { maxQueued: 1.5 } }))).toBe(
      'queue.maxQueued must be a whole number, got 1.5',
    );
    expect(messageOf(() => wrapHandler({}, { add: { rate: 1 } }, { maxQueued: 1.5 }))).toBe('queue.maxQueued must be a whole number, got 1.5');
    expect(messageOf(() => new TokenBucket({ rate: 1, maxWaitMs: -1 }))).toBe('maxWaitMs must be 0 or more, got -1');
    expect(messageOf(() => createThreadedServer({ ...base, queue: { maxWaitMs: -1 } }))).toBe('queue.maxWaitMs must be 0 or more, got -1');
    expect(() => createThreadedServer({ ...base, queue: { maxWaitMs: NaN } })).toThrow(RangeError);
  });

  test("an adaptive limit's bounds read alike in a limiter, a server and wrapHandler", () => {
    const message = 'maxLimit (2) must be at least minLimit (5)';
    expect(messageOf(() => new AdaptiveConcurrencyLimit({ minLimit: 5, maxLimit: 2 }))).toBe(message);
    expect(messageOf(() => createThreadedServer({ ...base, limits: { add: { adaptive: { minLimit: 5, maxLimit: 2 } } } }))).toBe(`limits.add: ${message}`);
    expect(messageOf(() => wrapHandler({}, { add: { adaptive: { minLimit: 5, maxLimit: 2 } } }))).toBe(`limits.add: ${message}`);
    expect(() => createThreadedServer({ ...base, limits: { add: { adaptive: true } } })).not.toThrow();
  });

  test("server whole numbers read like a limiter's", () => {
    expect(messageOf(() => createThreadedServer({ ...base, workers: 1.5 }))).toBe('workers must be a whole number, got 1.5');
    expect(messageOf(() => new ConcurrencyLimit({ max: 1.5 }))).toBe('max must be a whole number, got 1.5');
    expect(messageOf(() => new FairQueue(bucket, { quantum: 0 }))).toBe('quantum must be at least 1, got 0');
    expect(messageOf(() => createThreadedServer({ ...base, fairness: { quantum: 0 } }))).toBe('fairness.quantum must be at least 1, got 0');
  });
});

describe('a value that makes a limit meaningless is a RangeError', () => {
  const cases: [label: string, make: () => unknown, message: RegExp][] = [
    ['rate over one token per ns', () => new TokenBucket({ rate: 2e9 }), /rate 2000000000 per periodMs 1000 is more than one token per nanosecond/],
    ['RateLimiter rate over one per ns', () => new RateLimiter({ maxCalls: 2000, periodMs: 0.001 }), /more than one token per nanosecond/],
    ['keyed rate over one token per µs', () => new KeyedTokenBucket({ rate: 2e6 }), /rate 2000000 per periodMs 1000 is more than one token per microsecond/],
    [
      'keyed overflowRate over one per ns',
      () => new KeyedTokenBucket({ rate: 1, overflowRate: 2e9 }),
      /overflowRate 2000000000 per periodMs 1000 is more than one token per nanosecond/,
    ],
    ['periodMs below 1 µs', () => new FixedWindow({ maxCalls: 1, periodMs: 1e-4 }), /periodMs must be at least 0.001 \(1 µs\), got 0.0001/],
    ['token bucket periodMs below 1 µs', () => new TokenBucket({ rate: 1, periodMs: 1e-4 }), /periodMs must be at least 0.001/],
    ['maxThreads beyond the table', () => new ConcurrencyLimit({ max: 1, maxThreads: 5000 }), /maxThreads must be at most 4096, got 5000/],
    ['keyed maxThreads beyond the table', () => new KeyedTokenBucket({ rate: 1, maxThreads: 5000 }), /maxThreads must be at most 4096, got 5000/],
  ];
  test.each(cases)('%s', (_label, make, message) => {
    expect(make).toThrow(RangeError);
    expect(make).toThrow(message);
  });

  test('the fastest and shortest meaningful values are accepted', () => {
    expect(new TokenBucket({ rate: 1e9 }).rate).toBe(1e9);
    expect(new FixedWindow({ maxCalls: 1, periodMs: 0.001 }).periodMs).toBe(0.001);
    expect(() => new KeyedTokenBucket({ rate: 1e6 })).not.toThrow();
    expect(() => new ConcurrencyLimit({ max: 1, maxThreads: 4096 })).not.toThrow();
  });
});
