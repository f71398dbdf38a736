/**
 * Every option of every limiter: its type, its default and its validation (with the checks of
 * `validate.ts`, shared by every options object of the library).
 *
 * Invalid input throws at construction (or at the call, for per-call options): a `TypeError` for a
 * value of the wrong type or an unknown option, a `RangeError` for a number out of range or one
 * that makes the limit meaningless.
 */
import type { RedisOptions } from 'ioredis';
import { systemClock, type Clock } from './clock.js';
import { isLimiterStore, type LeaseSettings, type LimiterStore, type StoreErrorPolicy } from './stores/store.js';
import { describe, func, object, oneOf, options as knownOptions, positive, string, waitBound, wholeNumber } from './validate.js';

/** Options every limiter takes: how its waiting queue is bounded and what clock it runs on. */
export interface QueueOptions {
  /**
   * Most calls that may wait at once, counted over every thread sharing the limiter; a call over
   * it is refused with `QueueFullError`. Default: unbounded.
   */
  maxQueued?: number;
  /**
   * Default bound on waiting, in milliseconds, for calls that do not pass their own `maxWaitMs`.
   * Default: unbounded.
   */
  maxWaitMs?: number;
  /** Time source and timers; the process-wide monotonic clock unless a test injects one. */
  clock?: Clock;
  /**
   * How many threads (more exactly: limiter instances in distinct threads) may wait on or hold
   * permits of this limiter at once; sizes the per-thread table in shared memory. Default 64.
   */
  maxThreads?: number;
}

/**
 * Where a rate limit keeps its state: by default this process's shared memory; with a distributed
 * `store` (see `createRedisStore`), in the store under `key`, shared by every process that uses it.
 */
export interface StoreOptions {
  /** A distributed store. Default: the embedded in-process store. */
  store?: LimiterStore;
  /** The limit's name in the store: every process using the same store and key shares one limit. Required with `store`. */
  key?: string;
}

/** Store options after validation. */
export interface ResolvedStoreOptions {
  store: LimiterStore | undefined;
  key: string;
}

const STORE_KEYS = ['store', 'key'] as const;

function resolveStore(o: Record<string, unknown>): ResolvedStoreOptions {
  if (o.store === undefined) return { store: undefined, key: o.key === undefined ? '' : string('key', o.key) };
  if (!isLimiterStore(o.store)) throw new TypeError(`store must be a store from createRedisStore(), got ${describe(o.store)}`);
  if (typeof o.key !== 'string' || o.key.length === 0) {
    throw new TypeError(`key is required with a store: the name every process uses for this limit, got ${describe(o.key)}`);
  }
  return { store: o.store, key: o.key };
}

/** Options of a {@link TokenBucket}: `rate` tokens are added every `periodMs`, up to `burst`. */
export interface TokenBucketOptions extends QueueOptions, StoreOptions {
  /** Tokens earned per period; may be fractional (0.5 per 1000 ms is one call every 2 s). */
  rate: number;
  /** Length of the period `rate` refers to, in milliseconds. Default 1000. */
  periodMs?: number;
  /** Most tokens that can be taken at one instant (the bucket size). Default: `ceil(rate)`. */
  burst?: number;
}

/** Options of a {@link FixedWindow}: at most `maxCalls` start in each window of `periodMs`. */
export interface FixedWindowOptions extends QueueOptions, StoreOptions {
  /** Calls admitted per window. */
  maxCalls: number;
  /** Window length in milliseconds. Default 1000. */
  periodMs?: number;
}

/** Options of a {@link ConcurrencyLimit}: at most `max` permits held at once over all threads. */
export interface ConcurrencyLimitOptions extends QueueOptions {
  /** Most permits held at once. */
  max: number;
}

/** Per-call options of `acquire`. */
export interface AcquireOptions {
  /** Aborting rejects a waiting call with the signal's reason; it consumes nothing. */
  signal?: AbortSignal;
  /** Refuse the call if it would wait (or has waited) longer than this; overrides the limiter's. */
  maxWaitMs?: number;
}

/** Queue options after defaults and validation. */
export interface ResolvedQueueOptions {
  maxQueued: number;
  maxWaitMs: number;
  clock: Clock;
  maxThreads: number;
}

const DEFAULT_PERIOD_MS = 1000;
const DEFAULT_MAX_THREADS = 64;
/** Rows of a limiter's per-thread table in shared memory, at most. */
const MAX_THREADS_LIMIT = 4096;

const QUEUE_KEYS = ['maxQueued', 'maxWaitMs', 'clock', 'maxThreads'] as const;

/** A clock: `now()` and `setTimer()`. */
export function checkClock(value: unknown): Clock {
  const clock = value as Clock;
  if (clock === null || typeof clock !== 'object' || typeof clock.now !== 'function' || typeof clock.setTimer !== 'function') {
    throw new TypeError('clock must have now() and setTimer() methods');
  }
  return clock;
}

/** A period in ms: the limiters keep time in nanoseconds, so one shorter than 1 µs would be mostly rounding. */
function period(value: unknown): number {
  if (value === undefined) return DEFAULT_PERIOD_MS;
  const ms = positive('periodMs', value);
  if (ms < 1e-3) throw new RangeError(`periodMs must be at least 0.001 (1 µs), got ${describe(value)}`);
  return ms;
}

/**
 * `unit`s (1 ns for a limiter's state, 1 µs for a keyed table's) between two tokens of `rate` per
 * `periodMs`, rounded up: rounding up can only admit fewer calls, never more, so the bound
 * `burst + rate × t` holds exactly.
 * @throws RangeError when a token would come more often than once per unit: the limit could not be kept.
 */
function tokenInterval(rateName: string, rate: number, periodMs: number, unitsPerMs: number, unit: string): number {
  const exact = (periodMs * unitsPerMs) / rate;
  if (exact < 1) throw new RangeError(`${rateName} ${rate} per periodMs ${periodMs} is more than one token per ${unit}, the finest interval the limiter keeps`);
  const interval = Math.ceil(exact);
  if (!Number.isSafeInteger(interval)) {
    throw new RangeError(`${rateName} ${rate} per periodMs ${periodMs} gives a token interval too long to represent`);
  }
  return interval;
}

function resolveQueue(o: Record<string, unknown>): ResolvedQueueOptions {
  return {
    maxQueued: o.maxQueued === undefined ? Infinity : wholeNumber('maxQueued', o.maxQueued, 0, undefined, true),
    maxWaitMs: o.maxWaitMs === undefined ? Infinity : waitBound('maxWaitMs', o.maxWaitMs),
    clock: o.clock === undefined ? systemClock : checkClock(o.clock),
    maxThreads: o.maxThreads === undefined ? DEFAULT_MAX_THREADS : wholeNumber('maxThreads', o.maxThreads, 1, MAX_THREADS_LIMIT),
  };
}

/** Token bucket options resolved: the emission interval is what the algorithm works with. */
export interface ResolvedTokenBucketOptions extends ResolvedQueueOptions, ResolvedStoreOptions {
  rate: number;
  periodMs: number;
  burst: number;
  /**
   * Nanoseconds between two tokens, rounded up: rounding up can only admit fewer calls, never more,
   * so the bound `burst + rate × t` holds exactly (the loss is under 1 ns per token).
   */
  intervalNs: bigint;
}

const TOKEN_BUCKET_KEYS = ['rate', 'periodMs', 'burst', ...QUEUE_KEYS, ...STORE_KEYS];

/** Validates and completes {@link TokenBucketOptions}. */
export function resolveTokenBucketOptions(options: unknown): ResolvedTokenBucketOptions {
  const o = knownOptions('TokenBucket options', options, TOKEN_BUCKET_KEYS);
  if (o.rate === undefined) throw new TypeError('rate is required (tokens per periodMs)');
  const rate = positive('rate', o.rate);
  const periodMs = period(o.periodMs);
  const burst = o.burst === undefined ? Math.max(1, Math.ceil(rate)) : wholeNumber('burst', o.burst, 1);
  const interval = tokenInterval('rate', rate, periodMs, 1e6, 'nanosecond');
  return { ...resolveQueue(o), ...resolveStore(o), rate, periodMs, burst, intervalNs: BigInt(interval) };
}

/** Fixed window options resolved. */
export interface ResolvedFixedWindowOptions extends ResolvedQueueOptions, ResolvedStoreOptions {
  maxCalls: number;
  periodMs: number;
  periodNs: bigint;
}

const FIXED_WINDOW_KEYS = ['maxCalls', 'periodMs', ...QUEUE_KEYS, ...STORE_KEYS];

/** Validates and completes {@link FixedWindowOptions}. */
export function resolveFixedWindowOptions(options: unknown): ResolvedFixedWindowOptions {
  const o = knownOptions('FixedWindow options', options, FIXED_WINDOW_KEYS);
  if (o.maxCalls === undefined) throw new TypeError('maxCalls is required');
  const maxCalls = wholeNumber('maxCalls', o.maxCalls, 1);
  const periodMs = period(o.periodMs);
  const periodNs = Math.round(periodMs * 1e6);
  if (!Number.isSafeInteger(periodNs)) throw new RangeError(`periodMs must be at most 9e9, got ${periodMs}`);
  return { ...resolveQueue(o), ...resolveStore(o), maxCalls, periodMs, periodNs: BigInt(periodNs) };
}

/** Concurrency limit options resolved. */
export interface ResolvedConcurrencyLimitOptions extends ResolvedQueueOptions {
  max: number;
}

const CONCURRENCY_LIMIT_KEYS = ['max', ...QUEUE_KEYS];

/** Validates and completes {@link ConcurrencyLimitOptions}. */
export function resolveConcurrencyLimitOptions(options: unknown): ResolvedConcurrencyLimitOptions {
  const o = knownOptions('ConcurrencyLimit options', options, CONCURRENCY_LIMIT_KEYS);
  if (o.max === undefined) throw new TypeError('max is required');
  return { ...resolveQueue(o), max: wholeNumber('max', o.max, 1) };
}

/** Validates the token count of one call against the most the limiter can ever grant at once. */
export function checkCount(n: unknown, capacity: number, capacityName: string): number {
  if (typeof n !== 'number') throw new TypeError(`n must be a number, got ${describe(n)}`);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`n must be a whole number of at least 1, got ${describe(n)}`);
  if (n > capacity) throw new RangeError(`n (${n}) exceeds ${capacityName} (${capacity}): the call could never be admitted`);
  return n;
}

/** Validates per-call options; returns the effective wait bound. */
export function resolveAcquireOptions(options: AcquireOptions | undefined, defaultMaxWaitMs: number): number {
  if (options === undefined) return defaultMaxWaitMs;
  object('acquire options', options);
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new TypeError('signal must be an AbortSignal');
  }
  return options.maxWaitMs === undefined ? defaultMaxWaitMs : waitBound('maxWaitMs', options.maxWaitMs);
}

/** Options of a {@link RateLimiter}: `maxCalls` per `periodMs`, by one of the rate algorithms. */
export interface RateLimiterOptions extends QueueOptions, StoreOptions {
  /** Calls per period. */
  maxCalls: number;
  /** Period in milliseconds. Default 1000. */
  periodMs?: number;
  /** `'token-bucket'` (default: smooth, bursts up to `burst`) or `'fixed-window'`. */
  algorithm?: 'token-bucket' | 'fixed-window';
  /** Token bucket only: most calls at one instant. Default `maxCalls`. */
  burst?: number;
  /** Called whenever a call has to wait, with its estimated wait (like Python ratelimiter's callback). */
  onLimited?: (event: { n: number; waitMs: number; queued: number }) => void;
}

const RATE_LIMITER_KEYS = ['maxCalls', 'periodMs', 'algorithm', 'burst', 'onLimited', ...QUEUE_KEYS, ...STORE_KEYS];

/** Validates the facade-only options and maps the rest onto the chosen algorithm's options. */
export function resolveRateLimiterOptions(options: unknown): {
  algorithm: 'token-bucket' | 'fixed-window';
  limiter: TokenBucketOptions | FixedWindowOptions;
  onLimited: RateLimiterOptions['onLimited'];
} {
  const o = knownOptions('RateLimiter options', options, RATE_LIMITER_KEYS) as unknown as RateLimiterOptions;
  const algorithm = oneOf('algorithm', o.algorithm ?? 'token-bucket', ['token-bucket', 'fixed-window'] as const);
  if (o.onLimited !== undefined) func('onLimited', o.onLimited);
  if (o.maxCalls === undefined) throw new TypeError('maxCalls is required');
  const maxCalls = wholeNumber('maxCalls', o.maxCalls, 1);
  const { onLimited, algorithm: _a, burst, ...rest } = o;
  if (algorithm === 'fixed-window') {
    if (burst !== undefined) throw new RangeError("burst applies to algorithm 'token-bucket' only");
    return { algorithm, limiter: { ...rest, maxCalls }, onLimited };
  }
  const { maxCalls: _m, ...queue } = rest;
  return { algorithm, limiter: { ...queue, rate: maxCalls, burst: burst ?? maxCalls }, onLimited };
}

/** Options of {@link createRedisStore}. */
export interface RedisStoreOptions {
  /** `redis://[[user]:password@]host[:port][/db]`, or `rediss://…` for TLS. Default: ioredis's default, 127.0.0.1:6379. */
  url?: string;
  /**
   * Passed to ioredis as they are: `host`, `port`, `password`, `username`, `db`, `tls`,
   * `sentinels` + `name` for Sentinel, and the rest. Function-valued options (e.g. `retryStrategy`)
   * stay in the thread that created the store; a worker that attaches it reopens it without them.
   */
  redis?: RedisOptions;
  /** Prefix of every key this store writes. Default `'tql:'`. */
  prefix?: string;
  /** Bound on every Redis round trip, ms; a slower answer counts as a store error. Default 500. */
  timeoutMs?: number;
  /**
   * While Redis cannot be reached: `'fail-closed'` (default) refuses calls with
   * `StoreUnavailableError` (the limit is never exceeded); `'fail-open'` admits every call;
   * `'local-share'` has each process enforce rate / `expectedProcesses` by itself. Each incident is
   * logged once and counted; the store is retried and the limit recovers by itself.
   */
  onStoreError?: StoreErrorPolicy;
  /** Processes sharing each limit, for `'local-share'`. Default 1. */
  expectedProcesses?: number;
  /**
   * Leasing: each process reserves a batch of tokens at a time and its threads draw them from
   * shared memory, trading a documented slack on the bound for far fewer round trips. `true` for
   * the defaults, an object to tune, `false` (default) for one round trip per admission batch.
   */
  lease?: boolean | Partial<LeaseSettings>;
  /** Where incident lines go. Default `console.warn`. */
  log?: (line: string) => void;
}

/** Redis store options after defaults and validation. */
export interface ResolvedRedisStoreOptions {
  url: string | undefined;
  redis: RedisOptions;
  prefix: string;
  timeoutMs: number;
  onStoreError: StoreErrorPolicy;
  expectedProcesses: number;
  lease: LeaseSettings;
  log: (line: string) => void;
  /** Where the store points, for messages (no password). */
  address: string;
  /** The options again, without functions: what a worker thread reopens the store from. */
  cloneable: Record<string, unknown>;
}

/** Lease defaults: batches of 100 ms of demand, at most 1000 tokens, lapsing after 1 s. */
const DEFAULT_LEASE: LeaseSettings = { horizonMs: 100, maxTokens: 1000, ttlMs: 1000 };
const NO_LEASE: LeaseSettings = { horizonMs: 0, maxTokens: 0, ttlMs: 1000 };

const REDIS_STORE_KEYS = ['url', 'redis', 'prefix', 'timeoutMs', 'onStoreError', 'expectedProcesses', 'lease', 'log'];
const LEASE_KEYS = ['horizonMs', 'maxTokens', 'ttlMs'];

/** Validates and completes {@link RedisStoreOptions}. */
export function resolveRedisStoreOptions(options: unknown): ResolvedRedisStoreOptions {
  const o = knownOptions('createRedisStore options', options, REDIS_STORE_KEYS);
  if (o.url !== undefined && (typeof o.url !== 'string' || !/^rediss?:\/\//.test(o.url))) {
    throw new TypeError(`url must be a redis:// or rediss:// URL, got ${describe(o.url)}`);
  }
  // ioredis's own options: ioredis knows them, and new versions add more.
  const redis = o.redis === undefined ? {} : object('redis', o.redis);
  if (o.prefix !== undefined) string('prefix', o.prefix);
  const policy = oneOf('onStoreError', o.onStoreError ?? 'fail-closed', ['fail-open', 'fail-closed', 'local-share'] as const);
  if (o.log !== undefined) func('log', o.log);
  let lease = NO_LEASE;
  if (o.lease === true) lease = DEFAULT_LEASE;
  else if (o.lease !== undefined && o.lease !== false) {
    const l = knownOptions('lease', o.lease, LEASE_KEYS);
    lease = {
      horizonMs: l.horizonMs === undefined ? DEFAULT_LEASE.horizonMs : positive('lease.horizonMs', l.horizonMs),
      maxTokens: l.maxTokens === undefined ? DEFAULT_LEASE.maxTokens : wholeNumber('lease.maxTokens', l.maxTokens, 1),
      ttlMs: l.ttlMs === undefined ? DEFAULT_LEASE.ttlMs : positive('lease.ttlMs', l.ttlMs),
    };
  }
  const url = o.url;
  const r = redis as RedisOptions;
  const address = url !== undefined ? url.replace(/\/\/[^@/]*@/, '//') : `${r.host ?? '127.0.0.1'}:${r.port ?? 6379}`;
  const cloneable = Object.fromEntries(
    Object.entries({ ...o, redis: Object.fromEntries(Object.entries(redis).filter(([, v]) => typeof v !== 'function')) }).filter(
      ([, v]) => typeof v !== 'function',
    ),
  );
  return {
    url,
    redis: r,
    prefix: (o.prefix as string | undefined) ?? 'tql:',
    timeoutMs: o.timeoutMs === undefined ? 500 : positive('timeoutMs', o.timeoutMs),
    onStoreError: policy,
    expectedProcesses: o.expectedProcesses === undefined ? 1 : wholeNumber('expectedProcesses', o.expectedProcesses, 1),
    lease,
    log: (o.log as ((line: string) => void) | undefined) ?? ((line) => console.warn(line)),
    address,
    cloneable,
  };
}

/**
 * Options of a {@link KeyedTokenBucket}: a token bucket per key (`rate` tokens every `periodMs`, up
 * to `burst`, the same for every key), kept in a fixed-size table in shared memory.
 */
export interface KeyedTokenBucketOptions extends QueueOptions {
  /** Tokens each key earns per period; may be fractional. */
  rate: number;
  /** Length of the period `rate` refers to, in milliseconds. Default 1000. */
  periodMs?: number;
  /** Most tokens one key can take at one instant. Default: `ceil(rate)`. */
  burst?: number;
  /**
   * Slots in the shared table: the most keys that hold a bucket at once (16 bytes each). Default
   * 4096, at most 16 777 216; any whole number, a power of two is not required.
   */
  capacity?: number;
  /**
   * Slots searched for a key, starting at its hash: a key lives in one of these or, when all of
   * them hold active keys, is admitted by the overflow bucket. Default 16, at most 64; larger
   * than `capacity` means `capacity`.
   */
  probeWindow?: number;
  /** Tokens per period of the one bucket every key without a slot shares. Default `rate`. */
  overflowRate?: number;
  /** Size of the overflow bucket. Default `burst`. */
  overflowBurst?: number;
}

/** Keyed token bucket options resolved. */
export interface ResolvedKeyedTokenBucketOptions extends ResolvedQueueOptions {
  rate: number;
  periodMs: number;
  burst: number;
  capacity: number;
  probeWindow: number;
  overflowRate: number;
  overflowBurst: number;
  /**
   * Microseconds between two tokens of one key, rounded up (the table keeps time in whole µs):
   * rounding up can only admit fewer calls, never more.
   */
  intervalUs: number;
  /** Nanoseconds between two tokens of the overflow bucket, rounded up. */
  overflowIntervalNs: bigint;
}

const DEFAULT_KEYED_CAPACITY = 4096;
const MAX_KEYED_CAPACITY = 1 << 24;
const DEFAULT_PROBE_WINDOW = 16;
const MAX_PROBE_WINDOW = 64;
/** A key's bucket spans burst × interval; it must stay far inside the table's 48-bit µs clock. */
const MAX_KEYED_SPAN_US = 2 ** 46;

const KEYED_TOKEN_BUCKET_KEYS = ['rate', 'periodMs', 'burst', 'capacity', 'probeWindow', 'overflowRate', 'overflowBurst', ...QUEUE_KEYS];

/** Validates and completes {@link KeyedTokenBucketOptions}. */
export function resolveKeyedTokenBucketOptions(options: unknown): ResolvedKeyedTokenBucketOptions {
  const o = knownOptions('KeyedTokenBucket options', options, KEYED_TOKEN_BUCKET_KEYS);
  if (o.rate === undefined) throw new TypeError('rate is required (tokens per periodMs, per key)');
  const rate = positive('rate', o.rate);
  const periodMs = period(o.periodMs);
  const burst = o.burst === undefined ? Math.max(1, Math.ceil(rate)) : wholeNumber('burst', o.burst, 1);
  const capacity = o.capacity === undefined ? DEFAULT_KEYED_CAPACITY : wholeNumber('capacity', o.capacity, 1, MAX_KEYED_CAPACITY);
  const window = o.probeWindow === undefined ? DEFAULT_PROBE_WINDOW : wholeNumber('probeWindow', o.probeWindow, 1, MAX_PROBE_WINDOW);
  const overflowRate = o.overflowRate === undefined ? rate : positive('overflowRate', o.overflowRate);
  const overflowBurst = o.overflowBurst === undefined ? burst : wholeNumber('overflowBurst', o.overflowBurst, 1);
  const intervalUs = tokenInterval('rate', rate, periodMs, 1e3, 'microsecond');
  if (intervalUs * burst > MAX_KEYED_SPAN_US) {
    throw new RangeError(`burst ${burst} at rate ${rate} per periodMs ${periodMs} spans more than 2^46 µs (2.2 years): too long for the table's clock`);
  }
  const overflowInterval = tokenInterval('overflowRate', overflowRate, periodMs, 1e6, 'nanosecond');
  return {
    ...resolveQueue(o),
    rate,
    periodMs,
    burst,
    capacity,
    probeWindow: Math.min(window, capacity),
    overflowRate,
    overflowBurst,
    intervalUs,
    overflowIntervalNs: BigInt(overflowInterval),
  };
}

/** Validates the key of a keyed limiter's call. */
export function checkKey(key: unknown): string {
  return string('key', key);
}
