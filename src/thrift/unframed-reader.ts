/**
 * The {@link MessageReader} of an unframed (TBufferedTransport) connection: the message scanner
 * finds where each message ends; this adds what a connection needs around it, namely holding the
 * messages of a chunk back while the connection is paused and timing the message being received.
 */
import { MalformedMessageError, MessageScanner } from './message-end.js';
import type { Protocol } from './message-header.js';
import type { MessageReader } from './message-reader.js';

/** Nesting deeper than this is malformed: a hostile message cannot grow the scanner's stack without bound. */
const MAX_DEPTH = 64;

/** Options of an {@link UnframedReader}. */
export interface UnframedReaderOptions {
  /** Largest message accepted, bytes (the server's maxFrameBytes). */
  maxMessageBytes: number;
  onMessage(message: Buffer): void;
  /** Bytes that are no message of the protocol; the reader then ignores further input. */
  onError(error: Error): void;
}

/** Incremental splitter of one unframed connection's bytes into messages. */
export class UnframedReader implements MessageReader {
  private readonly scanner: MessageScanner;
  /** Complete messages held while paused, from `held[next]` on. */
  private held: Buffer[] = [];
  private next = 0;
  private paused = false;
  private failed = false;
  private started = 0;

  constructor(
    protocol: Protocol,
    private readonly options: UnframedReaderOptions,
  ) {
    this.scanner = new MessageScanner(protocol, { maxMessageBytes: options.maxMessageBytes, maxDepth: MAX_DEPTH });
  }

  get hasPartialFrame(): boolean {
    return this.scanner.buffered > 0;
  }

  get frameStartedAt(): number {
    return this.started;
  }

  push(chunk: Buffer, now = 0): void {
    if (this.failed) return;
    if (this.scanner.buffered === 0) this.started = now;
    let messages: Buffer[];
    try {
      messages = this.scanner.push(chunk);
    } catch (error) {
      if (!(error instanceof MalformedMessageError)) throw error;
      // The connection closes: the messages before the bad one would have no one to answer.
      this.failed = true;
      this.options.onError(error);
      return;
    }
    // What is left began arriving no earlier than this chunk.
    if (messages.length > 0) this.started = now;
    this.hold(messages);
    this.deliver();
  }

  pause(): void {
    this.paused = true;
  }

  resume(now: number): void {
    this.paused = false;
    this.started = now;
    this.deliver();
  }

  private hold(messages: Buffer[]): void {
    if (this.next === this.held.length) {
      this.held = messages;
      this.next = 0;
    } else this.held.push(...messages);
  }

  private deliver(): void {
    while (!this.paused && this.next < this.held.length) this.options.onMessage(this.held[this.next++]!);
  }
}
