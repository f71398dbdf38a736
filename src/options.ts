/**
 * The options of the limiters (token bucket, fixed window, concurrency limit, adaptive concurrency
 * limit, the `RateLimiter` facade) and of their calls: types, defaults and validation, with the checks of `validate.ts`.
 * The queue options and the period and token-interval checks here are shared by the keyed bucket
 * (`keyed/keyed-options.ts`); the Redis store's own options are in `stores/redis-store-options.ts`.
 *
 * Invalid input throws at construction (or at the call, for per-call options): a `TypeError` for a
 * value of the wrong type or an unknown option, a `RangeError` for a number out of range or one
 * that makes the limit meaningless.
 */
import { systemClock, type Clock } from './clock.js';
import { isLimiterStore, type LimiterStore } from './stores/store.js';
import { describe, finite, func, object, oneOf, options as knownOptions, positive, string, waitBound, wholeNumber } from './validate.js';

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
 * Where a limit keeps its state: by default this process's shared memory; with a distributed
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

/**
 * Options of a {@link ConcurrencyLimit}: at most `max` permits held at once over all threads; with a
 * `store`, over every process and host using it (see `remote-concurrency.ts`).
 */
export interface ConcurrencyLimitOptions extends QueueOptions, StoreOptions {
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

/** The keys of {@link QueueOptions}, for the known-options list of every limiter's options. */
export const QUEUE_KEYS = ['maxQueued', 'maxWaitMs', 'clock', 'maxThreads'] as const;

/** A clock: `now()` and `setTimer()`. */
export function checkClock(value: unknown): Clock {
  const clock = value as Clock;
  if (clock === null || typeof clock !== 'object' || typeof clock.now !== 'function' || typeof clock.setTimer !== 'function') {
    throw new TypeError('clock must have now() and setTimer() methods');
  }
  return clock;
}

/** `periodMs` (default 1000): the limiters keep time in nanoseconds, so a period shorter than 1 µs would be mostly rounding. */
export function resolvePeriod(value: unknown): number {
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
export function tokenInterval(rateName: string, rate: number, periodMs: number, unitsPerMs: number, unit: string): number {
  const exact = (periodMs * unitsPerMs) / rate;
  if (exact < 1) throw new RangeError(`${rateName} ${rate} per periodMs ${periodMs} is more than one token per ${unit}, the finest interval the limiter keeps`);
  const interval = Math.ceil(exact);
  if (!Number.isSafeInteger(interval)) {
    throw new RangeError(`${rateName} ${rate} per periodMs ${periodMs} gives a token interval too long to represent`);
  }
  return interval;
}

/** The {@link QueueOptions} of `o` (an options object whose keys were checked), validated and completed. */
export function resolveQueue(o: Record<string, unknown>): ResolvedQueueOptions {
  return {
    maxQueued: o.maxQueued === undefined ? Infinity : wholeNumber('maxQueued', o.maxQueued, 0, undefined, true),
    maxWaitMs: o.maxWaitMs === undefined ? Infinity : waitBound('maxWaitMs', o.maxWaitMs),
    clock: o.clock === undefined ? systemClock : checkClock(o.clock),
    maxThreads: o.maxThreads === undefined ? DEFAULT_MAX_THREADS : wholeNumber('maxThreads', o.maxThreads, 1, MAX_THREADS_LIMIT),
  };
}

/** Token bucket options resolved: the emission interval is what the algorithm works with. */
export interface ResolvedTokenBucketOptions extends ResolvedQueueOptions, ResolvedStoreOptions, ResolvedTokenBucketSetting {}

const TOKEN_BUCKET_KEYS = ['rate', 'periodMs', 'burst', ...QUEUE_KEYS, ...STORE_KEYS];

/** A token bucket's limit, as `TokenBucket.setLimit` takes it: the constructor's options and defaults. */
export interface TokenBucketSetting {
  /** Tokens earned per period; may be fractional. */
  rate: number;
  /** Length of the period `rate` refers to, in milliseconds. Default 1000. */
  periodMs?: number;
  /** Bucket size. Default: `ceil(rate)`. */
  burst?: number;
}

/** A token bucket's limit after defaults and validation. */
export interface ResolvedTokenBucketSetting {
  rate: number;
  periodMs: number;
  burst: number;
  /**
   * Nanoseconds between two tokens, rounded up: rounding up can only admit fewer calls, never more,
   * so the bound `burst + rate × t` holds exactly (the loss is under 1 ns per token).
   */
  intervalNs: bigint;
}

/**
 * Longest span of a token bucket, burst × interval (2^52 ns, 52 days): its state word keeps time in
 * 56 bits beside an 8-bit version tag (token-bucket.ts), and a change of the limit may carry a debt
 * of one span over.
 */
const MAX_BUCKET_SPAN_NS = 2n ** 52n;

function resolveTokenBucketLimit(o: Record<string, unknown>): ResolvedTokenBucketSetting {
  if (o.rate === undefined) throw new TypeError('rate is required (tokens per periodMs)');
  const rate = positive('rate', o.rate);
  const periodMs = resolvePeriod(o.periodMs);
  const burst = o.burst === undefined ? Math.max(1, Math.ceil(rate)) : wholeNumber('burst', o.burst, 1);
  const intervalNs = BigInt(tokenInterval('rate', rate, periodMs, 1e6, 'nanosecond'));
  if (intervalNs * BigInt(burst) > MAX_BUCKET_SPAN_NS) {
    throw new RangeError(
      `burst ${burst} at rate ${rate} per periodMs ${periodMs} takes more than 2^52 ns (52 days) to refill: too long for the bucket's clock`,
    );
  }
  return { rate, periodMs, burst, intervalNs };
}

/** Validates and completes {@link TokenBucketOptions}. */
export function resolveTokenBucketOptions(options: unknown): ResolvedTokenBucketOptions {
  const o = knownOptions('TokenBucket options', options, TOKEN_BUCKET_KEYS);
  return { ...resolveQueue(o), ...resolveStore(o), ...resolveTokenBucketLimit(o) };
}

/** Validates and completes a {@link TokenBucketSetting}, with the constructor's checks and defaults. */
export function resolveTokenBucketSetting(setting: unknown): ResolvedTokenBucketSetting {
  return resolveTokenBucketLimit(knownOptions('TokenBucket.setLimit options', setting, ['rate', 'periodMs', 'burst']));
}

/** Fixed window options resolved. */
export interface ResolvedFixedWindowOptions extends ResolvedQueueOptions, ResolvedStoreOptions, ResolvedFixedWindowSetting {}

const FIXED_WINDOW_KEYS = ['maxCalls', 'periodMs', ...QUEUE_KEYS, ...STORE_KEYS];

/** A fixed window's limit, as `FixedWindow.setLimit` takes it: the constructor's options and defaults. */
export interface FixedWindowSetting {
  /** Calls admitted per window. */
  maxCalls: number;
  /** Window length in milliseconds. Default 1000. */
  periodMs?: number;
}

/** A fixed window's limit after defaults and validation. */
export interface ResolvedFixedWindowSetting {
  maxCalls: number;
  periodMs: number;
  periodNs: bigint;
}

/** Most calls per window: the count shares its 32 bits of the state word with an 8-bit version tag (fixed-window.ts). */
const MAX_WINDOW_CALLS = 2 ** 24 - 1;

function resolveFixedWindowLimit(o: Record<string, unknown>): ResolvedFixedWindowSetting {
  if (o.maxCalls === undefined) throw new TypeError('maxCalls is required');
  const maxCalls = wholeNumber('maxCalls', o.maxCalls, 1, MAX_WINDOW_CALLS);
  const periodMs = resolvePeriod(o.periodMs);
  const periodNs = Math.round(periodMs * 1e6);
  if (!Number.isSafeInteger(periodNs)) throw new RangeError(`periodMs must be at most 9e9, got ${periodMs}`);
  return { maxCalls, periodMs, periodNs: BigInt(periodNs) };
}

/** Validates and completes {@link FixedWindowOptions}. */
export function resolveFixedWindowOptions(options: unknown): ResolvedFixedWindowOptions {
  const o = knownOptions('FixedWindow options', options, FIXED_WINDOW_KEYS);
  return { ...resolveQueue(o), ...resolveStore(o), ...resolveFixedWindowLimit(o) };
}

/** Validates and completes a {@link FixedWindowSetting}, with the constructor's checks and defaults. */
export function resolveFixedWindowSetting(setting: unknown): ResolvedFixedWindowSetting {
  return resolveFixedWindowLimit(knownOptions('FixedWindow.setLimit options', setting, ['maxCalls', 'periodMs']));
}

/** Concurrency limit options resolved. */
export interface ResolvedConcurrencyLimitOptions extends ResolvedQueueOptions, ResolvedStoreOptions {
  max: number;
}

const CONCURRENCY_LIMIT_KEYS = ['max', ...QUEUE_KEYS, ...STORE_KEYS];

/** A concurrency limit's limit, as `ConcurrencyLimit.setLimit` takes it. */
export interface ConcurrencySetting {
  /** Most permits held at once. */
  max: number;
}

/** Validates and completes {@link ConcurrencyLimitOptions}. */
export function resolveConcurrencyLimitOptions(options: unknown): ResolvedConcurrencyLimitOptions {
  const o = knownOptions('ConcurrencyLimit options', options, CONCURRENCY_LIMIT_KEYS);
  return { ...resolveQueue(o), ...resolveStore(o), ...resolveConcurrencyMax(o) };
}

function resolveConcurrencyMax(o: Record<string, unknown>): ConcurrencySetting {
  if (o.max === undefined) throw new TypeError('max is required');
  return { max: wholeNumber('max', o.max, 1) };
}

/** Validates a {@link ConcurrencySetting}, with the constructor's checks. */
export function resolveConcurrencySetting(setting: unknown): ConcurrencySetting {
  return resolveConcurrencyMax(knownOptions('ConcurrencyLimit.setLimit options', setting, ['max']));
}

/**
 * Options of an {@link AdaptiveConcurrencyLimit}: a concurrency limit that moves between `minLimit`
 * and `maxLimit` by the latency of its permits (see `adaptive-gradient.ts` for the algorithm and
 * why its defaults are what they are).
 */
export interface AdaptiveConcurrencyLimitOptions extends QueueOptions {
  /** Lowest the limit goes, and the concurrency the no-load latency is measured at. Default 1. */
  minLimit?: number;
  /** Highest the limit goes. Default 1000, at most 1 000 000. */
  maxLimit?: number;
  /** The limit after the first no-load measurement. Default 20 (within [minLimit, maxLimit]). */
  initialLimit?: number;
  /** Shortest window of samples the limit is recomputed from, ms. Default 100. */
  windowMs?: number;
  /** Fewest samples (released permits) a window, or a no-load measurement, needs. Default 10. */
  minSamples?: number;
  /**
   * Weight of a window's new estimate against the current limit, in (0, 1]; a window that shows
   * queueing weighs at least 0.5 (the limit comes down faster than it goes up). Default 0.2.
   */
  smoothing?: number;
  /**
   * Latency above the no-load latency still taken for "no queueing", as a fraction (0.1: up to
   * 10 % more). Raise it for noisy latencies. Default 0.1.
   */
  tolerance?: number;
  /**
   * Time between two re-measurements of the no-load latency, ms (plus up to 15 % of random
   * jitter; at least 20 times the previous measurement's own duration). Default 30 000.
   */
  probeIntervalMs?: number;
}

/** Adaptive concurrency limit options resolved. */
export interface ResolvedAdaptiveConcurrencyLimitOptions extends ResolvedQueueOptions {
  minLimit: number;
  maxLimit: number;
  initialLimit: number;
  windowMs: number;
  minSamples: number;
  smoothing: number;
  tolerance: number;
  probeIntervalMs: number;
}

/** A duration of the adaptive limit, ms: greater than 0 and at most 2^31 ms (24.8 days), so its ns fit the 64-bit times. */
function duration(name: string, value: unknown): number {
  const ms = positive(name, value);
  if (ms > 2 ** 31) throw new RangeError(`${name} must be at most ${2 ** 31} (24.8 days), got ${describe(value)}`);
  return ms;
}

/** The adaptive limit keeps its estimate in thousandths in a 32-bit word. */
const MAX_ADAPTIVE_LIMIT = 1_000_000;
const ADAPTIVE_KEYS = ['minLimit', 'maxLimit', 'initialLimit', 'windowMs', 'minSamples', 'smoothing', 'tolerance', 'probeIntervalMs', ...QUEUE_KEYS];

/** Validates and completes {@link AdaptiveConcurrencyLimitOptions}. */
export function resolveAdaptiveConcurrencyLimitOptions(options: unknown = {}): ResolvedAdaptiveConcurrencyLimitOptions {
  const o = knownOptions('AdaptiveConcurrencyLimit options', options, ADAPTIVE_KEYS);
  const minLimit = o.minLimit === undefined ? 1 : wholeNumber('minLimit', o.minLimit, 1, MAX_ADAPTIVE_LIMIT);
  const maxLimit = o.maxLimit === undefined ? Math.max(minLimit, 1000) : wholeNumber('maxLimit', o.maxLimit, 1, MAX_ADAPTIVE_LIMIT);
  if (maxLimit < minLimit) throw new RangeError(`maxLimit (${maxLimit}) must be at least minLimit (${minLimit})`);
  const initialLimit = o.initialLimit === undefined ? Math.min(maxLimit, Math.max(minLimit, 20)) : wholeNumber('initialLimit', o.initialLimit, 1);
  if (initialLimit < minLimit || initialLimit > maxLimit) {
    throw new RangeError(`initialLimit (${initialLimit}) must be within minLimit (${minLimit}) and maxLimit (${maxLimit})`);
  }
  const smoothing = o.smoothing === undefined ? 0.2 : positive('smoothing', o.smoothing);
  if (smoothing > 1) throw new RangeError(`smoothing must be at most 1, got ${describe(o.smoothing)}`);
  const tolerance = o.tolerance === undefined ? 0.1 : finite('tolerance', o.tolerance);
  if (tolerance < 0) throw new RangeError(`tolerance must be 0 or more, got ${describe(o.tolerance)}`);
  return {
    ...resolveQueue(o),
    minLimit,
    maxLimit,
    initialLimit,
    windowMs: o.windowMs === undefined ? 100 : duration('windowMs', o.windowMs),
    minSamples: o.minSamples === undefined ? 10 : wholeNumber('minSamples', o.minSamples, 1, 1 << 20),
    smoothing,
    tolerance,
    probeIntervalMs: o.probeIntervalMs === undefined ? 30_000 : duration('probeIntervalMs', o.probeIntervalMs),
  };
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

/** A {@link RateLimiter}'s limit, as `RateLimiter.setLimit` takes it: the constructor's limit options. */
export interface RateLimiterSetting {
  /** Calls per period. */
  maxCalls: number;
  /** Period in milliseconds. Default 1000. */
  periodMs?: number;
  /** Token bucket only: most calls at one instant. Default `maxCalls`. */
  burst?: number;
}

/** Options of a {@link RateLimiter}: `maxCalls` per `periodMs`, by one of the rate algorithms. */
export interface RateLimiterOptions extends RateLimiterSetting, QueueOptions, StoreOptions {
  /** `'token-bucket'` (default: smooth, bursts up to `burst`) or `'fixed-window'`. */
  algorithm?: 'token-bucket' | 'fixed-window';
  /** Called whenever a call has to wait, with its estimated wait (like Python ratelimiter's callback). */
  onLimited?: (event: { n: number; waitMs: number; queued: number }) => void;
}

const RATE_LIMITER_LIMIT_KEYS = ['maxCalls', 'periodMs', 'burst'];
const RATE_LIMITER_KEYS = [...RATE_LIMITER_LIMIT_KEYS, 'algorithm', 'onLimited', ...QUEUE_KEYS, ...STORE_KEYS];

/**
 * A facade limit mapped onto the algorithm's own (a token bucket's `rate` and `burst`, a fixed
 * window's `maxCalls`), with the facade's checks; the algorithm checks the rest of it.
 */
function rateLimiterLimit(o: Partial<RateLimiterSetting>, algorithm: 'fixed-window'): FixedWindowSetting;
function rateLimiterLimit(o: Partial<RateLimiterSetting>, algorithm: 'token-bucket'): TokenBucketSetting;
function rateLimiterLimit(o: Partial<RateLimiterSetting>, algorithm: 'token-bucket' | 'fixed-window'): TokenBucketSetting | FixedWindowSetting;
function rateLimiterLimit(o: Partial<RateLimiterSetting>, algorithm: 'token-bucket' | 'fixed-window'): TokenBucketSetting | FixedWindowSetting {
  if (o.maxCalls === undefined) throw new TypeError('maxCalls is required');
  const maxCalls = wholeNumber('maxCalls', o.maxCalls, 1);
  const period = o.periodMs === undefined ? {} : { periodMs: o.periodMs };
  if (algorithm === 'fixed-window') {
    if (o.burst !== undefined) throw new RangeError("burst applies to algorithm 'token-bucket' only");
    return { maxCalls, ...period };
  }
  return { rate: maxCalls, ...period, burst: o.burst ?? maxCalls };
}

/** Validates the facade-only options and maps the rest onto the chosen algorithm's options. */
export function resolveRateLimiterOptions(options: unknown): {
  algorithm: 'token-bucket' | 'fixed-window';
  limiter: TokenBucketOptions | FixedWindowOptions;
  onLimited: RateLimiterOptions['onLimited'];
} {
  const o = knownOptions('RateLimiter options', options, RATE_LIMITER_KEYS) as unknown as RateLimiterOptions;
  const algorithm = oneOf('algorithm', o.algorithm ?? 'token-bucket', ['token-bucket', 'fixed-window'] as const);
  if (o.onLimited !== undefined) func('onLimited', o.onLimited);
  const limit = rateLimiterLimit(o, algorithm);
  const { onLimited, algorithm: _a, maxCalls: _m, periodMs: _p, burst: _b, ...others } = o;
  return { algorithm, limiter: { ...others, ...limit }, onLimited };
}

/**
 * Validates `RateLimiter.setLimit`'s setting as the constructor validates those options, and maps
 * it onto the setting of the wrapped limiter's `setLimit` (`algorithm`: the facade's).
 */
export function resolveRateLimiterSetting(setting: unknown, algorithm: 'fixed-window'): FixedWindowSetting;
export function resolveRateLimiterSetting(setting: unknown, algorithm: 'token-bucket'): TokenBucketSetting;
export function resolveRateLimiterSetting(setting: unknown, algorithm: 'token-bucket' | 'fixed-window'): TokenBucketSetting | FixedWindowSetting {
  return rateLimiterLimit(knownOptions('RateLimiter.setLimit options', setting, RATE_LIMITER_LIMIT_KEYS), algorithm);
}
