/**
 * One call waiting in a {@link FairQueue}: its task, its promise, its deadline and its place in
 * the deadline heap, so the shared `DeadlineHeap` keeps the earliest deadline for the fair queue's
 * one timer.
 */
import type { Nanos } from '../clock.js';
import { QueueTimeoutError } from '../errors.js';
import type { Deadlined } from '../queue/deadline-heap.js';
import type { Flow, FlowMember } from './flow.js';
import type { PriorityLevel } from './priority-level.js';

/** A call waiting for its turn; settled exactly once (started, refused, expired or aborted). */
export class FairCall<T = unknown> implements Deadlined, FlowMember {
  settled = false;
  heapIndex = -1;

  constructor(
    /** The level the call waits in. */
    readonly level: PriorityLevel<FairCall>,
    /** The flow the call waits in. */
    readonly flow: Flow<FairCall>,
    private readonly task: () => T | PromiseLike<T>,
    private readonly resolve: (value: T | PromiseLike<T>) => void,
    private readonly reject: (error: unknown) => void,
    /** When the call is refused if still waiting, or NO_DEADLINE. */
    readonly deadline: Nanos,
    /** Its wait bound, for the error at the deadline. */
    readonly maxWaitMs: number,
    /** Its abort signal, if any. */
    readonly signal: AbortSignal | undefined,
  ) {}

  /**
   * Starts the task (the admission instant) and settles the caller's promise with its result.
   * Returns the result as a promise, which a concurrency permit is held until.
   */
  start(): Promise<T> {
    let result: T | PromiseLike<T>;
    try {
      result = this.task();
    } catch (error) {
      this.reject(error);
      return Promise.reject(error);
    }
    const p = Promise.resolve(result);
    this.resolve(p);
    return p;
  }

  /**
   * Starts the task (the admission instant) and settles the caller's promise with its result,
   * without building a promise for a permit: what rate limits use, since they hold none.
   */
  admit(): void {
    let result: T | PromiseLike<T>;
    try {
      result = this.task();
    } catch (error) {
      this.reject(error);
      return;
    }
    this.resolve(result);
  }

  /** Rejects the caller's promise. */
  refuse(error: unknown): void {
    this.reject(error);
  }

  /** Rejects the caller's promise at its deadline. */
  expire(now: Nanos): void {
    // The call arrived maxWaitMs before its deadline.
    this.reject(new QueueTimeoutError(this.maxWaitMs, this.maxWaitMs + Number(now - this.deadline) / 1e6, true));
  }
}
