/**
 * Every option of every limiter: its type, its default and its validation, in one place.
 *
 * Invalid input throws at construction (or at the call, for per-call options) with a `TypeError`
 * for a value of the wrong type and a `RangeError` for a number out of range, both naming the
 * option and the value received, so a typo in a config file fails loudly and early.
 */
import type { RedisOptions } from 'ioredis';
import { systemClock, type Clock } from './clock.js';
import { isLimiterStore, type LeaseSettings, type LimiterStore, type StoreErrorPolicy } from './stores/store.js';

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

function resolveStore(o: Record<string, unknown>): ResolvedStoreOptions {
  if (o.store === undefined) {
    if (o.key !== undefined && typeof o.key !== 'string') throw new TypeError(`key must be a string, got ${describe(o.key)}`);
    return { store: undefined, key: (o.key as string | undefined) ?? '' };
  }
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
const MAX_THREADS_LIMIT = 4096;

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

/** Checks that `value` is a number, then that it is finite (or +Infinity where allowed). */
function requireNumber(name: string, value: unknown, allowInfinity = false): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, got ${describe(value)}`);
  if (Number.isNaN(value) || (!allowInfinity && !Number.isFinite(value)) || value === -Infinity) {
    throw new RangeError(`${name} must be a finite number, got ${describe(value)}`);
  }
  return value;
}

/** A number > 0 (fractions allowed). */
export function positiveNumber(name: string, value: unknown): number {
  const n = requireNumber(name, value);
  if (n <= 0) throw new RangeError(`${name} must be greater than 0, got ${describe(value)}`);
  return n;
}

/** A whole number >= `min`. */
export function integerAtLeast(name: string, value: unknown, min: number): number {
  const n = requireNumber(name, value);
  if (!Number.isInteger(n)) throw new RangeError(`${name} must be a whole number, got ${describe(value)}`);
  if (n < min) throw new RangeError(`${name} must be at least ${min}, got ${describe(value)}`);
  if (n > 0x7fffffff) throw new RangeError(`${name} must be at most ${0x7fffffff}, got ${describe(value)}`);
  return n;
}

/** A bound that may be `Infinity` (meaning "no bound"): a whole number >= 0, or Infinity. */
function bound(name: string, value: unknown, integer: boolean): number {
  const n = requireNumber(name, value, true);
  if (n < 0) throw new RangeError(`${name} must be 0 or more, got ${describe(value)}`);
  if (integer && n !== Infinity && !Number.isInteger(n)) {
    throw new RangeError(`${name} must be a whole number, got ${describe(value)}`);
  }
  return n;
}

function requireObject(name: string, value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== 'object') {
    throw new TypeError(`${name} must be an options object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

function resolveQueue(o: Record<string, unknown>): ResolvedQueueOptions {
  const clock = o.clock ?? systemClock;
  if (typeof (clock as Clock).now !== 'function' || typeof (clock as Clock).setTimer !== 'function') {
    throw new TypeError('clock must have now() and setTimer() methods');
  }
  return {
    maxQueued: o.maxQueued === undefined ? Infinity : bound('maxQueued', o.maxQueued, true),
    maxWaitMs: o.maxWaitMs === undefined ? Infinity : bound('maxWaitMs', o.maxWaitMs, false),
    clock: clock as Clock,
    maxThreads:
      o.maxThreads === undefined ? DEFAULT_MAX_THREADS : Math.min(integerAtLeast('maxThreads', o.maxThreads, 1), MAX_THREADS_LIMIT),
  };
}

/** Token bucket options resolved: the emission interval is what the algorithm works with. */
export interface ResolvedTokenBucketOptions extends ResolvedQueueOptions, ResolvedStoreOptions {
  rate: number;
  periodMs: number;
  burst: number;
  /**
   * Nanoseconds between two tokens, rounded up: rounding up can only admit fewer calls, never more,
   * so the bound `burst + rate × t` holds exactly (the loss is 1 ns per token). At least 1 ns, so a
   * rate above 10⁹ per second is held to 10⁹ per second (still never more than configured).
   */
  intervalNs: bigint;
}

/** Validates and completes {@link TokenBucketOptions}. */
export function resolveTokenBucketOptions(options: unknown): ResolvedTokenBucketOptions {
  const o = requireObject('TokenBucket options', options);
  if (o.rate === undefined) throw new TypeError('rate is required (tokens per periodMs)');
  const rate = positiveNumber('rate', o.rate);
  const periodMs = o.periodMs === undefined ? DEFAULT_PERIOD_MS : positiveNumber('periodMs', o.periodMs);
  const burst = o.burst === undefined ? Math.max(1, Math.ceil(rate)) : integerAtLeast('burst', o.burst, 1);
  const interval = Math.ceil((periodMs * 1e6) / rate);
  if (!Number.isSafeInteger(interval)) {
    throw new RangeError(`rate ${rate} per periodMs ${periodMs} gives a token interval too long to represent`);
  }
  return { ...resolveQueue(o), ...resolveStore(o), rate, periodMs, burst, intervalNs: BigInt(Math.max(1, interval)) };
}

/** Fixed window options resolved. */
export interface ResolvedFixedWindowOptions extends ResolvedQueueOptions, ResolvedStoreOptions {
  maxCalls: number;
  periodMs: number;
  periodNs: bigint;
}

/** Validates and completes {@link FixedWindowOptions}. */
export function resolveFixedWindowOptions(options: unknown): ResolvedFixedWindowOptions {
  const o = requireObject('FixedWindow options', options);
  if (o.maxCalls === undefined) throw new TypeError('maxCalls is required');
  const maxCalls = integerAtLeast('maxCalls', o.maxCalls, 1);
  const periodMs = o.periodMs === undefined ? DEFAULT_PERIOD_MS : positiveNumber('periodMs', o.periodMs);
  const periodNs = Math.round(periodMs * 1e6);
  if (periodNs < 1 || !Number.isSafeInteger(periodNs)) throw new RangeError(`periodMs must be between 1e-6 and 9e9, got ${periodMs}`);
  return { ...resolveQueue(o), ...resolveStore(o), maxCalls, periodMs, periodNs: BigInt(periodNs) };
}

/** Concurrency limit options resolved. */
export interface ResolvedConcurrencyLimitOptions extends ResolvedQueueOptions {
  max: number;
}

/** Validates and completes {@link ConcurrencyLimitOptions}. */
export function resolveConcurrencyLimitOptions(options: unknown): ResolvedConcurrencyLimitOptions {
  const o = requireObject('ConcurrencyLimit options', options);
  if (o.max === undefined) throw new TypeError('max is required');
  return { ...resolveQueue(o), max: integerAtLeast('max', o.max, 1) };
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
  requireObject('acquire options', options);
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new TypeError('signal must be an AbortSignal');
  }
  return options.maxWaitMs === undefined ? defaultMaxWaitMs : bound('maxWaitMs', options.maxWaitMs, false);
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

/** Validates the facade-only options and maps the rest onto the chosen algorithm's options. */
export function resolveRateLimiterOptions(options: unknown): {
  algorithm: 'token-bucket' | 'fixed-window';
  limiter: TokenBucketOptions | FixedWindowOptions;
  onLimited: RateLimiterOptions['onLimited'];
} {
  const o = requireObject('RateLimiter options', options) as unknown as RateLimiterOptions;
  const algorithm = o.algorithm ?? 'token-bucket';
  if (algorithm !== 'token-bucket' && algorithm !== 'fixed-window') {
    throw new RangeError(`algorithm must be 'token-bucket' or 'fixed-window', got ${describe(algorithm)}`);
  }
  if (o.onLimited !== undefined && typeof o.onLimited !== 'function') {
    throw new TypeError(`onLimited must be a function, got ${describe(o.onLimited)}`);
  }
  if (o.maxCalls === undefined) throw new TypeError('maxCalls is required');
  const maxCalls = integerAtLeast('maxCalls', o.maxCalls, 1);
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

/** Validates and completes {@link RedisStoreOptions}. */
export function resolveRedisStoreOptions(options: unknown): ResolvedRedisStoreOptions {
  const o = requireObject('createRedisStore options', options);
  if (o.url !== undefined && (typeof o.url !== 'string' || !/^rediss?:\/\//.test(o.url))) {
    throw new TypeError(`url must be a redis:// or rediss:// URL, got ${describe(o.url)}`);
  }
  const redis = o.redis === undefined ? {} : requireObject('redis', o.redis);
  if (o.prefix !== undefined && typeof o.prefix !== 'string') throw new TypeError(`prefix must be a string, got ${describe(o.prefix)}`);
  const policy = o.onStoreError ?? 'fail-closed';
  if (policy !== 'fail-open' && policy !== 'fail-closed' && policy !== 'local-share') {
    throw new RangeError(`onStoreError must be 'fail-open', 'fail-closed' or 'local-share', got ${describe(policy)}`);
  }
  if (o.log !== undefined && typeof o.log !== 'function') throw new TypeError('log must be a function');
  let lease = NO_LEASE;
  if (o.lease === true) lease = DEFAULT_LEASE;
  else if (o.lease !== undefined && o.lease !== false) {
    const l = requireObject('lease', o.lease);
    lease = {
      horizonMs: l.horizonMs === undefined ? DEFAULT_LEASE.horizonMs : positiveNumber('lease.horizonMs', l.horizonMs),
      maxTokens: l.maxTokens === undefined ? DEFAULT_LEASE.maxTokens : integerAtLeast('lease.maxTokens', l.maxTokens, 1),
      ttlMs: l.ttlMs === undefined ? DEFAULT_LEASE.ttlMs : positiveNumber('lease.ttlMs', l.ttlMs),
    };
  }
  const url = o.url as string | undefined;
  const r = redis as RedisOptions;
  const address = url !== undefined ? url.replace(/\/\/[^@/]*@/, '//') : `${r.host ?? '127.0.0.1'}:${r.port ?? 6379}`;
  const cloneable = Object.fromEntries(
    Object.entries({ ...o, redis: Object.fromEntries(Object.entries(redis).filter(([, v]) => typeof v !== 'function')) }).filter(([, v]) => typeof v !== 'function'),
  );
  return {
    url,
    redis: r,
    prefix: (o.prefix as string | undefined) ?? 'tql:',
    timeoutMs: o.timeoutMs === undefined ? 500 : positiveNumber('timeoutMs', o.timeoutMs),
    onStoreError: policy,
    expectedProcesses: o.expectedProcesses === undefined ? 1 : integerAtLeast('expectedProcesses', o.expectedProcesses, 1),
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
   * rounding up can only admit fewer calls, never more. At least 1 µs, so a rate above 10⁶ per
   * second per key is held to 10⁶ per second.
   */
  intervalUs: number;
  /** Nanoseconds between two tokens of the overflow bucket, rounded up, at least 1. */
  overflowIntervalNs: bigint;
}

const DEFAULT_KEYED_CAPACITY = 4096;
const MAX_KEYED_CAPACITY = 1 << 24;
const DEFAULT_PROBE_WINDOW = 16;
const MAX_PROBE_WINDOW = 64;
/** A key's bucket spans burst × interval; it must stay far inside the table's 48-bit µs clock. */
const MAX_KEYED_SPAN_US = 2 ** 46;

/** Validates and completes {@link KeyedTokenBucketOptions}. */
export function resolveKeyedTokenBucketOptions(options: unknown): ResolvedKeyedTokenBucketOptions {
  const o = requireObject('KeyedTokenBucket options', options);
  if (o.rate === undefined) throw new TypeError('rate is required (tokens per periodMs, per key)');
  const rate = positiveNumber('rate', o.rate);
  const periodMs = o.periodMs === undefined ? DEFAULT_PERIOD_MS : positiveNumber('periodMs', o.periodMs);
  const burst = o.burst === undefined ? Math.max(1, Math.ceil(rate)) : integerAtLeast('burst', o.burst, 1);
  const capacity = o.capacity === undefined ? DEFAULT_KEYED_CAPACITY : integerAtLeast('capacity', o.capacity, 1);
  if (capacity > MAX_KEYED_CAPACITY) throw new RangeError(`capacity must be at most ${MAX_KEYED_CAPACITY}, got ${capacity}`);
  const window = o.probeWindow === undefined ? DEFAULT_PROBE_WINDOW : integerAtLeast('probeWindow', o.probeWindow, 1);
  if (window > MAX_PROBE_WINDOW) throw new RangeError(`probeWindow must be at most ${MAX_PROBE_WINDOW}, got ${window}`);
  const overflowRate = o.overflowRate === undefined ? rate : positiveNumber('overflowRate', o.overflowRate);
  const overflowBurst = o.overflowBurst === undefined ? burst : integerAtLeast('overflowBurst', o.overflowBurst, 1);
  const intervalUs = Math.max(1, Math.ceil((periodMs * 1000) / rate));
  if (!Number.isSafeInteger(intervalUs) || intervalUs * burst > MAX_KEYED_SPAN_US) {
    throw new RangeError(`burst ${burst} at rate ${rate} per periodMs ${periodMs} spans more than 2^46 µs (2.2 years): too long for the table's clock`);
  }
  const overflowInterval = Math.ceil((periodMs * 1e6) / overflowRate);
  if (!Number.isSafeInteger(overflowInterval)) {
    throw new RangeError(`overflowRate ${overflowRate} per periodMs ${periodMs} gives a token interval too long to represent`);
  }
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
    overflowIntervalNs: BigInt(Math.max(1, overflowInterval)),
  };
}

/** Validates the key of a keyed limiter's call. */
export function checkKey(key: unknown): string {
  if (typeof key !== 'string') throw new TypeError(`key must be a string, got ${describe(key)}`);
  return key;
}
