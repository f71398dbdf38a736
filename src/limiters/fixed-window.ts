/**
 * At most `maxCalls` calls start in each window of `periodMs`; a call that does not fit waits for
 * the next window with room instead of failing.
 *
 * Windows are counted from the limiter's creation (the epoch, in shared memory), so every thread
 * agrees on where a window begins. State is one 64-bit word, `window << 32 | count`, changed by
 * CAS (with a version tag beside the count, below): a call
 * in a newer window than the word's starts the count afresh, so no thread has to reset anything
 * at a boundary. The window number keeps its low 32 bits, so a reading's window is compared with
 * the state's modulo 2^32 (see {@link ageOf}): a state at most 2^16 windows ahead of the reading
 * is ahead (a reading from before it, which only explicit-time calls can make), anything else is
 * behind. So a limiter left idle for any time admits at once, except in a band of 2^16 windows
 * just short of each multiple of 2^32 idle windows (65 s after 49.7 days idle, with 1 ms windows),
 * where the state looks ahead and calls wait until the clock reaches it.
 *
 * Guarantee: calls counted in any one window ≤ maxCalls, over every thread. A call is counted in
 * the window of its admission, except a waiter whose wake-up came late (wait-queue.ts): it counts
 * in a window that ended at most 2 ms ({@link WAKE_CREDIT_NS}) before its admission if that window
 * still had room, as it would have had its timer been on time; only windows shorter than a
 * timer's lateness lose calls without this (1 ms windows: 18 % of them went empty). A thread
 * stalled longer finds every window it missed beyond those 2 ms gone, and no call is counted in a
 * window from before a change of the limit. So calls starting in any interval [a, a + L] ≤
 * maxCalls × the windows that meet [a − 2 ms, a + L], and calls starting in one window ≤ maxCalls
 * plus the room the window before left to late waiters. As with any fixed window, two adjacent
 * windows can together admit 2 × maxCalls within a short span around their boundary; use a
 * {@link TokenBucket} where that matters.
 *
 * ## A limit that can change while every thread admits
 * The settings (maxCalls, period, and the epoch windows are counted from) live in two records in
 * shared memory, and the state word carries the version it was computed under, beside the count:
 *
 * ```
 * STATE = window << 32 | tag << 24 | count     tag: 8 bits, the settings' version (record tag & 1)
 * ```
 *
 * so maxCalls is at most 2^24 − 1. An admission takes the settings of STATE's tag, and a change
 * (`setLimit`, holding WRITER, limit-change.ts) installs new settings and the converted state in one
 * compare-and-swap of STATE to the next tag: an admission that loaded STATE before it fails its
 * compare-and-swap and retries under the new settings (token-bucket.ts says why the records read
 * this way are consistent). The window in progress at the change keeps its start and its count and
 * takes the new length; if it has already lasted longer than that, a new window starts at the
 * change. So every window, old or new, admits at most the larger of the two maxCalls, and changes
 * cannot reset a count more often than a window boundary would. The window in progress is
 * numbered one more than before, so STATE never returns to a word it held.
 */
import type { Clock, Nanos } from '../clock.js';
import {
  resolveFixedWindowOptions,
  resolveFixedWindowSetting,
  type FixedWindowOptions,
  type FixedWindowSetting,
  type ResolvedFixedWindowSetting,
} from '../options.js';
import { LimiterLayout, PARAMS_WORDS, paramsIndex, SharedState } from '../shared/shared-state.js';
import { defineLayout } from '../shared/layout.js';
import { WAKE_CREDIT_NS, type Waiter } from '../queue/wait-queue.js';
import type { AttachContext, LimiterDescriptor } from './limiter.js';
import { Limiter, attachedInstance } from './limiter.js';
import { changeLimit, LimitWatch } from './limit-change.js';
import { RATE_PERMIT, RATE_PERMIT_PROMISE, type Permit } from './permit.js';
import { attachStore } from '../stores/store.js';
import { RemoteLimit } from '../stores/remote-limit.js';

const COUNT_MASK = 0xffffffn;
const TAG_MASK = 0xff;
const AHEAD_WINDOWS = 1n << 16n;
const WRAP = 1n << 32n;

/**
 * One settings record of a fixed window (shared-state.ts keeps two, at LimiterLayout.I64.PARAMS):
 * 64-bit words, PERIOD_MS is Float64 in the same bytes.
 */
export const FixedWindowSettingsLayout = defineLayout('fixed window settings record', {
  BYTES: PARAMS_WORDS * 8,
  I32: {},
  I64: { PERIOD: 0, MAX_CALLS: 1, EPOCH: 2, PERIOD_MS: 3 },
});
const F = FixedWindowSettingsLayout.I64;

/** The settings of one version, as this thread uses them. */
interface Version {
  readonly tag: number;
  /** Window length, ns. */
  readonly period: bigint;
  readonly periodMs: number;
  readonly maxCalls: number;
  /** Window 0 of this version starts here. */
  readonly epoch: bigint;
}

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

/** The state word for `count` calls in window `w` (low 32 bits of the window number) under version `tag`. */
function pack(w: bigint, tag: number, count: number): bigint {
  return BigInt.asIntN(64, (BigInt.asUintN(32, w) << 32n) | BigInt(tag * 0x1000000 + count));
}

function tagOf(s: bigint): number {
  return Number((s >> 24n) & 0xffn);
}

function countOf(s: bigint): number {
  return Number(s & COUNT_MASK);
}

function writeRecord(state: SharedState, record: number, s: ResolvedFixedWindowSetting, epoch: bigint): void {
  Atomics.store(state.i64, paramsIndex(record, F.PERIOD), s.periodNs);
  Atomics.store(state.i64, paramsIndex(record, F.MAX_CALLS), BigInt(s.maxCalls));
  Atomics.store(state.i64, paramsIndex(record, F.EPOCH), epoch);
  state.f64[paramsIndex(record, F.PERIOD_MS)] = s.periodMs;
}

function readRecord(state: SharedState, tag: number): Version {
  const record = tag & 1;
  return {
    tag,
    period: Atomics.load(state.i64, paramsIndex(record, F.PERIOD)),
    periodMs: state.f64[paramsIndex(record, F.PERIOD_MS)]!,
    maxCalls: Number(Atomics.load(state.i64, paramsIndex(record, F.MAX_CALLS))),
    epoch: Atomics.load(state.i64, paramsIndex(record, F.EPOCH)),
  };
}

/** A fixed-window rate limit shared by every thread: `maxCalls` per `periodMs`. */
export class FixedWindow extends Limiter {
  protected readonly kind = 'fixed-window' as const;
  private readonly i64: BigInt64Array;
  /** The settings this thread last saw in STATE. */
  private v: Version;
  private readonly watch: LimitWatch;
  /** The settings' tag this thread's store fetches ask under. */
  private remoteTag: number;
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
    const o = resolveFixedWindowOptions(options);
    super('fixed-window', o, attach);
    this.i64 = this.state.i64;
    if (attach === undefined) {
      writeRecord(this.state, 0, o, this.clock.now());
      // Window 0 starts at the epoch; the state starts in window −1, with nothing counted.
      Atomics.store(this.i64, LimiterLayout.I64.STATE, pack(-1n, 0, 0));
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
      this.remote = new RemoteLimit(o.store, o.key, remoteSpec(v), this.clock, () => this.state.queuedTokens(), v.maxCalls, attach?.remoteBuffer);
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

  /** Calls per window (now: the latest `setLimit` in any thread). */
  get maxCalls(): number {
    return this.current().maxCalls;
  }

  /** Window length, ms. */
  get periodMs(): number {
    return this.current().periodMs;
  }

  /** Same as {@link maxCalls}: the most one call may ask for. */
  get capacity(): number {
    return this.current().maxCalls;
  }

  /**
   * Changes the limit for every thread sharing this window, at once and atomically (see the top of
   * fixed-window.ts): every window admits at most the larger of the old and new `maxCalls`, and no
   * waiting call is refused or dropped; waiting calls, in every thread, are timed again under the
   * new limit. Takes the constructor's limit options with its defaults (an omitted `periodMs` is
   * 1000 again). With a distributed store, this process fetches under the new limit from its next
   * fetch on (see `TokenBucket.setLimit`).
   * @throws TypeError | RangeError naming the invalid option; nothing changes then.
   */
  setLimit(setting: FixedWindowSetting): void {
    const s = resolveFixedWindowSetting(setting);
    changeLimit(this.state, () => this.install(s));
  }

  /** Index of the window `now` falls in, under this thread's settings. */
  private windowOf(now: Nanos): bigint {
    if (now >= this.cachedStart && now < this.cachedEnd) return this.cachedWindow;
    const v = this.v;
    const w = now >= v.epoch ? (now - v.epoch) / v.period : -1n;
    this.cachedWindow = w;
    this.cachedStart = v.epoch + w * v.period;
    this.cachedEnd = this.cachedStart + v.period;
    this.cachedFirst = pack(w, v.tag, 0);
    this.cachedFull = pack(w, v.tag, v.maxCalls);
    return w;
  }

  /** {@inheritDoc Limiter.tryAcquireAt} */
  tryAcquireAt(now: Nanos, n = 1): boolean {
    if (this.remote !== undefined) {
      this.syncRemote();
      return this.remote.take(now, n);
    }
    let w = this.windowOf(now);
    const i64 = this.i64;
    if (n === 1) {
      // Common case without the shifts and conversions below: a state word of this window and
      // version is numerically between pack(w, tag, 0) and pack(w, tag, maxCalls), so one add of
      // 1n takes a call.
      const first = this.cachedFirst;
      const full = this.cachedFull;
      for (;;) {
        const s = Atomics.load(i64, LimiterLayout.I64.STATE);
        if (s < first || s > full) break; // another window or version: the general path decides
        if (s === full) return false;
        if (Atomics.compareExchange(i64, LimiterLayout.I64.STATE, s, s + 1n) === s) return true;
      }
    }
    for (;;) {
      const s = Atomics.load(i64, LimiterLayout.I64.STATE);
      const v = this.v;
      if (tagOf(s) !== v.tag) {
        this.refresh(s);
        w = this.windowOf(now);
        continue;
      }
      const age = ageOf(w, s);
      let count: number;
      if (age === 0n) count = countOf(s) + n;
      else if (age > 0n) count = n;
      else return false; // a reading older than the state's window (explicit-time calls only)
      if (count > v.maxCalls) return false;
      if (Atomics.compareExchange(i64, LimiterLayout.I64.STATE, s, pack(w, v.tag, count)) === s) return true;
    }
  }

  /** Calls counted in window `w` so far. */
  private countIn(w: bigint): number {
    const s = Atomics.load(this.i64, LimiterLayout.I64.STATE);
    return ageOf(w, s) === 0n ? countOf(s) : 0;
  }

  /** {@inheritDoc Limiter.estimateWaitAt} */
  estimateWaitAt(now: Nanos, n: number, queuedTokens: number): Nanos {
    if (this.remote !== undefined) {
      this.syncRemote();
      return this.remote.estimateWaitAt(n, queuedTokens);
    }
    const v = this.current();
    const w = this.windowOf(now);
    // The call fits in the k-th window from now, where the current window's count plus the
    // demand ahead fill the windows before it.
    const demand = this.countIn(w) + queuedTokens + n;
    const k = Math.ceil(demand / v.maxCalls) - 1;
    if (k <= 0) return 0n;
    return v.epoch + (w + BigInt(k)) * v.period - now;
  }

  /** A waiter's take: a window it missed by at most the wake-up credit comes first. */
  protected take(now: Nanos, n: number): boolean {
    if (this.remote !== undefined) {
      this.syncRemote();
      return this.remote.take(now, n, true);
    }
    const w = this.windowOf(now);
    const v = this.v;
    const since = now - WAKE_CREDIT_NS;
    if (since < this.cachedStart && since >= v.epoch && this.takeMissed((since - v.epoch) / v.period, w, n, v)) return true;
    return this.tryAcquireAt(now, n);
  }

  /**
   * Counts `n` in the oldest window from `first` up to (not including) the current window `w`
   * that has room, provided the state has not moved past it and is still of version `v`; false
   * leaves the decision to the current window. Windows before the state's are closed: a window's
   * count only grows while the state is in it, so none ever exceeds maxCalls, and a change of the
   * limit starts its version's state in the window in progress, so none from before it is reached.
   */
  private takeMissed(first: bigint, w: bigint, n: number, v: Version): boolean {
    const i64 = this.i64;
    for (;;) {
      const s = Atomics.load(i64, LimiterLayout.I64.STATE);
      if (tagOf(s) !== v.tag) return false;
      const age = ageOf(first, s);
      let target = first;
      let count = n;
      if (age <= 0n) {
        target = first - age; // the state's window
        count = countOf(s) + n;
        if (count > v.maxCalls) {
          target++;
          count = n;
        }
      }
      if (target >= w) return false;
      if (Atomics.compareExchange(i64, LimiterLayout.I64.STATE, s, pack(target, v.tag, count)) === s) return true;
    }
  }

  protected wakeAt(now: Nanos, n: number): Nanos | undefined {
    if (this.remote !== undefined) {
      this.syncRemote();
      return this.remote.wakeAt(now, n);
    }
    const v = this.current();
    const w = this.windowOf(now);
    // A state ahead of this reading admits nothing before its own window: waking earlier would
    // find the same refusal and re-arm at once, a busy loop.
    const age = ageOf(w, Atomics.load(this.i64, LimiterLayout.I64.STATE));
    if (age < 0n) return v.epoch + (w - age) * v.period;
    return this.countIn(w) + n > v.maxCalls ? v.epoch + (w + 1n) * v.period : now;
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
    return { maxCalls: v.maxCalls, periodMs: v.periodMs, maxQueued: this.maxQueued, maxWaitMs: this.maxWaitMs, maxThreads: this.state.slotCount };
  }

  /** The current settings (those of STATE's tag). */
  private current(): Version {
    for (;;) {
      const s = Atomics.load(this.i64, LimiterLayout.I64.STATE);
      if (tagOf(s) === this.v.tag) return this.v;
      this.refresh(s);
    }
  }

  /** Takes the settings of `s`'s tag if STATE still carries it after reading them (token-bucket.ts). */
  private refresh(s: bigint): void {
    const tag = tagOf(s);
    const v = readRecord(this.state, tag);
    if (tagOf(Atomics.load(this.i64, LimiterLayout.I64.STATE)) !== tag) return;
    this.v = v;
    this.cachedStart = this.cachedEnd = 0n;
  }

  /**
   * Installs `s` (holding WRITER): the window in progress keeps its start and count under the new
   * length, or a new window starts now if it has lasted longer than that; one compare-and-swap of
   * STATE to the next tag, retried while admissions move STATE meanwhile.
   */
  private install(s: ResolvedFixedWindowSetting): void {
    for (;;) {
      const v = this.current();
      const state = Atomics.load(this.i64, LimiterLayout.I64.STATE);
      if (tagOf(state) !== v.tag) continue;
      const t = this.clock.now();
      const wt = t >= v.epoch ? (t - v.epoch) / v.period : -1n;
      const age = ageOf(wt, state);
      // The window in progress: the reading's, or the state's when that is ahead (explicit times).
      const inProgress = age < 0n ? wt - age : wt;
      const count = age > 0n ? 0 : countOf(state);
      const start = v.epoch + inProgress * v.period;
      const w = inProgress + 1n;
      const continues = t - start < s.periodNs;
      const tag = (v.tag + 1) & TAG_MASK;
      writeRecord(this.state, tag & 1, s, (continues ? start : t) - w * s.periodNs);
      if (Atomics.compareExchange(this.i64, LimiterLayout.I64.STATE, state, pack(w, tag, continues ? count : 0)) === state) {
        this.refresh(Atomics.load(this.i64, LimiterLayout.I64.STATE));
        return;
      }
    }
  }

  /** With a store: the fetches of this thread ask under the current settings. */
  private syncRemote(): void {
    const v = this.current();
    if (v.tag === this.remoteTag) return;
    (this.remote as RemoteLimit).setSpec(remoteSpec(v), v.maxCalls);
    this.remoteTag = v.tag;
  }
}

function remoteSpec(v: Version): { kind: 'fixed-window'; periodMs: number; maxCalls: number } {
  return { kind: 'fixed-window', periodMs: v.periodMs, maxCalls: v.maxCalls };
}
