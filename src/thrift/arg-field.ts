/**
 * Reads one argument of a Thrift call straight from its frame, without decoding the others: the
 * argument struct is walked field by field and every field before the wanted one is skipped by
 * its wire type. That is what a flow key such as a tenant id needs on the I/O thread, which never
 * decodes arguments otherwise. Costs about as much as reading the header plus the bytes skipped.
 * The header and the fields before the wanted one are stepped over by value-skipper.ts.
 *
 * Binary protocol: field = i8 type, i16 id, value; stop = type 0. Compact protocol: field header
 * byte = (id delta << 4) | type, with delta 0 followed by a zigzag varint id; stop = 0x00.
 */
import type { Protocol, StructProtocol } from './message-header.js';
import { argsOffset, BinaryType as B, CompactType as C, MalformedMessageError, NEED_MORE, ValueSkipper } from './value-skipper.js';

/** Nesting deeper than this is treated as malformed (a hostile frame cannot grow the skipper's stack without bound). */
const MAX_DEPTH = 64;
/** One per protocol, reused: a skip runs start to end within one synchronous call. */
const skippers = { binary: new ValueSkipper('binary', MAX_DEPTH), compact: new ValueSkipper('compact', MAX_DEPTH) };

/** Thrown internally on a frame that ends early or holds an impossible length; like the skipper's MalformedMessageError, it makes the public function return undefined. */
class Truncated extends Error {}

/** A cursor over a frame. */
class Reader {
  at = 0;

  constructor(readonly frame: Uint8Array) {}

  need(n: number): void {
    if (n < 0 || this.at + n > this.frame.length) throw new Truncated();
  }

  u8(): number {
    this.need(1);
    return this.frame[this.at++]!;
  }

  i16(): number {
    this.need(2);
    const v = (this.frame[this.at]! << 8) | this.frame[this.at + 1]!;
    this.at += 2;
    return (v << 16) >> 16;
  }

  i32(): number {
    this.need(4);
    const f = this.frame;
    const v = (f[this.at]! << 24) | (f[this.at + 1]! << 16) | (f[this.at + 2]! << 8) | f[this.at + 3]!;
    this.at += 4;
    return v;
  }

  utf8(n: number): string {
    this.need(n);
    const s = Buffer.from(this.frame.buffer, this.frame.byteOffset + this.at, n).toString('utf8');
    this.at += n;
    return s;
  }

  /** An unsigned varint of up to 64 bits. */
  varint(): bigint {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      const b = this.u8();
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
    }
    throw new Truncated();
  }

  /** A varint that must fit a non-negative safe number (lengths, sizes). */
  size(): number {
    const v = this.varint();
    if (v > BigInt(this.frame.length)) throw new Truncated();
    return Number(v);
  }
}

function zigzag(v: bigint): bigint {
  return (v >> 1n) ^ -(v & 1n);
}

/**
 * Field `fieldId` of the call's argument struct as a string (string and binary fields as UTF-8,
 * integer fields in decimal), or undefined when the call does not have it, it is of another type,
 * or the frame is malformed.
 * @param frame a request frame without its length prefix.
 */
export function readArgField(frame: Uint8Array, protocol: Protocol, fieldId: number): string | undefined {
  if (protocol === 'json') return jsonField(frame, fieldId);
  const r = new Reader(frame);
  try {
    return protocol === 'compact' ? compactField(r, fieldId) : binaryField(r, fieldId);
  } catch (error) {
    if (error instanceof Truncated || error instanceof MalformedMessageError) return undefined;
    throw error;
  }
}

/** Moves the cursor past the message header. */
function skipHeader(r: Reader, protocol: StructProtocol): void {
  const at = argsOffset(r.frame, 0, r.frame.length, protocol);
  if (at === NEED_MORE) throw new Truncated();
  r.at = at;
}

/** Moves the cursor past a value of wire type `type`. */
function skipValue(r: Reader, protocol: StructProtocol, type: number): void {
  const skipper = skippers[protocol];
  skipper.begin(type, r.at);
  const end = skipper.resume(r.frame, r.frame.length);
  if (end === NEED_MORE) throw new Truncated();
  r.at = end;
}

function binaryField(r: Reader, fieldId: number): string | undefined {
  skipHeader(r, 'binary');
  for (;;) {
    const type = r.u8();
    if (type === 0) return undefined;
    const id = r.i16();
    if (id !== fieldId) {
      skipValue(r, 'binary', type);
      continue;
    }
    switch (type) {
      case B.STRING:
        return r.utf8(r.i32());
      case B.BYTE:
        return String((r.u8() << 24) >> 24);
      case B.I16:
        return String(r.i16());
      case B.I32:
        return String(r.i32());
      case B.I64: {
        r.need(8);
        const v = Buffer.from(r.frame.buffer, r.frame.byteOffset + r.at, 8).readBigInt64BE();
        return String(v);
      }
      default:
        return undefined;
    }
  }
}

function compactField(r: Reader, fieldId: number): string | undefined {
  skipHeader(r, 'compact');
  let last = 0;
  for (;;) {
    const header = r.u8();
    if (header === 0) return undefined;
    const type = header & 0x0f;
    const delta = header >> 4;
    const id = delta === 0 ? Number(zigzag(r.varint())) : last + delta;
    last = id;
    if (id !== fieldId) {
      skipValue(r, 'compact', type);
      continue;
    }
    switch (type) {
      case C.BINARY:
        return r.utf8(r.size());
      case C.BYTE:
        return String((r.u8() << 24) >> 24);
      case C.I16:
      case C.I32:
      case C.I64:
        return String(BigInt.asIntN(64, zigzag(r.varint())));
      default:
        return undefined;
    }
  }
}

/**
 * JSON (TJSONProtocol): `[1,"name",type,seqid,{"1":{"str":…},"2":{"i32":…}}]`. Parsing the whole
 * message is the simple way, and JSON clients are not the ones a hot path is tuned for.
 */
function jsonField(frame: Uint8Array, fieldId: number): string | undefined {
  let message: unknown;
  try {
    message = JSON.parse(Buffer.from(frame.buffer, frame.byteOffset, frame.length).toString('utf8'));
  } catch {
    return undefined;
  }
  const field = (Array.isArray(message) ? (message[4] as Record<string, unknown> | undefined) : undefined)?.[String(fieldId)];
  if (field === null || typeof field !== 'object') return undefined;
  const [type, value] = Object.entries(field)[0] ?? [];
  if (type === 'str' && typeof value === 'string') return value;
  if ((type === 'i8' || type === 'i16' || type === 'i32' || type === 'i64') && (typeof value === 'number' || typeof value === 'string')) return String(value);
  return undefined;
}
