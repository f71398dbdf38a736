/**
 * What every limiter shares: the public calls (`acquire`, `run`, `tryAcquire`, `share`), the
 * shared counters and `snapshot()`. A call its fast path does not admit goes to the admission
 * front end (`src/queue/admission-front.ts`: the checks, the events, the per-thread wait queue),
 * which the keyed bucket uses too.
 *
 * The subclass contract (TokenBucket, FixedWindow and ConcurrencyLimit are the examples):
 * - pass the resolved queue options and `AttachContext` to the constructor; set `remote` there for
 *   a limit held in a distributed store;
 * - `kind`, `capacity` (the most one call may ask for), `describe()` (the options of `share()`)
 *   and `makePermit(n)`;
 * - the algorithm: `tryAcquireAt(now, n)` (the one atomic step; also the fast path's, through
 *   `fastTake`), `estimateWaitAt(now, n, queuedTokens)` (0 when unpredictable);
 * - the wait queue's steps, protected: `take(now, n)` admits the head of this thread's queue
 *   (usually `tryAcquireAt`), `wakeAt(now, n)` says when it could be admitted, or undefined when
 *   only a release can make room, and then `waitForRelease(wake)` must arrange the wake-up
 *   (the default serves a distributed store); `headChanged(head)` hears of each new head.
 * Optional overrides: `admittedNow(n)` (the fast path's resolved promise), `fastTake(n)` (e.g. no
 * barging past calls waiting in other threads) and `afterReclaim()`; `pumpQueue()` re-runs the
 * queue when capacity arrives by another path.
 */
import type { Clock, Nanos } from '../clock.js';
import { StoreUnavailableError, type LimitRefusalReason, type QueueRefusalReason, type RefusalCounts } from '../errors.js';
import { checkCount, resolveAcquireOptions, type AcquireOptions, type ResolvedQueueOptions } from '../options.js';
import { AdmissionFront, FRONT_EVENTS, LineOfSteps, runAdmitted } from '../queue/admission-front.js';
import { EventSource } from '../queue/listeners.js';
import type { Waiter } from '../queue/wait-queue.js';
import { LimiterLayout, SharedState, WAIT_BUCKETS, type LimiterKind } from '../shared/shared-state.js';
import { ThreadInstances } from '../shared/thread-instances.js';
import type { RemoteAdmission, RemoteDescriptor, RemoteSnapshot } from '../stores/remote-limit.js';
import type { LimiterStore } from '../stores/store.js';
import type { Permit } from './permit.js';

/**
 * Everything needed to rebuild a limiter in another thread: plain data plus the SharedArrayBuffer,
 * so it passes through `postMessage`, `workerData` or a piscina task unchanged.
 */
export interface LimiterDescriptor<K extends LimiterKind = LimiterKind, O = Record<string, unknown>> {
  /** Which algorithm. */
  readonly kind: K;
  /** Identity of the limiter; attaching twice in one thread returns the same instance. */
  readonly id: string;
  /** The validated options (without the clock, which is per thread). */
  readonly options: O;
  /** The shared state. */
  readonly buffer: SharedArrayBuffer;
  /** With a distributed store: the store, the limit's key and this process's token pool. */
  readonly remote?: RemoteDescriptor;
}

/** Passed to `'limited'` listeners when a call has to wait. */
export interface LimitedEvent {
  /** Tokens or permits the call asked for. */
  n: number;
  /** Estimated wait in ms from the demand queued in every thread (0 when not predictable). */
  waitMs: number;
  /** Calls waiting over all threads, this one included. */
  queued: number;
}

/** Passed to `'refused'` listeners when a call is refused or aborted. */
export interface RefusedEvent {
  /** Why: over `maxQueued`, over `maxWaitMs`, its signal aborted, or the limit's store is down (fail-closed). */
  reason: LimitRefusalReason;
  /** Tokens or permits the call asked for. */
  n: number;
}

/** What {@link Limiter.snapshot} returns; counts since the limiter was created, over all threads. */
export interface LimiterSnapshot {
  /** The limiter's kind: `'token-bucket'`, `'fixed-window'`, `'concurrency'` or `'adaptive-concurrency'`. */
  kind: LimiterKind;
  /** Calls admitted (at once or after waiting). */
  admitted: number;
  /** Calls refused, by reason (store refusals are counted in `store.refused`). */
  refused: RefusalCounts;
  /** Calls waiting now. */
  queued: number;
  /** Admitted calls that had to wait. */
  waited: number;
  /** Their total wait, ms. */
  waitMsTotal: number;
  /** Their waits: count with wait ≤ leMs (not cumulative; the last bucket is everything longer). */
  waitHistogram: { leMs: number; count: number }[];
  /** With a distributed store: round trips, errors, leased tokens, fault-policy admissions (this process). */
  store?: RemoteSnapshot;
}

/** Event names and their payloads. */
export interface LimiterEvents {
  /** A call has to wait: emitted as it joins the queue. */
  limited: LimitedEvent;
  /** A call was refused (`queue_full`, `queue_timeout`, `store_unavailable`) or aborted. */
  refused: RefusedEvent;
}

/** The shared counter of each refusal reason. */
const REFUSED_WORD: Record<QueueRefusalReason, number> = {
  queue_full: LimiterLayout.I64.REFUSED_QUEUE_FULL,
  queue_timeout: LimiterLayout.I64.REFUSED_TIMEOUT,
  aborted: LimiterLayout.I64.REFUSED_ABORTED,
};

/** This thread's limiter instances, so `attach` of one limiter in one thread yields one instance. */
const attached = new ThreadInstances<Limiter, { state: SharedState; slot: number }>((held) => {
  if (held.slot >= 0) held.state.freeSlot(held.slot);
});

/** @internal Returns the live instance of a limiter in this thread, if any. */
export function attachedInstance(id: string): Limiter | undefined {
  return attached.get(id);
}

/** @internal How a subclass constructor is told to map existing shared state. */
export interface AttachContext {
  state: SharedState;
  id: string;
  /** The process's token pool of a limit held in a distributed store. */
  remoteBuffer?: SharedArrayBuffer;
}

/** Base class of {@link TokenBucket}, {@link FixedWindow} and {@link ConcurrencyLimit}. */
export abstract class Limiter extends EventSource<LimiterEvents> {
  /** @internal The shared memory. */
  protected readonly state: SharedState;
  /** @internal The time source. */
  protected readonly clock: Clock;
  /** Identity shared by every thread's instance of this limiter. */
  readonly id: string;
  /** Most calls waiting over all threads. */
  readonly maxQueued: number;
  /** Default bound on waiting, ms. */
  readonly maxWaitMs: number;
  /** @internal Set by a subclass whose limit is held in a distributed store. */
  protected remote: RemoteAdmission | undefined = undefined;

  private readonly front: AdmissionFront<LimiterEvents>;
  /** This thread's one line of waiting calls. */
  private readonly line: LineOfSteps;
  private readonly metrics: BigInt64Array;
  /** This thread's admitted counter (its own row, its own cache line). */
  private readonly admittedWord: number;
  private readonly slotHolder: { state: SharedState; slot: number };

  /** @internal */
  protected constructor(kind: LimiterKind, options: ResolvedQueueOptions, attach: AttachContext | undefined) {
    super(FRONT_EVENTS);
    this.state = attach?.state ?? SharedState.create(kind, options.maxThreads);
    this.id = attach?.id ?? crypto.randomUUID();
    this.clock = options.clock;
    this.maxQueued = options.maxQueued;
    this.maxWaitMs = options.maxWaitMs;
    this.metrics = this.state.i64;
    this.slotHolder = { state: this.state, slot: this.state.claimSlot() };
    this.admittedWord = this.state.admittedIndex(this.slotHolder.slot);
    // Private objects, so the queue's steps and the front end's hooks are not public methods.
    this.front = new AdmissionFront<LimiterEvents>(
      {
        queuedCalls: () => this.state.queuedCalls(),
        line: () => this.line,
        storeRefusal: () => this.storeRefusal(),
        countRefused: (reason) => Atomics.add(this.metrics, REFUSED_WORD[reason], 1n),
        permit: (n) => this.makePermit(n),
        recordWait: (waitNs) => this.recordWait(waitNs),
      },
      this.clock,
      this.maxQueued,
      this.events,
    );
    this.line = new LineOfSteps(this.front, {
      take: (now, n) => this.take(now, n),
      wakeAt: (now, n) => this.wakeAt(now, n),
      waitForRelease: (wake) => this.waitForRelease(wake),
      headChanged: (head) => this.headChanged(head),
      estimateWait: (now, n) => this.estimateWaitAt(now, n, this.state.queuedTokens()),
      joined: (n) => this.state.addQueued(this.slotHolder.slot, n),
      left: (n) => this.state.removeQueued(this.slotHolder.slot, n),
    });
    attached.add(this.id, this, this.slotHolder);
  }

  /** Largest `n` one call may ask for. */
  abstract readonly capacity: number;

  /** The options to put in a descriptor. */
  protected abstract describe(): Record<string, unknown>;

  /** The algorithm's kind. */
  protected abstract readonly kind: LimiterKind;

  /** The permit handed to an admitted call of `n`. */
  protected abstract makePermit(n: number): Permit;

  /** The already-resolved promise `acquire` returns on the fast path. */
  protected admittedNow(n: number): Promise<Permit> {
    return Promise.resolve(this.makePermit(n));
  }

  /**
   * Explicit-time twin of {@link tryAcquire}: admits `n` at time `now` (nanoseconds on the
   * limiter's clock) if the limit allows, atomically. Deterministic tests drive this directly.
   */
  abstract tryAcquireAt(now: Nanos, n?: number): boolean;

  /**
   * Estimated nanoseconds until a call of `n` arriving at `now` behind `queuedTokens` of demand
   * would be admitted, or 0 when the algorithm cannot predict it (the concurrency limit).
   */
  abstract estimateWaitAt(now: Nanos, n: number, queuedTokens: number): Nanos;

  /** Takes `n` for the head of this thread's queue at `now`: the one atomic step that admits a waiting call. */
  protected abstract take(now: Nanos, n: number): boolean;

  /**
   * Earliest time `n` could be taken judging by the shared state now, or `undefined` when only a
   * release can make room (then {@link waitForRelease} arranges the wake-up).
   */
  protected abstract wakeAt(now: Nanos, n: number): Nanos | undefined;

  /**
   * Arms a one-shot wake-up for when capacity arrives. A limit in a distributed store waits for
   * this process's next fetch; under fail-closed, a store that is down refuses the waiting calls
   * instead.
   */
  protected waitForRelease(wake: () => void): void {
    const remote = this.remote;
    if (remote === undefined) throw new Error(`${this.kind} limiter does not wait for releases`);
    if (remote.refusing()) {
      queueMicrotask(() => this.refuseForStore(remote));
      return;
    }
    remote.waitForRelease(() => (remote.refusing() ? this.refuseForStore(remote) : wake()));
  }

  /** Hears of each new head of this thread's queue: once none waits, a pending wait for the store must not hold the process. */
  protected headChanged(head: Waiter | undefined): void {
    if (head === undefined) this.remote?.idle();
  }

  /** Admits at once if the limit allows, without waiting and without queueing. */
  tryAcquire(n = 1): boolean {
    if (n !== 1) checkCount(n, this.capacity, this.capacityName());
    if (this.front.waiting !== 0 || !this.fastTake(n)) return false;
    Atomics.add(this.metrics, this.admittedWord, 1n);
    return true;
  }

  /**
   * Waits until `n` tokens (or permits) are available to this call, then takes them.
   *
   * Resolves at once when the limit allows and no call of this thread waits ahead; otherwise the
   * call joins this thread's FIFO queue and takes its tokens at the moment it is released.
   * Rejects with {@link QueueFullError}, {@link QueueTimeoutError} or the abort reason of
   * `options.signal`; a rejected call has consumed nothing.
   */
  acquire(n = 1, options?: AcquireOptions): Promise<Permit> {
    const maxWaitMs = resolveAcquireOptions(options, this.maxWaitMs);
    if (n !== 1) checkCount(n, this.capacity, this.capacityName());
    if (this.front.waiting === 0 && this.fastTake(n)) {
      Atomics.add(this.metrics, this.admittedWord, 1n);
      return this.admittedNow(n);
    }
    return this.front.enqueue<Permit>(undefined, this.line, n, maxWaitMs, options?.signal, undefined);
  }

  /**
   * Runs `task` once admitted and resolves with its result. The task starts synchronously at the
   * moment of admission, so its start time is exactly the admission time; a concurrency permit is
   * held until the task's promise settles.
   */
  run<T>(task: () => T | PromiseLike<T>, n = 1, options?: AcquireOptions): Promise<T> {
    const maxWaitMs = resolveAcquireOptions(options, this.maxWaitMs);
    if (n !== 1) checkCount(n, this.capacity, this.capacityName());
    if (this.front.waiting === 0 && this.fastTake(n)) {
      Atomics.add(this.metrics, this.admittedWord, 1n);
      return runAdmitted(task, this.makePermit(n));
    }
    return this.front.enqueue<T>(undefined, this.line, n, maxWaitMs, options?.signal, task);
  }

  /**
   * Estimated ms a call of `n` arriving now would wait, from the state and the demand queued in
   * every thread (0 when admissible now or not predictable).
   */
  estimateWaitMs(n = 1): number {
    return Number(this.estimateWaitAt(this.clock.now(), n, this.state.queuedTokens())) / 1e6;
  }

  /**
   * Rejects every call waiting in this thread with `reason` (as p-queue's `clear()`), for a
   * shutdown that should not wait for the queue to drain. `reason` is the rejection value itself,
   * not a refusal reason: no `'refused'` event is emitted and nothing is counted as refused.
   * Nothing they asked for was taken; calls waiting in other threads are untouched.
   */
  clear(reason: unknown = new Error('limiter cleared: the call was waiting')): void {
    this.line.waiters.clear(reason);
  }

  /** The distributed store holding this limit, or undefined for the embedded in-process store. */
  get store(): LimiterStore | undefined {
    return this.remote?.store;
  }

  /** Calls waiting in this thread. */
  get size(): number {
    return this.front.waiting;
  }

  /** Calls waiting over all threads sharing this limiter. */
  get queuedTotal(): number {
    return this.state.queuedCalls();
  }

  /**
   * A structured-cloneable description holding the shared memory; `attach` it in another thread
   * and both threads enforce one limit.
   */
  share(): LimiterDescriptor {
    const d = { kind: this.kind, id: this.id, options: this.describe(), buffer: this.state.buffer };
    return this.remote === undefined ? d : { ...d, remote: this.remote.describe() };
  }

  /**
   * With a distributed store: gives the tokens this process holds back to the store where the
   * store can still take them (nothing granted since, or the same window), so a process that stops
   * does not sit on its lease until it lapses. Does nothing for the embedded store.
   */
  async returnLease(): Promise<void> {
    await this.remote?.giveBack();
  }

  /**
   * With a distributed store: removes what this thread's instance registered on the store (the
   * hook that probes a store that went down as soon as its connection is back), so a limiter you
   * drop while the store stays open can be garbage collected; without it, the store keeps every
   * limiter ever made on it. The limiter still works afterwards (a store that went down is then
   * probed at the retry interval only). The threaded server does this for the limits `setLimits`
   * retires. Does nothing for the embedded store.
   */
  dispose(): void {
    this.remote?.dispose();
  }

  /**
   * Gives back what a dead thread held of this limiter (queued counts; concurrency permits). Call
   * from the thread that owns the worker, on its `'exit'` event. Returns what was reclaimed.
   */
  reclaimThread(threadId: number): { permits: number; queuedCalls: number } {
    const r = this.state.reclaimThread(threadId);
    this.afterReclaim();
    return { permits: r.permits, queuedCalls: r.queuedCalls };
  }

  /** @internal Hook for the concurrency limit after a reclaim. */
  protected afterReclaim(): void {}

  /** @internal The thread-table row of this instance (claimed at construction). */
  protected slot(): number {
    return this.slotHolder.slot;
  }

  /** @internal Re-runs the queue (after a grant arrives from another path). */
  protected pumpQueue(): void {
    this.line.waiters.pump();
  }

  /** @internal The immediate path: admit without queueing if possible. */
  protected fastTake(n: number): boolean {
    return this.tryAcquireAt(this.clock.now(), n);
  }

  private capacityName(): string {
    return { 'token-bucket': 'burst', 'fixed-window': 'maxCalls', concurrency: 'max', 'adaptive-concurrency': 'minLimit' }[this.kind];
  }

  /** The refusal of a call that would wait while the store is down under fail-closed (counted by the store), if so. */
  private storeRefusal(): StoreUnavailableError | undefined {
    const remote = this.remote;
    if (remote === undefined || !remote.refusing()) return undefined;
    remote.refused();
    return new StoreUnavailableError(remote.key);
  }

  /** Refuses every call waiting in this thread: the store is down and the policy is fail-closed. */
  private refuseForStore(remote: RemoteAdmission): void {
    for (let i = this.line.waiters.size; i > 0; i--) remote.refused();
    this.line.waiters.clear(new StoreUnavailableError(remote.key), true);
  }

  /** Counts an admission that waited `waitNs` (after the call started: the bookkeeping can wait). */
  private recordWait(waitNs: number): void {
    const m = this.metrics;
    Atomics.add(m, this.admittedWord, 1n);
    Atomics.add(m, LimiterLayout.I64.WAITED, 1n);
    Atomics.add(m, LimiterLayout.I64.WAIT_NS_TOTAL, BigInt(Math.max(0, Math.round(waitNs))));
    const ms = waitNs / 1e6;
    const bucket = ms <= 1 ? 0 : Math.min(WAIT_BUCKETS - 1, Math.ceil(Math.log2(ms)));
    Atomics.add(m, LimiterLayout.I64.WAIT_HISTOGRAM + bucket, 1n);
  }

  /**
   * The limiter's counters, summed over every thread that shares it: read at any time, from any
   * thread, at the cost of a few atomic loads.
   */
  snapshot(): LimiterSnapshot {
    const m = this.metrics;
    const histogram: { leMs: number; count: number }[] = [];
    for (let k = 0; k < WAIT_BUCKETS; k++) {
      histogram.push({ leMs: k === WAIT_BUCKETS - 1 ? Infinity : 2 ** k, count: Number(Atomics.load(m, LimiterLayout.I64.WAIT_HISTOGRAM + k)) });
    }
    return {
      kind: this.kind,
      admitted: Number(this.state.admitted()),
      refused: {
        queue_full: Number(Atomics.load(m, REFUSED_WORD.queue_full)),
        queue_timeout: Number(Atomics.load(m, REFUSED_WORD.queue_timeout)),
        aborted: Number(Atomics.load(m, REFUSED_WORD.aborted)),
      },
      queued: this.state.queuedCalls(),
      waited: Number(Atomics.load(m, LimiterLayout.I64.WAITED)),
      waitMsTotal: Number(Atomics.load(m, LimiterLayout.I64.WAIT_NS_TOTAL)) / 1e6,
      waitHistogram: histogram,
      ...(this.remote === undefined ? {} : { store: this.remote.snapshot() }),
    };
  }
}
