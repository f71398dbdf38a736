/**
 * A call waiting in a {@link KeyQueue}. Fixed shape and few fields, as the single-key limiters'
 * waiters: the rarely used ones (wait bound, abort signal) live in `extras`.
 */
import type { Nanos } from '../clock.js';
import { QueueTimeoutError } from '../errors.js';
import type { Waiter } from '../queue/wait-queue.js';
import type { KeyQueue } from './key-queue.js';

/** @internal What a waiting call reports to the keyed bucket that queued it. */
export interface KeyWaiterOwner {
  /** The call was admitted: hand over the permit or run the task. */
  completeAdmitted(waiter: KeyWaiter<unknown>): void;
  /** The call is refused for `reason` (counted and emitted before it is rejected). */
  refused(waiter: KeyWaiter<unknown>, reason: 'timeout' | 'aborted'): void;
  /** The call stopped waiting on `signal`. */
  unwatch(signal: AbortSignal, waiter: KeyWaiter<unknown>): void;
}

/** Fields only some waiting calls need. */
interface Extras {
  maxWaitMs: number;
  signal: AbortSignal | undefined;
}

/** @internal A call of `n` tokens waiting for its key. */
export class KeyWaiter<T> implements Waiter {
  settled = false;
  heapIndex = -1;
  ticket = 0;
  private extras: Extras | undefined = undefined;

  constructor(
    private readonly owner: KeyWaiterOwner,
    /** The key's queue in this thread. */
    readonly queue: KeyQueue,
    readonly n: number,
    /** Enqueue time, whole ms since the owner was created: for the wait metrics. */
    readonly enqueuedAtMs: number,
    readonly deadline: Nanos,
    readonly resolve: (value: T | PromiseLike<T>) => void,
    private readonly reject: (error: unknown) => void,
    readonly task: (() => T | PromiseLike<T>) | undefined,
  ) {}

  admit(): void {
    this.owner.completeAdmitted(this as KeyWaiter<unknown>);
  }

  refuse(error: unknown): void {
    this.reject(error);
  }

  expire(now: Nanos): void {
    const maxWaitMs = this.extras!.maxWaitMs;
    this.owner.refused(this as KeyWaiter<unknown>, 'timeout');
    // The call arrived maxWaitMs before its deadline.
    this.reject(new QueueTimeoutError(maxWaitMs, maxWaitMs + Number(now - this.deadline) / 1e6, true));
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

  /** Stops watching the signal (the call left the queue). */
  detachSignal(): void {
    const signal = this.extras?.signal;
    if (signal !== undefined) {
      this.extras!.signal = undefined;
      this.owner.unwatch(signal, this as KeyWaiter<unknown>);
    }
  }

  /** The call's signal fired: leave the queue, rejected with its reason. */
  aborted(reason: unknown): void {
    this.owner.refused(this as KeyWaiter<unknown>, 'aborted');
    this.queue.waiters.remove(this, reason);
  }
}
