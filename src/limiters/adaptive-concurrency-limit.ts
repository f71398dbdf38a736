/**
 * A concurrency limit that sets itself from the latency of its permits, one limit for every thread.
 *
 * Admission, queueing and the hand-off between threads are {@link PermitLimit}'s, unchanged: the
 * limit is the LIMIT word it obeys, moved with `changeLimit` (one atomic add on AVAILABLE), so an
 * admission is judged against the limit in force at its instant and calls over it queue. This
 * module adds the measuring: each permit's latency, from admission to release, is a sample; every
 * thread adds its samples to one accumulator in shared memory; at the end of each window one
 * thread, elected by CAS, turns the window into the next limit (`adaptive-gradient.ts` says how,
 * and why those constants).
 *
 * Region after the thread table ({@link AdaptiveLayout}; byte offsets from `SharedState.regionByte`):
 *
 * ```
 *  0 i64 WINDOW_START   clock time the current window began; the thread whose CAS moves it to
 *                       its own time closes the window (one per window)
 *  8 i64 SAMPLES        the window's samples: count << 40 | sum of latencies in µs, one atomic add
 *                       per sample, read and zeroed by one atomic exchange, so a sample is counted
 *                       whole in exactly one window
 * 16 i64 PROBE_SAMPLES  the same, for the no-load measurement
 * 24 i64 PROBE_START    samples admitted at or after it count as no-load (INT64 max while draining)
 * 32 i64 NEXT_PROBE     clock time the next no-load measurement is due
 * 40 i64 PROBE_ENTERED  clock time the current measurement began (its duration spaces the next)
 * 48 i32 PHASE          0 normal, 1 draining (limit at minLimit, older permits still held),
 *                       2 measuring (at most minLimit held since PROBE_START)
 * 52 i32 ESTIMATE       the algorithm's limit in thousandths: fractions add up over windows;
 *                       LIMIT is its whole part (outside a measurement)
 * 56 i32 NO_LOAD_US     the no-load latency, µs (0 before the first measurement)
 * 60 i32 AT_MIN         windows in a row that ended at minLimit showing queueing
 * 64 i32 QUIET          windows in a row without queueing (they widen the growth step)
 * 128 i32 × 32 PROBE_US the first 32 no-load samples of the current measurement, µs (0: not yet
 *                       written), in the order their adds to PROBE_SAMPLES counted them
 * ```
 *
 * Why this is correct without a lock:
 * - **One limit, exact at every admission**: LIMIT and AVAILABLE change only through
 *   `changeLimit`; `PermitLimit` documents why in-flight after an admission never exceeds the
 *   limit in force at that instant, whoever moves the limit and when.
 * - **Every sample counted once**: a sample is one atomic add of (1, µs) to one word, a window is
 *   one atomic exchange of that word; a sample added after the exchange belongs to the next window.
 * - **One update per window**: only the thread whose CAS moves WINDOW_START from the value it read
 *   updates, and the next window cannot close before `windowMs` later; a window's update moves
 *   LIMIT once (to the new estimate, or to minLimit when a measurement starts), so LIMIT changes
 *   at most once per `windowMs`. The updater writes only if WINDOW_START still holds its own time,
 *   so a thread suspended for a whole window between its election and its write cannot overwrite
 *   a newer window's limit (short of being suspended between that check and the write itself:
 *   then its limit, one window old, stands until the next window).
 * - **No-load samples ran at no load**: a measurement first lowers LIMIT to minLimit, then sets
 *   PHASE to draining. The first thread that sees AVAILABLE ≥ 0 while draining (every held permit,
 *   older ones included, now fits within minLimit) switches to measuring and only then writes
 *   PROBE_START, a clock time read after that observation; until then PROBE_START is INT64 max
 *   and nothing counts. A call's admission time is read before it is admitted (before the fast
 *   path's CAS, or before its queue takes the permits granted to it), so a sample whose admission
 *   time is ≥ PROBE_START started after the drain, and from then until the measurement ends at
 *   most minLimit permits were held (PHASE goes back to normal before the limit is raised; a
 *   release that still saw "measuring" had its latency read before it looked).
 *
 * A window needs at least `minSamples` samples and `windowMs`; with no releases nothing changes
 * (there is nothing to learn). Permits taken with `tryAcquire` have no permit object, so they give
 * no sample.
 */
import type { Clock, Nanos } from '../clock.js';
import { resolveAdaptiveConcurrencyLimitOptions, type AdaptiveConcurrencyLimitOptions, type ResolvedAdaptiveConcurrencyLimitOptions } from '../options.js';
import { defineLayout } from '../shared/layout.js';
import { ALGORITHM_REGION_BYTES, LimiterLayout, SharedState } from '../shared/shared-state.js';
import { nextLimit } from './adaptive-gradient.js';
import { PermitLimit } from './concurrency-limit.js';
import type { AttachContext, LimiterDescriptor } from './limiter.js';
import { attachedInstance } from './limiter.js';
import { ReleasablePermit, type Permit } from './permit.js';

/** No-load samples kept one by one: their median is the no-load latency. */
const PROBE_KEPT = 32;

/** The adaptive limit's region after the thread table (fields described at the top of this module). */
export const AdaptiveLayout = defineLayout('adaptive concurrency region', {
  BYTES: ALGORITHM_REGION_BYTES,
  I32: { PHASE: 12, ESTIMATE: 13, NO_LOAD_US: 14, AT_MIN: 15, QUIET: 16, PROBE_US: 32 },
  I64: { WINDOW_START: 0, SAMPLES: 1, PROBE_SAMPLES: 2, PROBE_START: 3, NEXT_PROBE: 4, PROBE_ENTERED: 5 },
  SPANS: { PROBE_US: PROBE_KEPT },
});

const NORMAL = 0;
const DRAINING = 1;
const MEASURING = 2;

/** Samples are packed as count << 40 | µs: one add counts a sample whole. */
const COUNT_SHIFT = 40n;
const ONE_SAMPLE = 1n << COUNT_SHIFT;
const SUM_MASK = ONE_SAMPLE - 1n;
/** One sample is at most 2^31 µs (36 min); a window closes early at 2^20 samples or 2^39 µs, far from the packing's limits. */
const MAX_SAMPLE_US = 2 ** 31;
const CLOSE_AT_COUNT = 2 ** 20;
const CLOSE_AT_SUM_US = 2 ** 39;
const NEVER = 0x7fffffffffffffffn;
/** Envoy's rule: this many windows in a row at minLimit with queueing re-measure the no-load latency at once. */
const AT_MIN_WINDOWS = 5;
/** Measurements are spaced by the interval plus up to this fraction of it at random. */
const PROBE_JITTER = 0.15;
/** ... and by at least this many times the previous measurement's duration (at most 5 % of the time at minLimit). */
const PROBE_SPACING = 20;
/** Windows after a measurement that lowered the no-load latency by more than the tolerance before the next. */
const RECHECK_WINDOWS = 10;

/**
 * A concurrency limit shared by every thread that moves by itself between `minLimit` and
 * `maxLimit`: up while the latency of its permits stays at the downstream's no-load latency, down
 * when it grows (the downstream is queueing). Same calls as {@link ConcurrencyLimit}: calls over
 * the current limit queue.
 */
export class AdaptiveConcurrencyLimit extends PermitLimit {
  /** Lowest the limit goes. */
  readonly minLimit: number;
  /** Highest the limit goes. */
  readonly maxLimit: number;
  /** The most one call may ask for: `minLimit`, the most the limit always allows. */
  readonly capacity: number;
  protected readonly kind = 'adaptive-concurrency' as const;
  private readonly options: ResolvedAdaptiveConcurrencyLimitOptions;
  private readonly i64: BigInt64Array;
  /** Index of the region's first word in the BigInt64 view and in the Int32 view. */
  private readonly r64: number;
  private readonly r32: number;
  private readonly windowNs: bigint;
  /** Clock time read before the admission just made (fast path or queue); its permit's start. */
  private admittedAt: Nanos = 0n;

  /**
   * @param options minLimit, maxLimit, initialLimit, the algorithm's settings, queue bounds; all optional.
   * @throws TypeError | RangeError naming the invalid option.
   */
  constructor(options?: AdaptiveConcurrencyLimitOptions);
  /** @internal */
  constructor(options: AdaptiveConcurrencyLimitOptions, attach: AttachContext);
  constructor(options: AdaptiveConcurrencyLimitOptions = {}, attach?: AttachContext) {
    const o = resolveAdaptiveConcurrencyLimitOptions(options);
    // A new limit starts by measuring the no-load latency, at minLimit.
    super('adaptive-concurrency', o, o.minLimit, attach);
    this.options = o;
    this.minLimit = o.minLimit;
    this.maxLimit = o.maxLimit;
    this.capacity = o.minLimit;
    this.i64 = this.state.i64;
    this.r64 = this.state.regionByte / 8;
    this.r32 = this.state.regionByte / 4;
    this.windowNs = BigInt(Math.round(o.windowMs * 1e6));
    if (attach === undefined) {
      const now = this.clock.now();
      Atomics.store(this.i32, this.r32 + AdaptiveLayout.I32.ESTIMATE, o.initialLimit * 1000);
      Atomics.store(this.i64, this.r64 + AdaptiveLayout.I64.WINDOW_START, now);
      this.enterProbe(now);
    }
  }

  /** Rebuilds, in this thread, the adaptive limit `descriptor` came from; see `TokenBucket.attach`. */
  static attach(descriptor: LimiterDescriptor, options: { clock?: Clock } = {}): AdaptiveConcurrencyLimit {
    const existing = attachedInstance(descriptor.id);
    if (existing instanceof AdaptiveConcurrencyLimit) return existing;
    const state = SharedState.from(descriptor.buffer, 'adaptive-concurrency');
    return new AdaptiveConcurrencyLimit({ ...(descriptor.options as AdaptiveConcurrencyLimitOptions), ...options }, { state, id: descriptor.id });
  }

  /** The no-load latency the limit is judged against, ms; undefined until first measured. */
  get noLoadLatencyMs(): number | undefined {
    const us = Atomics.load(this.i32, this.r32 + AdaptiveLayout.I32.NO_LOAD_US);
    return us === 0 ? undefined : us / 1000;
  }

  /** True while the no-load latency is being measured (the limit is pinned to minLimit). */
  get measuring(): boolean {
    return Atomics.load(this.i32, this.r32 + AdaptiveLayout.I32.PHASE) !== NORMAL;
  }

  /** {@inheritDoc PermitLimit.release} */
  override release(n = 1): void {
    super.release(n);
    this.checkDrained();
  }

  /** The fast path, with the clock read before the admitting step (see the module comment). */
  protected override fastTake(n: number): boolean {
    const now = this.clock.now();
    if (!super.fastTake(n)) return false;
    this.admittedAt = now;
    return true;
  }

  /** The queue's admission, at `now` read before it. */
  protected override take(now: Nanos, n: number): boolean {
    if (!super.take(now, n)) return false;
    this.admittedAt = now;
    return true;
  }

  /** The permit of the admission just made: its release gives the slots back, then records its latency. */
  protected override makePermit(n: number): Permit {
    const at = this.admittedAt;
    return new ReleasablePermit(n, (k) => {
      this.releaseFn(k);
      this.sample(at);
    });
  }

  protected describe(): Record<string, unknown> {
    const { clock: _clock, maxThreads: _maxThreads, ...plain } = this.options;
    return { ...plain, maxThreads: this.state.slotCount };
  }

  /** Adds the latency of a permit admitted at `admittedAt` to the window, and closes the window if it is over. */
  private sample(admittedAt: Nanos): void {
    const i32 = this.i32;
    const i64 = this.i64;
    const now = this.clock.now();
    const phase = Atomics.load(i32, this.r32 + AdaptiveLayout.I32.PHASE);
    let acc: number;
    if (phase === NORMAL) acc = this.r64 + AdaptiveLayout.I64.SAMPLES;
    else if (phase === MEASURING && admittedAt >= Atomics.load(i64, this.r64 + AdaptiveLayout.I64.PROBE_START))
      acc = this.r64 + AdaptiveLayout.I64.PROBE_SAMPLES;
    else {
      if (phase === DRAINING) this.checkDrained();
      return;
    }
    const us = Math.min(MAX_SAMPLE_US, Math.max(1, Math.round(Number(now - admittedAt) / 1000)));
    const before = Atomics.add(i64, acc, ONE_SAMPLE + BigInt(us));
    const count = Number(before >> COUNT_SHIFT) + 1;
    if (phase === MEASURING && count <= PROBE_KEPT) Atomics.store(i32, this.r32 + AdaptiveLayout.I32.PROBE_US + count - 1, us);
    if (count < this.options.minSamples) return;
    const start = Atomics.load(i64, this.r64 + AdaptiveLayout.I64.WINDOW_START);
    if (now - start < this.windowNs && count < CLOSE_AT_COUNT && Number(before & SUM_MASK) + us < CLOSE_AT_SUM_US) return;
    if (Atomics.compareExchange(i64, this.r64 + AdaptiveLayout.I64.WINDOW_START, start, now) !== start) return;
    // The phase may have moved since this sample was filed: the window is closed as it is now.
    const current = Atomics.load(i32, this.r32 + AdaptiveLayout.I32.PHASE);
    if (current === NORMAL) this.closeWindow(start, now);
    else if (current === MEASURING) this.endProbe(now);
  }

  /** This thread was elected to close the window [start, now): the next limit from its samples. */
  private closeWindow(start: Nanos, now: Nanos): void {
    const i32 = this.i32;
    const window = this.takeSamples(this.r64 + AdaptiveLayout.I64.SAMPLES);
    if (window === undefined) return;
    const estimate = Atomics.load(i32, this.r32 + AdaptiveLayout.I32.ESTIMATE) / 1000;
    const noLoadUs = Atomics.load(i32, this.r32 + AdaptiveLayout.I32.NO_LOAD_US);
    const quiet = Atomics.load(i32, this.r32 + AdaptiveLayout.I32.QUIET);
    const mean = { meanUs: window.sumUs / window.count, inFlight: (window.sumUs * 1000) / Number(now - start) };
    const step = nextLimit(estimate, noLoadUs, quiet, mean, this.options);
    // A newer window was elected while this one computed: its result stands, not this one's.
    if (Atomics.load(this.i64, this.r64 + AdaptiveLayout.I64.WINDOW_START) !== now || Atomics.load(i32, this.r32 + AdaptiveLayout.I32.PHASE) !== NORMAL) return;
    const milli = Math.round(step.limit * 1000);
    Atomics.store(i32, this.r32 + AdaptiveLayout.I32.ESTIMATE, milli);
    Atomics.store(i32, this.r32 + AdaptiveLayout.I32.QUIET, step.quiet);
    const limit = Math.floor(milli / 1000);
    let atMin = 0;
    if (step.queueing && limit <= this.minLimit) atMin = Atomics.add(i32, this.r32 + AdaptiveLayout.I32.AT_MIN, 1) + 1;
    else Atomics.store(i32, this.r32 + AdaptiveLayout.I32.AT_MIN, 0);
    // One change of the limit per window: a measurement starting now goes straight to minLimit
    // and returns to the estimate just stored.
    if (atMin >= AT_MIN_WINDOWS || now >= Atomics.load(this.i64, this.r64 + AdaptiveLayout.I64.NEXT_PROBE)) this.enterProbe(now);
    else this.setLimit(limit);
  }

  /** Starts a no-load measurement: the limit drops to minLimit, and measuring begins once the older permits fit. */
  private enterProbe(now: Nanos): void {
    const i32 = this.i32;
    const i64 = this.i64;
    Atomics.store(i64, this.r64 + AdaptiveLayout.I64.PROBE_START, NEVER);
    Atomics.store(i64, this.r64 + AdaptiveLayout.I64.PROBE_SAMPLES, 0n);
    for (let k = 0; k < PROBE_KEPT; k++) Atomics.store(i32, this.r32 + AdaptiveLayout.I32.PROBE_US + k, 0);
    Atomics.store(i64, this.r64 + AdaptiveLayout.I64.PROBE_ENTERED, now);
    Atomics.store(i32, this.r32 + AdaptiveLayout.I32.AT_MIN, 0);
    this.setLimit(this.minLimit);
    if (Atomics.compareExchange(i32, this.r32 + AdaptiveLayout.I32.PHASE, NORMAL, DRAINING) !== NORMAL) return;
    this.checkDrained();
  }

  /** While draining: once every held permit fits within minLimit, measuring starts now. */
  private checkDrained(): void {
    const i32 = this.i32;
    if (Atomics.load(i32, this.r32 + AdaptiveLayout.I32.PHASE) !== DRAINING || Atomics.load(i32, LimiterLayout.I32.AVAILABLE) < 0) return;
    if (Atomics.compareExchange(i32, this.r32 + AdaptiveLayout.I32.PHASE, DRAINING, MEASURING) !== DRAINING) return;
    const now = this.clock.now();
    Atomics.store(this.i64, this.r64 + AdaptiveLayout.I64.WINDOW_START, now);
    Atomics.store(this.i64, this.r64 + AdaptiveLayout.I64.PROBE_START, now);
  }

  /** This thread was elected to end the measurement at `now`: the no-load latency, and the limit back. */
  private endProbe(now: Nanos): void {
    const i32 = this.i32;
    const i64 = this.i64;
    const window = this.takeSamples(this.r64 + AdaptiveLayout.I64.PROBE_SAMPLES);
    if (window === undefined) return;
    const noLoadUs = this.noLoadUs(window);
    const before = Atomics.exchange(i32, this.r32 + AdaptiveLayout.I32.NO_LOAD_US, noLoadUs);
    // Samples of the measurement's time that were not no-load samples: not for the next window.
    Atomics.store(i64, this.r64 + AdaptiveLayout.I64.SAMPLES, 0n);
    Atomics.store(i32, this.r32 + AdaptiveLayout.I32.QUIET, 0);
    const took = Number(now - Atomics.load(i64, this.r64 + AdaptiveLayout.I64.PROBE_ENTERED));
    // A measurement that found the downstream clearly faster than believed (the first one always
    // does) is checked again soon: it may itself have been slowed by a cold start.
    const fell = before === 0 || noLoadUs * (1 + this.options.tolerance) < before;
    const gapNs = fell
      ? RECHECK_WINDOWS * Number(this.windowNs)
      : Math.max(this.options.probeIntervalMs * 1e6, PROBE_SPACING * took) * (1 + PROBE_JITTER * Math.random());
    Atomics.store(i64, this.r64 + AdaptiveLayout.I64.NEXT_PROBE, now + BigInt(Math.round(gapNs)));
    if (Atomics.compareExchange(i32, this.r32 + AdaptiveLayout.I32.PHASE, MEASURING, NORMAL) !== MEASURING) return;
    this.setLimit(Math.floor(Atomics.load(i32, this.r32 + AdaptiveLayout.I32.ESTIMATE) / 1000));
  }

  /**
   * The no-load latency from a measurement's samples: the median of those kept one by one (a
   * sample whose store has not landed yet reads 0 and is left out), so that one stalled event loop
   * during the few samples of a measurement does not move it; their mean if none landed.
   */
  private noLoadUs(window: { count: number; sumUs: number }): number {
    const kept: number[] = [];
    for (let k = 0; k < Math.min(window.count, PROBE_KEPT); k++) {
      const us = Atomics.load(this.i32, this.r32 + AdaptiveLayout.I32.PROBE_US + k);
      if (us > 0) kept.push(us);
    }
    if (kept.length === 0) return Math.max(1, Math.round(window.sumUs / window.count));
    kept.sort((a, b) => a - b);
    const mid = kept.length >> 1;
    return kept.length % 2 === 1 ? kept[mid]! : Math.round((kept[mid - 1]! + kept[mid]!) / 2);
  }

  /** The samples of accumulator `index`, zeroed; put back (and undefined) if fewer than minSamples. */
  private takeSamples(index: number): { count: number; sumUs: number } | undefined {
    const packed = Atomics.exchange(this.i64, index, 0n);
    const count = Number(packed >> COUNT_SHIFT);
    if (count < this.options.minSamples) {
      if (packed !== 0n) Atomics.add(this.i64, index, packed);
      return undefined;
    }
    return { count, sumUs: Number(packed & SUM_MASK) };
  }

  /** Moves the limit to `to`, whatever it is now. */
  private setLimit(to: number): void {
    for (;;) {
      const from = Atomics.load(this.i32, LimiterLayout.I32.LIMIT);
      if (from === to || this.changeLimit(from, to)) return;
    }
  }
}
