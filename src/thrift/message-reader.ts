/**
 * What a connection needs of the piece that turns its byte stream into messages, whatever the
 * transport: the frame reader (framed and THeader), the unframed scanner, the HTTP reader.
 */

/** An incremental splitter of one connection's bytes into messages. */
export interface MessageReader {
  /** Feeds bytes that arrived at `now` (ms); delivers every message they complete, unless paused. */
  push(chunk: Buffer, now: number): void;
  /** Stops delivering messages; bytes that arrive are kept. */
  pause(): void;
  /** Delivers what was kept while paused, then goes on; the message timer restarts at `now`. */
  resume(now: number): void;
  /** True while part of a message has arrived and the rest has not. */
  readonly hasPartialFrame: boolean;
  /** When the message at the front began arriving (the `now` of {@link push}). */
  readonly frameStartedAt: number;
}
