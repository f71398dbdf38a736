/**
 * Skips Thrift values of the binary and compact protocols by their wire type: the one home of
 * that logic. {@link readArgField} steps over the argument fields before the one it wants with
 * it, and the unframed-message scanner (message-end.ts) finds where a message ends with it.
 *
 * The skipper is resumable, because an unframed message arrives in pieces and only its parse
 * tells where it ends. When the bytes run out inside a value it returns {@link NEED_MORE} and
 * keeps the containers open around the next item (a struct field, a list element, a map key or
 * value) in an explicit stack; given more bytes it goes on from that item. An item's head (field
 * header plus a scalar, a length or a collection header: at most 21 bytes, two compact varints) is
 * read whole or not at all, so a retry re-reads at most one head: a message trickled in byte by
 * byte costs O(its size), not O(size²). String bodies and runs of fixed-width collection elements
 * are stepped over by arithmetic, so the scan position may run ahead of the bytes that have
 * arrived (and a length beyond the caller's size limit is seen before its bytes come).
 *
 * Binary: field = i8 type, i16 id, value; stop = type 0; string = i32 length, bytes; list/set =
 * i8 element type, i32 count; map = i8 key type, i8 value type, i32 count.
 * Compact: field header byte = (id delta << 4) | type, delta 0 followed by a zigzag varint id;
 * stop = 0x00; a field's bool lives in its type nibble, an element's bool takes a byte; binary =
 * varint length, bytes; list/set = byte (count << 4 | element type), count 15 followed by a varint
 * count; map = varint count, then (unless 0) byte (key type << 4 | value type).
 */
import { MAX_NAME_BYTES, type StructProtocol } from './message-header.js';

/** Binary protocol type ids (TType). */
export const BinaryType = { BOOL: 2, BYTE: 3, DOUBLE: 4, I16: 6, I32: 8, I64: 10, STRING: 11, STRUCT: 12, MAP: 13, SET: 14, LIST: 15, UUID: 16 } as const;
/** Compact protocol type ids. */
export const CompactType = {
  TRUE: 1,
  FALSE: 2,
  BYTE: 3,
  I16: 4,
  I32: 5,
  I64: 6,
  DOUBLE: 7,
  BINARY: 8,
  LIST: 9,
  SET: 10,
  MAP: 11,
  STRUCT: 12,
  UUID: 13,
} as const;

/** Returned by a scan that needs more bytes to go on. */
export const NEED_MORE = -1;

/** Thrown for bytes that are not a well-formed Thrift message or value. */
export class MalformedMessageError extends Error {
  /** Stable machine-readable reason. */
  readonly code = 'MALFORMED_MESSAGE' as const;
  /**
   * @param precedingMessages when thrown by a {@link MessageScanner}: the messages that were complete
   * before the malformed one in the same push, so that a server can still answer them.
   */
  constructor(
    message: string,
    readonly precedingMessages: readonly Buffer[] = [],
  ) {
    super(message);
    this.name = 'MalformedMessageError';
  }
}

const B = BinaryType;
const C = CompactType;

/** Width tables: bytes of a fixed-width value, or one of these. */
const UNKNOWN = -1;
const VARIABLE = -2;

function widths(entries: [number, number][]): Int8Array {
  const table = new Int8Array(256).fill(UNKNOWN);
  for (const [type, width] of entries) table[type] = width;
  return table;
}

const BINARY_WIDTH = widths([
  [B.BOOL, 1],
  [B.BYTE, 1],
  [B.DOUBLE, 8],
  [B.I16, 2],
  [B.I32, 4],
  [B.I64, 8],
  [B.UUID, 16],
  [B.STRING, VARIABLE],
  [B.STRUCT, VARIABLE],
  [B.MAP, VARIABLE],
  [B.SET, VARIABLE],
  [B.LIST, VARIABLE],
]);
const COMPACT_VARIABLE: [number, number][] = [C.I16, C.I32, C.I64, C.BINARY, C.LIST, C.SET, C.MAP, C.STRUCT].map((t) => [t, VARIABLE]);
const COMPACT_ELEMENT_WIDTH = widths([[C.TRUE, 1], [C.FALSE, 1], [C.BYTE, 1], [C.DOUBLE, 8], [C.UUID, 16], ...COMPACT_VARIABLE]);
const COMPACT_FIELD_WIDTH = widths([[C.TRUE, 0], [C.FALSE, 0], [C.BYTE, 1], [C.DOUBLE, 8], [C.UUID, 16], ...COMPACT_VARIABLE]);

/** Stack frame kinds. ROOT holds the one value begun; in ROOT and STRUCT a compact bool takes no byte. */
const ROOT = 0;
const STRUCT = 1;
const LIST = 2;
const MAP = 3;

/** Longest varint of a 64-bit integer, and of a 32-bit length or seqid. */
const VARINT64_BYTES = 10;
const VARINT32_BYTES = 5;
const BINARY_VERSION_1 = 0x80010000 | 0;

function i32(b: Uint8Array, at: number): number {
  return (b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!;
}

/** Position after the varint at `q`, or NEED_MORE. */
function skipVarint(b: Uint8Array, q: number, end: number, maxBytes: number): number {
  for (let i = q; i < end; i++) {
    if (i - q === maxBytes) throw new MalformedMessageError(`varint longer than ${maxBytes} bytes`);
    if ((b[i]! & 0x80) === 0) return i + 1;
  }
  if (end - q > maxBytes) throw new MalformedMessageError(`varint longer than ${maxBytes} bytes`);
  return NEED_MORE;
}

/** A compact length or count (an unsigned varint of at most 5 bytes, at most 2³¹−1), read at `q`. */
function readSize(b: Uint8Array, q: number, end: number, what: string): { value: number; next: number } | undefined {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < VARINT32_BYTES; i++) {
    if (q + i >= end) return undefined;
    const byte = b[q + i]!;
    value += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) {
      if (value > 0x7fffffff) throw new MalformedMessageError(`${what} ${value} out of range (negative as an i32)`);
      return { value, next: q + i + 1 };
    }
    scale *= 128;
  }
  throw new MalformedMessageError(`${what} varint longer than ${VARINT32_BYTES} bytes`);
}

function negative(what: string, n: number): MalformedMessageError {
  return new MalformedMessageError(`negative ${what} ${n}`);
}

/**
 * Where the argument struct of the message at `start` begins (after the header: the method name
 * is stepped over by its length, never read), or NEED_MORE when the header has not all arrived.
 * Checks the protocol id and version and the name length (at most {@link MAX_NAME_BYTES}).
 * @throws MalformedMessageError
 */
export function argsOffset(b: Uint8Array, start: number, end: number, protocol: StructProtocol): number {
  if (protocol === 'compact') {
    if (end - start < 2) return NEED_MORE;
    if (b[start] !== 0x82) throw new MalformedMessageError(`bad compact protocol id 0x${b[start]!.toString(16)}`);
    if ((b[start + 1]! & 0x1f) !== 1) throw new MalformedMessageError(`bad compact protocol version ${b[start + 1]! & 0x1f}`);
    const afterSeqid = skipVarint(b, start + 2, end, VARINT32_BYTES);
    if (afterSeqid === NEED_MORE) return NEED_MORE;
    const length = readSize(b, afterSeqid, end, 'method name length');
    if (length === undefined) return NEED_MORE;
    if (length.value > MAX_NAME_BYTES) throw new MalformedMessageError(`method name length ${length.value} out of range`);
    return length.next + length.value <= end ? length.next + length.value : NEED_MORE;
  }
  if (end - start < 4) return NEED_MORE;
  const first = i32(b, start);
  // Strict: version word, i32 name length, name, i32 seqid. Non-strict: i32 name length, name, i8 type, i32 seqid.
  let nameAt = start + 4;
  let length = first;
  let trailer = 5;
  if (first < 0) {
    if ((first & 0xffff0000) !== BINARY_VERSION_1) throw new MalformedMessageError(`bad binary protocol version 0x${(first >>> 0).toString(16)}`);
    if (end - start < 8) return NEED_MORE;
    length = i32(b, start + 4);
    nameAt = start + 8;
    trailer = 4;
  }
  if (length < 0 || length > MAX_NAME_BYTES) throw new MalformedMessageError(`method name length ${length} out of range`);
  const args = nameAt + length + trailer;
  return args <= end ? args : NEED_MORE;
}

/**
 * Resumable skipper of one binary or compact value (see the module comment). Reusable: each
 * {@link begin} starts afresh. A value nested inside more than `maxDepth` containers is rejected,
 * so a hostile message cannot make the stack grow without bound.
 */
export class ValueSkipper {
  /** Offset of the next item to read; may lie past the bytes seen while a string body or a run of fixed-width elements is stepped over. */
  pos = 0;
  private top = -1;
  private readonly kind: Uint8Array;
  /** Items left in a list (elements) or map (keys plus values). */
  private readonly left: Float64Array;
  /** Element type, or a map's key type. */
  private readonly first: Uint8Array;
  /** A map's value type. */
  private readonly second: Uint8Array;
  private readonly compact: boolean;

  constructor(
    protocol: StructProtocol,
    /** Most containers a value may be nested in (the struct of a message's arguments counts). */
    readonly maxDepth: number,
  ) {
    if (!Number.isInteger(maxDepth) || maxDepth < 1) throw new RangeError(`maxDepth must be a whole number ≥ 1, got ${maxDepth}`);
    this.compact = protocol === 'compact';
    // The root, plus one frame per container up to the one holding the deepest value allowed.
    const slots = maxDepth + 2;
    this.kind = new Uint8Array(slots);
    this.left = new Float64Array(slots);
    this.first = new Uint8Array(slots);
    this.second = new Uint8Array(slots);
  }

  /** Starts skipping one value of wire type `type` at offset `at`. */
  begin(type: number, at: number): void {
    this.pos = at;
    this.top = 0;
    this.kind[0] = ROOT;
    this.left[0] = 1;
    this.first[0] = type;
  }

  /** Moves the scan position by `delta`, for bytes that moved to another buffer. */
  rebase(delta: number): void {
    this.pos += delta;
  }

  /**
   * Goes on over `b[pos, end)`: the offset just after the value, or NEED_MORE when it needs bytes
   * past `end` (call again with the same bytes and more after them, at the same offsets).
   * @throws MalformedMessageError
   */
  resume(b: Uint8Array, end: number): number {
    return this.compact ? this.resumeCompact(b, end) : this.resumeBinary(b, end);
  }

  private tooDeep(): MalformedMessageError {
    return new MalformedMessageError(`value nested deeper than ${this.maxDepth} containers`);
  }

  private resumeBinary(b: Uint8Array, end: number): number {
    const { kind, left, first, second, maxDepth } = this;
    let p = this.pos;
    let top = this.top;
    for (;;) {
      if (top < 0) {
        this.pos = p;
        this.top = top;
        return p <= end ? p : NEED_MORE;
      }
      const k = kind[top]!;
      let q = p;
      let type: number;
      if (k === STRUCT) {
        if (q >= end) break;
        type = b[q]!;
        if (type === 0) {
          p = q + 1;
          top--;
          continue;
        }
        q += 3;
      } else {
        const n = left[top]!;
        if (n === 0) {
          top--;
          continue;
        }
        // A map's items alternate key, value, starting from an even count.
        type = k === MAP && n % 2 === 1 ? second[top]! : first[top]!;
      }
      if (top > maxDepth) throw this.tooDeep();
      let push = ROOT;
      let count = 0;
      let t1 = 0;
      let t2 = 0;
      const width = BINARY_WIDTH[type]!;
      if (width >= 0) q += width;
      else if (width === UNKNOWN) throw new MalformedMessageError(`unknown binary type id ${type}`);
      else if (type === B.STRING) {
        if (q + 4 > end) break;
        const n = i32(b, q);
        if (n < 0) throw negative('string length', n);
        q += 4 + n;
      } else if (type === B.STRUCT) {
        push = STRUCT;
      } else if (type === B.MAP) {
        if (q + 6 > end) break;
        t1 = b[q]!;
        t2 = b[q + 1]!;
        const n = i32(b, q + 2);
        if (n < 0) throw negative('map size', n);
        q += 6;
        const kw = BINARY_WIDTH[t1]!;
        const vw = BINARY_WIDTH[t2]!;
        if (kw >= 0 && vw >= 0) {
          if (n > 0 && top + 1 > maxDepth) throw this.tooDeep();
          q += n * (kw + vw);
        } else {
          push = MAP;
          count = 2 * n;
        }
      } else {
        if (q + 5 > end) break;
        t1 = b[q]!;
        const n = i32(b, q + 1);
        if (n < 0) throw negative('list size', n);
        q += 5;
        const w = BINARY_WIDTH[t1]!;
        if (w >= 0) {
          if (n > 0 && top + 1 > maxDepth) throw this.tooDeep();
          q += n * w;
        } else {
          push = LIST;
          count = n;
        }
      }
      p = q;
      if (k !== STRUCT) left[top] = left[top]! - 1;
      if (push !== ROOT) {
        top++;
        kind[top] = push;
        left[top] = count;
        first[top] = t1;
        second[top] = t2;
      }
    }
    this.pos = p;
    this.top = top;
    return NEED_MORE;
  }

  private resumeCompact(b: Uint8Array, end: number): number {
    const { kind, left, first, second, maxDepth } = this;
    let p = this.pos;
    let top = this.top;
    for (;;) {
      if (top < 0) {
        this.pos = p;
        this.top = top;
        return p <= end ? p : NEED_MORE;
      }
      const k = kind[top]!;
      let q = p;
      let type: number;
      if (k === STRUCT) {
        if (q >= end) break;
        const header = b[q++]!;
        if (header === 0) {
          p = q;
          top--;
          continue;
        }
        type = header & 0x0f;
        if (header >> 4 === 0) {
          q = skipVarint(b, q, end, VARINT64_BYTES);
          if (q === NEED_MORE) break;
        }
      } else {
        const n = left[top]!;
        if (n === 0) {
          top--;
          continue;
        }
        type = k === MAP && n % 2 === 1 ? second[top]! : first[top]!;
      }
      if (top > maxDepth) throw this.tooDeep();
      let push = ROOT;
      let count = 0;
      let t1 = 0;
      let t2 = 0;
      const width = (k <= STRUCT ? COMPACT_FIELD_WIDTH : COMPACT_ELEMENT_WIDTH)[type]!;
      if (width >= 0) q += width;
      else if (width === UNKNOWN) throw new MalformedMessageError(`unknown compact type id ${type}`);
      else if (type === C.I16 || type === C.I32 || type === C.I64) {
        q = skipVarint(b, q, end, VARINT64_BYTES);
        if (q === NEED_MORE) break;
      } else if (type === C.BINARY) {
        const size = readSize(b, q, end, 'binary length');
        if (size === undefined) break;
        q = size.next + size.value;
      } else if (type === C.STRUCT) {
        push = STRUCT;
      } else if (type === C.MAP) {
        const size = readSize(b, q, end, 'map size');
        if (size === undefined) break;
        q = size.next;
        if (size.value > 0) {
          if (q >= end) break;
          t1 = b[q]! >> 4;
          t2 = b[q]! & 0x0f;
          q++;
          const kw = COMPACT_ELEMENT_WIDTH[t1]!;
          const vw = COMPACT_ELEMENT_WIDTH[t2]!;
          if (kw >= 0 && vw >= 0) {
            if (top + 1 > maxDepth) throw this.tooDeep();
            q += size.value * (kw + vw);
          } else {
            push = MAP;
            count = 2 * size.value;
          }
        }
      } else {
        if (q >= end) break;
        const header = b[q++]!;
        t1 = header & 0x0f;
        let n = header >> 4;
        if (n === 15) {
          const size = readSize(b, q, end, 'list size');
          if (size === undefined) break;
          n = size.value;
          q = size.next;
        }
        const w = COMPACT_ELEMENT_WIDTH[t1]!;
        if (w >= 0) {
          if (n > 0 && top + 1 > maxDepth) throw this.tooDeep();
          q += n * w;
        } else {
          push = LIST;
          count = n;
        }
      }
      p = q;
      if (k !== STRUCT) left[top] = left[top]! - 1;
      if (push !== ROOT) {
        top++;
        kind[top] = push;
        left[top] = count;
        first[top] = t1;
        second[top] = t2;
      }
    }
    this.pos = p;
    this.top = top;
    return NEED_MORE;
  }
}
