/**
 * THeader frames (the header transport of fbthrift, which python3-thrift's THeaderTransport and
 * npm thrift's THeaderTransport speak): decoding a client's frame and encoding the reply, which a
 * THeader client expects in THeader too, with the protocol id and seqid of its call.
 *
 * A frame is an i32 length, then (all big-endian):
 *   u16 magic 0x0FFF, u16 flags, i32 seqid, u16 header length in 4-byte words,
 *   the header: varint protocol id (0 binary, 2 compact), varint transform count, that many
 *     varint transform ids, info headers (varint type; type 1 = key-value: varint count, then
 *     count × (varint-length key, varint-length value)), zero padding up to the header length,
 *   the payload: one message in that protocol.
 *
 * Transforms (zlib and others) are refused: the payload is handed on as it is, and a compressed
 * one would read as garbage. A decoder stops reading info headers at the first type it does not
 * know, as python3-thrift does; padding is type 0.
 */
import type { StructProtocol } from './message-header.js';

/** THeader protocol ids of the protocols spoken. */
export const THeaderProtocolId = { binary: 0, compact: 2 } as const;

/** What a reply frame carries besides its payload. */
export interface THeaderFields {
  /** Protocol of the payload: 0 binary, 2 compact. */
  protocolId: (typeof THeaderProtocolId)[StructProtocol];
  /** Sequence id (signed 32-bit); a reply carries its call's. */
  seqid: number;
  /** The u16 flags word; python3-thrift sends back the flags of the call it answers. Default 0. */
  flags?: number;
  /** Key-value info headers, as UTF-8 strings. Default none. */
  headers?: ReadonlyMap<string, string>;
}

/** A decoded THeader frame. */
export interface THeaderFrame extends THeaderFields {
  flags: number;
  headers: Map<string, string>;
  /** The protocol named by `protocolId`. */
  protocol: StructProtocol;
  /** The message, a view of the frame. */
  payload: Buffer;
}

/** Thrown for a frame that is not a THeader frame this server can read. */
export class THeaderError extends Error {
  /** Stable machine-readable reason. */
  readonly code = 'THEADER' as const;
  constructor(message: string) {
    super(message);
    this.name = 'THeaderError';
  }
}

const MAGIC = 0x0fff;
/** Magic, flags, seqid, header length. */
const FIXED_BYTES = 10;
const INFO_KEY_VALUE = 1;
/** Transform ids python3-thrift knows by name. */
const TRANSFORM_NAMES: Record<number, string> = { 1: 'zlib' };
const MAX_HEADER_WORDS = 0xffff;

/** A cursor over the header region, which no read may leave. */
class HeaderReader {
  constructor(
    private readonly b: Buffer,
    public at: number,
    private readonly end: number,
  ) {}

  /** An unsigned varint of up to 32 bits. */
  varint(what: string): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 5; i++) {
      if (this.at >= this.end) throw new THeaderError(`THeader ${what} runs past the header length`);
      const byte = this.b[this.at++]!;
      value += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) return value;
      scale *= 128;
    }
    throw new THeaderError(`THeader ${what} varint longer than 5 bytes`);
  }

  string(what: string): string {
    const length = this.varint(`${what} length`);
    if (this.at + length > this.end) throw new THeaderError(`THeader ${what} runs past the header length`);
    const s = this.b.toString('utf8', this.at, this.at + length);
    this.at += length;
    return s;
  }
}

/**
 * Decodes a THeader frame.
 * @param frame the frame without its length prefix (as FrameReader delivers it).
 * @throws THeaderError for a frame that is not THeader, is truncated, uses a transform, or carries
 * a protocol other than binary or compact.
 */
export function decodeTHeader(frame: Uint8Array): THeaderFrame {
  const b = Buffer.from(frame.buffer, frame.byteOffset, frame.length);
  if (b.length < FIXED_BYTES) throw new THeaderError(`a THeader frame has at least ${FIXED_BYTES} bytes, got ${b.length}`);
  const magic = b.readUInt16BE(0);
  if (magic !== MAGIC) throw new THeaderError(`no THeader magic 0x0fff at the frame's start (0x${magic.toString(16).padStart(4, '0')})`);
  const flags = b.readUInt16BE(2);
  const seqid = b.readInt32BE(4);
  const headerEnd = FIXED_BYTES + 4 * b.readUInt16BE(8);
  if (headerEnd > b.length) throw new THeaderError(`THeader header of ${headerEnd - FIXED_BYTES} bytes is longer than the frame`);
  const r = new HeaderReader(b, FIXED_BYTES, headerEnd);
  const id = r.varint('protocol id');
  let protocol: StructProtocol;
  if (id === THeaderProtocolId.binary) protocol = 'binary';
  else if (id === THeaderProtocolId.compact) protocol = 'compact';
  else throw new THeaderError(`THeader protocol id ${id} is not spoken here (0 binary, 2 compact)`);
  const transforms = r.varint('transform count');
  if (transforms > 0) {
    const transform = r.varint('transform id');
    const name = TRANSFORM_NAMES[transform];
    throw new THeaderError(
      `THeader transform ${name === undefined ? `id ${transform}` : `${name} (id ${transform})`} is not supported: send the payload untransformed`,
    );
  }
  const headers = new Map<string, string>();
  while (r.at < headerEnd) {
    if (r.varint('info header type') !== INFO_KEY_VALUE) break;
    for (let n = r.varint('info header count'); n > 0; n--) headers.set(r.string('info header key'), r.string('info header value'));
  }
  return { protocolId: THeaderProtocolId[protocol], protocol, seqid, flags, headers, payload: b.subarray(headerEnd) };
}

function varint(value: number): Buffer {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Buffer.from(out);
}

function lengthPrefixed(s: string): Buffer[] {
  const bytes = Buffer.from(s, 'utf8');
  return [varint(bytes.length), bytes];
}

/**
 * Encodes `payload` (one message in the protocol `fields.protocolId` names) as a THeader frame,
 * laid out as python3-thrift's THeaderTransport writes it.
 * @returns the whole frame, length prefix included, ready for the socket.
 * @throws RangeError for info headers longer than a THeader header can be (about 256 KiB).
 */
export function encodeTHeader(fields: THeaderFields, payload: Uint8Array): Buffer {
  const parts = [varint(fields.protocolId), varint(0)];
  const headers = fields.headers ?? new Map<string, string>();
  if (headers.size > 0) {
    parts.push(varint(INFO_KEY_VALUE), varint(headers.size));
    for (const [key, value] of headers) parts.push(...lengthPrefixed(key), ...lengthPrefixed(value));
  }
  const headerBytes = parts.reduce((n, part) => n + part.length, 0);
  const words = Math.ceil(headerBytes / 4);
  if (words > MAX_HEADER_WORDS) throw new RangeError(`THeader info headers of ${headerBytes} bytes exceed ${4 * MAX_HEADER_WORDS} bytes`);
  const fixed = Buffer.alloc(4 + FIXED_BYTES);
  fixed.writeInt32BE(FIXED_BYTES + 4 * words + payload.length, 0);
  fixed.writeUInt16BE(MAGIC, 4);
  fixed.writeUInt16BE(fields.flags ?? 0, 6);
  fixed.writeInt32BE(fields.seqid, 8);
  fixed.writeUInt16BE(words, 12);
  // Buffer.alloc zero-fills: the padding is zeros, which a reader takes for info header type 0.
  return Buffer.concat([fixed, ...parts, Buffer.alloc(4 * words - headerBytes), payload]);
}
