/**
 * Waiting, without blocking the event loop, for another thread to move a word of shared memory.
 *
 * `Atomics.waitAsync` resolves when the word is notified (or it already differs from what the
 * waiter saw, or the timeout passes). A pending waitAsync does not keep Node's event loop alive,
 * but a waiting call should, as a pending timer would: one long interval per waiting thread holds
 * the loop open and is cleared at the wake-up.
 */

const KEEP_ALIVE_MS = 0x7fffffff;
const noop = (): void => {};

/**
 * Calls `wake` once, after `i32[index]` has been notified or no longer equals `seen`, or after
 * `timeoutMs`. Never synchronously: a word that already moved wakes on the next microtask.
 */
export function waitForSignal(i32: Int32Array, index: number, seen: number, timeoutMs: number, wake: () => void): void {
  const result = Atomics.waitAsync(i32, index, seen, timeoutMs);
  if (!result.async) {
    queueMicrotask(wake);
    return;
  }
  const keepAlive = setInterval(noop, KEEP_ALIVE_MS);
  void result.value.then(() => {
    clearInterval(keepAlive);
    wake();
  });
}
