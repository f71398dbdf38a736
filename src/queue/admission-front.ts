/**
 * The admission front end every limiter kind shares: what happens to a call the limit does not
 * admit at once. Each kind keeps its own validation and fast path (they differ in signature, and
 * the fast path must allocate nothing); the moment the fast path fails, the call comes here:
 *
 *   checks (signal aborted, store refusing, queue full, wait estimate) → `'limited'` event → a
 *   {@link QueuedCall} in a {@link WaitLine}, watching its signal → admitted (permit handed over or
 *   task started, wait counted) or refused (`'refused'` event, counter, rejection).
 *
 * A limiter has one line per thread; a keyed bucket one per key with calls waiting in the thread.
 * What differs between kinds comes in through {@link LimitBackend} (its shared counts and
 * counters, its permits: a private object of the kind) and the {@link WaitLine} (the algorithm
 * behind one line).
 */
import type { Clock, Nanos } from '../clock.js';
import { QueueFullError, QueueTimeoutError, type LimitRefusalReason, type QueueRefusalReason } from '../errors.js';
import { RATE_PERMIT, type Permit } from '../limiters/permit.js';
import type { Listeners } from './listeners.js';
import { SignalWatch } from './signal-watch.js';
import { NO_DEADLINE, WaitQueue, type Admission, type Waiter } from './wait-queue.js';

/**
 * The payloads the front end emits. A kind's event map narrows them: a keyed limit's events carry
 * the call's `key`, a limiter's carry none; a kind without a store never refuses for it.
 */
export interface FrontEvents {
  limited: { key?: string; n: number; waitMs: number; queued: number };
  refused: { key?: string; reason: LimitRefusalReason; n: number };
}

/** The names of {@link FrontEvents}: the events every limiter kind has. */
export const FRONT_EVENTS = ['limited', 'refused'] as const;

/** What a limiter kind tells its front end about the limit as a whole. */
export interface LimitBackend {
  /** Calls waiting over every thread sharing the limit: what `maxQueued` bounds. */
  queuedCalls(): number;
  /**
   * The line calls of `key` wait in, made for a call that passed the checks when the fast path
   * found none (a keyed limit makes a key's line only then: a refused call costs no queue).
   */
  line(key: string | undefined): WaitLine;
  /**
   * The error refusing every call that would wait now, or undefined: a limit whose distributed
   * store is down under fail-closed (the store counts these refusals itself).
   */
  storeRefusal(): Error | undefined;
  /** Counts a refusal in the limit's shared counters. */
  countRefused(reason: QueueRefusalReason): void;
  /** The permit of an admitted call of `n`. */
  permit(n: number): Permit;
  /** Counts an admission that waited `waitNs` (after the call started: the bookkeeping can wait). */
  recordWait(waitNs: number): void;
}

/** What a waiting call and its line report to the front end that queued them. */
export interface CallReports {
  readonly clock: Clock;
  /** The call was admitted: hand over its permit or start its task, count its wait. */
  admitted(call: QueuedCall<unknown>): void;
  /** The call is refused for `reason` while waiting: counted and reported before it is rejected. */
  refusedWaiting(call: QueuedCall<unknown>, reason: 'queue_timeout' | 'aborted' | 'store_unavailable'): void;
  /** The call left its line, however it left. */
  left(call: QueuedCall<unknown>): void;
}

/**
 * One FIFO of waiting calls in front of a limit, with its one timer, and the algorithm behind it:
 * the {@link Admission} of its {@link WaitQueue}, telling the front end of every call that leaves.
 * A keyed bucket's line of one key is a subclass; a limiter's is a {@link LineOfSteps}.
 */
export abstract class WaitLine implements Admission {
  /** The FIFO and its timer. */
  readonly waiters: WaitQueue;

  constructor(
    /** The front end that queues into the line. */
    readonly front: CallReports,
    /** The key of the line's calls (a keyed limit's line), named in their events. */
    readonly key: string | undefined,
  ) {
    this.waiters = new WaitQueue(this, front.clock);
  }

  abstract take(now: Nanos, n: number): boolean;
  abstract wakeAt(now: Nanos, n: number): Nanos | undefined;
  abstract waitForRelease(wake: () => void): void;
  abstract headChanged(head: Waiter | undefined): void;

  /** Estimated ns until a call of `n` arriving at `now` would be admitted behind the demand already waiting. */
  abstract estimateWait(now: Nanos, n: number): Nanos;

  /** A call of `n` joins the line (before it is pushed). */
  abstract joined(n: number): void;

  /** A call of `n` left the line, however it left; `empty` when none is left. */
  protected abstract left(n: number, empty: boolean): void;

  dequeued(waiter: Waiter): void {
    this.front.left(waiter as QueuedCall<unknown>);
    this.left(waiter.n, this.waiters.size === 0);
  }
}

/** The steps of a {@link LineOfSteps}: its abstract methods, as functions. */
export type LineSteps = Pick<WaitLine, 'take' | 'wakeAt' | 'waitForRelease' | 'headChanged' | 'estimateWait' | 'joined'> & {
  left(n: number, empty: boolean): void;
};

/** A line whose steps are given as functions: a limiter's, whose steps are its protected methods. */
export class LineOfSteps extends WaitLine {
  constructor(
    front: CallReports,
    private readonly steps: LineSteps,
  ) {
    super(front, undefined);
  }

  take(now: Nanos, n: number): boolean {
    return this.steps.take(now, n);
  }

  wakeAt(now: Nanos, n: number): Nanos | undefined {
    return this.steps.wakeAt(now, n);
  }

  waitForRelease(wake: () => void): void {
    this.steps.waitForRelease(wake);
  }

  headChanged(head: Waiter | undefined): void {
    this.steps.headChanged(head);
  }

  estimateWait(now: Nanos, n: number): Nanos {
    return this.steps.estimateWait(now, n);
  }

  joined(n: number): void {
    this.steps.joined(n);
  }

  protected left(n: number, empty: boolean): void {
    this.steps.left(n, empty);
  }
}

/** The front end of one limit in one thread: refuses, queues and completes the calls its fast path did not admit. */
export class AdmissionFront<E extends FrontEvents> implements CallReports {
  /** When this front end was created: the origin of the waiters' enqueue times. */
  readonly createdAt: Nanos;
  /** Calls waiting in this thread, over all lines. */
  waiting = 0;
  /** The abort signals waiting calls listen to (one listener per signal). */
  private readonly signals = new SignalWatch<QueuedCall<unknown>>((calls, reason) => {
    for (const c of calls) c.aborted(reason);
  });

  constructor(
    private readonly backend: LimitBackend,
    /** The limit's time source. */
    readonly clock: Clock,
    /** Most calls waiting over all threads. */
    private readonly maxQueued: number,
    /** The limit's event listeners, emitted to here. */
    private readonly events: Listeners<E>,
  ) {
    this.createdAt = clock.now();
  }

  /**
   * The path of a call of `n` (of `key`) the fast path did not admit: refused at once (its signal
   * already aborted, the store down, the queue full, its estimated wait over `maxWaitMs`), or
   * queued in its line (`line`, the one the fast path found, else the backend's).
   */
  enqueue<T>(
    key: string | undefined,
    line: WaitLine | undefined,
    n: number,
    maxWaitMs: number,
    signal: AbortSignal | undefined,
    task: (() => T | PromiseLike<T>) | undefined,
  ): Promise<T> {
    if (signal?.aborted) return this.refuse('aborted', key, n, signal.reason);
    const down = this.backend.storeRefusal();
    if (down !== undefined) return this.refuse('store_unavailable', key, n, down);
    const queued = this.backend.queuedCalls();
    if (queued >= this.maxQueued) return this.refuse('queue_full', key, n, new QueueFullError(this.maxQueued));
    line ??= this.backend.line(key);
    const now = this.clock.now();
    let estimate: Nanos | undefined;
    if (maxWaitMs !== Infinity) {
      estimate = line.estimateWait(now, n);
      if (Number(estimate) > maxWaitMs * 1e6) return this.refuse('queue_timeout', key, n, new QueueTimeoutError(maxWaitMs, Number(estimate) / 1e6, false));
    }
    if (this.events.has('limited')) {
      const waitMs = Number(estimate ?? line.estimateWait(now, n)) / 1e6;
      const event = key === undefined ? { n, waitMs, queued: queued + 1 } : { key, n, waitMs, queued: queued + 1 };
      this.events.emit('limited', event);
    }
    const deadline = maxWaitMs === Infinity ? NO_DEADLINE : now + BigInt(Math.ceil(maxWaitMs * 1e6));
    return new Promise<T>((resolve, reject) => {
      const call = new QueuedCall<T>(line, n, this.msSinceCreated(now), deadline, resolve, reject, task);
      if (deadline !== NO_DEADLINE) call.setMaxWait(maxWaitMs);
      this.waiting++;
      line.joined(n);
      if (signal !== undefined) {
        call.attachSignal(signal);
        this.signals.watch(signal, call as QueuedCall<unknown>);
      }
      line.waiters.push(call);
    });
  }

  /** Counts and reports the refusal of a call of `n` (of `key`) that was never queued, and rejects it with `error`. */
  private refuse<T>(reason: LimitRefusalReason, key: string | undefined, n: number, error: unknown): Promise<T> {
    this.report(reason, key, n);
    return Promise.reject(error);
  }

  admitted(call: QueuedCall<unknown>): void {
    const permit = this.backend.permit(call.n);
    call.resolve(call.task === undefined ? permit : runAdmitted(call.task, permit));
    this.backend.recordWait((this.msSinceCreated(this.clock.now()) - call.enqueuedAtMs) * 1e6);
  }

  refusedWaiting(call: QueuedCall<unknown>, reason: 'queue_timeout' | 'aborted' | 'store_unavailable'): void {
    this.report(reason, call.line.key, call.n);
  }

  left(call: QueuedCall<unknown>): void {
    this.waiting--;
    const signal = call.detachSignal();
    if (signal !== undefined) this.signals.unwatch(signal, call);
  }

  private report(reason: LimitRefusalReason, key: string | undefined, n: number): void {
    if (reason !== 'store_unavailable') this.backend.countRefused(reason);
    if (this.events.has('refused')) {
      const event = key === undefined ? { reason, n } : { key, reason, n };
      this.events.emit('refused', event);
    }
  }

  /**
   * Whole milliseconds since this front end was created: a small integer (a Smi, stored in the
   * waiter itself) for the first 24 days, where a double or a BigInt would be one more heap object
   * per waiting call. Wait metrics are kept to the millisecond.
   */
  private msSinceCreated(now: Nanos): number {
    return Math.round(Number(now - this.createdAt) / 1e6);
  }
}

/**
 * Runs an admitted task at once, holding `permit` until its result settles; a synchronous throw
 * releases the permit and becomes a rejection.
 */
export function runAdmitted<T>(task: () => T | PromiseLike<T>, permit: Permit): Promise<T> {
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

/** Fields only some waiting calls need. */
interface Extras {
  maxWaitMs: number;
  signal: AbortSignal | undefined;
}

/**
 * A call waiting in a {@link WaitLine}, whichever limiter kind queued it: how many tokens, its
 * deadline, the caller's promise, the task to start at admission, and its line.
 *
 * Fixed shape and few fields: with 100 000 waiters each field costs 0.8 MB, so the rarely used
 * ones (wait bound, abort signal) live in `extras`.
 */
export class QueuedCall<T> implements Waiter {
  settled = false;
  heapIndex = -1;
  ticket = 0;
  private extras: Extras | undefined = undefined;

  constructor(
    /** The line the call waits in. */
    readonly line: WaitLine,
    readonly n: number,
    /** Enqueue time in whole ms since the front end was created: for the wait metrics. */
    readonly enqueuedAtMs: number,
    readonly deadline: Nanos,
    readonly resolve: (value: T | PromiseLike<T>) => void,
    private readonly reject: (error: unknown) => void,
    readonly task: (() => T | PromiseLike<T>) | undefined,
  ) {}

  admit(): void {
    this.line.front.admitted(this as QueuedCall<unknown>);
  }

  refuse(error: unknown, storeDown = false): void {
    if (storeDown) this.line.front.refusedWaiting(this as QueuedCall<unknown>, 'store_unavailable');
    this.reject(error);
  }

  expire(now: Nanos): void {
    const maxWaitMs = this.extras!.maxWaitMs;
    this.line.front.refusedWaiting(this as QueuedCall<unknown>, 'queue_timeout');
    // The call arrived maxWaitMs before its deadline.
    this.reject(new QueueTimeoutError(maxWaitMs, maxWaitMs + Number(now - this.deadline) / 1e6, true));
  }

  /** The call's signal fired: leave the line, rejected with its reason. */
  aborted(reason: unknown): void {
    this.line.front.refusedWaiting(this as QueuedCall<unknown>, 'aborted');
    this.line.waiters.remove(this, reason);
  }

  /** Records the wait bound, for the error at the deadline. */
  setMaxWait(maxWaitMs: number): void {
    this.extras ??= { maxWaitMs, signal: undefined };
    this.extras.maxWaitMs = maxWaitMs;
  }

  /** Records the abort signal the call waits on. */
  attachSignal(signal: AbortSignal): void {
    this.extras ??= { maxWaitMs: Infinity, signal: undefined };
    this.extras.signal = signal;
  }

  /** Forgets the signal (the call left its line) and returns it, if the call had one. */
  detachSignal(): AbortSignal | undefined {
    const signal = this.extras?.signal;
    if (signal !== undefined) this.extras!.signal = undefined;
    return signal;
  }
}
