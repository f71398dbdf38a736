/**
 * At most `maxCalls` calls start in each window of `periodMs`; a call that does not fit waits for
 * the next window with room instead of failing.
 *
 * Windows are counted from the limiter's creation (the EPOCH word), so every thread agrees on
 * where a window begins. State is one 64-bit word, `window << 32 | count`, changed by CAS: a call
 * in a newer window than the word's starts the count afresh, so no thread has to reset anything
 * at a boundary. The window number keeps its low 32 bits, so a reading's window is compared with
 * the state's modulo 2^32 (see {@link ageOf}): a state at most 2^16 windows ahead of the reading
 * is ahead (a reading from before it, which only explicit-time calls can make), anything else is
 * behind. So a limiter left idle for any time admits at once, except in a band of 2^16 windows
 * just short of each multiple of 2^32 idle windows (65 s after 49.7 days idle, with 1 ms windows),
 * where the state looks ahead and calls wait until the clock reaches it.
 *
 * Guarantee: calls admitted in any one window ≤ maxCalls, over every thread. As with any fixed
 * window, two adjacent windows can together admit 2 × maxCalls within a short span around their
 * boundary; use a {@link TokenBucket} where that matters.
 */
import type { Clock, Nanos } from '../clock.js';
import { resolveFixedWindowOptions, type FixedWindowOptions, type ResolvedFixedWindowOptions } from '../options.js';
import { LimiterLayout, SharedState } from '../shared/shared-state.js';
import type { AttachContext, LimiterDescriptor } from './limiter.js';
import { Limiter, attachedInstance } from './limiter.js';
import { RATE_PERMIT, RATE_PERMIT_PROMISE, type Permit } from './permit.js';
import { attachStore } from '../stores/store.js';
import { RemoteLimit } from '../stores/remote-limit.js';

const COUNT_MASK = 0xffffffffn;
const AHEAD_WINDOWS = 1n << 16n;
const WRAP = 1n << 32n;

/**
 * Windows from the state's window to reading window `w`: negative when the state is ahead (up to
 * 2^16 windows), else how far behind it is modulo 2^32. The state cannot run ahead of a reading by
 * more than a few windows on a real clock, so a larger gap means the window number wrapped while
 * the limiter was idle: taking that as "ahead" would refuse every call for 2^31 windows.
 */
function ageOf(w: bigint, s: bigint): bigint {
  const age = BigInt.asIntN(32, w - (s >> 32n));
  return age < -AHEAD_WINDOWS ? age + WRAP : age;
}

/** The state word for `count` calls in window `w` (low 32 bits of the window number). */
function pack(w: bigint, count: number): bigint {
  return BigInt.asIntN(64, (BigInt.asUintN(32, w) << 32n) | BigInt(count));
}

/** A fixed-window rate limit shared by every thread: `maxCalls` per `periodMs`. */
export class FixedWindow extends Limiter {
  /** Calls per window. */
  readonly maxCalls: number;
  /** Window length, ms. */
  readonly periodMs: number;
  /** Same as {@link maxCalls}: the most one call may ask for. */
  readonly capacity: number;
  protected readonly kind = 'fixed-window' as const;
  private readonly period: bigint;
  private readonly epoch: bigint;
  private readonly i64: BigInt64Array;
  // The window of the last clock reading, cached: BigInt division costs more than the rest of an
  // admission, and consecutive calls almost always fall in the same window.
  private cachedStart = 0n;
  private cachedEnd = 0n;
  private cachedWindow = -1n;
  private cachedFirst = 0n;
  private cachedFull = 0n;

  /**
   * @param options maxCalls, periodMs (default 1000), queue bounds.
   * @throws TypeError | RangeError naming the invalid option.
   */
  constructor(options: FixedWindowOptions);
  /** @internal */
  constructor(options: FixedWindowOptions, attach: AttachContext);
  constructor(options: FixedWindowOptions, attach?: AttachContext) {
    const o: ResolvedFixedWindowOptions = resolveFixedWindowOptions(options);
    super('fixed-window', o, attach);
    this.maxCalls = o.maxCalls;
    this.capacity = o.maxCalls;
    this.periodMs = o.periodMs;
    this.period = o.periodNs;
    this.i64 = this.state.i64;
    if (attach === undefined) {
      Atomics.store(this.i64, LimiterLayout.I64.EPOCH, this.clock.now());
      // Window 0 starts at EPOCH; the state starts in window −1, with nothing counted.
      Atomics.store(this.i64, LimiterLayout.I64.STATE, pack(-1n, 0));
    }
    this.epoch = Atomics.load(this.i64, LimiterLayout.I64.EPOCH);
    if (o.store !== undefined) {
      const spec = { kind: 'fixed-window' as const, periodMs: o.periodMs, maxCalls: o.maxCalls };
      this.remote = new RemoteLimit(o.store, o.key, spec, this.clock, () => this.state.queuedTokens(), o.maxCalls, attach?.remoteBuffer);
    }
  }

  /** Rebuilds, in this thread, the fixed window `descriptor` came from; see `TokenBucket.attach`. */
  static attach(descriptor: LimiterDescriptor, options: { clock?: Clock } = {}): FixedWindow {
    const existing = attachedInstance(descriptor.id);
    if (existing instanceof FixedWindow) return existing;
    const state = SharedState.from(descriptor.buffer, 'fixed-window');
    const r = descriptor.remote;
    const store = r === undefined ? {} : { store: attachStore(r.store), key: r.key };
    return new FixedWindow(
      { ...(descriptor.options as unknown as FixedWindowOptions), ...store, ...options },
      { state, id: descriptor.id, remoteBuffer: r?.buffer },
    );
  }

  /** Index of the window `now` falls in. */
  private windowOf(now: Nanos): bigint {
    if (now >= this.cachedStart && now < this.cachedEnd) return this.cachedWindow;
    const w = now >= this.epoch ? (now - this.epoch) / this.period : -1n;
    this.cachedWindow = w;
    this.cachedStart = this.epoch + w * this.period;
    this.cachedEnd = this.cachedStart + this.period;
    this.cachedFirst = pack(w, 0);
    this.cachedFull = pack(w, this.maxCalls);
    return w;
  }

  /** {@inheritDoc Limiter.tryAcquireAt} */
  tryAcquireAt(now: Nanos, n = 1): boolean {
    if (this.remote !== undefined) return this.remote.take(now, n);
    const w = this.windowOf(now);
    const i64 = this.i64;
    if (n === 1) {
      // Common case without the shifts and conversions below: a state word of this window is
      // numerically between pack(w, 0) and pack(w, maxCalls), so one add of 1n takes a call.
      const first = this.cachedFirst;
      const full = this.cachedFull;
      for (;;) {
        const s = Atomics.load(i64, LimiterLayout.I64.STATE);
        if (s < first || s > full) break; // another window: the general path decides
        if (s === full) return false;
        if (Atomics.compareExchange(i64, LimiterLayout.I64.STATE, s, s + 1n) === s) return true;
      }
    }
    for (;;) {
      const s = Atomics.load(i64, LimiterLayout.I64.STATE);
      const age = ageOf(w, s);
      let count: number;
      if (age === 0n) count = Number(s & COUNT_MASK) + n;
      else if (age > 0n) count = n;
      else return false; // a reading older than the state's window (explicit-time calls only)
      if (count > this.maxCalls) return false;
      if (Atomics.compareExchange(i64, LimiterLayout.I64.STATE, s, pack(w, count)) === s) return true;
    }
  }

  /** Calls counted in window `w` so far. */
  private countIn(w: bigint): number {
    const s = Atomics.load(this.i64, LimiterLayout.I64.STATE);
    return ageOf(w, s) === 0n ? Number(s & COUNT_MASK) : 0;
  }

  /** {@inheritDoc Limiter.estimateWaitAt} */
  estimateWaitAt(now: Nanos, n: number, queuedTokens: number): Nanos {
    if (this.remote !== undefined) return this.remote.estimateWaitAt(n, queuedTokens);
    const w = this.windowOf(now);
    // The call fits in the k-th window from now, where the current window's count plus the
    // demand ahead fill the windows before it.
    const demand = this.countIn(w) + queuedTokens + n;
    const k = Math.ceil(demand / this.maxCalls) - 1;
    if (k <= 0) return 0n;
    return this.epoch + (w + BigInt(k)) * this.period - now;
  }

  protected take(now: Nanos, n: number): boolean {
    return this.tryAcquireAt(now, n);
  }

  protected wakeAt(now: Nanos, n: number): Nanos | undefined {
    if (this.remote !== undefined) return this.remote.wakeAt(now, n);
    const w = this.windowOf(now);
    // A state ahead of this reading admits nothing before its own window: waking earlier would
    // find the same refusal and re-arm at once, a busy loop.
    const age = ageOf(w, Atomics.load(this.i64, LimiterLayout.I64.STATE));
    if (age < 0n) return this.epoch + (w - age) * this.period;
    return this.countIn(w) + n > this.maxCalls ? this.epoch + (w + 1n) * this.period : now;
  }

  protected makePermit(): Permit {
    return RATE_PERMIT;
  }

  // A settled promise can be awaited any number of times: every rate admission shares one.
  protected override admittedNow(): Promise<Permit> {
    return RATE_PERMIT_PROMISE;
  }

  protected describe(): Record<string, unknown> {
    return { maxCalls: this.maxCalls, periodMs: this.periodMs, maxQueued: this.maxQueued, maxWaitMs: this.maxWaitMs, maxThreads: this.state.slotCount };
  }
}
