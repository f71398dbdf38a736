/**
 * The calls of one thread waiting for one key: a {@link WaitLine} (FIFO, one timer) over that
 * key's bucket in the shared table. A {@link KeyedTokenBucket} keeps one only while calls of its
 * key wait in the thread and drops it when it empties, so a thread's memory follows its waiting
 * calls, not the keys it has seen.
 */
import type { Nanos } from '../clock.js';
import type { LimitWatch } from '../limiters/limit-change.js';
import { WaitLine, type CallReports } from '../queue/admission-front.js';
import type { Waiter } from '../queue/wait-queue.js';
import type { KeyedTable } from './keyed-table.js';

/** @internal One key's waiting calls in one thread, with the key's hash computed once. */
export class KeyQueue extends WaitLine {
  /** Tokens the calls in this queue ask for. */
  tokens = 0;

  constructor(
    front: CallReports,
    private readonly table: KeyedTable,
    /** The queue of every key with calls waiting in this thread, and nothing else. */
    private readonly queues: Map<string, KeyQueue>,
    /** The thread's watch on changes of the limit: armed while calls wait. */
    private readonly watch: LimitWatch,
    /** The key. */
    override readonly key: string,
    /** The key's hash, high half. */
    private readonly hi: number,
    /** The key's hash, low half. */
    private readonly lo: number,
    /** The key's home slot. */
    private readonly home: number,
  ) {
    super(front, key);
  }

  take(now: Nanos, n: number): boolean {
    return this.table.take(this.hi, this.lo, this.home, now, n);
  }

  wakeAt(now: Nanos, n: number): Nanos {
    return this.table.readyAt(this.hi, this.lo, this.home, now, n, 0);
  }

  /** Never called: wakeAt always names a time. */
  waitForRelease(): void {
    throw new Error('a keyed token bucket refills with time, never by releases');
  }

  /** While calls of the key wait, a change of the limit in any thread times them again. */
  headChanged(head: Waiter | undefined): void {
    if (head !== undefined) this.watch.arm();
  }

  /** From the key's bucket and the calls of this key waiting in this thread (other threads' are not counted). */
  estimateWait(now: Nanos, n: number): Nanos {
    return this.table.readyAt(this.hi, this.lo, this.home, now, n, this.tokens) - now;
  }

  joined(n: number): void {
    this.table.addQueued();
    // A queue is in the map exactly while calls wait in it.
    if (this.tokens === 0) this.queues.set(this.key, this);
    this.tokens += n;
  }

  protected left(n: number, empty: boolean): void {
    this.table.removeQueued();
    this.tokens -= n;
    if (empty && this.queues.get(this.key) === this) this.queues.delete(this.key);
  }
}
