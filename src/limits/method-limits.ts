/**
 * The limits of a server, by method: built from plain specs (or taken as ready limiter objects, so
 * handler code can share them), with '*' as the default for methods without their own.
 */
import { KEYED_RENAMED } from '../keyed/keyed-options.js';
import { KeyedTokenBucket, type KeyedTokenBucketDescriptor } from '../keyed/keyed-token-bucket.js';
import { AdaptiveConcurrencyLimit } from '../limiters/adaptive-concurrency-limit.js';
import { attachLimiter, type AnyLimiter } from '../limiters/attach.js';
import { ConcurrencyLimit } from '../limiters/concurrency-limit.js';
import { FixedWindow } from '../limiters/fixed-window.js';
import type { LimiterDescriptor } from '../limiters/limiter.js';
import { TokenBucket } from '../limiters/token-bucket.js';
import type { AdaptiveConcurrencyLimitOptions, QueueOptions, StoreOptions } from '../options.js';
import type { LimiterStore } from '../stores/store.js';
import { options as knownOptions, waitBound, wholeNumber } from '../validate.js';
import { resolveCallKeySpec, type PerKeySpec } from './call-key.js';

/**
 * One method's limit: a token bucket (`rate` per `periodMs`, optional `burst`), a fixed window
 * (`maxCalls` per `periodMs`), a concurrency limit (`concurrency`), an adaptive concurrency limit
 * (`adaptive`: `true` for the defaults, or its settings), or a limiter object. A rate limit may
 * name a distributed `store` and its `key` there; without them it uses the limits' default store
 * (if any), keyed by the method name. A rate limit with `perKey` is a limit per key
 * ({@link KeyedLimitSpec}).
 */
export type LimitSpec<K = PerKeySpec> =
  | ({ rate: number; periodMs?: number; burst?: number } & StoreOptions)
  | ({ maxCalls: number; periodMs?: number } & StoreOptions)
  | { concurrency: number }
  | { adaptive: true | AdaptiveLimitSettings }
  | KeyedLimitSpec<K>
  | AnyLimiter;

/** An adaptive limit's settings in a limit spec: its options but the queue's, which the server sets. */
export type AdaptiveLimitSettings = Omit<AdaptiveConcurrencyLimitOptions, keyof QueueOptions>;

const ADAPTIVE_SETTINGS = ['minLimit', 'maxLimit', 'initialLimit', 'windowMs', 'minSamples', 'smoothing', 'tolerance', 'probeIntervalMs'];

/** What a per-key function of `wrapHandler` receives: a handler sees no address or connection. */
export interface HandlerCall {
  method: string;
  args: unknown[];
}

/**
 * A token bucket per key ({@link KeyedTokenBucket}): every key gets its own bucket of `rate` per
 * `periodMs` (default 1000) and `burst` (default ceil(rate)), in a shared table of `slots`
 * slots (default 4096); keys that find no slot share the overflow bucket (`overflowRate`,
 * `overflowBurst`; default the same rate and burst). Calls over their key's limit queue per key
 * (the server's queue bounds apply: `maxQueued` over all keys). In-process only: a server's
 * distributed `store` does not apply to it.
 */
export interface KeyedLimitSpec<K = PerKeySpec> {
  rate: number;
  periodMs?: number;
  burst?: number;
  /** The key of a call (threaded server: {@link PerKeySpec}; `wrapHandler`: a function of `{ method, args }`). */
  perKey: K;
  /** Slots of the key table: the most keys holding a bucket at once (default 4096). */
  slots?: number;
  overflowRate?: number;
  overflowBurst?: number;
}

/** Limits by method name; the key '*' is the default. */
export type LimitsConfig<K = PerKeySpec> = Record<string, LimitSpec<K>>;

/** The limits `wrapHandler` takes: a per-key limit's key is a function of the method and its arguments. */
export type HandlerLimitsConfig = LimitsConfig<(call: HandlerCall) => string>;

/** A method's per-key limit: the keyed bucket and how a call's key is found. */
export interface KeyedMethodLimit {
  readonly limiter: KeyedTokenBucket;
  readonly perKey: PerKeySpec | ((call: HandlerCall) => string);
}

/** Queue bounds applied to every limited call. */
export interface QueueBounds {
  /** Most calls waiting per limiter, over all threads. */
  maxQueued?: number;
  /** Most time a call may wait for its token, ms. */
  maxWaitMs?: number;
}

const QUEUE_KEYS = ['maxQueued', 'maxWaitMs'];

/**
 * Validates queue bounds, naming them `queue.maxQueued` and `queue.maxWaitMs` (the same checks as
 * a limiter's `maxQueued` and `maxWaitMs`).
 */
export function resolveQueueBounds(value: unknown = {}): QueueBounds {
  const o = knownOptions('queue', value, QUEUE_KEYS);
  if (o.maxQueued !== undefined) wholeNumber('queue.maxQueued', o.maxQueued, 0, undefined, true);
  if (o.maxWaitMs !== undefined) waitBound('queue.maxWaitMs', o.maxWaitMs);
  return o;
}

/** The options of each kind of spec: a limiter's other options (queue bounds, clock) come from the server. */
const SPEC_KEYS = {
  rate: ['rate', 'periodMs', 'burst', 'store', 'key'],
  maxCalls: ['maxCalls', 'periodMs', 'store', 'key'],
  concurrency: ['concurrency'],
  adaptive: ['adaptive'],
};

function build(name: string, spec: Exclude<LimitSpec, KeyedLimitSpec>, queue: QueueBounds, store: LimiterStore | undefined): AnyLimiter {
  if (isLimiter(spec)) return spec;
  if (spec === null || typeof spec !== 'object') throw new TypeError(`limits.${name} must be a limit spec object or a limiter, got ${String(spec)}`);
  const kinds = (['rate', 'maxCalls', 'concurrency', 'adaptive'] as const).filter((k) => k in spec);
  // Without a kind, a misspelt one is the likeliest cause: suggest it from every kind's options.
  if (kinds.length === 0) knownOptions(`limits.${name}`, spec, [...new Set(Object.values(SPEC_KEYS).flat())]);
  if (kinds.length !== 1) throw new TypeError(`limits.${name} must have exactly one of rate, maxCalls, concurrency or adaptive`);
  knownOptions(`limits.${name}`, spec, SPEC_KEYS[kinds[0]!]);
  const bounds = {
    ...(queue.maxQueued !== undefined ? { maxQueued: queue.maxQueued } : {}),
    ...(queue.maxWaitMs !== undefined ? { maxWaitMs: queue.maxWaitMs } : {}),
  };
  if ('adaptive' in spec) {
    const settings = spec.adaptive === true ? {} : knownOptions(`limits.${name}.adaptive`, spec.adaptive, ADAPTIVE_SETTINGS);
    return named(name, () => new AdaptiveConcurrencyLimit({ ...settings, ...bounds }));
  }
  const where = 'concurrency' in spec || (spec.store ?? store) === undefined ? {} : { store: spec.store ?? store, key: spec.key ?? name };
  return named(name, () => {
    if ('rate' in spec) return new TokenBucket({ ...spec, ...bounds, ...where });
    if ('maxCalls' in spec) return new FixedWindow({ ...spec, ...bounds, ...where });
    return new ConcurrencyLimit({ max: spec.concurrency, ...bounds });
  });
}

/** True for a limiter object given as a spec. */
function isLimiter(spec: unknown): spec is AnyLimiter {
  return spec instanceof TokenBucket || spec instanceof FixedWindow || spec instanceof ConcurrencyLimit || spec instanceof AdaptiveConcurrencyLimit;
}

/** Builds a limit, with its errors naming `limits.<name>`. */
function named<L>(name: string, build: () => L): L {
  try {
    return build();
  } catch (error) {
    if (error instanceof RangeError) throw new RangeError(`limits.${name}: ${error.message}`, { cause: error });
    if (error instanceof TypeError) throw new TypeError(`limits.${name}: ${error.message}`, { cause: error });
    throw error;
  }
}

const KEYED_OPTIONS = ['rate', 'periodMs', 'burst', 'perKey', 'slots', 'overflowRate', 'overflowBurst'];

function buildKeyed(name: string, spec: Record<string, unknown>, queue: QueueBounds): KeyedMethodLimit {
  for (const option of Object.keys(spec)) {
    if (option === 'store' || option === 'key')
      throw new TypeError(`limits.${name}.${option}: a per-key limit lives in this process's shared memory, not in a distributed store`);
  }
  knownOptions(`limits.${name}`, spec, KEYED_OPTIONS, KEYED_RENAMED);
  const perKey = resolveCallKeySpec(`limits.${name}.perKey`, spec.perKey);
  const { perKey: _perKey, ...options } = spec;
  const limiter = named(
    name,
    () =>
      new KeyedTokenBucket({
        ...(options as { rate: number }),
        ...(queue.maxQueued !== undefined ? { maxQueued: queue.maxQueued } : {}),
        ...(queue.maxWaitMs !== undefined ? { maxWaitMs: queue.maxWaitMs } : {}),
      }),
  );
  return { limiter, perKey };
}

function isKeyedSpec(spec: unknown): spec is Record<string, unknown> {
  return spec !== null && typeof spec === 'object' && !isLimiter(spec) && 'perKey' in spec;
}

/** A method's limit: one limiter, or a per-key limit (whose limiter takes the key with every call). */
export type MethodLimit = AnyLimiter | KeyedMethodLimit;

/** True for a per-key method limit. */
export function isKeyedLimit(limit: MethodLimit): limit is KeyedMethodLimit {
  return 'perKey' in limit;
}

/**
 * The limit of each method: its own, else the one of '*'. A limit is either one limiter or per
 * key; {@link limitFor} returns either with one lookup, the server's per-frame step.
 */
export class MethodLimits {
  private readonly byName = new Map<string, MethodLimit>();

  /**
   * @param store the distributed store rate limits use unless their spec names one (keyed by
   *   method name); default: the embedded in-process store.
   * @throws TypeError | RangeError naming `limits.<method>` and the bad option.
   */
  constructor(config: LimitsConfig<PerKeySpec | ((call: HandlerCall) => string)> = {}, queue: QueueBounds = {}, store?: LimiterStore) {
    if (config === null || typeof config !== 'object') throw new TypeError('limits must be an object of method name → limit');
    resolveQueueBounds(queue);
    for (const [name, spec] of Object.entries(config)) {
      this.byName.set(name, isKeyedSpec(spec) ? buildKeyed(name, spec, queue) : build(name, spec, queue, store));
    }
  }

  /**
   * The limit of `method` (its own; for a multiplexed `Service:method`, else its service's
   * `Service:*`; else the default `*`), or undefined if unlimited.
   */
  limitFor(method: string): MethodLimit | undefined {
    const name = this.nameFor(method);
    return name === undefined ? undefined : this.byName.get(name);
  }

  /** The configured name of the limit of `method` (`method`, `Service:*` or `*`, as {@link limitFor} looks), or undefined if unlimited. */
  nameFor(method: string): string | undefined {
    if (this.byName.has(method)) return method;
    const colon = method.indexOf(':');
    const service = colon > 0 ? `${method.slice(0, colon)}:*` : undefined;
    if (service !== undefined && this.byName.has(service)) return service;
    return this.byName.has('*') ? '*' : undefined;
  }

  /** The limiter for `method`, or undefined if unlimited or limited per key (then {@link keyedFor} has it). */
  for(method: string): AnyLimiter | undefined {
    const limit = this.limitFor(method);
    return limit === undefined || isKeyedLimit(limit) ? undefined : limit;
  }

  /** The per-key limit for `method`, or undefined if it has none. */
  keyedFor(method: string): KeyedMethodLimit | undefined {
    const limit = this.limitFor(method);
    return limit !== undefined && isKeyedLimit(limit) ? limit : undefined;
  }

  /** Every limiter (not the per-key ones: {@link keyedEntries}), by configured name. */
  entries(): [string, AnyLimiter][] {
    return [...this.byName].filter((e): e is [string, AnyLimiter] => !isKeyedLimit(e[1]));
  }

  /** Every per-key limit, by configured name. */
  keyedEntries(): [string, KeyedMethodLimit][] {
    return [...this.byName].filter((e): e is [string, KeyedMethodLimit] => isKeyedLimit(e[1]));
  }

  /** Descriptors to attach the same limiters in worker threads (per-key ones: {@link keyedDescriptors}). */
  descriptors(): Record<string, LimiterDescriptor> {
    return Object.fromEntries(this.entries().map(([name, l]) => [name, l.share()]));
  }

  /** Descriptors to attach the per-key limiters in worker threads. */
  keyedDescriptors(): Record<string, KeyedTokenBucketDescriptor> {
    return Object.fromEntries(this.keyedEntries().map(([name, k]) => [name, k.limiter.share()]));
  }

  /** The distributed stores the limits use (each once). */
  stores(): LimiterStore[] {
    const stores = new Set<LimiterStore>();
    for (const [, l] of this.entries()) if (l.store !== undefined) stores.add(l.store);
    return [...stores];
  }

  /** Calls waiting over every limiter. */
  queued(): number {
    let n = 0;
    for (const l of this.byName.values()) n += isKeyedLimit(l) ? l.limiter.queuedTotal : l.queuedTotal;
    return n;
  }

  /** Gives back what a dead worker thread held of every limiter. */
  reclaimThread(threadId: number): void {
    for (const l of this.byName.values()) (isKeyedLimit(l) ? l.limiter : l).reclaimThread(threadId);
  }

  /** Rebuilds limits in a worker from {@link descriptors}. */
  static attach(descriptors: Record<string, LimiterDescriptor>): Record<string, AnyLimiter> {
    return Object.fromEntries(Object.entries(descriptors).map(([name, d]) => [name, attachLimiter(d)]));
  }

  /** Rebuilds per-key limiters in a worker from {@link keyedDescriptors}. */
  static attachKeyed(descriptors: Record<string, KeyedTokenBucketDescriptor>): Record<string, KeyedTokenBucket> {
    return Object.fromEntries(Object.entries(descriptors).map(([name, d]) => [name, KeyedTokenBucket.attach(d)]));
  }
}
