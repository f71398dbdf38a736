/**
 * The seed-style facade: `new RateLimiter({ maxCalls, periodMs })`, and calls that queue instead
 * of failing, through `acquire`, `wrap(fn)` or the `@limiter.limit` method decorator.
 */
import type { Clock } from './clock.js';
import { FixedWindow } from './limiters/fixed-window.js';
import type { LimiterDescriptor } from './limiters/limiter.js';
import type { Permit } from './limiters/permit.js';
import { TokenBucket } from './limiters/token-bucket.js';
import { resolveRateLimiterOptions, resolveRateLimiterSetting, type AcquireOptions, type RateLimiterOptions, type RateLimiterSetting } from './options.js';

/** What {@link RateLimiter.share} returns: the underlying limiter's descriptor plus the facade's choice. */
export interface RateLimiterDescriptor {
  /** The algorithm's own descriptor. */
  readonly limiter: LimiterDescriptor;
}

/**
 * A rate limit on calls: `maxCalls` per `periodMs`, calls over it wait for their turn.
 *
 * @example
 * ```ts
 * const limiter = new RateLimiter({ maxCalls: 100, periodMs: 60_000 });
 * const fetchUser = limiter.wrap((id: string) => api.get(id));   // calls queue
 * class Client { @limiter.limit async send(msg: string) { ... } }
 * ```
 */
export class RateLimiter {
  /** The algorithm doing the work (shared memory, queue, events). */
  readonly limiter: TokenBucket | FixedWindow;

  /**
   * @throws TypeError | RangeError naming the invalid option.
   */
  constructor(options: RateLimiterOptions);
  /** @internal */
  constructor(options: RateLimiterOptions, limiter: TokenBucket | FixedWindow);
  constructor(options: RateLimiterOptions, limiter?: TokenBucket | FixedWindow) {
    const resolved = resolveRateLimiterOptions(options);
    this.limiter =
      limiter ??
      (resolved.algorithm === 'fixed-window'
        ? new FixedWindow(resolved.limiter as ConstructorParameters<typeof FixedWindow>[0])
        : new TokenBucket(resolved.limiter as ConstructorParameters<typeof TokenBucket>[0]));
    if (resolved.onLimited !== undefined) this.limiter.on('limited', resolved.onLimited);
  }

  /** Rebuilds the limiter in another thread from {@link share}'s descriptor; both enforce one limit. */
  static attach(descriptor: RateLimiterDescriptor, options: { clock?: Clock; onLimited?: RateLimiterOptions['onLimited'] } = {}): RateLimiter {
    const d = descriptor?.limiter;
    const attachOptions = { clock: options.clock };
    const limiter = d?.kind === 'fixed-window' ? FixedWindow.attach(d, attachOptions) : TokenBucket.attach(d, attachOptions);
    const o =
      limiter instanceof FixedWindow
        ? { maxCalls: limiter.maxCalls, periodMs: limiter.periodMs, algorithm: 'fixed-window' as const }
        : { maxCalls: limiter.rate, periodMs: limiter.periodMs, burst: limiter.burst };
    return new RateLimiter({ ...o, ...(options.onLimited ? { onLimited: options.onLimited } : {}) }, limiter);
  }

  /** Waits for a token; see `Limiter.acquire`. */
  acquire(n = 1, options?: AcquireOptions): Promise<Permit> {
    return this.limiter.acquire(n, options);
  }

  /** Takes a token only if one is available now. */
  tryAcquire(n = 1): boolean {
    return this.limiter.tryAcquire(n);
  }

  /**
   * Changes the limit to `maxCalls` per `periodMs` (and `burst`, token bucket only) for every
   * thread sharing it, at once: the wrapped limiter's `setLimit` (`TokenBucket.setLimit`,
   * `FixedWindow.setLimit`: bounded across the change by the larger of the two limits, no waiting
   * call refused, waiting calls timed again under the new limit). Takes the constructor's limit
   * options, validated the same way and with its defaults: an omitted `periodMs` is 1000 again, an
   * omitted `burst` is `maxCalls` again. The algorithm stays as constructed.
   * @throws TypeError | RangeError naming the invalid option; nothing changes then.
   */
  setLimit(setting: RateLimiterSetting): void {
    const limiter = this.limiter;
    if (limiter instanceof FixedWindow) limiter.setLimit(resolveRateLimiterSetting(setting, 'fixed-window'));
    else limiter.setLimit(resolveRateLimiterSetting(setting, 'token-bucket'));
  }

  /** Runs `task` at the moment it is admitted; see `Limiter.run`. */
  run<T>(task: () => T | PromiseLike<T>, options?: AcquireOptions): Promise<T> {
    return this.limiter.run(task, 1, options);
  }

  /**
   * Returns a function with `fn`'s parameters whose every call waits for a token, then runs `fn`
   * (with the same `this`) and resolves with its result.
   */
  wrap<A extends unknown[], R>(fn: (...args: A) => R, options?: AcquireOptions): (...args: A) => Promise<Awaited<R>> {
    if (typeof fn !== 'function') throw new TypeError('wrap(fn): fn must be a function');
    const limiter = this.limiter;
    return function (this: unknown, ...args: A): Promise<Awaited<R>> {
      return limiter.run(() => fn.apply(this, args), 1, options) as Promise<Awaited<R>>;
    };
  }

  /**
   * A TC39 method decorator: `@limiter.limit` makes every call of the method wait for a token.
   * The decorated method returns a promise of its original result.
   */
  readonly limit = <This, A extends unknown[], R>(
    method: (this: This, ...args: A) => R,
    context: ClassMethodDecoratorContext<This, (this: This, ...args: A) => R>,
  ): ((this: This, ...args: A) => Promise<Awaited<R>>) => {
    if (context.kind !== 'method') throw new TypeError('@limit decorates methods only');
    return this.wrap(method);
  };

  /** A structured-cloneable descriptor for {@link RateLimiter.attach} in another thread. */
  share(): RateLimiterDescriptor {
    return { limiter: this.limiter.share() };
  }
}
