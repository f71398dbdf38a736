/**
 * One client connection on the I/O thread: splits the byte stream into frames, closes the
 * connection (and only it) on a protocol violation or when it goes silent in the middle of a
 * frame, and writes replies, coalescing those of one event-loop turn into one socket write.
 */
import { setMaxListeners } from 'node:events';
import type { Socket } from 'node:net';
import { FrameReader } from '../thrift/frame-reader.js';

/** What a connection needs from its server. */
export interface ConnectionHost {
  readonly maxFrameBytes: number;
  readonly idleTimeoutMs: number;
  /** Server-wide abort (shutdown); a connection's calls also abort when it closes. */
  readonly shutdownSignal: AbortSignal;
  onFrame(connection: Connection, frame: Buffer): void;
  onProtocolError(connection: Connection, reason: string): void;
  onClose(connection: Connection): void;
}

let nextConnectionId = 1;

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
    socket.on('data', (chunk: Buffer) => this.reader.push(chunk));
    socket.on('error', () => {
      // A reset by the peer is routine; 'close' follows and cleans up.
    });
    socket.on('close', () => this.onClosed());
    if (host.idleTimeoutMs > 0 && host.idleTimeoutMs !== Infinity) {
      socket.setTimeout(host.idleTimeoutMs, () => {
        // Only a connection stuck inside a frame is a problem; an idle one between calls is fine.
        if (this.reader.hasPartialFrame) this.protocolError(`no data for ${host.idleTimeoutMs} ms in the middle of a frame`);
      });
    }
  }

  /** True once the socket closed. */
  get isClosed(): boolean {
    return this.closed;
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
  }

  /** Closes after pending writes are flushed. */
  end(): void {
    if (!this.closed) this.socket.end();
  }

  /** Closes at once. */
  destroy(): void {
    this.socket.destroy();
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
