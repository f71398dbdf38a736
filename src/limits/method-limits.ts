/**
 * The limits of a server, by method: built from plain specs (or taken as ready limiter objects, so
 * handler code can share them), with '*' as the default for methods without their own.
 */
import { KEYED_BUCKET_KEYS, KEYED_RENAMED, resolveKeyedTokenBucketSetting } from '../keyed/keyed-options.js';
import { KeyedTokenBucket, type KeyedTokenBucketDescriptor } from '../keyed/keyed-token-bucket.js';
import { AdaptiveConcurrencyLimit } from '../limiters/adaptive-concurrency-limit.js';
import { attachLimiter, type AnyLimiter } from '../limiters/attach.js';
import { ConcurrencyLimit } from '../limiters/concurrency-limit.js';
import { FixedWindow } from '../limiters/fixed-window.js';
import type { LimiterDescriptor } from '../limiters/limiter.js';
import { TokenBucket } from '../limiters/token-bucket.js';
import {
  resolveConcurrencySetting,
  resolveFixedWindowSetting,
  resolveTokenBucketSetting,
  type AdaptiveConcurrencyLimitOptions,
  type QueueOptions,
  type StoreOptions,
} from '../options.js';
import type { LimiterStore } from '../stores/store.js';
import { closest, options as knownOptions, waitBound, wholeNumber } from '../validate.js';
import { resolveCallKeySpec, type PerKeySpec } from './call-key.js';

/**
 * One method's limit: a token bucket (`rate` per `periodMs`, optional `burst`), a fixed window
 * (`maxCalls` per `periodMs`), a concurrency limit (`concurrency`), an adaptive concurrency limit
 * (`adaptive`: `true` for the defaults, or its settings), or a limiter object. A rate or
 * concurrency limit may name a distributed `store` and its `key` there; without them it uses the
 * limits' default store (if any), keyed by the method name. A rate limit with `perKey` is a limit
 * per key ({@link KeyedLimitSpec}); it and the adaptive limit always live in this process.
 */
export type LimitSpec<K = PerKeySpec> =
  | ({ rate: number; periodMs?: number; burst?: number } & StoreOptions)
  | ({ maxCalls: number; periodMs?: number } & StoreOptions)
  | ({ concurrency: number } & StoreOptions)
  | { adaptive: true | AdaptiveLimitSettings }
  | KeyedLimitSpec<K>
  | AnyLimiter;

/** An adaptive limit's settings in a limit spec: its options but the queue's, which the server sets. */
export type AdaptiveLimitSettings = Omit<AdaptiveConcurrencyLimitOptions, keyof QueueOptions>;

const ADAPTIVE_SETTINGS = ['minLimit', 'maxLimit', 'initialLimit', 'windowMs', 'minSamples', 'smoothing', 'tolerance', 'probeIntervalMs'];

/** What a per-key function of `wrapHandler` receives: a handler sees no address or connection. */
export interface HandlerCall {
  /** The method called. */
  method: string;
  /** Its arguments, in IDL order. */
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
  /** Tokens per `periodMs`, for every key. */
  rate: number;
  /** The period `rate` counts over, in ms (default 1000). */
  periodMs?: number;
  /** Tokens a key's bucket holds when full (default `ceil(rate)`). */
  burst?: number;
  /** The key of a call (threaded server: {@link PerKeySpec}; `wrapHandler`: a function of `{ method, args }`). */
  perKey: K;
  /** Slots of the key table: the most keys holding a bucket at once (default 4096). */
  slots?: number;
  /** Slots searched for a key from its hash (default 16, at most 64); past them, the overflow bucket. */
  probeWindow?: number;
  /** Rate of the bucket shared by keys that find no free slot (default `rate`). */
  overflowRate?: number;
  /** Burst of that overflow bucket (default `burst`). */
  overflowBurst?: number;
}

/** Limits by method name; the key '*' is the default, and a name starting with '@' is a limit for handler code only. */
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
  concurrency: ['concurrency', 'store', 'key'],
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
  const where = (spec.store ?? store) === undefined ? {} : { store: spec.store ?? store, key: spec.key ?? name };
  return named(name, () => {
    if ('rate' in spec) return new TokenBucket({ ...spec, ...bounds, ...where });
    if ('maxCalls' in spec) return new FixedWindow({ ...spec, ...bounds, ...where });
    return new ConcurrencyLimit({ max: spec.concurrency, ...bounds, ...where });
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

/** A per-key limit spec's options: the keyed bucket's (validated by it), and the key; the queue bounds come from the server. */
const KEYED_OPTIONS = [...KEYED_BUCKET_KEYS, 'perKey'];

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

/** What {@link MethodLimits.update} did. */
export interface LimitsUpdate {
  /** One line per limit added, changed or removed, e.g. `add 50/s, burst 50 → 200/s, burst 200`. */
  changes: string[];
  /** Limits no longer used (replaced or removed): calls waiting on them must move to the current ones. */
  retired: MethodLimit[];
}

/**
 * The change of a limit to `spec` in place (its `setLimit`), validated now (so applying it cannot
 * throw) and applied when called; undefined when the limit has to be built anew (another kind,
 * another store or key, a limiter object, an adaptive limit with other settings, a per-key limit
 * with another key or table).
 */
function inPlace(name: string, limit: MethodLimit, was: LimitSpec<unknown>, spec: unknown, store: LimiterStore | undefined): (() => void) | undefined {
  if (isKeyedLimit(limit) || isKeyedSpec(spec)) return keyedInPlace(name, limit, was, spec);
  if (spec === null || typeof spec !== 'object') return undefined;
  if (isLimiter(spec) || isLimiter(was)) return undefined;
  const o = spec as Record<string, unknown>;
  const w = was as Record<string, unknown>;
  const sameStore = (o.store ?? store) === (w.store ?? store) && (o.key ?? name) === (w.key ?? name);
  if (limit instanceof TokenBucket && 'rate' in o && !('maxCalls' in o) && !('concurrency' in o) && sameStore) {
    knownOptions(`limits.${name}`, o, SPEC_KEYS.rate);
    const setting = { rate: o.rate as number, periodMs: o.periodMs as number | undefined, burst: o.burst as number | undefined };
    named(name, () => resolveTokenBucketSetting(setting));
    return () => limit.setLimit(setting);
  }
  if (limit instanceof FixedWindow && 'maxCalls' in o && !('rate' in o) && !('concurrency' in o) && sameStore) {
    knownOptions(`limits.${name}`, o, SPEC_KEYS.maxCalls);
    const setting = { maxCalls: o.maxCalls as number, periodMs: o.periodMs as number | undefined };
    named(name, () => resolveFixedWindowSetting(setting));
    return () => limit.setLimit(setting);
  }
  if (limit instanceof ConcurrencyLimit && 'concurrency' in o && !('rate' in o) && !('maxCalls' in o) && sameStore) {
    knownOptions(`limits.${name}`, o, SPEC_KEYS.concurrency);
    const setting = { max: o.concurrency as number };
    named(name, () => resolveConcurrencySetting(setting));
    return () => limit.setLimit(setting);
  }
  // An adaptive limit given the same settings keeps what it has learnt; other settings build anew.
  if (limit instanceof AdaptiveConcurrencyLimit && 'adaptive' in o && JSON.stringify(o) === JSON.stringify(w)) return () => {};
  return undefined;
}

/**
 * A per-key limit changed in place: with the same key spec and table (`slots`, overflow bucket),
 * only `rate`, `periodMs` and `burst` may differ, and `setLimit` converts every key's bucket.
 * Rebuilding it would empty its table (every key would start with a full bucket at once, and its
 * waiting calls and counters would move to a new one); a new key spec or table has to.
 */
function keyedInPlace(name: string, limit: MethodLimit, was: unknown, spec: unknown): (() => void) | undefined {
  if (!isKeyedLimit(limit) || !isKeyedSpec(was) || !isKeyedSpec(spec) || !sameKeyedSpec(was, spec, KEYED_SETTING)) return undefined;
  if (sameKeyedSpec(was, spec)) return () => {};
  knownOptions(`limits.${name}`, spec, KEYED_OPTIONS, KEYED_RENAMED);
  const setting = { rate: spec.rate as number, periodMs: spec.periodMs as number | undefined, burst: spec.burst as number | undefined };
  named(name, () => resolveKeyedTokenBucketSetting(setting));
  return () => limit.limiter.setLimit(setting);
}

/** The options of a per-key spec `setLimit` changes. */
const KEYED_SETTING: readonly string[] = ['rate', 'periodMs', 'burst'];

/**
 * True when two per-key specs are the same limit (a `perKey` field spec compared by its field),
 * not counting the options `ignore`.
 */
function sameKeyedSpec(a: Record<string, unknown>, b: Record<string, unknown>, ignore: readonly string[] = []): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const key of keys) {
    if (ignore.includes(key)) continue;
    const x = a[key];
    const y = b[key];
    if (x === y) continue;
    const fields = (v: unknown): unknown => (v !== null && typeof v === 'object' ? (v as { field?: unknown }).field : undefined);
    if (key !== 'perKey' || fields(x) === undefined || fields(x) !== fields(y)) return false;
  }
  return true;
}

/** A period as a reader writes it: `s`, `min`, `h`, else ms. */
function periodText(periodMs: number): string {
  if (periodMs === 1000) return 's';
  if (periodMs === 60_000) return 'min';
  if (periodMs === 3_600_000) return 'h';
  return `${periodMs}ms`;
}

/** A limit in one short line, e.g. `200/s, burst 10`, `600/min window`, `concurrency 4`. */
export function describeLimit(limit: MethodLimit): string {
  if (isKeyedLimit(limit)) {
    const k = limit.limiter;
    const per = typeof limit.perKey === 'function' ? 'function' : typeof limit.perKey === 'object' ? `field:${limit.perKey.field}` : limit.perKey;
    return `${k.rate}/${periodText(k.periodMs)}, burst ${k.burst}, per ${per}`;
  }
  const stored = limit.store === undefined ? '' : ' (store)';
  if (limit instanceof TokenBucket) return `${limit.rate}/${periodText(limit.periodMs)}, burst ${limit.burst}${stored}`;
  if (limit instanceof FixedWindow) return `${limit.maxCalls}/${periodText(limit.periodMs)} window${stored}`;
  if (limit instanceof AdaptiveConcurrencyLimit) return `adaptive concurrency ${limit.minLimit}..${limit.maxLimit}`;
  return `concurrency ${limit.max}`;
}

/**
 * Checks that every limit names a method the server has: `'*'`, a service's `Service:*`, one of
 * `methods` (multiplexed ones as `Service:method`), or a name starting with `@`, which no method
 * has: a limit only handler code uses (`context.limiters['@downstream']`).
 * @throws RangeError naming the limit and listing the service's methods.
 */
export function checkLimitNames(names: Iterable<string>, methods: readonly string[], services: readonly string[]): void {
  for (const name of names) {
    if (name === '*' || name.startsWith('@') || methods.includes(name)) continue;
    const colon = name.indexOf(':');
    if (colon > 0 && name.slice(colon + 1) === '*' && services.includes(name.slice(0, colon))) continue;
    const near = closest(name, methods);
    throw new RangeError(
      `limits.${name}: the server has no method ${JSON.stringify(name)}${near === undefined ? '' : ` (did you mean ${JSON.stringify(near)}?)`}; its methods: ${methods.join(', ')} (a limit for handler code only is named with a leading @, e.g. @${name})`,
    );
  }
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
  /** The spec each limit was built (or last changed) from. */
  private readonly specs = new Map<string, LimitSpec<PerKeySpec | ((call: HandlerCall) => string)>>();

  /**
   * @param store the distributed store rate limits use unless their spec names one (keyed by
   *   method name); default: the embedded in-process store.
   * @throws TypeError | RangeError naming `limits.<method>` and the bad option.
   */
  constructor(
    config: LimitsConfig<PerKeySpec | ((call: HandlerCall) => string)> = {},
    private readonly queue: QueueBounds = {},
    private readonly store?: LimiterStore,
  ) {
    if (config === null || typeof config !== 'object') throw new TypeError('limits must be an object of method name → limit');
    resolveQueueBounds(queue);
    for (const [name, spec] of Object.entries(config)) {
      this.byName.set(name, isKeyedSpec(spec) ? buildKeyed(name, spec, queue) : build(name, spec, queue, store));
      this.specs.set(name, spec);
    }
  }

  /**
   * Makes `config` the limits, as if they had been built from it: a limit of the same kind (and the
   * same store) is changed in place with `setLimit`, so it keeps its waiting calls, its counters and
   * the threads attached to it; any other limit is built anew, and the limits it replaces (and those
   * removed) are returned as retired. Validates everything before changing anything, so an invalid
   * config leaves every limit as it was.
   * @throws TypeError | RangeError naming `limits.<method>` and the bad option.
   */
  update(config: LimitsConfig<PerKeySpec | ((call: HandlerCall) => string)>): LimitsUpdate {
    if (config === null || typeof config !== 'object') throw new TypeError('limits must be an object of method name → limit');
    const steps: (() => void)[] = [];
    const built = new Map<string, MethodLimit>();
    for (const [name, spec] of Object.entries(config)) {
      const old = this.byName.get(name);
      const was = this.specs.get(name);
      const change = old === undefined ? undefined : inPlace(name, old, was!, spec, this.store);
      if (change !== undefined) steps.push(change);
      else if (old !== spec) built.set(name, isKeyedSpec(spec) ? buildKeyed(name, spec, this.queue) : build(name, spec, this.queue, this.store));
    }
    const before = new Map([...this.byName].map(([name, limit]) => [name, describeLimit(limit)]));
    const retired: MethodLimit[] = [];
    for (const [name, limit] of this.byName) {
      if (!(name in config) || built.has(name)) retired.push(limit);
      if (!(name in config)) {
        this.byName.delete(name);
        this.specs.delete(name);
      }
    }
    for (const step of steps) step();
    for (const [name, limit] of built) this.byName.set(name, limit);
    for (const [name, spec] of Object.entries(config)) this.specs.set(name, spec);
    const changes: string[] = [];
    for (const [name, text] of before) {
      const now = this.byName.get(name);
      if (now === undefined) changes.push(`${name} removed (was ${text})`);
      else if (describeLimit(now) !== text || built.has(name)) changes.push(`${name} ${text} → ${describeLimit(now)}`);
    }
    for (const [name, limit] of this.byName) if (!before.has(name)) changes.push(`${name} added (${describeLimit(limit)})`);
    // A limiter object given for several methods is retired only once no method uses it.
    const used = new Set(this.byName.values());
    return { changes, retired: [...new Set(retired)].filter((limit) => !used.has(limit)) };
  }

  /** The names limits are configured under ('*' and 'Service:*' included). */
  names(): string[] {
    return [...this.byName.keys()];
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
