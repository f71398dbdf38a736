/**
 * What every waiting call of a {@link WaitQueue} carries, whichever limiter queued it: how many
 * tokens, its deadline, the caller's promise, and the task to start at admission.
 *
 * Fixed shape and few fields: with 100 000 waiters each field costs 0.8 MB, so the rarely used
 * ones (wait bound, abort signal) live in `extras`.
 */
import type { Nanos } from '../clock.js';
import { QueueTimeoutError } from '../errors.js';
import type { Waiter } from './wait-queue.js';

/** Fields only some waiting calls need. */
interface Extras {
  maxWaitMs: number;
  signal: AbortSignal | undefined;
}

/** @internal A waiting call; a limiter's subclass says how admission, refusals and aborts are reported. */
export abstract class QueuedCall<T> implements Waiter {
  settled = false;
  heapIndex = -1;
  ticket = 0;
  private extras: Extras | undefined = undefined;

  constructor(
    readonly n: number,
    /** Enqueue time in whole ms since the limiter was created: for the wait metrics. */
    readonly enqueuedAtMs: number,
    readonly deadline: Nanos,
    readonly resolve: (value: T | PromiseLike<T>) => void,
    private readonly reject: (error: unknown) => void,
    readonly task: (() => T | PromiseLike<T>) | undefined,
  ) {}

  abstract admit(): void;

  /** Counts and reports a refusal before the call is rejected. */
  protected abstract refused(reason: 'timeout' | 'aborted'): void;

  /** The call no longer waits on `signal`. */
  protected abstract unwatch(signal: AbortSignal): void;

  refuse(error: unknown): void {
    this.reject(error);
  }

  expire(now: Nanos): void {
    const maxWaitMs = this.extras!.maxWaitMs;
    this.refused('timeout');
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
      this.unwatch(signal);
    }
  }
}
