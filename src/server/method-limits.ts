/**
 * The limits of a server, by method: built from plain specs (or taken as ready limiter objects, so
 * handler code can share them), with '*' as the default for methods without their own.
 */
import { attachLimiter, type AnyLimiter } from '../limiters/attach.js';
import { ConcurrencyLimit } from '../limiters/concurrency-limit.js';
import { FixedWindow } from '../limiters/fixed-window.js';
import type { LimiterDescriptor } from '../limiters/limiter.js';
import { TokenBucket } from '../limiters/token-bucket.js';
import type { StoreOptions } from '../options.js';
import type { LimiterStore } from '../stores/store.js';

/**
 * One method's limit: a token bucket (`rate` per `periodMs`, optional `burst`), a fixed window
 * (`maxCalls` per `periodMs`), a concurrency limit (`concurrency`), or a limiter object. A rate
 * limit may name a distributed `store` and its `key` there; without them it uses the limits'
 * default store (if any), keyed by the method name.
 */
export type LimitSpec =
  | ({ rate: number; periodMs?: number; burst?: number } & StoreOptions)
  | ({ maxCalls: number; periodMs?: number } & StoreOptions)
  | { concurrency: number }
  | AnyLimiter;

/** Limits by method name; the key '*' is the default. */
export type LimitsConfig = Record<string, LimitSpec>;

/** Queue bounds applied to every limited call. */
export interface QueueBounds {
  /** Most calls waiting per limiter, over all threads. */
  maxQueued?: number;
  /** Most time a call may wait for its token, ms. */
  maxWaitMs?: number;
}

function build(name: string, spec: LimitSpec, queue: QueueBounds, store: LimiterStore | undefined): AnyLimiter {
  if (spec instanceof TokenBucket || spec instanceof FixedWindow || spec instanceof ConcurrencyLimit) return spec;
  if (spec === null || typeof spec !== 'object') throw new TypeError(`limits.${name} must be a limit spec object or a limiter, got ${String(spec)}`);
  const keys = ['rate' in spec, 'maxCalls' in spec, 'concurrency' in spec].filter(Boolean).length;
  if (keys !== 1) throw new TypeError(`limits.${name} must have exactly one of rate, maxCalls or concurrency`);
  const bounds = { ...(queue.maxQueued !== undefined ? { maxQueued: queue.maxQueued } : {}), ...(queue.maxWaitMs !== undefined ? { maxWaitMs: queue.maxWaitMs } : {}) };
  const where = 'concurrency' in spec || (spec.store ?? store) === undefined ? {} : { store: spec.store ?? store, key: spec.key ?? name };
  try {
    if ('rate' in spec) return new TokenBucket({ ...spec, ...bounds, ...where });
    if ('maxCalls' in spec) return new FixedWindow({ ...spec, ...bounds, ...where });
    return new ConcurrencyLimit({ max: spec.concurrency, ...bounds });
  } catch (error) {
    if (error instanceof RangeError) throw new RangeError(`limits.${name}: ${error.message}`);
    if (error instanceof TypeError) throw new TypeError(`limits.${name}: ${error.message}`);
    throw error;
  }
}

/** The limiter of each method, resolved once per method name and cached. */
export class MethodLimits {
  private readonly byName = new Map<string, AnyLimiter>();
  private readonly fallback: AnyLimiter | undefined;

  /**
   * @param store the distributed store rate limits use unless their spec names one (keyed by
   *   method name); default: the embedded in-process store.
   * @throws TypeError | RangeError naming `limits.<method>` and the bad option.
   */
  constructor(config: LimitsConfig = {}, queue: QueueBounds = {}, store?: LimiterStore) {
    if (config === null || typeof config !== 'object') throw new TypeError('limits must be an object of method name → limit');
    for (const [name, spec] of Object.entries(config)) this.byName.set(name, build(name, spec, queue, store));
    this.fallback = this.byName.get('*');
  }

  /** The limiter for `method` (its own, else the default), or undefined if unlimited. */
  for(method: string): AnyLimiter | undefined {
    return this.byName.get(method) ?? this.fallback;
  }

  /** Every limiter, by configured name. */
  entries(): [string, AnyLimiter][] {
    return [...this.byName];
  }

  /** Descriptors to attach the same limiters in worker threads. */
  descriptors(): Record<string, LimiterDescriptor> {
    return Object.fromEntries([...this.byName].map(([name, l]) => [name, l.share()]));
  }

  /** The distributed stores the limits use (each once). */
  stores(): LimiterStore[] {
    const stores = new Set<LimiterStore>();
    for (const l of this.byName.values()) if (l.store !== undefined) stores.add(l.store);
    return [...stores];
  }

  /** Calls waiting over every limiter. */
  queued(): number {
    let n = 0;
    for (const l of this.byName.values()) n += l.queuedTotal;
    return n;
  }

  /** Gives back what a dead worker thread held of every limiter. */
  reclaimThread(threadId: number): void {
    for (const l of this.byName.values()) l.reclaimThread(threadId);
  }

  /** Rebuilds limits in a worker from {@link descriptors}. */
  static attach(descriptors: Record<string, LimiterDescriptor>): Record<string, AnyLimiter> {
    return Object.fromEntries(Object.entries(descriptors).map(([name, d]) => [name, attachLimiter(d)]));
  }
}
