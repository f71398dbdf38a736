/**
 * One client connection on the I/O thread: splits the byte stream into frames, closes the
 * connection (and only it) on a protocol violation, writes replies (coalescing those of one
 * event-loop turn into one socket write), and bounds what the client can make the server hold:
 *
 * - calls accepted from it and not yet answered (`maxInFlightPerConnection`), and bytes it owes
 *   the server (`maxPendingReplyBytes`: the requests of those calls, whose replies are still to
 *   come, plus the reply bytes it has not read): past either bound the connection stops reading
 *   (the socket and the frame reader are paused) until the client catches up, so a client that
 *   never reads its replies fills its own socket buffers, not the server's memory. Counting the
 *   requests matters: a bound on unread replies alone lets every call already in flight add its
 *   reply after the bound is reached;
 * - time: the server's sweep ({@link Connection.sweep}) closes a connection whose frame has been
 *   arriving for longer than `frameTimeoutMs` (a trickle), or that has been idle (nothing read,
 *   nothing flushed, no call outstanding) for `idleTimeoutMs`.
 */
import { setMaxListeners } from 'node:events';
import type { Socket } from 'node:net';
import { FrameReader } from '../thrift/frame-reader.js';

/** What a connection needs from its server. */
export interface ConnectionHost {
  readonly maxFrameBytes: number;
  readonly maxInFlightPerConnection: number;
  readonly maxPendingReplyBytes: number;
  /** Server-wide abort (shutdown); a connection's calls also abort when it closes. */
  readonly shutdownSignal: AbortSignal;
  onFrame(connection: Connection, frame: Buffer): void;
  onProtocolError(connection: Connection, reason: string): void;
  /** Told each time the connection stops reading because its client has too much outstanding. */
  onReadPaused(): void;
  onClose(connection: Connection): void;
}

/** What {@link Connection.sweep} did. */
export type SweepOutcome = 'kept' | 'idle' | 'frameTimeout';

let nextConnectionId = 1;

const PAUSED_FOR_BUDGET = 1;

/** A client connection. */
export class Connection {
  /** For log lines. */
  readonly id = nextConnectionId++;
  /** Aborted when the connection closes or the server shuts down: queued calls leave the queue. */
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private readonly reader: FrameReader;
  private corked = false;
  private closed = false;
  /** Calls accepted from this connection and not yet answered or refused, and their request bytes. */
  private inFlight = 0;
  private inFlightBytes = 0;
  private pausedFor = 0;
  private lastActivity = performance.now();
  private flushedBytes = 0;

  constructor(
    readonly socket: Socket,
    private readonly host: ConnectionHost,
  ) {
    this.signal = AbortSignal.any([this.controller.signal, host.shutdownSignal]);
    // Every call waiting in a queue listens on its connection's signal; thousands may wait.
    setMaxListeners(0, this.signal);
    this.reader = new FrameReader({
      maxFrameBytes: host.maxFrameBytes,
      onFrame: (frame) => host.onFrame(this, frame),
      onError: (error) => this.protocolError(error.message),
    });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      const now = performance.now();
      this.lastActivity = now;
      this.reader.push(chunk, now);
    });
    socket.on('drain', () => this.checkBudget());
    socket.on('error', () => {
      // A reset by the peer is routine; 'close' follows and cleans up.
    });
    socket.on('close', () => this.onClosed());
  }

  /** True once the socket closed. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Counts a call of `bytes` accepted from this connection; at a bound, reading stops until one ends. */
  callStarted(bytes: number): void {
    this.inFlight++;
    this.inFlightBytes += bytes;
    this.checkBudget();
  }

  /** Counts a call answered or refused (its `bytes` as given to {@link callStarted}). */
  callEnded(bytes: number): void {
    this.inFlight--;
    this.inFlightBytes -= bytes;
    this.checkBudget();
  }

  /** Writes a reply frame; replies of one turn go out in one write. */
  write(frame: Buffer): void {
    if (this.closed) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(frame);
    this.checkBudget();
  }

  /** Pauses reading while the client has too much outstanding, resumes once it has not. */
  private checkBudget(): void {
    const over = this.inFlight >= this.host.maxInFlightPerConnection || this.inFlightBytes + this.socket.writableLength > this.host.maxPendingReplyBytes;
    if (over) this.pause(PAUSED_FOR_BUDGET);
    else this.unpause(PAUSED_FOR_BUDGET);
  }

  /**
   * Applies the time bounds at `now` (performance.now()): closes the connection if its current
   * frame has been arriving for longer than `frameTimeoutMs` or if it has been idle for
   * `idleTimeoutMs`. A paused connection's frame is not timed: the wait is the server's.
   */
  sweep(now: number, frameTimeoutMs: number, idleTimeoutMs: number): SweepOutcome {
    if (this.closed) return 'kept';
    if (this.socket.bytesWritten !== this.flushedBytes) {
      this.flushedBytes = this.socket.bytesWritten;
      this.lastActivity = now;
    }
    if (this.pausedFor === 0 && this.reader.hasPartialFrame && now - this.reader.frameStartedAt > frameTimeoutMs) {
      this.protocolError(`frame not complete within ${frameTimeoutMs} ms (frameTimeoutMs)`);
      return 'frameTimeout';
    }
    if (this.inFlight === 0 && now - this.lastActivity > idleTimeoutMs) {
      this.socket.destroy();
      return 'idle';
    }
    return 'kept';
  }

  /** Closes after pending writes are flushed. */
  end(): void {
    if (!this.closed) this.socket.end();
  }

  /** Closes at once. */
  destroy(): void {
    this.socket.destroy();
  }

  private pause(reason: number): void {
    if (this.pausedFor === 0) {
      this.host.onReadPaused();
      this.socket.pause();
      this.reader.pause();
    }
    this.pausedFor |= reason;
  }

  private unpause(reason: number): void {
    if ((this.pausedFor & reason) === 0) return;
    this.pausedFor &= ~reason;
    if (this.pausedFor !== 0 || this.closed) return;
    this.socket.resume();
    this.reader.resume(performance.now());
  }

  private protocolError(reason: string): void {
    if (this.closed) return;
    this.host.onProtocolError(this, reason);
    this.socket.destroy();
  }

  private onClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.controller.abort(new ConnectionClosedError());
    this.host.onClose(this);
  }
}

/** The abort reason of calls whose connection closed while they waited. */
export class ConnectionClosedError extends Error {
  constructor() {
    super('client connection closed');
    this.name = 'ConnectionClosedError';
  }
}
