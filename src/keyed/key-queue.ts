/**
 * The calls of one thread waiting for one key: a {@link WaitQueue} (FIFO, one timer) over that
 * key's bucket in the shared table. A {@link KeyedTokenBucket} keeps one only while calls of its
 * key wait in the thread and drops it when it empties, so a thread's memory follows its waiting
 * calls, not the keys it has seen.
 */
import type { Clock, Nanos } from '../clock.js';
import { WaitQueue, type Admission, type Waiter } from '../queue/wait-queue.js';

/** @internal What a key's queue asks of the keyed bucket that owns it. */
export interface KeyQueueOwner {
  /** Takes `n` tokens of the queue's key at `now`. */
  takeFor(queue: KeyQueue, now: Nanos, n: number): boolean;
  /** Earliest time `n` tokens of the queue's key could be taken. */
  readyFor(queue: KeyQueue, now: Nanos, n: number): Nanos;
  /** A waiter left the queue, however it left. */
  dequeuedFrom(queue: KeyQueue, waiter: Waiter): void;
}

/** @internal One key's waiting calls in one thread, with the key's hash computed once. */
export class KeyQueue implements Admission {
  /** The FIFO and its timer. */
  readonly waiters: WaitQueue;
  /** Tokens the calls in this queue ask for. */
  tokens = 0;

  constructor(
    private readonly owner: KeyQueueOwner,
    /** The key. */
    readonly key: string,
    /** The key's hash, high half. */
    readonly hi: number,
    /** The key's hash, low half. */
    readonly lo: number,
    /** The key's home slot. */
    readonly home: number,
    clock: Clock,
  ) {
    this.waiters = new WaitQueue(this, clock);
  }

  /** @internal */
  take(now: Nanos, n: number): boolean {
    return this.owner.takeFor(this, now, n);
  }

  /** @internal */
  wakeAt(now: Nanos, n: number): Nanos {
    return this.owner.readyFor(this, now, n);
  }

  /** @internal Never called: wakeAt always names a time. */
  waitForRelease(): void {
    throw new Error('a keyed token bucket refills with time, never by releases');
  }

  /** @internal */
  headChanged(): void {}

  /** @internal */
  dequeued(waiter: Waiter): void {
    this.owner.dequeuedFrom(this, waiter);
  }
}
