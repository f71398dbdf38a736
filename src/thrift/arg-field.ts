/**
 * Reads one argument of a Thrift call straight from its frame, without decoding the others: the
 * argument struct is walked field by field and every field before the wanted one is skipped by
 * its wire type. That is what a flow key such as a tenant id needs on the I/O thread, which never
 * decodes arguments otherwise. Costs about as much as reading the header plus the bytes skipped.
 *
 * Binary protocol: field = i8 type, i16 id, value; stop = type 0. Compact protocol: field header
 * byte = (id delta << 4) | type, with delta 0 followed by a zigzag varint id; stop = 0x00.
 */
import type { Protocol } from './message-header.js';

/** Binary protocol type ids (TType). */
const B = { BOOL: 2, BYTE: 3, DOUBLE: 4, I16: 6, I32: 8, I64: 10, STRING: 11, STRUCT: 12, MAP: 13, SET: 14, LIST: 15, UUID: 16 } as const;
/** Compact protocol type ids. */
const C = { TRUE: 1, FALSE: 2, BYTE: 3, I16: 4, I32: 5, I64: 6, DOUBLE: 7, BINARY: 8, LIST: 9, SET: 10, MAP: 11, STRUCT: 12, UUID: 13 } as const;
/** Nesting deeper than this is treated as malformed (a hostile frame cannot exhaust the stack). */
const MAX_DEPTH = 64;

/** Thrown internally on a frame that ends early or is malformed; the public function returns undefined. */
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

  skip(n: number): void {
    this.need(n);
    this.at += n;
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
  const r = new Reader(frame);
  try {
    return protocol === 'compact' ? compactField(r, fieldId) : binaryField(r, fieldId);
  } catch (error) {
    if (error instanceof Truncated) return undefined;
    throw error;
  }
}

function binaryField(r: Reader, fieldId: number): string | undefined {
  const first = r.i32();
  if (first < 0) {
    r.skip(r.i32()); // name
    r.skip(4); // seqid
  } else {
    r.skip(first); // name (non-strict)
    r.skip(5); // type, seqid
  }
  for (;;) {
    const type = r.u8();
    if (type === 0) return undefined;
    const id = r.i16();
    if (id !== fieldId) {
      skipBinary(r, type, 0);
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

function skipBinary(r: Reader, type: number, depth: number): void {
  if (depth > MAX_DEPTH) throw new Truncated();
  switch (type) {
    case B.BOOL:
    case B.BYTE:
      return r.skip(1);
    case B.I16:
      return r.skip(2);
    case B.I32:
      return r.skip(4);
    case B.I64:
    case B.DOUBLE:
      return r.skip(8);
    case B.UUID:
      return r.skip(16);
    case B.STRING:
      return r.skip(r.i32());
    case B.STRUCT:
      for (let t = r.u8(); t !== 0; t = r.u8()) {
        r.skip(2);
        skipBinary(r, t, depth + 1);
      }
      return;
    case B.MAP: {
      const k = r.u8();
      const v = r.u8();
      const n = r.i32();
      if (n < 0) throw new Truncated();
      for (let i = 0; i < n; i++) {
        skipBinary(r, k, depth + 1);
        skipBinary(r, v, depth + 1);
      }
      return;
    }
    case B.SET:
    case B.LIST: {
      const e = r.u8();
      const n = r.i32();
      if (n < 0) throw new Truncated();
      for (let i = 0; i < n; i++) skipBinary(r, e, depth + 1);
      return;
    }
    default:
      throw new Truncated();
  }
}

function compactField(r: Reader, fieldId: number): string | undefined {
  r.skip(2); // protocol id, version and type (checked by readMessageHeader)
  r.varint(); // seqid
  r.skip(r.size()); // name
  let last = 0;
  for (;;) {
    const header = r.u8();
    if (header === 0) return undefined;
    const type = header & 0x0f;
    const delta = header >> 4;
    const id = delta === 0 ? Number(zigzag(r.varint())) : last + delta;
    last = id;
    if (id !== fieldId) {
      skipCompact(r, type, 0);
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

function skipCompact(r: Reader, type: number, depth: number): void {
  if (depth > MAX_DEPTH) throw new Truncated();
  switch (type) {
    case C.TRUE:
    case C.FALSE:
      return; // a field's boolean lives in its type nibble
    case C.BYTE:
      return r.skip(1);
    case C.I16:
    case C.I32:
    case C.I64:
      r.varint();
      return;
    case C.DOUBLE:
      return r.skip(8);
    case C.UUID:
      return r.skip(16);
    case C.BINARY:
      return r.skip(r.size());
    case C.STRUCT:
      for (let h = r.u8(); h !== 0; h = r.u8()) {
        if (h >> 4 === 0) r.varint();
        skipCompact(r, h & 0x0f, depth + 1);
      }
      return;
    case C.MAP: {
      const n = r.size();
      if (n === 0) return;
      const kv = r.u8();
      for (let i = 0; i < n; i++) {
        skipElement(r, kv >> 4, depth + 1);
        skipElement(r, kv & 0x0f, depth + 1);
      }
      return;
    }
    case C.LIST:
    case C.SET: {
      const h = r.u8();
      const n = h >> 4 === 15 ? r.size() : h >> 4;
      for (let i = 0; i < n; i++) skipElement(r, h & 0x0f, depth + 1);
      return;
    }
    default:
      throw new Truncated();
  }
}

/** A collection element: booleans take one byte there (not the type nibble). */
function skipElement(r: Reader, type: number, depth: number): void {
  if (type === C.TRUE || type === C.FALSE) r.skip(1);
  else skipCompact(r, type, depth);
}
