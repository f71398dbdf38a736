/**
 * Errors a waiting call can be refused with. Both carry a stable `code` so callers (and the Thrift
 * server, which turns them into TApplicationException replies) can tell the reasons apart without
 * parsing messages. A refused call has consumed nothing from the limit.
 */

/** Thrown when a call would wait longer than `maxWaitMs`, or was still waiting at its deadline. */
export class QueueTimeoutError extends Error {
  /** Stable machine-readable reason. */
  readonly code = 'QUEUE_TIMEOUT' as const;
  /**
   * @param maxWaitMs the bound that was exceeded.
   * @param estimatedWaitMs the wait the call would have had (refused up front), or the time it had
   *   already waited (refused at its deadline).
   * @param atDeadline true when the call waited and its deadline passed; false when it was refused
   *   at once because the queued demand already made its wait longer than the bound.
   */
  constructor(
    readonly maxWaitMs: number,
    readonly estimatedWaitMs: number,
    readonly atDeadline: boolean,
  ) {
    super(
      atDeadline
        ? `waited limit ${maxWaitMs} ms without being admitted`
        : `estimated wait ${Math.ceil(estimatedWaitMs)} ms exceeds limit ${maxWaitMs} ms`,
    );
    this.name = 'QueueTimeoutError';
  }
}

/** Thrown when `maxQueued` calls are already waiting on the limiter (counted over all threads). */
export class QueueFullError extends Error {
  /** Stable machine-readable reason. */
  readonly code = 'QUEUE_FULL' as const;
  /** @param maxQueued the bound that was reached. */
  constructor(readonly maxQueued: number) {
    super(`queue full: ${maxQueued} calls already waiting`);
    this.name = 'QueueFullError';
  }
}

/**
 * Thrown while a limit's distributed store cannot be reached and its policy is `'fail-closed'`:
 * the call is refused rather than admitted without the store's say. Nothing was consumed.
 */
export class StoreUnavailableError extends Error {
  /** Stable machine-readable reason. */
  readonly code = 'STORE_UNAVAILABLE' as const;
  /** @param key the limit whose store is down. */
  constructor(readonly key: string) {
    super(`limit store unavailable for "${key}" (onStoreError fail-closed)`);
    this.name = 'StoreUnavailableError';
  }
}
