/**
 * Counters of the threaded server, kept on the I/O thread where every admission decision is made,
 * the handler durations by method, and the queue-wait distribution since the last read (for the
 * CLI's periodic stats line).
 */
import { REFUSAL_REASONS, refusalCounts, type RefusalCounts, type RefusalReason } from '../errors.js';
import { DurationHistogram } from '../metrics/duration-histogram.js';

/** The server counts every refusal reason but a signal's abort (a server call has no signal of its caller's). */
export type ServerRefusalReason = Exclude<RefusalReason, 'aborted'>;

const SERVER_REFUSAL_REASONS = REFUSAL_REASONS.filter((r): r is ServerRefusalReason => r !== 'aborted');

/** A snapshot of {@link ServerStats}. */
export interface ServerStatsSnapshot {
  /** Calls handed to workers since start. */
  admitted: number;
  /** Calls answered since start (replies written, or oneway calls completed). */
  completed: number;
  /** Calls not run, by reason. */
  refused: RefusalCounts<ServerRefusalReason>;
  /** Oneway calls dropped because a bound was exceeded (counted in `refused` too). */
  onewayDropped: number;
  /** Calls a worker failed on (answered with INTERNAL_ERROR by the I/O thread). */
  workerFailures: number;
  /** Connections closed for a protocol violation (bad length prefix, malformed header, a frame not complete within frameTimeoutMs). */
  protocolErrors: number;
  /** Calls answered INTERNAL_ERROR because their handler did not finish within handlerTimeoutMs. */
  handlerTimeouts: number;
  /** Worker threads replaced because their event loop was blocked past handlerTimeoutMs. */
  workerReplacements: number;
  /** Calls answered on the I/O thread without running: an unknown method, or CALL for a oneway method (oneway messages of those are dropped). */
  invalidCalls: number;
  /** Connections closed after idleTimeoutMs without activity. */
  idleClosed: number;
  /** Connections refused because maxConnections were open. */
  connectionsRefused: number;
  /** Times a connection stopped being read because its client had too much outstanding. */
  readPauses: number;
  /** Connections open now. */
  connections: number;
  /** `performance.now()` of the first admission (0 before any). */
  firstAdmittedAt: number;
  /** `performance.now()` of the latest admission (0 before any). */
  lastAdmittedAt: number;
}

/** Counters of one method. */
export interface MethodCounters {
  admitted: number;
  refused: RefusalCounts<ServerRefusalReason>;
  /** From the hand-off to a worker to its answer, for the calls a worker ran (replied, failed or timed out). */
  readonly handlerDuration: DurationHistogram;
}

/** Mutable counters plus a wait-time sample buffer. */
export class ServerStats {
  admitted = 0;
  completed = 0;
  onewayDropped = 0;
  workerFailures = 0;
  protocolErrors = 0;
  handlerTimeouts = 0;
  workerReplacements = 0;
  invalidCalls = 0;
  idleClosed = 0;
  connectionsRefused = 0;
  readPauses = 0;
  connections = 0;
  firstAdmittedAt = 0;
  lastAdmittedAt = 0;
  readonly refused = refusalCounts(SERVER_REFUSAL_REASONS);
  /** Per method: admission decisions are all made on the I/O thread, so plain numbers are exact. */
  readonly methods = new Map<string, MethodCounters>();

  /** The counters of `method`, created on first use. */
  method(method: string): MethodCounters {
    let m = this.methods.get(method);
    if (m === undefined) {
      m = { admitted: 0, refused: refusalCounts(SERVER_REFUSAL_REASONS), handlerDuration: new DurationHistogram() };
      this.methods.set(method, m);
    }
    return m;
  }

  /** Counts a refusal of a call to `method`. */
  refuse(method: string, reason: ServerRefusalReason): void {
    this.refused[reason]++;
    this.method(method).refused[reason]++;
  }
  private waits: number[] = [];

  /**
   * Counts an admission (a call handed to a worker) at `now` (performance.now()); returns the
   * method's counters, where the call's handler duration is recorded when it ends.
   */
  admit(method: string, now: number): MethodCounters {
    this.admitted++;
    const m = this.method(method);
    m.admitted++;
    if (this.firstAdmittedAt === 0) this.firstAdmittedAt = now;
    this.lastAdmittedAt = now;
    return m;
  }

  /** Records how long an admitted call waited for its token, ms. */
  recordWait(ms: number): void {
    // Bounded: under extreme load the stats line reads a sample, not every call.
    if (this.waits.length < 200_000) this.waits.push(ms);
  }

  /** Wait percentiles since the previous call, and resets the sample. */
  takeWaits(): { count: number; p50: number; p99: number; max: number } {
    const w = this.waits.sort((a, b) => a - b);
    this.waits = [];
    const at = (p: number): number => (w.length === 0 ? 0 : w[Math.min(w.length - 1, Math.floor(p * w.length))]!);
    return { count: w.length, p50: at(0.5), p99: at(0.99), max: w.at(-1) ?? 0 };
  }

  /** A copy of the counters. */
  snapshot(): ServerStatsSnapshot {
    return {
      admitted: this.admitted,
      completed: this.completed,
      refused: { ...this.refused },
      onewayDropped: this.onewayDropped,
      workerFailures: this.workerFailures,
      protocolErrors: this.protocolErrors,
      handlerTimeouts: this.handlerTimeouts,
      workerReplacements: this.workerReplacements,
      invalidCalls: this.invalidCalls,
      idleClosed: this.idleClosed,
      connectionsRefused: this.connectionsRefused,
      readPauses: this.readPauses,
      connections: this.connections,
      firstAdmittedAt: this.firstAdmittedAt,
      lastAdmittedAt: this.lastAdmittedAt,
    };
  }
}
