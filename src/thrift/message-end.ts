/**
 * Splits an unframed Thrift byte stream (TBufferedTransport or a raw socket: no length prefix)
 * into messages. An unframed message says nowhere how long it is, so its end is found by parsing
 * it: the header, then the argument struct skipped field by field by type (binary and compact,
 * value-skipper.ts), or the bracket closing the message array (JSON, json-message-end.ts).
 *
 * Cost, chosen so that the way TCP cuts the stream does not matter:
 * - A message whole inside one chunk is scanned once and returned as a view of the chunk (no
 *   copy), like FrameReader's frames. A 100-byte echo call costs ~100–150 ns, about half of it
 *   making the Buffer view (bench/lib/message-end.ts).
 * - A message spanning chunks is copied, as its bytes arrive, into one buffer that doubles when
 *   full (so O(size) copying in all), and its scan RESUMES where it stopped: the scanners keep
 *   their state (open containers, position) between chunks and re-read at most one item's head
 *   (≤ 21 bytes) per chunk. Trickling a message in byte by byte thus costs O(its size), not
 *   O(size²) as re-scanning from its start on every chunk would: ~40 ns per byte pushed.
 * - Memory is never reserved from a length the client announced: a string or collection larger
 *   than `maxMessageBytes` is refused as soon as its length is read, before its bytes arrive.
 */
import { JsonMessageEnd } from './json-message-end.js';
import type { Protocol, StructProtocol } from './message-header.js';
import { argsOffset, BinaryType, CompactType, MalformedMessageError, NEED_MORE, ValueSkipper } from './value-skipper.js';

export { MalformedMessageError } from './value-skipper.js';

/** Limits of a {@link MessageScanner}. */
export interface MessageScannerOptions {
  /** Largest message accepted, bytes. */
  maxMessageBytes: number;
  /**
   * Most containers (structs, lists, sets, maps) a value may be nested in, the argument struct
   * counting as one. JSON is held to 2 × maxDepth + 2 open brackets: a struct in a struct field
   * costs two there (the field's wrapper object and the struct's own), plus the message array.
   */
  maxDepth: number;
}

/** Where the first pending buffer starts: big enough that a trickled small message is not re-grown byte by byte. */
const MIN_PENDING_BYTES = 1024;

/** Finds the end of one message, resumably. */
interface EndFinder {
  /** How far the message is known to reach: bytes before it are parsed (or stepped over). */
  readonly pos: number;
  begin(at: number): void;
  resume(b: Uint8Array, end: number): number;
  rebase(delta: number): void;
}

/** Binary and compact: the header, then the argument struct skipped by type. */
class StructMessageEnd implements EndFinder {
  private inHeader = true;
  private start = 0;
  private readonly skipper: ValueSkipper;

  constructor(
    private readonly protocol: StructProtocol,
    maxDepth: number,
  ) {
    this.skipper = new ValueSkipper(protocol, maxDepth);
  }

  get pos(): number {
    return this.inHeader ? this.start : this.skipper.pos;
  }

  begin(at: number): void {
    this.inHeader = true;
    this.start = at;
  }

  rebase(delta: number): void {
    this.start += delta;
    this.skipper.rebase(delta);
  }

  resume(b: Uint8Array, end: number): number {
    if (this.inHeader) {
      // The header is re-read from its start until it has all arrived: only its fixed-size
      // parts are read (the name is stepped over by its length), so a retry costs O(1).
      const args = argsOffset(b, this.start, end, this.protocol);
      if (args === NEED_MORE) return NEED_MORE;
      this.inHeader = false;
      this.skipper.begin(this.protocol === 'compact' ? CompactType.STRUCT : BinaryType.STRUCT, args);
    }
    return this.skipper.resume(b, end);
  }
}

/**
 * Incremental splitter of one connection's unframed message stream (see the module comment).
 * After a {@link MalformedMessageError} the stream cannot be resynchronised: every later
 * {@link push} throws too, and the caller should close the connection.
 */
export class MessageScanner {
  private readonly finder: EndFinder;
  /** The bytes of the incomplete message at the front, in `pending[0, pendingLength)`. */
  private pending: Buffer | undefined;
  private pendingLength = 0;
  private failure: string | undefined;

  constructor(
    readonly protocol: Protocol,
    private readonly options: MessageScannerOptions,
  ) {
    for (const key of ['maxMessageBytes', 'maxDepth'] as const) {
      const value = options[key];
      if (!Number.isInteger(value) || value < 1) throw new RangeError(`${key} must be a whole number ≥ 1, got ${value}`);
    }
    this.finder = protocol === 'json' ? new JsonMessageEnd(2 * options.maxDepth + 2) : new StructMessageEnd(protocol, options.maxDepth);
  }

  /** Bytes held of a message not yet complete. */
  get buffered(): number {
    return this.pendingLength;
  }

  /**
   * Feeds the next bytes of the stream; returns the messages they complete, in order. A message
   * inside `chunk` is a view of it (keep a copy if the chunk's memory is reused); one that spanned
   * chunks is a view of a buffer the scanner no longer uses.
   * @throws MalformedMessageError for bytes that are not a message of the protocol, or a message
   * larger than `maxMessageBytes` or nested deeper than `maxDepth`; its `precedingMessages` are
   * the messages this chunk completed before the bad one.
   */
  push(chunk: Buffer): Buffer[] {
    if (this.failure !== undefined) throw new MalformedMessageError(`stream already failed: ${this.failure}`);
    const messages: Buffer[] = [];
    try {
      this.scan(chunk, messages);
    } catch (error) {
      if (!(error instanceof MalformedMessageError)) throw error;
      this.failure = error.message;
      this.pending = undefined;
      this.pendingLength = 0;
      throw new MalformedMessageError(error.message, messages);
    }
    return messages;
  }

  private scan(chunk: Buffer, messages: Buffer[]): void {
    const finder = this.finder;
    let at = 0;
    if (this.pendingLength > 0) {
      const before = this.pendingLength;
      this.append(chunk);
      const pending = this.pending!;
      const end = finder.resume(pending, this.pendingLength);
      if (end === NEED_MORE) return this.checkSize(Math.max(finder.pos, this.pendingLength));
      this.checkSize(end);
      messages.push(pending.subarray(0, end));
      this.pending = undefined;
      this.pendingLength = 0;
      // The rest of the chunk was copied along but is scanned where it is.
      at = end - before;
    }
    while (at < chunk.length) {
      finder.begin(at);
      const end = finder.resume(chunk, chunk.length);
      if (end === NEED_MORE) {
        this.checkSize(Math.max(finder.pos, chunk.length) - at);
        const length = chunk.length - at;
        this.pending = Buffer.allocUnsafe(Math.max(length, Math.min(Math.max(2 * length, MIN_PENDING_BYTES), this.options.maxMessageBytes)));
        chunk.copy(this.pending, 0, at);
        this.pendingLength = length;
        finder.rebase(-at);
        return;
      }
      this.checkSize(end - at);
      messages.push(chunk.subarray(at, end));
      at = end;
    }
  }

  private append(chunk: Buffer): void {
    const needed = this.pendingLength + chunk.length;
    let pending = this.pending!;
    if (needed > pending.length) {
      const grown = Buffer.allocUnsafe(Math.max(needed, 2 * pending.length));
      pending.copy(grown, 0, 0, this.pendingLength);
      this.pending = pending = grown;
    }
    chunk.copy(pending, this.pendingLength);
    this.pendingLength = needed;
  }

  /** @param bytes how long the message at the front is known to be, at least. */
  private checkSize(bytes: number): void {
    if (bytes > this.options.maxMessageBytes) {
      throw new MalformedMessageError(`a message of at least ${bytes} bytes exceeds maxMessageBytes ${this.options.maxMessageBytes}`);
    }
  }
}
