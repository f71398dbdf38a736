/**
 * Tells from a connection's first bytes which Thrift wire its client speaks, so that one port can
 * serve every kind of client and answer each in kind. The rules are python3-thrift's
 * (`THeaderTransport.readFrame`), extended to JSON, HTTP and non-strict binary:
 *
 * - first 4 bytes `& 0xffff0000 == 0x80010000`: unframed strict binary;
 * - `0x82`, then a byte whose low 5 bits are 1 (compact version): unframed compact;
 * - `[`: unframed JSON (a TJSONProtocol message is a JSON array);
 * - `POST `: HTTP (the protocol is in the body, not known yet);
 * - otherwise the first 4 bytes are a frame length, and the payload tells: `0x80 0x01` strict
 *   binary, `0x82` + version compact, `[` JSON, `0x0F 0xFF` THeader (whose header then names
 *   binary or compact), or an i32 name length of at most {@link MAX_NAME_BYTES}, that many
 *   printable bytes and a message type 1–4: non-strict binary.
 *
 * Unframed non-strict binary cannot be told from a frame (both start with a small positive i32)
 * and is read as framed, as python3-thrift does. A decision needs at most 15 bytes, except
 * non-strict binary, which needs its whole method name (up to 4,105 bytes).
 */
import { MAX_NAME_BYTES } from './message-header.js';

/** A wire recognised by {@link detectWire}. */
export type KnownWire =
  /** Binary messages, with or without a frame. `strict`: a version word leads each message (non-strict: the name length). */
  | { kind: 'known'; transport: 'framed' | 'buffered'; protocol: 'binary'; strict: boolean }
  /** Compact or JSON messages, with or without a frame. */
  | { kind: 'known'; transport: 'framed' | 'buffered'; protocol: 'compact' | 'json' }
  /** THeader frames (see theader.ts) carrying binary or compact messages. */
  | { kind: 'known'; transport: 'header'; protocol: 'binary' | 'compact' }
  /** Thrift over HTTP POST: the protocol is known only from the body. */
  | { kind: 'known'; transport: 'http'; protocol: undefined };

/** Bytes that are no Thrift wire; `reason` names what they look like. */
export interface UnknownWire {
  kind: 'unknown';
  reason: string;
}

/** What {@link detectWire} makes of a connection's first bytes. */
export type WireGuess = KnownWire | UnknownWire;

const HEADER_MAGIC_HIGH = 0x0f;
const HEADER_MAGIC_LOW = 0xff;
/** Offset, in a THeader frame's payload, of its protocol id varint (after magic, flags, seqid, header length). */
const HEADER_PROTOCOL_AT = 10;
const OPEN_BRACKET = 0x5b;
/** HTTP request lines: POST carries Thrift; the others are named in the `reason`. */
const HTTP_METHODS = ['POST', 'GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'CONNECT'].map((name) => ({
  name,
  bytes: [...`${name} `].map((ch) => ch.charCodeAt(0)),
}));
const TLS_HANDSHAKE = 0x16;

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(' ');
}

function unknown(reason: string): UnknownWire {
  return { kind: 'unknown', reason };
}

/** True when `b` starts with `prefix`; undefined when `b` is a shorter prefix of it. */
function startsWith(b: Uint8Array, prefix: readonly number[]): boolean | undefined {
  for (let i = 0; i < prefix.length; i++) {
    if (i >= b.length) return undefined;
    if (b[i] !== prefix[i]) return false;
  }
  return true;
}

function isCompactVersion(byte: number): boolean {
  return (byte & 0x1f) === 1;
}

/** A byte of a method name: printable ASCII other than space, or part of a UTF-8 sequence. */
function isNameByte(byte: number): boolean {
  return (byte > 0x20 && byte < 0x7f) || byte >= 0x80;
}

/**
 * The wire a connection speaks, judged from its first bytes (as many as have arrived), or
 * `'need-more'` when they do not decide it yet. The answer for a prefix never changes once given.
 */
export function detectWire(first: Uint8Array): WireGuess | 'need-more' {
  if (first.length === 0) return 'need-more';
  const b0 = first[0]!;
  if (b0 === OPEN_BRACKET) return { kind: 'known', transport: 'buffered', protocol: 'json' };
  if (b0 === 0x80 || b0 === 0x82) {
    if (first.length < 2) return 'need-more';
    if (b0 === 0x80 && first[1] === 0x01) return { kind: 'known', transport: 'buffered', protocol: 'binary', strict: true };
    if (b0 === 0x82 && isCompactVersion(first[1]!)) return { kind: 'known', transport: 'buffered', protocol: 'compact' };
    return unknown(`first bytes ${hex(first.subarray(0, 2))} are neither a binary or compact message nor a frame length`);
  }
  // Every HTTP method's first byte would announce a frame over 1 GB: waiting for the method
  // costs real frames nothing.
  for (const method of HTTP_METHODS) {
    const match = startsWith(first, method.bytes);
    if (match === undefined) return 'need-more';
    if (match)
      return method.name === 'POST'
        ? { kind: 'known', transport: 'http', protocol: undefined }
        : unknown(`an HTTP ${method.name} request (Thrift over HTTP uses POST)`);
  }
  if (first.length < 4) return 'need-more';
  if (b0 === TLS_HANDSHAKE && first[1] === 0x03) return unknown('a TLS handshake (this port speaks plain TCP)');
  const length = ((b0 << 24) | (first[1]! << 16) | (first[2]! << 8) | first[3]!) >>> 0;
  if (length >= 0x80000000) return unknown(`first bytes ${hex(first.subarray(0, 4))} are neither a message nor a frame length`);
  if (length === 0) return unknown('an empty frame');
  return detectFramed(first.subarray(4), length);
}

/** The protocol of a frame of `length` bytes, from the first bytes of its payload. */
function detectFramed(payload: Uint8Array, length: number): WireGuess | 'need-more' {
  if (payload.length === 0) return 'need-more';
  const p0 = payload[0]!;
  const notAMessage = (what: string): UnknownWire => unknown(`a frame of ${length} bytes whose payload ${what}`);
  if (p0 === OPEN_BRACKET) return { kind: 'known', transport: 'framed', protocol: 'json' };
  if (length < 2) return notAMessage(`is 1 byte (0x${p0.toString(16)})`);
  if (payload.length < 2) return 'need-more';
  const p1 = payload[1]!;
  if (p0 === 0x80 && p1 === 0x01) return { kind: 'known', transport: 'framed', protocol: 'binary', strict: true };
  if (p0 === 0x82 && isCompactVersion(p1)) return { kind: 'known', transport: 'framed', protocol: 'compact' };
  if (p0 === HEADER_MAGIC_HIGH && p1 === HEADER_MAGIC_LOW) {
    if (length <= HEADER_PROTOCOL_AT) return notAMessage('is too short for a THeader');
    if (payload.length <= HEADER_PROTOCOL_AT) return 'need-more';
    // A one-byte varint: every protocol id in use is below 128.
    const id = payload[HEADER_PROTOCOL_AT]!;
    if (id === 0) return { kind: 'known', transport: 'header', protocol: 'binary' };
    if (id === 2) return { kind: 'known', transport: 'header', protocol: 'compact' };
    return unknown(`a THeader frame of protocol id ${id < 0x80 ? id : 'above 127'} (only 0 binary and 2 compact are spoken)`);
  }
  // Only the bytes every decision has seen, so that the reason does not change as more arrive.
  return detectNonStrict(payload, length) ?? notAMessage(`starts ${hex(payload.subarray(0, 2))}, no Thrift message`);
}

/** Non-strict binary: i32 name length, the name, i8 message type. Undefined when it is not that. */
function detectNonStrict(payload: Uint8Array, length: number): KnownWire | 'need-more' | undefined {
  if (payload[0] !== 0) return undefined;
  if (payload.length < 4) return payload.length < 2 || payload[1] === 0 ? 'need-more' : undefined;
  const nameLength = (payload[1]! << 16) | (payload[2]! << 8) | payload[3]!;
  // Name, i8 type, i32 seqid and at least the stop byte of the arguments.
  if (nameLength === 0 || nameLength > MAX_NAME_BYTES || 4 + nameLength + 6 > length) return undefined;
  const seen = Math.min(payload.length, 4 + nameLength);
  for (let i = 4; i < seen; i++) if (!isNameByte(payload[i]!)) return undefined;
  if (payload.length <= 4 + nameLength) return 'need-more';
  const type = payload[4 + nameLength]!;
  return type >= 1 && type <= 4 ? { kind: 'known', transport: 'framed', protocol: 'binary', strict: false } : undefined;
}
