/**
 * Waiting, without blocking the event loop, for another thread to move a word of shared memory.
 *
 * `Atomics.waitAsync` resolves when the word is notified (or it already differs from what the
 * waiter saw, or the timeout passes). A pending waitAsync does not keep Node's event loop alive,
 * but a waiting call should, as a pending timer would: one long interval per waiting thread holds
 * the loop open and is cleared at the wake-up. Its owner unrefs it while no call of the thread
 * waits (a script whose calls are all done must be able to exit) and refs it again when one
 * does. The wait itself is kept rather than abandoned: a waitAsync that nobody ever notifies stays
 * in V8's waiter list for good, so abandoning one each time a queue empties would leak.
 */

const KEEP_ALIVE_MS = 0x7fffffff;
const noop = (): void => {};

/** A pending {@link waitForSignal}: whether it holds the event loop open (it does at first). */
export interface SignalWait {
  /** Holds the event loop open until the wake-up. */
  ref(): unknown;
  /** Lets the event loop exit meanwhile; the wake-up still comes if the word moves. */
  unref(): unknown;
}

/** The wait of a word that had already moved: its wake-up is a microtask, which nothing outlives. */
const SETTLED: SignalWait = { ref: noop, unref: noop };

/**
 * Calls `wake` once, after `i32[index]` has been notified or no longer equals `seen`, or after
 * `timeoutMs`. Never synchronously: a word that already moved wakes on the next microtask.
 */
export function waitForSignal(i32: Int32Array, index: number, seen: number, timeoutMs: number, wake: () => void): SignalWait {
  const result = Atomics.waitAsync(i32, index, seen, timeoutMs);
  if (!result.async) {
    queueMicrotask(wake);
    return SETTLED;
  }
  const keepAlive = setInterval(noop, KEEP_ALIVE_MS);
  void result.value.then(() => {
    clearInterval(keepAlive);
    wake();
  });
  return keepAlive;
}
