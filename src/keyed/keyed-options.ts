/**
 * The options of a {@link KeyedTokenBucket}: types, defaults and validation, with the checks of
 * `validate.ts` and the queue, period and token-interval checks every limiter shares
 * (`options.ts`).
 */
import { QUEUE_KEYS, resolvePeriod, resolveQueue, tokenInterval, type QueueOptions, type ResolvedQueueOptions } from '../options.js';
import { options as knownOptions, object, positive, string, wholeNumber } from '../validate.js';

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
   * 4096, at most 16 777 216; any whole number, a power of two is not required. Formerly
   * `capacity`, which on a limiter means the most one call may ask for.
   */
  slots?: number;
  /**
   * Slots searched for a key, starting at its hash: a key lives in one of these or, when all of
   * them hold active keys, is admitted by the overflow bucket. Default 16, at most 64; larger
   * than `slots` means `slots`.
   */
  probeWindow?: number;
  /** Tokens per period of the one bucket every key without a slot shares. Default `rate`. */
  overflowRate?: number;
  /** Size of the overflow bucket. Default `burst`. */
  overflowBurst?: number;
}

/**
 * The per-key limit of a {@link KeyedTokenBucket}, as `setLimit` takes it: the constructor's
 * options and defaults (an omitted `burst` is `ceil(rate)` again).
 */
export interface KeyedTokenBucketSetting {
  /** Tokens each key earns per period; may be fractional. */
  rate: number;
  /** Length of the period `rate` refers to, in milliseconds. Default 1000. */
  periodMs?: number;
  /** Most tokens one key can take at one instant. Default: `ceil(rate)`. */
  burst?: number;
}

/** A per-key limit after defaults and validation. */
export interface ResolvedKeyedTokenBucketSetting {
  rate: number;
  periodMs: number;
  burst: number;
  /**
   * Microseconds between two tokens of one key, rounded up (the table keeps time in whole µs):
   * rounding up can only admit fewer calls, never more.
   */
  intervalUs: number;
}

/** Keyed token bucket options resolved. */
export interface ResolvedKeyedTokenBucketOptions extends ResolvedQueueOptions, ResolvedKeyedTokenBucketSetting {
  slots: number;
  probeWindow: number;
  overflowRate: number;
  overflowBurst: number;
  /** Nanoseconds between two tokens of the overflow bucket, rounded up. */
  overflowIntervalNs: bigint;
}

const DEFAULT_SLOTS = 4096;
const MAX_SLOTS = 1 << 24;
const DEFAULT_PROBE_WINDOW = 16;
const MAX_PROBE_WINDOW = 64;
/** A key's bucket spans burst × interval; it must stay far inside the table's 48-bit µs clock. */
const MAX_KEYED_SPAN_US = 2 ** 46;

const SETTING_KEYS = ['rate', 'periodMs', 'burst'];

/** The bucket's own options (not the queue's): what a server's per-key limit spec takes besides `perKey`. */
export const KEYED_BUCKET_KEYS: readonly string[] = [...SETTING_KEYS, 'slots', 'probeWindow', 'overflowRate', 'overflowBurst'];

const KEYED_KEYS = [...KEYED_BUCKET_KEYS, ...QUEUE_KEYS];

/**
 * Options a keyed bucket is built with that `setLimit` cannot change, and why: refused by name
 * rather than as unknown options.
 */
const FIXED_AT_CONSTRUCTION: Readonly<Record<string, string>> = {
  slots: 'the table is allocated once with its slots',
  probeWindow: 'every key is placed by the probe window it was built with',
  overflowRate: 'the overflow bucket keeps the settings it was built with',
  overflowBurst: 'the overflow bucket keeps the settings it was built with',
};

/** Options renamed since an earlier release: the old name is refused with the new one. */
export const KEYED_RENAMED: Readonly<Record<string, string>> = { capacity: 'slots' };

/** Validates and completes {@link KeyedTokenBucketOptions}. */
export function resolveKeyedTokenBucketOptions(options: unknown): ResolvedKeyedTokenBucketOptions {
  const o = knownOptions('KeyedTokenBucket options', options, KEYED_KEYS, KEYED_RENAMED);
  const setting = resolveSetting(o);
  const slots = o.slots === undefined ? DEFAULT_SLOTS : wholeNumber('slots', o.slots, 1, MAX_SLOTS);
  const window = o.probeWindow === undefined ? DEFAULT_PROBE_WINDOW : wholeNumber('probeWindow', o.probeWindow, 1, MAX_PROBE_WINDOW);
  const overflowRate = o.overflowRate === undefined ? setting.rate : positive('overflowRate', o.overflowRate);
  const overflowBurst = o.overflowBurst === undefined ? setting.burst : wholeNumber('overflowBurst', o.overflowBurst, 1);
  const overflowInterval = tokenInterval('overflowRate', overflowRate, setting.periodMs, 1e6, 'nanosecond');
  return {
    ...resolveQueue(o),
    ...setting,
    slots,
    probeWindow: Math.min(window, slots),
    overflowRate,
    overflowBurst,
    overflowIntervalNs: BigInt(overflowInterval),
  };
}

/**
 * Validates and completes a {@link KeyedTokenBucketSetting} (`KeyedTokenBucket.setLimit`).
 * @throws TypeError naming an option fixed at construction (`slots`, `probeWindow`,
 *   `overflowRate`, `overflowBurst`) or unknown; TypeError | RangeError naming an invalid one.
 */
export function resolveKeyedTokenBucketSetting(setting: unknown): ResolvedKeyedTokenBucketSetting {
  const name = 'KeyedTokenBucket.setLimit options';
  const o = object(name, setting);
  for (const key of Object.keys(o)) {
    const why = FIXED_AT_CONSTRUCTION[key];
    if (why !== undefined) throw new TypeError(`${name}: ${key} cannot change at runtime (${why}): build a new KeyedTokenBucket to change it`);
  }
  return resolveSetting(knownOptions(name, o, SETTING_KEYS, KEYED_RENAMED));
}

/** rate, periodMs and burst of checked options, and the interval they give. */
function resolveSetting(o: Record<string, unknown>): ResolvedKeyedTokenBucketSetting {
  if (o.rate === undefined) throw new TypeError('rate is required (tokens per periodMs, per key)');
  const rate = positive('rate', o.rate);
  const periodMs = resolvePeriod(o.periodMs);
  const burst = o.burst === undefined ? Math.max(1, Math.ceil(rate)) : wholeNumber('burst', o.burst, 1);
  const intervalUs = tokenInterval('rate', rate, periodMs, 1e3, 'microsecond');
  if (intervalUs * burst > MAX_KEYED_SPAN_US) {
    throw new RangeError(`burst ${burst} at rate ${rate} per periodMs ${periodMs} spans more than 2^46 µs (2.2 years): too long for the table's clock`);
  }
  return { rate, periodMs, burst, intervalUs };
}

/** Validates the key of a keyed limiter's call. */
export function checkKey(key: unknown): string {
  return string('key', key);
}
