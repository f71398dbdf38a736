/**
 * The abort signals waiting calls listen to, with one 'abort' listener per signal however many
 * calls wait on it: Node's EventTarget scans its listener list on every add and remove, so a
 * listener per call would make queueing behind one signal (a server connection's, say) quadratic.
 */
export class SignalWatch<C> {
  private readonly bySignal = new Map<AbortSignal, { calls: Set<C>; listener: () => void }>();

  /** @param onAbort called once when a watched signal aborts, with the calls still watching it. */
  constructor(private readonly onAbort: (calls: Set<C>, reason: unknown) => void) {}

  /** `call` waits on `signal` until {@link unwatch} (or the abort). */
  watch(signal: AbortSignal, call: C): void {
    let entry = this.bySignal.get(signal);
    if (entry === undefined) {
      const calls = new Set<C>();
      const listener = (): void => {
        this.bySignal.delete(signal);
        this.onAbort(calls, signal.reason);
      };
      entry = { calls, listener };
      this.bySignal.set(signal, entry);
      signal.addEventListener('abort', listener, { once: true });
    }
    entry.calls.add(call);
  }

  /** `call` no longer waits on `signal`; the listener goes with the last call. */
  unwatch(signal: AbortSignal, call: C): void {
    const entry = this.bySignal.get(signal);
    if (entry === undefined) return;
    entry.calls.delete(call);
    if (entry.calls.size === 0) {
      this.bySignal.delete(signal);
      signal.removeEventListener('abort', entry.listener);
    }
  }
}
