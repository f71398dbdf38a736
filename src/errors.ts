/**
 * Why a call is refused, and the errors it is refused with. A refusal reason has one spelling
 * everywhere: the `reason` of `'refused'` events, the keys of `snapshot().refused` and of the
 * server's `stats().refused`, the `reason` label of the Prometheus refusal counters, and the
 * `reason` of the errors below, whose `code` is that reason upper-cased (`queue_full` →
 * `QUEUE_FULL`). A refused call has consumed nothing from the limit.
 */

/**
 * Every refusal reason: over `maxQueued`, over `maxWaitMs`, the limit's store down (fail-closed),
 * the call's abort signal fired, its client went away, the server shut down before it ran.
 */
export const REFUSAL_REASONS = ['queue_full', 'queue_timeout', 'store_unavailable', 'aborted', 'disconnected', 'shutdown'] as const;

/** Why a call was refused (see {@link REFUSAL_REASONS}). */
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** The reasons a limiter's own queue refuses a call for, the ones its `snapshot().refused` counts. */
export const QUEUE_REFUSAL_REASONS = ['queue_full', 'queue_timeout', 'aborted'] as const;

/** A reason a limiter's own queue refuses a call for (see {@link QUEUE_REFUSAL_REASONS}). */
export type QueueRefusalReason = (typeof QUEUE_REFUSAL_REASONS)[number];

/**
 * The reasons a limit refuses a call for: its queue's, and its store down (fail-closed). What a
 * limiter's `'refused'` events carry and a fair queue's levels count.
 */
export const LIMIT_REFUSAL_REASONS = ['queue_full', 'queue_timeout', 'store_unavailable', 'aborted'] as const;

/** A reason a limit refuses a call for (see {@link LIMIT_REFUSAL_REASONS}). */
export type LimitRefusalReason = (typeof LIMIT_REFUSAL_REASONS)[number];

/** Refusal counts by reason. */
export type RefusalCounts<R extends RefusalReason = QueueRefusalReason> = Record<R, number>;

/** Zeroed counts of `reasons`. */
export function refusalCounts<R extends RefusalReason>(reasons: readonly R[]): RefusalCounts<R> {
  return Object.fromEntries(reasons.map((r) => [r, 0])) as RefusalCounts<R>;
}

/** The `code` of the error refusing a call for `reason`: the reason upper-cased. */
export function refusalCode<R extends RefusalReason>(reason: R): Uppercase<R> {
  return reason.toUpperCase() as Uppercase<R>;
}

/** Thrown when a call would wait longer than `maxWaitMs`, or was still waiting at its deadline. */
export class QueueTimeoutError extends Error {
  /** The refusal reason. */
  readonly reason = 'queue_timeout' as const;
  /** Stable machine-readable code: the reason upper-cased, `QUEUE_TIMEOUT`. */
  readonly code = refusalCode(this.reason);
  /**
   * @param maxWaitMs the bound that was exceeded.
   * @param estimatedWaitMs the wait the call would have had (refused up front), or the time it had
   *   already waited (refused at its deadline).
   * @param atDeadline true when the call waited and its deadline passed; false when it was refused
   *   at once because the queued demand already made its wait longer than the bound.
   */
  constructor(
    /** The bound that was exceeded, in ms. */
    readonly maxWaitMs: number,
    /** The wait the call would have had (refused up front), or the time it had already waited (refused at its deadline), in ms. */
    readonly estimatedWaitMs: number,
    /** True when the call waited and its deadline passed; false when it was refused at once on its estimated wait. */
    readonly atDeadline: boolean,
  ) {
    super(atDeadline ? `waited limit ${maxWaitMs} ms without being admitted` : `estimated wait ${Math.ceil(estimatedWaitMs)} ms exceeds limit ${maxWaitMs} ms`);
    this.name = 'QueueTimeoutError';
  }
}

/** Thrown when `maxQueued` calls are already waiting on the limiter (counted over all threads). */
export class QueueFullError extends Error {
  /** The refusal reason. */
  readonly reason = 'queue_full' as const;
  /** Stable machine-readable code: the reason upper-cased, `QUEUE_FULL`. */
  readonly code = refusalCode(this.reason);
  /** @param maxQueued the bound that was reached. */
  constructor(
    /** The bound that was reached: calls waiting over all threads. */
    readonly maxQueued: number,
  ) {
    super(`queue full: ${maxQueued} calls already waiting`);
    this.name = 'QueueFullError';
  }
}

/**
 * Thrown while a limit's distributed store cannot be reached and its policy is `'fail-closed'`:
 * the call is refused rather than admitted without the store's say. Nothing was consumed.
 */
export class StoreUnavailableError extends Error {
  /** The refusal reason. */
  readonly reason = 'store_unavailable' as const;
  /** Stable machine-readable code: the reason upper-cased, `STORE_UNAVAILABLE`. */
  readonly code = refusalCode(this.reason);
  /** @param key the limit whose store is down. */
  constructor(
    /** The limit whose store is down (its key in the store). */
    readonly key: string,
  ) {
    super(`limit store unavailable for "${key}" (onStoreError fail-closed)`);
    this.name = 'StoreUnavailableError';
  }
}

/** A refusal of a call for overload: its queue was full, its wait too long, or its store down. */
export type OverloadError = QueueFullError | QueueTimeoutError | StoreUnavailableError;

/** True for the errors a limit refuses a call with for overload. */
export function isOverloadError(error: unknown): error is OverloadError {
  return error instanceof QueueFullError || error instanceof QueueTimeoutError || error instanceof StoreUnavailableError;
}

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
