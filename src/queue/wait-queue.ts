/**
 * The calls of one thread waiting on one limiter.
 *
 * Waiters are served strictly FIFO within the thread. Tokens are taken when a waiter is released,
 * never reserved at enqueue: a thread that was busy (a long synchronous handler, GC, a loop
 * submitting thousands of calls) wakes to find the bucket as it is now, and can start at most what
 * the algorithm allows now, instead of releasing a backlog of slots that passed while it slept.
 *
 * One exception, bounded: a wake-up that comes a little late. Node's timers count whole
 * milliseconds and fire up to a millisecond or so after their time on a healthy event loop; at
 * burst 1 a limit that started each waiter at the clock would lose that delay on every token
 * (measured: 88.8 % of 1000/s). So a waiter's take may count it as admitted at the instant its
 * limit could first have admitted it, but no earlier than {@link WAKE_CREDIT_NS} (token bucket:
 * or one emission interval, if longer) in the past; the call itself still starts now, at its
 * admission. Anything older is forgotten as before: a thread that slept through a stall starts
 * at most what the algorithm allows now plus the slots of the credit (a token bucket:
 * burst + rate × λ calls), never a backlog. The algorithms state the resulting bound (gcra.ts,
 * fixed-window.ts); the keyed table's per-key buckets take no credit.
 *
 * A thread holds at most one timer per limiter however many calls wait: the timer is armed for the
 * earlier of "the head of the queue could be admitted" and "the earliest deadline", and every wake
 * admits as many waiters as the limit allows at that moment, then expires the overdue ones.
 * Limits that are freed by releases rather than by time (the concurrency limit) ask the queue to
 * wait for a notification instead of a time.
 */
import type { Clock, Nanos } from '../clock.js';
import { DeadlineHeap, type Deadlined } from './deadline-heap.js';
import { NEVER, OneTimer } from './one-timer.js';
import { PumpGuard } from './pump-guard.js';

/** No deadline. */
export const NO_DEADLINE = NEVER;

/**
 * How late (ns) a waiter's wake-up may be and still be counted at the instant it was due (see the
 * top of this file): a Node timer's own lateness on a healthy event loop, which measures 0.6 ms
 * median and 1.1 ms at p99 for 1 ms timers, with room to spare.
 */
export const WAKE_CREDIT_NS = 2_000_000n;

/** One waiting call. Kept small: with 100 000 waiters every field counts. */
export interface Waiter extends Deadlined {
  /** Tokens (or permits) the call needs. */
  readonly n: number;
  /** When the call is refused if still waiting, or {@link NO_DEADLINE}. */
  readonly deadline: Nanos;
  /** Settles the caller's promise with success (or starts its task); called exactly once, at admission. */
  admit(): void;
  /**
   * Settles the caller's promise with an error; called exactly once, if refused or aborted.
   * `storeDown`: refused because the limit's store is down (fail-closed), which the call reports.
   */
  refuse(error: unknown, storeDown?: boolean): void;
  /** Refuses the call because its deadline passed (at `now`). */
  expire(now: Nanos): void;
  /** True once admitted, refused or aborted. */
  settled: boolean;
  /** Order of arrival across threads (concurrency limit); 0 elsewhere. */
  ticket: number;
}

/** What the queue needs from the algorithm it waits on. */
export interface Admission {
  /**
   * Takes `n` tokens at `now` for a waiter if the limit allows; the one atomic step that admits a
   * call. It may count the call at an instant up to the wake-up credit before `now` (see the top
   * of this file), where the fast path counts at `now`.
   */
  take(now: Nanos, n: number): boolean;
  /**
   * Earliest time `n` tokens could be available judging by the shared state now, or `undefined`
   * when only a release by some thread can make room (then {@link waitForRelease} is used).
   */
  wakeAt(now: Nanos, n: number): Nanos | undefined;
  /** Arms a one-shot wake-up for when another thread frees capacity. */
  waitForRelease(wake: () => void): void;
  /** Called whenever the waiter at the head of this thread's queue changes. */
  headChanged(head: Waiter | undefined): void;
  /** Called once for every waiter leaving the queue, however it left. */
  dequeued(waiter: Waiter): void;
}

/** A per-thread FIFO of waiters over one {@link Admission}, with one timer. */
export class WaitQueue {
  private items: (Waiter | undefined)[] = [];
  private first = 0;
  private live = 0;
  private readonly deadlines = new DeadlineHeap<Waiter>();
  private readonly timer: OneTimer;
  private head: Waiter | undefined;
  private readonly guard = new PumpGuard(
    () => this.pass(),
    () => this.schedule(),
  );
  private readonly onRelease = (): void => this.pump();

  constructor(
    private readonly admission: Admission,
    private readonly clock: Clock,
  ) {
    this.timer = new OneTimer(clock, () => this.pump());
  }

  /** Calls waiting in this thread. */
  get size(): number {
    return this.live;
  }

  /** Appends a waiter and admits whatever can be admitted now. */
  push(waiter: Waiter): void {
    this.items.push(waiter);
    this.live++;
    if (waiter.deadline !== NO_DEADLINE) this.deadlines.push(waiter);
    this.pump();
  }

  /** Takes a waiting call out of the queue (abort); it is refused with `error`. */
  remove(waiter: Waiter, error: unknown): void {
    if (waiter.settled) return;
    this.settle(waiter);
    waiter.refuse(error);
    if (waiter === this.head) this.pump();
  }

  /** Refuses every waiting call with `error` (a cleared limiter; with `storeDown`, its store down). */
  clear(error: unknown, storeDown = false): void {
    for (let i = this.first; i < this.items.length; i++) {
      const w = this.items[i];
      if (w && !w.settled) {
        this.settle(w);
        w.refuse(error, storeDown);
      }
    }
    this.items = [];
    this.first = 0;
    this.pump();
  }

  /**
   * Admits waiters in order while the limit allows, refuses those past their deadline, then arms
   * the one timer (or release wait) for the next event. Re-entrant calls (a waiter's callback that
   * acquires again) are folded into the running pass.
   */
  pump(): void {
    this.guard.run();
  }

  private pass(): void {
    let now = this.clock.now();
    for (let w = this.peek(); w !== undefined; w = this.peek()) {
      if (!this.admission.take(now, w.n)) break;
      // Start the call before any bookkeeping: the bound is on the moments calls start, so
      // nothing (an allocation that could trigger GC, above all) should come in between.
      w.admit();
      this.settle(w);
      // The admitted call may have run user code synchronously: read the time again so the
      // next admission is judged at the moment it really happens.
      now = this.clock.now();
    }
    for (let w = this.deadlines.peek(); w !== undefined && w.deadline <= now; w = this.deadlines.peek()) {
      this.deadlines.pop();
      if (w.settled) continue;
      this.settle(w);
      w.expire(now);
    }
    const head = this.peek();
    if (head !== this.head) {
      this.head = head;
      this.admission.headChanged(head);
    }
  }

  private schedule(): void {
    const now = this.clock.now();
    let at = this.deadlines.peek()?.deadline ?? NO_DEADLINE;
    if (this.head !== undefined) {
      const ready = this.admission.wakeAt(now, this.head.n);
      if (ready === undefined) this.admission.waitForRelease(this.onRelease);
      else if (at === NO_DEADLINE || ready < at) at = ready;
    }
    this.timer.arm(at);
  }

  /** The oldest waiter still waiting, dropping settled ones from the front. */
  private peek(): Waiter | undefined {
    const items = this.items;
    while (this.first < items.length) {
      const w = items[this.first]!;
      if (!w.settled) {
        // Compact once the consumed prefix dominates, so memory follows the live queue.
        if (this.first > 1024 && this.first * 2 > items.length) {
          this.items = items.slice(this.first);
          this.first = 0;
        }
        return w;
      }
      items[this.first++] = undefined;
    }
    if (this.first > 0) {
      this.items = [];
      this.first = 0;
    }
    return undefined;
  }

  private settle(w: Waiter): void {
    w.settled = true;
    this.live--;
    if (w.heapIndex >= 0) this.deadlines.delete(w);
    this.admission.dequeued(w);
  }
}
