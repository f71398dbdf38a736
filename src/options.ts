/**
 * Every option of every limiter: its type, its default and its validation, in one place.
 *
 * Invalid input throws at construction (or at the call, for per-call options) with a `TypeError`
 * for a value of the wrong type and a `RangeError` for a number out of range, both naming the
 * option and the value received, so a typo in a config file fails loudly and early.
 */
import { systemClock, type Clock } from './clock.js';

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

/** Options of a {@link TokenBucket}: `rate` tokens are added every `periodMs`, up to `burst`. */
export interface TokenBucketOptions extends QueueOptions {
  /** Tokens earned per period; may be fractional (0.5 per 1000 ms is one call every 2 s). */
  rate: number;
  /** Length of the period `rate` refers to, in milliseconds. Default 1000. */
  periodMs?: number;
  /** Most tokens that can be taken at one instant (the bucket size). Default: `ceil(rate)`. */
  burst?: number;
}

/** Options of a {@link FixedWindow}: at most `maxCalls` start in each window of `periodMs`. */
export interface FixedWindowOptions extends QueueOptions {
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
export interface ResolvedTokenBucketOptions extends ResolvedQueueOptions {
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
  return { ...resolveQueue(o), rate, periodMs, burst, intervalNs: BigInt(Math.max(1, interval)) };
}

/** Fixed window options resolved. */
export interface ResolvedFixedWindowOptions extends ResolvedQueueOptions {
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
  return { ...resolveQueue(o), maxCalls, periodMs, periodNs: BigInt(periodNs) };
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
export interface RateLimiterOptions extends QueueOptions {
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
