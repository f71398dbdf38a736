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
    super(atDeadline ? `waited limit ${maxWaitMs} ms without being admitted` : `estimated wait ${Math.ceil(estimatedWaitMs)} ms exceeds limit ${maxWaitMs} ms`);
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

/** A refusal of a call for overload: its queue was full, its wait too long, or its store down. */
export type OverloadError = QueueFullError | QueueTimeoutError | StoreUnavailableError;

/**
 * The message a server answers a refused call of `method` with, the same whether the threaded
 * server or a `wrapHandler` handler refused it, so clients can match one wording.
 * @returns undefined when `error` is not an overload refusal.
 */
export function overloadMessage(method: string, error: OverloadError): string;
export function overloadMessage(method: string, error: unknown): string | undefined;
export function overloadMessage(method: string, error: unknown): string | undefined {
  if (error instanceof QueueFullError) return `server overloaded: method ${method} queue full (${error.maxQueued} calls waiting)`;
  if (error instanceof StoreUnavailableError) return `server overloaded: method ${method} limit store unavailable (fail-closed)`;
  if (!(error instanceof QueueTimeoutError)) return undefined;
  return error.atDeadline
    ? `server overloaded: method ${method} waited limit ${error.maxWaitMs} ms`
    : `server overloaded: method ${method} would wait ${Math.ceil(error.estimatedWaitMs)} ms, over limit ${error.maxWaitMs} ms`;
}
