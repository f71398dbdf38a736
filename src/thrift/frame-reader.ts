/**
 * Splits a TFramedTransport byte stream into frames: each frame is a 4-byte big-endian length and
 * that many bytes. The length is checked before anything is buffered, so a client announcing a
 * 2 GB frame (or sending garbage) costs nothing and its connection is closed by the caller; a
 * frame's bytes are kept as they arrive, never allocated up front from the announced length.
 *
 * The reader can be paused: it then keeps what arrived and delivers nothing until resumed (the
 * connection pauses it, with the socket, when its client has too many calls or unread replies
 * outstanding). It remembers when the frame at its front began, for the frame timeout.
 *
 * Frames are delivered WITHOUT their length prefix, which is what `new TFramedTransport(buffer)`
 * reads. A frame inside one chunk is a view of it (no copy); only a frame spanning chunks is
 * joined.
 */

/** Options of a {@link FrameReader}. */
export interface FrameReaderOptions {
  /** Largest accepted frame, bytes. */
  maxFrameBytes: number;
  /** Receives each complete frame (without the prefix). */
  onFrame(frame: Buffer): void;
  /** Receives a protocol violation; the reader then ignores further input. */
  onError(error: Error): void;
}

/** Incremental frame splitter for one connection. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed = false;
  private paused_ = false;
  private frameStart = 0;

  constructor(private readonly options: FrameReaderOptions) {}

  /** True while part of a frame (or of its length prefix) has arrived and the rest has not. */
  get hasPartialFrame(): boolean {
    return this.buffered > 0;
  }

  /** When (the `now` of {@link push}) the frame at the front began arriving; meaningful while {@link hasPartialFrame}. */
  get frameStartedAt(): number {
    return this.frameStart;
  }

  /** True between {@link pause} and {@link resume}. */
  get paused(): boolean {
    return this.paused_;
  }

  /**
   * Feeds bytes from the socket; delivers every frame they complete, unless paused. `now` (ms, any
   * clock) is when they arrived, for {@link frameStartedAt}.
   */
  push(chunk: Buffer, now = 0): void {
    if (this.failed) return;
    if (this.buffered === 0) this.frameStart = now;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.deliver(now);
  }

  /** Stops delivering frames; bytes that arrive are kept. */
  pause(): void {
    this.paused_ = true;
  }

  /** Delivers what was kept while paused, then goes on as bytes arrive; the frame timer restarts at `now`. */
  resume(now: number): void {
    this.paused_ = false;
    this.frameStart = now;
    this.deliver(now);
  }

  private deliver(now: number): void {
    while (this.buffered >= 4 && !this.paused_) {
      const size = this.peekSize();
      if (size < 0 || size > this.options.maxFrameBytes) {
        this.failed = true;
        this.chunks = [];
        this.buffered = 0;
        this.options.onError(
          new Error(
            size < 0
              ? `invalid frame length ${size} (0x${(size >>> 0).toString(16)})`
              : `frame of ${size} bytes exceeds maxFrameBytes ${this.options.maxFrameBytes}`,
          ),
        );
        return;
      }
      if (this.buffered < 4 + size) return;
      const frame = this.take(4 + size).subarray(4);
      // What is left began arriving no earlier than the chunk just read.
      this.frameStart = now;
      this.options.onFrame(frame);
      if (this.failed) return;
    }
  }

  /** The length prefix at the front, read across chunk boundaries if need be. */
  private peekSize(): number {
    const head = this.chunks[0]!;
    if (head.length >= 4) return head.readInt32BE(0);
    const bytes = Buffer.allocUnsafe(4);
    let n = 0;
    for (const c of this.chunks) {
      for (let i = 0; i < c.length && n < 4; i++) bytes[n++] = c[i]!;
      if (n === 4) break;
    }
    return bytes.readInt32BE(0);
  }

  /** Removes and returns the first `length` buffered bytes. */
  private take(length: number): Buffer {
    const head = this.chunks[0]!;
    let out: Buffer;
    if (head.length >= length) {
      out = head.subarray(0, length);
      if (head.length === length) this.chunks.shift();
      else this.chunks[0] = head.subarray(length);
    } else {
      // Walk the chunks by index and drop the used ones in one step: shifting one at a time
      // would make a frame trickled in byte by byte cost O(n²).
      out = Buffer.allocUnsafe(length);
      let copied = 0;
      let i = 0;
      while (copied < length) {
        const c = this.chunks[i]!;
        const n = Math.min(c.length, length - copied);
        c.copy(out, copied, 0, n);
        copied += n;
        if (n === c.length) i++;
        else this.chunks[i] = c.subarray(n);
      }
      this.chunks = this.chunks.slice(i);
    }
    this.buffered -= length;
    return out;
  }
}
