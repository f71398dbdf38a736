/**
 * Reads only the message header of a Thrift request (method name, message type, seqid), without
 * decoding the arguments: that is all the I/O thread needs to pick a limit and to answer an
 * overloaded call itself. Costs a fraction of a microsecond.
 *
 * Layouts:
 * - binary strict: i32 (0x8001_0000 | type), i32 name length, name, i32 seqid
 * - binary non-strict: i32 name length, name, i8 type, i32 seqid
 * - compact: 0x82, u8 (type << 5 | version 1), varint seqid, varint name length, name
 * - JSON (TJSONProtocol): `[1,"name",type,seqid,` then the arguments as a JSON object
 */

/** The protocols the server speaks. */
export type Protocol = 'binary' | 'compact' | 'json';

/** The protocols whose values are read by wire type (JSON marks its values' ends itself). */
export type StructProtocol = Exclude<Protocol, 'json'>;

/** What the I/O thread knows of a request. */
export interface MessageHeader {
  /** Method name. */
  name: string;
  /** 1 call, 2 reply, 3 exception, 4 oneway. */
  type: number;
  /** Sequence id, as the client sent it (signed 32-bit). */
  seqid: number;
}

const BINARY_VERSION_1 = 0x80010000 | 0;
const COMPACT_PROTOCOL_ID = 0x82;
const COMPACT_VERSION = 1;
/** Longest method name accepted, bytes: a longer one is taken for garbage. */
export const MAX_NAME_BYTES = 4096;

/** Thrown for a header that is not a valid message of the expected protocol. */
export class MalformedHeaderError extends Error {
  /** Stable machine-readable reason. */
  readonly code = 'MALFORMED_HEADER' as const;
  constructor(message: string) {
    super(message);
    this.name = 'MalformedHeaderError';
  }
}

/** Reads the header of `frame` (no length prefix). @throws MalformedHeaderError */
export function readMessageHeader(frame: Uint8Array, protocol: Protocol): MessageHeader {
  return protocol === 'binary' ? readBinary(frame) : protocol === 'compact' ? readCompact(frame) : readJson(frame);
}

function need(frame: Uint8Array, end: number, what: string): void {
  if (end > frame.length) throw new MalformedHeaderError(`frame too short for the ${what}`);
}

function i32(frame: Uint8Array, at: number): number {
  return (frame[at]! << 24) | (frame[at + 1]! << 16) | (frame[at + 2]! << 8) | frame[at + 3]!;
}

function name(frame: Uint8Array, at: number, length: number): string {
  if (length < 0 || length > MAX_NAME_BYTES) throw new MalformedHeaderError(`method name length ${length} out of range`);
  need(frame, at + length, 'method name');
  return Buffer.from(frame.buffer, frame.byteOffset + at, length).toString('utf8');
}

function readBinary(frame: Uint8Array): MessageHeader {
  need(frame, 4, 'message header');
  const first = i32(frame, 0);
  if (first < 0) {
    if ((first & 0xffff0000) !== BINARY_VERSION_1) {
      throw new MalformedHeaderError(`bad binary protocol version 0x${(first >>> 0).toString(16)}`);
    }
    need(frame, 8, 'method name length');
    const length = i32(frame, 4);
    const n = name(frame, 8, length);
    need(frame, 12 + length, 'seqid');
    return { name: n, type: first & 0xff, seqid: i32(frame, 8 + length) };
  }
  const n = name(frame, 4, first);
  need(frame, 4 + first + 5, 'message type and seqid');
  return { name: n, type: frame[4 + first]!, seqid: i32(frame, 5 + first) };
}

function readCompact(frame: Uint8Array): MessageHeader {
  need(frame, 2, 'message header');
  if (frame[0] !== COMPACT_PROTOCOL_ID) throw new MalformedHeaderError(`bad compact protocol id 0x${frame[0]!.toString(16)}`);
  const versionAndType = frame[1]!;
  if ((versionAndType & 0x1f) !== COMPACT_VERSION) throw new MalformedHeaderError(`bad compact protocol version ${versionAndType & 0x1f}`);
  let at = 2;
  const varint = (what: string): number => {
    let result = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      need(frame, at + 1, what);
      const b = frame[at++]!;
      result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
    }
    throw new MalformedHeaderError(`${what} varint too long`);
  };
  const seqid = varint('seqid') | 0;
  const length = varint('method name length');
  return { name: name(frame, at, length), type: (versionAndType >> 5) & 0x07, seqid };
}

const OPEN_BRACKET = 0x5b;
const COMMA = 0x2c;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function readJson(frame: Uint8Array): MessageHeader {
  let at = 0;
  const expect = (byte: number, what: string): void => {
    need(frame, at + 1, what);
    if (frame[at] !== byte) throw new MalformedHeaderError(`JSON message: expected ${what} at byte ${at}`);
    at++;
  };
  const integer = (what: string): number => {
    const start = at;
    if (frame[at] === 0x2d) at++;
    while (at < frame.length && frame[at]! >= 0x30 && frame[at]! <= 0x39) at++;
    if (at === start || at - start > 11) throw new MalformedHeaderError(`JSON message: bad ${what}`);
    return Number(Buffer.from(frame.buffer, frame.byteOffset + start, at - start).toString('latin1')) | 0;
  };
  expect(OPEN_BRACKET, "'['");
  if (integer('version') !== 1) throw new MalformedHeaderError('JSON message: unsupported version');
  expect(COMMA, "','");
  expect(QUOTE, 'the method name');
  const start = at;
  let escaped = false;
  while (at < frame.length && frame[at] !== QUOTE) {
    if (frame[at] === BACKSLASH) {
      escaped = true;
      at++;
    }
    at++;
    if (at - start > MAX_NAME_BYTES) throw new MalformedHeaderError('JSON message: method name too long');
  }
  need(frame, at + 1, 'method name');
  const raw = Buffer.from(frame.buffer, frame.byteOffset + start, at - start).toString('utf8');
  let n = raw;
  if (escaped) {
    try {
      n = JSON.parse(`"${raw}"`) as string;
    } catch {
      throw new MalformedHeaderError('JSON message: bad escape in the method name');
    }
  }
  at++;
  expect(COMMA, "','");
  const type = integer('message type');
  expect(COMMA, "','");
  return { name: n, type, seqid: integer('seqid') };
}
