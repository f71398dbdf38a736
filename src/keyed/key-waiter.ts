/**
 * A call waiting in a {@link KeyQueue}: a {@link QueuedCall} that reports to its keyed bucket.
 */
import type { Nanos } from '../clock.js';
import { QueuedCall } from '../queue/queued-call.js';
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

/** @internal A call of `n` tokens waiting for its key. */
export class KeyWaiter<T> extends QueuedCall<T> {
  constructor(
    private readonly owner: KeyWaiterOwner,
    /** The key's queue in this thread. */
    readonly queue: KeyQueue,
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
    this.owner.completeAdmitted(this as KeyWaiter<unknown>);
  }

  protected refused(reason: 'timeout' | 'aborted'): void {
    this.owner.refused(this as KeyWaiter<unknown>, reason);
  }

  protected unwatch(signal: AbortSignal): void {
    this.owner.unwatch(signal, this as KeyWaiter<unknown>);
  }

  /** The call's signal fired: leave the queue, rejected with its reason. */
  aborted(reason: unknown): void {
    this.refused('aborted');
    this.queue.waiters.remove(this, reason);
  }
}
