/**
 * A token bucket kept as one 64-bit word, shared by every thread: GCRA (gcra.ts has the algorithm
 * and its bound: burst + rate × L over any interval of length L, and burst + rate × (L + λ) once
 * waiters released by late timers are counted at the instant they were due, λ = max(T, 2 ms)).
 * T is rounded up to whole ns.
 *
 * ## A limit that can change while every thread admits
 * The settings (T, b·T, rate, period, burst) live in shared memory too, in two records, and the
 * state word says which one it was computed under:
 *
 * ```
 * STATE = tag << 56 | (TAT − base)       tag: 8 bits, the settings' version; the record is tag & 1
 * ```
 *
 * An admission loads STATE, takes the settings of its tag (cached per thread while the tag stays
 * the same), computes the next TAT and compare-and-swaps STATE. A change (`setLimit`, holding the
 * WRITER word, limit-change.ts) writes the record that is not current, converts the debt to the new
 * settings (gcraConvertDebt in gcra.ts, where the bound across the change is proved) and installs
 * both with one compare-and-swap of STATE to the next tag. So no admission ever combines a TAT of
 * one version with the settings of another: one that loaded STATE before the change fails its
 * compare-and-swap (the tag moved) and retries under the new settings. A record is rewritten only
 * two versions later, so one read while STATE still carries its tag is consistent; a reader checks
 * that after reading it. The one way for a stale compare-and-swap to succeed is STATE coming back to
 * the very word it loaded, which takes 256 changes while that thread is between two instructions
 * and then the same TAT to the nanosecond.
 *
 * Time in the word is counted from the record's `base` in 56 bits (2.28 years). A change moves the
 * base to its own instant once the old one is 2^54 ns (208 days) behind, and an admission that
 * finds the word 2^55 ns past the base installs the same settings with a new base, so a bucket
 * never runs out of its span; settings are bounded to a span (burst × T) of 2^52 ns.
 */
import type { Nanos } from '../clock.js';
import {
  resolveTokenBucketOptions,
  resolveTokenBucketSetting,
  type ResolvedTokenBucketSetting,
  type TokenBucketOptions,
  type TokenBucketSetting,
} from '../options.js';
import type { AttachContext, LimiterDescriptor } from './limiter.js';
import { Limiter, attachedInstance } from './limiter.js';
import { RATE_PERMIT, RATE_PERMIT_PROMISE, type Permit } from './permit.js';
import { LimiterLayout, PARAMS_WORDS, paramsIndex, SharedState } from '../shared/shared-state.js';
import { defineLayout } from '../shared/layout.js';
import { gcraConvertDebt, gcraCredit, gcraReadyAt } from './gcra.js';
import type { Clock } from '../clock.js';
import type { Waiter } from '../queue/wait-queue.js';
import { attachStore } from '../stores/store.js';
import { RemoteLimit } from '../stores/remote-limit.js';
import { changeLimit, LimitWatch, tryChangeLimit } from './limit-change.js';

const TAG_SHIFT = 56n;
const TAG_MASK = 0xff;
const SPAN = 1n << TAG_SHIFT;
/** A change moves the base once it is this far behind. */
const MOVE_BASE_AFTER = 1n << 54n;
/** An admission this far past the base moves it (by installing the same settings). */
const REBASE_AT = 1n << 55n;

/**
 * One settings record of a token bucket (shared-state.ts keeps two, at LimiterLayout.I64.PARAMS):
 * 64-bit words, RATE and PERIOD_MS are Float64 in the same bytes.
 */
export const TokenBucketSettingsLayout = defineLayout('token bucket settings record', {
  BYTES: PARAMS_WORDS * 8,
  I32: {},
  I64: { INTERVAL: 0, TOLERANCE: 1, BASE: 2, RATE: 3, PERIOD_MS: 4, BURST: 5 },
});
const F = TokenBucketSettingsLayout.I64;

/** The settings of one version, as this thread uses them. */
interface Version {
  readonly tag: number;
  /** The first state word of this tag, and the first past it. */
  readonly lo: bigint;
  readonly hi: bigint;
  /** state word − TAT. */
  readonly offset: bigint;
  /** A state word from here on moves the base. */
  readonly rebaseAt: bigint;
  readonly base: bigint;
  readonly interval: bigint;
  readonly tolerance: bigint;
  readonly rate: number;
  readonly periodMs: number;
  readonly burst: number;
}

/** The first state word of `tag`. */
function tagStart(tag: number): bigint {
  return BigInt.asIntN(64, BigInt(tag) << TAG_SHIFT);
}

function tagOf(word: bigint): number {
  return Number(BigInt.asUintN(64, word) >> TAG_SHIFT);
}

function writeRecord(state: SharedState, record: number, s: ResolvedTokenBucketSetting, base: bigint): void {
  const i64 = state.i64;
  Atomics.store(i64, paramsIndex(record, F.INTERVAL), s.intervalNs);
  Atomics.store(i64, paramsIndex(record, F.TOLERANCE), s.intervalNs * BigInt(s.burst));
  Atomics.store(i64, paramsIndex(record, F.BASE), base);
  Atomics.store(i64, paramsIndex(record, F.BURST), BigInt(s.burst));
  state.f64[paramsIndex(record, F.RATE)] = s.rate;
  state.f64[paramsIndex(record, F.PERIOD_MS)] = s.periodMs;
}

function readRecord(state: SharedState, tag: number): Version {
  const i64 = state.i64;
  const record = tag & 1;
  const lo = tagStart(tag);
  const base = Atomics.load(i64, paramsIndex(record, F.BASE));
  return {
    tag,
    lo,
    hi: lo + SPAN,
    offset: lo - base,
    rebaseAt: lo + REBASE_AT,
    base,
    interval: Atomics.load(i64, paramsIndex(record, F.INTERVAL)),
    tolerance: Atomics.load(i64, paramsIndex(record, F.TOLERANCE)),
    rate: state.f64[paramsIndex(record, F.RATE)]!,
    periodMs: state.f64[paramsIndex(record, F.PERIOD_MS)]!,
    burst: Number(Atomics.load(i64, paramsIndex(record, F.BURST))),
  };
}

/** A rate limit of `rate` calls per `periodMs` with bursts up to `burst`, shared by every thread. */
export class TokenBucket extends Limiter {
  protected readonly kind = 'token-bucket' as const;
  private readonly i64: BigInt64Array;
  /** The settings this thread last saw in STATE. */
  private v: Version;
  private readonly watch: LimitWatch;
  /** The settings' tag this thread's store fetches ask under. */
  private remoteTag: number;

  /**
   * @param options rate, periodMs (default 1000), burst (default ceil(rate)), queue bounds.
   * @throws TypeError | RangeError naming the invalid option.
   */
  constructor(options: TokenBucketOptions);
  /** @internal */
  constructor(options: TokenBucketOptions, attach: AttachContext);
  constructor(options: TokenBucketOptions, attach?: AttachContext) {
    const o = resolveTokenBucketOptions(options);
    super('token-bucket', o, attach);
    this.i64 = this.state.i64;
    if (attach === undefined) {
      // TAT = base: a full bucket, for readings up to 208 days before now too (explicit-time
      // callers may pass any), as a bucket whose TAT starts at 0 would be.
      writeRecord(this.state, 0, o, this.clock.now() - MOVE_BASE_AFTER);
      Atomics.store(this.i64, LimiterLayout.I64.STATE, tagStart(0));
    }
    this.v = readRecord(this.state, 0);
    const v = this.current();
    this.watch = new LimitWatch(
      this.state.i32,
      () => this.size > 0,
      () => this.pumpQueue(),
    );
    this.remoteTag = v.tag;
    if (o.store !== undefined) {
      this.remote = new RemoteLimit(o.store, o.key, remoteSpec(v), this.clock, () => this.state.queuedTokens(), v.burst, attach?.remoteBuffer);
    }
  }

  /**
   * Rebuilds, in this thread, the token bucket `descriptor` came from (its `share()`); both then
   * enforce one limit, and a `setLimit` in either applies to both. Attaching twice in one thread
   * returns the same instance.
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

  /** Tokens per period (now: the latest `setLimit` in any thread). */
  get rate(): number {
    return this.current().rate;
  }

  /** Period of `rate`, ms. */
  get periodMs(): number {
    return this.current().periodMs;
  }

  /** Bucket size: most tokens taken at one instant. */
  get burst(): number {
    return this.current().burst;
  }

  /** Same as {@link burst}: the most one call may ask for. */
  get capacity(): number {
    return this.current().burst;
  }

  /**
   * Changes the limit for every thread sharing this bucket, at once and atomically: no interval
   * sees more admissions than the larger of the old and the new bound allows (gcra.ts), and no
   * waiting call is refused or dropped. Waiting calls, in every thread, are timed again under the
   * new limit: a raise releases them as soon as the new bucket holds their tokens. Takes the
   * constructor's limit options with its defaults (an omitted `burst` is `ceil(rate)` again).
   * With a distributed store, this process asks for tokens under the new limit from its next
   * fetch on; every process sharing the limit must be given it (see the README).
   * @throws TypeError | RangeError naming the invalid option; nothing changes then.
   */
  setLimit(setting: TokenBucketSetting): void {
    const s = resolveTokenBucketSetting(setting);
    changeLimit(this.state, () => this.install(s, false));
  }

  /** {@inheritDoc Limiter.tryAcquireAt} */
  tryAcquireAt(now: Nanos, n = 1): boolean {
    if (this.remote !== undefined) {
      this.syncRemote();
      return this.remote.take(now, n);
    }
    return this.step(now, n, false);
  }

  /** {@inheritDoc Limiter.estimateWaitAt} */
  estimateWaitAt(now: Nanos, n: number, queuedTokens: number): Nanos {
    if (this.remote !== undefined) {
      this.syncRemote();
      return this.remote.estimateWaitAt(n, queuedTokens);
    }
    const v = this.current();
    // A TAT in the past is a full bucket now: calls still waiting after a late wake-up take their
    // tokens from now on, so counting from that TAT would promise this call a wait they will use.
    const tat = Atomics.load(this.i64, LimiterLayout.I64.STATE) - v.offset;
    const ready = gcraReadyAt(tat > now ? tat : now, queuedTokens + n, v.interval, v.tolerance);
    return ready > now ? ready - now : 0n;
  }

  /** A waiter's take: with the wake-up credit (gcra.ts). */
  protected take(now: Nanos, n: number): boolean {
    if (this.remote !== undefined) {
      this.syncRemote();
      return this.remote.take(now, n, true);
    }
    return this.step(now, n, true);
  }

  protected wakeAt(now: Nanos, n: number): Nanos | undefined {
    if (this.remote !== undefined) {
      this.syncRemote();
      return this.remote.wakeAt(now, n);
    }
    const v = this.current();
    const ready = gcraReadyAt(Atomics.load(this.i64, LimiterLayout.I64.STATE), n, v.interval, v.tolerance) - v.offset;
    return ready > now ? ready : now;
  }

  /** While calls of this thread wait, a change of the limit in any thread times them again. */
  protected override headChanged(head: Waiter | undefined): void {
    super.headChanged(head);
    if (head !== undefined) this.watch.arm();
  }

  protected makePermit(): Permit {
    return RATE_PERMIT;
  }

  // A settled promise can be awaited any number of times: every rate admission shares one.
  protected override admittedNow(): Promise<Permit> {
    return RATE_PERMIT_PROMISE;
  }

  protected describe(): Record<string, unknown> {
    const v = this.current();
    return {
      rate: v.rate,
      periodMs: v.periodMs,
      burst: v.burst,
      maxQueued: this.maxQueued,
      maxWaitMs: this.maxWaitMs,
      maxThreads: this.state.slotCount,
    };
  }

  /**
   * The GCRA step (gcra.ts) with TAT and now both moved by the version's offset; a waiter's counts
   * from up to the wake-up credit back, but never from before the version's base, which its word
   * cannot hold.
   */
  private step(now: Nanos, n: number, waiter: boolean): boolean {
    const i64 = this.i64;
    for (;;) {
      const w = Atomics.load(i64, LimiterLayout.I64.STATE);
      const v = this.v;
      if (w < v.lo || w >= v.hi) {
        this.refresh(w);
        continue;
      }
      const at = now + v.offset;
      let since = at;
      if (waiter) {
        since = at - gcraCredit(v.interval);
        if (since < v.lo) since = v.lo;
      }
      const next = (w > since ? w : since) + (n === 1 ? v.interval : v.interval * BigInt(n));
      if (next - at > v.tolerance) return false;
      if (next >= v.rebaseAt && this.rebase()) continue;
      if (Atomics.compareExchange(i64, LimiterLayout.I64.STATE, w, next) === w) return true;
    }
  }

  /** The current settings (those of STATE's tag). */
  private current(): Version {
    for (;;) {
      const w = Atomics.load(this.i64, LimiterLayout.I64.STATE);
      if (w >= this.v.lo && w < this.v.hi) return this.v;
      this.refresh(w);
    }
  }

  /**
   * Takes the settings of `word`'s tag, if its record was not rewritten while being read (STATE
   * still carries the tag); else keeps the old ones, and the caller loads STATE again.
   */
  private refresh(word: bigint): void {
    const tag = tagOf(word);
    const v = readRecord(this.state, tag);
    if (tagOf(Atomics.load(this.i64, LimiterLayout.I64.STATE)) === tag) this.v = v;
  }

  /**
   * Installs `s` (holding WRITER): converts the debt at this instant and moves STATE to the next
   * tag in one compare-and-swap, retried while admissions move STATE meanwhile.
   */
  private install(s: ResolvedTokenBucketSetting, moveBase: boolean): void {
    for (;;) {
      const v = this.current();
      const w = Atomics.load(this.i64, LimiterLayout.I64.STATE);
      if (w < v.lo || w >= v.hi) continue;
      const t = this.clock.now();
      const tat = w - v.offset;
      const debt = gcraConvertDebt(tat > t ? tat - t : 0n, v.interval, v.burst, s.intervalNs, s.burst);
      const base = moveBase || t < v.base || t - v.base >= MOVE_BASE_AFTER ? t : v.base;
      const tag = (v.tag + 1) & TAG_MASK;
      writeRecord(this.state, tag & 1, s, base);
      if (Atomics.compareExchange(this.i64, LimiterLayout.I64.STATE, w, tagStart(tag) + (t + debt - base)) === w) {
        this.refresh(Atomics.load(this.i64, LimiterLayout.I64.STATE));
        return;
      }
    }
  }

  /** Moves the base (same settings) unless another thread is changing the limit right now. */
  private rebase(): boolean {
    const v = this.v;
    const same = { rate: v.rate, periodMs: v.periodMs, burst: v.burst, intervalNs: v.interval };
    return tryChangeLimit(this.state, () => this.install(same, true));
  }

  /** With a store: the fetches of this thread ask under the current settings. */
  private syncRemote(): void {
    const v = this.current();
    if (v.tag === this.remoteTag) return;
    (this.remote as RemoteLimit).setSpec(remoteSpec(v), v.burst);
    this.remoteTag = v.tag;
  }
}

function remoteSpec(v: Version): { kind: 'token-bucket'; intervalUs: number; burst: number } {
  return { kind: 'token-bucket', intervalUs: (v.periodMs * 1000) / v.rate, burst: v.burst };
}
