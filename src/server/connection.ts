/**
 * One client connection on the I/O thread: tells from its first bytes which wire the client
 * speaks (`src/server/wire.ts`), splits the byte stream into messages, closes the connection (and
 * only it) on a protocol violation, writes replies in the client's wire (coalescing those of one
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
 *
 * HTTP is request/response: the connection reads the next request only once the previous one is
 * answered, and answers every request exactly once (a oneway call, or one dropped, gets an empty
 * 200 response when its call ends).
 */
import { setMaxListeners } from 'node:events';
import type { Socket } from 'node:net';
import { httpResponse } from '../thrift/http-reader.js';
import type { Protocol } from '../thrift/message-header.js';
import { detectWire } from '../thrift/wire-detect.js';
import { describeWire, openWire, type Wire, type WireEndpoint } from './wire.js';

/** What a connection needs from its server. */
export interface ConnectionHost {
  readonly maxFrameBytes: number;
  readonly maxInFlightPerConnection: number;
  readonly maxPendingReplyBytes: number;
  /** Server-wide abort (shutdown); a connection's calls also abort when it closes. */
  readonly shutdownSignal: AbortSignal;
  /**
   * Told the wire a new connection speaks; returns why it is refused (the server was restricted
   * from it), or the counters its calls add to.
   */
  onWire(connection: Connection, wire: Wire): string | { calls: number };
  onFrame(connection: Connection, frame: Buffer): void;
  /** Answers `message` with an exception saying why the connection's wire is refused. */
  onRefused(connection: Connection, message: Buffer, reason: string): void;
  onProtocolError(connection: Connection, reason: string): void;
  /** Told each time the connection stops reading because its client has too much outstanding. */
  onReadPaused(): void;
  onClose(connection: Connection): void;
}

/** What {@link Connection.sweep} did. */
export type SweepOutcome = 'kept' | 'idle' | 'frameTimeout';

let nextConnectionId = 1;

const PAUSED_FOR_BUDGET = 1;
const PAUSED_FOR_RESPONSE = 2;
// detectWire decides within 15 bytes, or within a non-strict binary method name (at most 4,105).
const MAX_DETECT_BYTES = 8192;

/** A client connection. */
export class Connection {
  /** For log lines. */
  readonly id = nextConnectionId++;
  /** Aborted when the connection closes or the server shuts down: queued calls leave the queue. */
  readonly signal: AbortSignal;
  /** The wire, once the first bytes told it. */
  wire: Wire | undefined;
  private readonly controller = new AbortController();
  private endpoint: WireEndpoint | undefined;
  /** Bytes that came before the wire was known, and when the first of them did. */
  private firstBytes: Buffer | undefined;
  private firstAt = 0;
  private counters = { calls: 0 };
  /** HTTP: the current request's Connection header, and whether its response is still owed. */
  private keepAlive = true;
  private responseOwed = false;
  /** Why the server refuses this connection's wire, if it does; its first message is answered so, then it closes. */
  private refusal: string | undefined;
  private ending = false;
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
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      const now = performance.now();
      this.lastActivity = now;
      if (this.endpoint !== undefined) this.endpoint.reader.push(chunk, now);
      else this.detect(chunk, now);
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

  /** The protocol of the message being handled (a THeader or HTTP client may change it per message). */
  get protocol(): Protocol {
    return this.wire!.protocol!;
  }

  /** Waits for enough bytes to tell the wire, then hands them to the wire's reader. */
  private detect(chunk: Buffer, now: number): void {
    if (this.firstBytes === undefined) this.firstAt = now;
    const bytes = this.firstBytes === undefined ? chunk : Buffer.concat([this.firstBytes, chunk]);
    const guess = detectWire(bytes);
    if (guess === 'need-more') {
      if (bytes.length > MAX_DETECT_BYTES) this.protocolError(`no Thrift wire recognised in the first ${bytes.length} bytes`);
      else this.firstBytes = bytes;
      return;
    }
    this.firstBytes = undefined;
    if (guess.kind === 'unknown') {
      this.protocolError(guess.reason);
      return;
    }
    // HTTP's protocol is known from each request's body.
    const wire: Wire = { transport: guess.transport, protocol: guess.protocol };
    this.useWire(wire);
    this.endpoint = openWire(wire.transport, wire.protocol ?? 'binary', this.host.maxFrameBytes, {
      onMessage: (message, protocol, keepAlive) => this.onMessage(message, protocol, keepAlive),
      onError: (reason, httpStatus) => {
        if (httpStatus !== undefined && !this.closed) this.socket.end(httpResponse(undefined, false, httpStatus));
        this.protocolError(reason);
      },
    });
    if (this.pausedFor !== 0) this.endpoint.reader.pause();
    this.endpoint.reader.push(bytes, this.firstAt);
  }

  /**
   * Tells the server the wire (again when a THeader or HTTP client changes protocol). A wire the
   * server was restricted from is logged, and its first message is answered with an exception
   * saying so (in the client's own wire) before the connection closes.
   */
  private useWire(wire: Wire): void {
    this.wire = wire;
    const accepted = this.host.onWire(this, wire);
    if (typeof accepted === 'string') {
      this.refusal = `${describeWire(wire)} request, but ${accepted}`;
      this.host.onProtocolError(this, this.refusal);
    } else this.counters = accepted;
  }

  private onMessage(message: Buffer, protocol: Protocol, keepAlive: boolean): void {
    if (this.ending) return;
    if (this.refusal === undefined && protocol !== this.wire!.protocol) this.useWire({ transport: this.wire!.transport, protocol });
    if (this.refusal !== undefined) {
      this.ending = true;
      this.keepAlive = false;
      this.responseOwed = this.endpoint!.transport === 'http';
      this.wire!.protocol = protocol;
      this.host.onRefused(this, message, this.refusal);
      this.end();
      return;
    }
    this.counters.calls++;
    if (this.endpoint!.transport !== 'http') {
      this.host.onFrame(this, message);
      return;
    }
    this.keepAlive = keepAlive;
    this.responseOwed = true;
    this.pause(PAUSED_FOR_RESPONSE);
    const before = this.inFlight;
    this.host.onFrame(this, message);
    // Answered at once, or dropped without a call (a oneway message for an unknown method).
    if (this.responseOwed && this.inFlight === before) this.respond(undefined);
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
    if (this.responseOwed) this.respond(undefined);
  }

  /** Writes a reply frame (length prefix included) in the connection's wire; replies of one turn go out in one write. */
  write(frame: Buffer): void {
    if (this.closed) return;
    if (this.endpoint!.transport === 'http') this.respond(frame);
    else this.send(this.endpoint!.encode(frame, true));
  }

  /** HTTP: answers the current request (an empty body for a call with no reply) and reads the next. */
  private respond(frame: Buffer | undefined): void {
    if (!this.responseOwed || this.closed) return;
    this.responseOwed = false;
    this.send(frame === undefined ? httpResponse(undefined, this.keepAlive) : this.endpoint!.encode(frame, this.keepAlive));
    if (this.keepAlive) this.unpause(PAUSED_FOR_RESPONSE);
    else this.socket.end();
  }

  private send(bytes: Buffer): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(bytes);
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
    const reader = this.endpoint?.reader;
    const partialSince =
      reader === undefined ? (this.firstBytes === undefined ? undefined : this.firstAt) : reader.hasPartialFrame ? reader.frameStartedAt : undefined;
    if (this.pausedFor === 0 && partialSince !== undefined && now - partialSince > frameTimeoutMs) {
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
      this.endpoint?.reader.pause();
    }
    this.pausedFor |= reason;
  }

  private unpause(reason: number): void {
    if ((this.pausedFor & reason) === 0) return;
    this.pausedFor &= ~reason;
    if (this.pausedFor !== 0 || this.closed) return;
    this.socket.resume();
    this.endpoint?.reader.resume(performance.now());
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
  /** Stable machine-readable reason. */
  readonly code = 'CONNECTION_CLOSED' as const;
  constructor() {
    super('client connection closed');
    this.name = 'ConnectionClosedError';
  }
}
