/**
 * The permit a call receives when it is admitted.
 *
 * Rate limits need no release (time refills them), so every rate permit is one shared immutable
 * object and admission allocates nothing. Concurrency permits free their slot on release, exactly
 * once however many times `release()` or disposal is called.
 */

/** Proof of admission. Works with `using` / `await using`, which release it at scope end. */
export interface Permit extends Disposable, AsyncDisposable {
  /** Gives the permit back (a no-op for rate limits); safe to call more than once. */
  release(): void;
}

/** The permit of rate limits: nothing to give back. */
export const RATE_PERMIT: Permit = Object.freeze({
  release(): void {},
  [Symbol.dispose](): void {},
  [Symbol.asyncDispose](): Promise<void> {
    return Promise.resolve();
  },
});

/** The permit of rate limits, already resolved: the fast path of `acquire` allocates nothing. */
export const RATE_PERMIT_PROMISE: Promise<Permit> = Promise.resolve(RATE_PERMIT);

/** A permit that runs `onRelease(n)` once, on the first release or disposal. */
export class ReleasablePermit implements Permit {
  private released = false;

  constructor(
    private readonly n: number,
    private readonly onRelease: (n: number) => void,
  ) {}

  /** Frees the permit's slots; later calls do nothing. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.onRelease(this.n);
  }

  [Symbol.dispose](): void {
    this.release();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.release();
    return Promise.resolve();
  }
}
