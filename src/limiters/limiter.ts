/**
 * What every limiter shares: the public calls (`acquire`, `run`, `tryAcquire`, `share`), the
 * per-thread wait queue, the queue bounds and the events. An algorithm subclass supplies the
 * atomic step that admits a call and the arithmetic of when it could be admitted.
 */
import type { Clock, Nanos } from '../clock.js';
import { QueueFullError, QueueTimeoutError, StoreUnavailableError } from '../errors.js';
import { checkCount, resolveAcquireOptions, type AcquireOptions, type ResolvedQueueOptions } from '../options.js';
import { QueuedCall } from '../queue/queued-call.js';
import { SignalWatch } from '../queue/signal-watch.js';
import { NO_DEADLINE, WaitQueue, type Waiter } from '../queue/wait-queue.js';
import { LimiterLayout, SharedState, WAIT_BUCKETS, type LimiterKind } from '../shared/shared-state.js';
import type { RemoteDescriptor, RemoteLimit, RemoteSnapshot } from '../stores/remote-limit.js';
import type { LimiterStore } from '../stores/store.js';
import { RATE_PERMIT, type Permit } from './permit.js';

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
  reason: 'queue-full' | 'timeout' | 'aborted' | 'store-unavailable';
  /** Tokens or permits the call asked for. */
  n: number;
}

/** What {@link Limiter.snapshot} returns; counts since the limiter was created, over all threads. */
export interface LimiterSnapshot {
  kind: LimiterKind;
  /** Calls admitted (at once or after waiting). */
  admitted: number;
  /** Calls refused, by reason. */
  refused: { queueFull: number; timeout: number; aborted: number };
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
  limited: LimitedEvent;
  refused: RefusedEvent;
}

type Listener<E extends keyof LimiterEvents> = (event: LimiterEvents[E]) => void;

/** Per-thread registry so `attach` of one limiter in one thread yields one instance (one queue, one timer). */
const attached = new Map<string, WeakRef<Limiter>>();
const unregister = new FinalizationRegistry<{ id: string; state: SharedState; slot: number }>((held) => {
  const ref = attached.get(held.id);
  if (ref !== undefined && ref.deref() === undefined) attached.delete(held.id);
  if (held.slot >= 0) held.state.freeSlot(held.slot);
});

/** @internal Returns the live instance of a limiter in this thread, if any. */
export function attachedInstance(id: string): Limiter | undefined {
  return attached.get(id)?.deref();
}

/** @internal How a subclass constructor is told to map existing shared state. */
export interface AttachContext {
  state: SharedState;
  id: string;
  /** The process's token pool of a limit held in a distributed store. */
  remoteBuffer?: SharedArrayBuffer;
}

/**
 * Base class of {@link TokenBucket}, {@link FixedWindow} and {@link ConcurrencyLimit}.
 *
 * It is the `Admission` of its `WaitQueue` (`new WaitQueue(this)` checks that) without saying
 * `implements`: those members are internal, left out of the published types, where the clause
 * would no longer hold.
 */
export abstract class Limiter {
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
  protected remote: RemoteLimit | undefined = undefined;

  private readonly queue: WaitQueue;
  private readonly metrics: BigInt64Array;
  private readonly createdAt: Nanos;
  /** This thread's admitted counter (its own row, its own cache line). */
  private readonly admittedWord: number;
  private readonly slotHolder: { id: string; state: SharedState; slot: number };
  private limitedListeners: Listener<'limited'>[] | undefined;
  private refusedListeners: Listener<'refused'>[] | undefined;

  /** @internal */
  protected constructor(kind: LimiterKind, options: ResolvedQueueOptions, attach: AttachContext | undefined) {
    this.state = attach?.state ?? SharedState.create(kind, options.maxThreads);
    this.id = attach?.id ?? crypto.randomUUID();
    this.clock = options.clock;
    this.maxQueued = options.maxQueued;
    this.maxWaitMs = options.maxWaitMs;
    this.queue = new WaitQueue(this, this.clock);
    this.metrics = this.state.i64;
    this.createdAt = this.clock.now();
    this.slotHolder = { id: this.id, state: this.state, slot: this.state.claimSlot() };
    this.admittedWord = this.state.admittedIndex(this.slotHolder.slot);
    attached.set(this.id, new WeakRef(this));
    unregister.register(this, this.slotHolder);
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

  /** @internal Admission: see WaitQueue. */
  abstract take(now: Nanos, n: number): boolean;
  /** @internal */
  abstract wakeAt(now: Nanos, n: number): Nanos | undefined;
  /**
   * @internal A limit in a distributed store waits for this process's next fetch; under
   * fail-closed, a store that is down refuses the waiting calls instead.
   */
  waitForRelease(wake: () => void): void {
    const remote = this.remote;
    if (remote === undefined) throw new Error(`${this.kind} limiter does not wait for releases`);
    if (remote.refusing()) {
      queueMicrotask(() => this.refuseForStore(remote));
      return;
    }
    remote.waitForRelease(() => (remote.refusing() ? this.refuseForStore(remote) : wake()));
  }
  /** @internal Once no call of this thread waits, a pending wait for the store must not hold the process. */
  headChanged(head: Waiter | undefined): void {
    if (head === undefined) this.remote?.idle();
  }
  /** @internal */
  dequeued(waiter: Waiter): void {
    this.state.removeQueued(this.slotHolder.slot, waiter.n);
    (waiter as PendingCall<unknown>).detachSignal();
  }

  /** Admits at once if the limit allows, without waiting and without queueing. */
  tryAcquire(n = 1): boolean {
    if (n !== 1) checkCount(n, this.capacity, this.capacityName());
    if (this.queue.size !== 0 || !this.fastTake(n)) return false;
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
    if (this.queue.size === 0 && this.fastTake(n)) {
      Atomics.add(this.metrics, this.admittedWord, 1n);
      return this.admittedNow(n);
    }
    return this.enqueue<Permit>(n, maxWaitMs, options?.signal, undefined);
  }

  /**
   * Runs `task` once admitted and resolves with its result. The task starts synchronously at the
   * moment of admission, so its start time is exactly the admission time; a concurrency permit is
   * held until the task's promise settles.
   */
  run<T>(task: () => T | PromiseLike<T>, n = 1, options?: AcquireOptions): Promise<T> {
    const maxWaitMs = resolveAcquireOptions(options, this.maxWaitMs);
    if (n !== 1) checkCount(n, this.capacity, this.capacityName());
    if (this.queue.size === 0 && this.fastTake(n)) {
      Atomics.add(this.metrics, this.admittedWord, 1n);
      return this.runAdmitted(task, n);
    }
    return this.enqueue<T>(n, maxWaitMs, options?.signal, task);
  }

  /**
   * Estimated ms a call of `n` arriving now would wait, from the state and the demand queued in
   * every thread (0 when admissible now or not predictable).
   */
  estimateWaitMs(n = 1): number {
    return Number(this.estimateWaitAt(this.clock.now(), n, this.state.queuedTokens())) / 1e6;
  }

  /**
   * Refuses every call waiting in this thread with `reason` (as p-queue's `clear()`), for a
   * shutdown that should not wait for the queue to drain. Nothing they asked for was taken; calls
   * waiting in other threads are untouched.
   */
  clear(reason: unknown = new Error('limiter cleared: the call was waiting')): void {
    this.queue.clear(reason);
  }

  /** The distributed store holding this limit, or undefined for the embedded in-process store. */
  get store(): LimiterStore | undefined {
    return this.remote?.store;
  }

  /** Calls waiting in this thread. */
  get size(): number {
    return this.queue.size;
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
   * Gives back what a dead thread held of this limiter (queued counts; concurrency permits). Call
   * from the thread that owns the worker, on its `'exit'` event. Returns what was reclaimed.
   */
  reclaimThread(threadId: number): { permits: number; queuedCalls: number } {
    const r = this.state.reclaimThread(threadId);
    this.afterReclaim();
    return { permits: r.permits, queuedCalls: r.queuedCalls };
  }

  /** Subscribes to `'limited'` (a call has to wait) or `'refused'` events. */
  on<E extends keyof LimiterEvents>(event: E, listener: Listener<E>): this {
    if (event === 'limited') (this.limitedListeners ??= []).push(listener as Listener<'limited'>);
    else if (event === 'refused') (this.refusedListeners ??= []).push(listener as Listener<'refused'>);
    else throw new TypeError(`unknown event ${String(event)}`);
    return this;
  }

  /** Removes a listener added with {@link on}. */
  off<E extends keyof LimiterEvents>(event: E, listener: Listener<E>): this {
    const list = event === 'limited' ? this.limitedListeners : this.refusedListeners;
    const i = list?.indexOf(listener as never) ?? -1;
    if (i >= 0) list!.splice(i, 1);
    return this;
  }

  /** @internal Hook for the concurrency limit after a reclaim. */
  protected afterReclaim(): void {}

  /** @internal The thread-table row of this instance (claimed at construction). */
  protected slot(): number {
    return this.slotHolder.slot;
  }

  /** @internal Re-runs the queue (after a grant arrives from another path). */
  protected pumpQueue(): void {
    this.queue.pump();
  }

  /** @internal The immediate path: admit without queueing if possible. */
  protected fastTake(n: number): boolean {
    return this.tryAcquireAt(this.clock.now(), n);
  }

  private capacityName(): string {
    return this.kind === 'token-bucket' ? 'burst' : this.kind === 'fixed-window' ? 'maxCalls' : 'max';
  }

  /** Runs an admitted task, holding its permit until its result settles. */
  private runAdmitted<T>(task: () => T | PromiseLike<T>, n: number): Promise<T> {
    const permit = this.makePermit(n);
    let result: T | PromiseLike<T>;
    try {
      result = task();
    } catch (error) {
      permit.release();
      return Promise.reject(error);
    }
    const p = Promise.resolve(result);
    // Rate permits need no release: skip the extra promise reaction on the hot path.
    if (permit !== RATE_PERMIT) {
      const release = (): void => permit.release();
      p.then(release, release);
    }
    return p;
  }

  private enqueue<T>(n: number, maxWaitMs: number, signal: AbortSignal | undefined, task: (() => T | PromiseLike<T>) | undefined): Promise<T> {
    if (signal?.aborted) return this.refuse(Promise.reject(signal.reason as unknown), 'aborted', n);
    if (this.remote?.refusing()) {
      this.remote.refused();
      return this.refuse(Promise.reject(new StoreUnavailableError(this.remote.key)), 'store-unavailable', n);
    }
    const queued = this.state.queuedCalls();
    if (queued >= this.maxQueued) return this.refuse(Promise.reject(new QueueFullError(this.maxQueued)), 'queue-full', n);
    const now = this.clock.now();
    let estimate = -1n;
    if (maxWaitMs !== Infinity) {
      estimate = this.estimateWaitAt(now, n, this.state.queuedTokens());
      if (Number(estimate) > maxWaitMs * 1e6) {
        return this.refuse(Promise.reject(new QueueTimeoutError(maxWaitMs, Number(estimate) / 1e6, false)), 'timeout', n);
      }
    }
    if (this.limitedListeners?.length) {
      if (estimate < 0n) estimate = this.estimateWaitAt(now, n, this.state.queuedTokens());
      const event: LimitedEvent = { n, waitMs: Number(estimate) / 1e6, queued: queued + 1 };
      for (const l of this.limitedListeners) l(event);
    }
    const deadline = maxWaitMs === Infinity ? NO_DEADLINE : now + BigInt(Math.ceil(maxWaitMs * 1e6));
    return new Promise<T>((resolve, reject) => {
      const call = new PendingCall<T>(this, n, this.msSinceCreated(now), deadline, resolve, reject, task);
      if (deadline !== NO_DEADLINE) call.setMaxWait(maxWaitMs);
      this.state.addQueued(this.slot(), n);
      if (signal !== undefined) {
        call.attachSignal(signal);
        this.signals.watch(signal, call);
      }
      this.queue.push(call);
    });
  }

  private refuse<T>(p: Promise<T>, reason: RefusedEvent['reason'], n: number): Promise<T> {
    this.emitRefused(reason, n);
    return p;
  }

  /** Refuses every call waiting in this thread: the store is down and the policy is fail-closed. */
  private refuseForStore(remote: RemoteLimit): void {
    for (let i = this.queue.size; i > 0; i--) remote.refused();
    this.queue.clear(new StoreUnavailableError(remote.key));
  }

  /** @internal */
  emitRefused(reason: RefusedEvent['reason'], n: number): void {
    // Store refusals are counted with the store's counters (snapshot().store.refused).
    if (reason !== 'store-unavailable') {
      Atomics.add(
        this.metrics,
        reason === 'queue-full'
          ? LimiterLayout.I64.REFUSED_QUEUE_FULL
          : reason === 'timeout'
            ? LimiterLayout.I64.REFUSED_TIMEOUT
            : LimiterLayout.I64.REFUSED_ABORTED,
        1n,
      );
    }
    if (this.refusedListeners?.length) {
      const event: RefusedEvent = { reason, n };
      for (const l of this.refusedListeners) l(event);
    }
  }

  /** The abort signals this thread's waiting calls listen to (one listener per signal). */
  private readonly signals = new SignalWatch<Abortable>((calls, reason) => {
    for (const c of calls) c.aborted(this.queue, reason);
  });

  /** @internal A call stopped waiting on `signal`. */
  unwatch(signal: AbortSignal, call: Abortable): void {
    this.signals.unwatch(signal, call);
  }

  /** @internal Completes an admitted waiter: hands over the permit or runs the task. */
  completeAdmitted<T>(call: PendingCall<T>): void {
    if (call.task === undefined) call.resolve(this.makePermit(call.n) as T);
    else call.resolve(this.runAdmitted(call.task, call.n));
    this.recordWait((this.msSinceCreated(this.clock.now()) - call.enqueuedAtMs) * 1e6);
  }

  /**
   * Whole milliseconds since this instance was created: a small integer (a Smi, stored in the
   * waiter itself) for the first 24 days, where a double or a BigInt would be one more heap object
   * per waiting call. Wait metrics are kept to the millisecond.
   */
  private msSinceCreated(now: Nanos): number {
    return Math.round(Number(now - this.createdAt) / 1e6);
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
        queueFull: Number(Atomics.load(m, LimiterLayout.I64.REFUSED_QUEUE_FULL)),
        timeout: Number(Atomics.load(m, LimiterLayout.I64.REFUSED_TIMEOUT)),
        aborted: Number(Atomics.load(m, LimiterLayout.I64.REFUSED_ABORTED)),
      },
      queued: this.state.queuedCalls(),
      waited: Number(Atomics.load(m, LimiterLayout.I64.WAITED)),
      waitMsTotal: Number(Atomics.load(m, LimiterLayout.I64.WAIT_NS_TOTAL)) / 1e6,
      waitHistogram: histogram,
      ...(this.remote === undefined ? {} : { store: this.remote.snapshot() }),
    };
  }
}

/** A waiting call as its abort signal sees it. */
interface Abortable {
  aborted(queue: WaitQueue, reason: unknown): void;
}

/** A call waiting in a limiter's {@link WaitQueue}. */
class PendingCall<T> extends QueuedCall<T> {
  constructor(
    private readonly owner: Limiter,
    n: number,
    enqueuedAtMs: number,
    deadline: Nanos,
    resolve: (value: T | PromiseLike<T>) => void,
    reject: (error: unknown) => void,
    task: (() => T | PromiseLike<T>) | undefined,
  ) {
    super(n, enqueuedAtMs, deadline, resolve, reject, task);
  }

  admit(): void {
    this.owner.completeAdmitted(this);
  }

  protected refused(reason: 'timeout' | 'aborted'): void {
    this.owner.emitRefused(reason, this.n);
  }

  protected unwatch(signal: AbortSignal): void {
    this.owner.unwatch(signal, this);
  }

  /** The call's signal fired: leave the queue, rejected with its reason. */
  aborted(queue: WaitQueue, reason: unknown): void {
    this.refused('aborted');
    queue.remove(this, reason);
  }
}
