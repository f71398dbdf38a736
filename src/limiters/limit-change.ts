/**
 * Changing a limit while every thread keeps admitting: who may change it, and how the threads
 * with waiting calls learn that it changed.
 *
 * Admissions never wait for a change: they read the limit's settings from shared memory on each
 * step (token-bucket.ts and fixed-window.ts say how a step and a change stay consistent without a
 * lock). Changes themselves are serialized by the WRITER word: a change writes the settings record
 * that is not current, then installs it with one compare-and-swap, and two changes writing the same
 * record at once would mix their settings. A change holds WRITER for a few microseconds (it never
 * waits on anything while holding it). A thread that dies holding it is the one way to leave it
 * set; `reclaimThread` of that thread clears it, as it gives back the thread's permits.
 *
 * After a change the LIMIT_SIGNAL word is bumped and notified. A thread whose calls wait holds one
 * `Atomics.waitAsync` on it (a {@link LimitWatch}): its queue's timer was armed under the old limit
 * and could be far in the future, so without the notification a raised limit would reach the
 * waiting calls of other threads only when that timer fired.
 *
 * A limiter's two words are in its header (shared-state.ts); a keyed table has its own pair
 * ({@link ChangeWords}, keyed-table.ts).
 */
import { threadId } from 'node:worker_threads';
import { LimiterLayout } from '../shared/shared-state.js';
import { waitForSignal, type SignalWait } from '../shared/wait-signal.js';

/** Longest a change waits for another thread's change to finish before giving up. */
const WRITER_WAIT_MS = 1000;

/** Where a limit's WRITER and LIMIT_SIGNAL words are: Int32 indices in its shared memory. */
export interface ChangeWords {
  readonly writer: number;
  readonly signal: number;
}

/** A limiter's words (LimiterLayout). */
const LIMITER_WORDS: ChangeWords = { writer: LimiterLayout.I32.WRITER, signal: LimiterLayout.I32.LIMIT_SIGNAL };

/**
 * Runs `change` holding the limit's WRITER word, then wakes every thread's waiting calls.
 * @throws Error when another thread has held WRITER for over a second (it died mid-change and was
 *   not reclaimed).
 */
export function changeLimit(state: { readonly i32: Int32Array }, change: () => void, words: ChangeWords = LIMITER_WORDS): void {
  const i32 = state.i32;
  const me = threadId + 1;
  const deadline = performance.now() + WRITER_WAIT_MS;
  for (;;) {
    const holder = Atomics.compareExchange(i32, words.writer, 0, me);
    if (holder === 0) break;
    if (performance.now() > deadline) {
      throw new Error(
        `the limit is being changed by thread ${holder - 1} for over ${WRITER_WAIT_MS} ms: if that thread died, call reclaimThread(${holder - 1}) on the limiter`,
      );
    }
    // Another thread is between two steps of its change (microseconds): sleep until it is done.
    Atomics.wait(i32, words.writer, holder, 1);
  }
  try {
    change();
  } finally {
    release(i32, words);
  }
}

/**
 * Runs `change` if no other thread is changing the limit right now, without waiting; false if one
 * is (its change has the same effect on what `change` is for).
 */
export function tryChangeLimit(state: { readonly i32: Int32Array }, change: () => void, words: ChangeWords = LIMITER_WORDS): boolean {
  if (Atomics.compareExchange(state.i32, words.writer, 0, threadId + 1) !== 0) return false;
  try {
    change();
  } finally {
    release(state.i32, words);
  }
  return true;
}

function release(i32: Int32Array, words: ChangeWords): void {
  Atomics.store(i32, words.writer, 0);
  Atomics.notify(i32, words.writer);
  Atomics.add(i32, words.signal, 1);
  Atomics.notify(i32, words.signal);
}

/**
 * Frees WRITER if the dead thread `deadThreadId` held it: a thread that died while changing the
 * limit must not keep every later change waiting.
 */
export function releaseDeadWriter(i32: Int32Array, deadThreadId: number, words: ChangeWords = LIMITER_WORDS): void {
  if (Atomics.compareExchange(i32, words.writer, deadThreadId + 1, 0) === deadThreadId + 1) Atomics.notify(i32, words.writer);
}

/**
 * One thread's watch on a limiter's LIMIT_SIGNAL: armed while calls of the thread wait, it calls
 * `onChange` after each change for as long as `waiting()` says calls still wait. At most one wait
 * is pending per watch; it is left pending (not holding the process open: the queue's own timer
 * does that while calls wait) when the queue empties, since an abandoned waitAsync would stay in
 * V8's waiter list for good.
 */
export class LimitWatch {
  private wait: SignalWait | undefined = undefined;

  constructor(
    private readonly i32: Int32Array,
    private readonly waiting: () => boolean,
    private readonly onChange: () => void,
    private readonly signal: number = LIMITER_WORDS.signal,
  ) {}

  /** Makes sure the next change calls `onChange`. */
  arm(): void {
    if (this.wait !== undefined) return;
    const seen = Atomics.load(this.i32, this.signal);
    this.wait = waitForSignal(this.i32, this.signal, seen, Infinity, () => {
      this.wait = undefined;
      if (!this.waiting()) return;
      this.arm();
      this.onChange();
    });
    this.wait.unref();
  }
}
