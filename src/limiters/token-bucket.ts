/**
 * A token bucket kept as one 64-bit word, shared by every thread: GCRA (gcra.ts has the algorithm
 * and its bound, burst + rate × L over any interval of length L). T is rounded up to whole ns.
 */
import type { Nanos } from '../clock.js';
import { resolveTokenBucketOptions, type ResolvedTokenBucketOptions, type TokenBucketOptions } from '../options.js';
import type { AttachContext, LimiterDescriptor } from './limiter.js';
import { Limiter, attachedInstance } from './limiter.js';
import { RATE_PERMIT, RATE_PERMIT_PROMISE, type Permit } from './permit.js';
import { LimiterLayout, SharedState } from '../shared/shared-state.js';
import { gcraReadyAt, gcraTake } from './gcra.js';
import type { Clock } from '../clock.js';
import { attachStore } from '../stores/store.js';
import { RemoteLimit } from '../stores/remote-limit.js';

/** A rate limit of `rate` calls per `periodMs` with bursts up to `burst`, shared by every thread. */
export class TokenBucket extends Limiter {
  /** Tokens per period. */
  readonly rate: number;
  /** Period of `rate`, ms. */
  readonly periodMs: number;
  /** Bucket size: most tokens taken at one instant. */
  readonly burst: number;
  /** Same as {@link burst}: the most one call may ask for. */
  readonly capacity: number;
  protected readonly kind = 'token-bucket' as const;
  private readonly interval: bigint;
  private readonly tolerance: bigint;
  private readonly i64: BigInt64Array;

  /**
   * @param options rate, periodMs (default 1000), burst (default ceil(rate)), queue bounds.
   * @throws TypeError | RangeError naming the invalid option.
   */
  constructor(options: TokenBucketOptions);
  /** @internal */
  constructor(options: TokenBucketOptions, attach: AttachContext);
  constructor(options: TokenBucketOptions, attach?: AttachContext) {
    const o: ResolvedTokenBucketOptions = resolveTokenBucketOptions(options);
    super('token-bucket', o, attach);
    this.rate = o.rate;
    this.periodMs = o.periodMs;
    this.burst = o.burst;
    this.capacity = o.burst;
    this.interval = o.intervalNs;
    this.tolerance = o.intervalNs * BigInt(o.burst);
    this.i64 = this.state.i64;
    if (o.store !== undefined) {
      const spec = { kind: 'token-bucket' as const, intervalUs: (o.periodMs * 1000) / o.rate, burst: o.burst };
      this.remote = new RemoteLimit(o.store, o.key, spec, this.clock, () => this.state.queuedTokens(), o.burst, attach?.remoteBuffer);
    }
  }

  /**
   * Rebuilds, in this thread, the token bucket `descriptor` came from (its `share()`); both then
   * enforce one limit. Attaching twice in one thread returns the same instance.
   */
  static attach(descriptor: LimiterDescriptor, options: { clock?: Clock } = {}): TokenBucket {
    const existing = attachedInstance(descriptor.id);
    if (existing instanceof TokenBucket) return existing;
    const state = SharedState.from(descriptor.buffer, 'token-bucket');
    const r = descriptor.remote;
    const store = r === undefined ? {} : { store: attachStore(r.store), key: r.key };
    return new TokenBucket(
      { ...(descriptor.options as unknown as TokenBucketOptions), ...store, ...options },
      { state, id: descriptor.id, remoteBuffer: r?.buffer },
    );
  }

  /** {@inheritDoc Limiter.tryAcquireAt} */
  tryAcquireAt(now: Nanos, n = 1): boolean {
    if (this.remote !== undefined) return this.remote.take(now, n);
    return gcraTake(this.i64, LimiterLayout.I64.STATE, now, n === 1 ? this.interval : this.interval * BigInt(n), this.tolerance);
  }

  /** {@inheritDoc Limiter.estimateWaitAt} */
  estimateWaitAt(now: Nanos, n: number, queuedTokens: number): Nanos {
    if (this.remote !== undefined) return this.remote.estimateWaitAt(n, queuedTokens);
    const ready = gcraReadyAt(Atomics.load(this.i64, LimiterLayout.I64.STATE), queuedTokens + n, this.interval, this.tolerance);
    return ready > now ? ready - now : 0n;
  }

  protected take(now: Nanos, n: number): boolean {
    return this.tryAcquireAt(now, n);
  }

  protected wakeAt(now: Nanos, n: number): Nanos | undefined {
    if (this.remote !== undefined) return this.remote.wakeAt(now, n);
    const ready = gcraReadyAt(Atomics.load(this.i64, LimiterLayout.I64.STATE), n, this.interval, this.tolerance);
    return ready > now ? ready : now;
  }

  protected makePermit(): Permit {
    return RATE_PERMIT;
  }

  // A settled promise can be awaited any number of times: every rate admission shares one.
  protected override admittedNow(): Promise<Permit> {
    return RATE_PERMIT_PROMISE;
  }

  protected describe(): Record<string, unknown> {
    return {
      rate: this.rate,
      periodMs: this.periodMs,
      burst: this.burst,
      maxQueued: this.maxQueued,
      maxWaitMs: this.maxWaitMs,
      maxThreads: this.state.slotCount,
    };
  }
}
