/**
 * Builds a complete reply frame carrying a TApplicationException, encoded by hand.
 *
 * The I/O thread answers refused calls itself, without a worker and without the thrift library's
 * objects; encoding by hand also avoids the library's bug where `TApplicationException.write()`
 * sends `.code` while the constructor stores `.type`, so clients would always see type 0.
 */
import type { Protocol } from './message-header.js';

/** TApplicationException types (Apache Thrift numbering). */
export const ExceptionType = {
  UNKNOWN: 0,
  UNKNOWN_METHOD: 1,
  INVALID_MESSAGE_TYPE: 2,
  WRONG_METHOD_NAME: 3,
  BAD_SEQUENCE_ID: 4,
  MISSING_RESULT: 5,
  INTERNAL_ERROR: 6,
  PROTOCOL_ERROR: 7,
  INVALID_TRANSFORM: 8,
  INVALID_PROTOCOL: 9,
  UNSUPPORTED_CLIENT_TYPE: 10,
} as const;

const EXCEPTION = 3;

/** What goes into the exception reply. */
export interface ApplicationExceptionReply {
  /** Method name of the call answered. */
  name: string;
  /** Its seqid. */
  seqid: number;
  /** Exception type (see {@link ExceptionType}; the server uses 11 for overload). */
  type: number;
  /** Human-readable reason. */
  message: string;
  /** Wire protocol of the connection. */
  protocol: Protocol;
}

/** The reply frame, 4-byte length prefix included, ready to write to the socket. */
export function applicationExceptionFrame(reply: ApplicationExceptionReply): Buffer {
  if (reply.protocol === 'json') return json(reply);
  const nameBytes = Buffer.from(reply.name, 'utf8');
  const messageBytes = Buffer.from(reply.message, 'utf8');
  return reply.protocol === 'compact' ? compact(reply, nameBytes, messageBytes) : binary(reply, nameBytes, messageBytes);
}

function binary(reply: ApplicationExceptionReply, name: Buffer, message: Buffer): Buffer {
  // header: version|type, name length, name, seqid; struct: field 1 string, field 2 i32, stop.
  const body = 4 + 4 + name.length + 4 + (1 + 2 + 4 + message.length) + (1 + 2 + 4) + 1;
  const out = Buffer.allocUnsafe(4 + body);
  let at = out.writeInt32BE(body, 0);
  at = out.writeInt32BE(0x80010000 | EXCEPTION | 0, at);
  at = out.writeInt32BE(name.length, at);
  at += name.copy(out, at);
  at = out.writeInt32BE(reply.seqid | 0, at);
  at = out.writeUInt8(11, at); // STRING
  at = out.writeInt16BE(1, at);
  at = out.writeInt32BE(message.length, at);
  at += message.copy(out, at);
  at = out.writeUInt8(8, at); // I32
  at = out.writeInt16BE(2, at);
  at = out.writeInt32BE(reply.type | 0, at);
  out.writeUInt8(0, at); // STOP
  return out;
}

function varint(value: number, out: number[]): void {
  let v = value >>> 0;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
}

function compact(reply: ApplicationExceptionReply, name: Buffer, message: Buffer): Buffer {
  const head: number[] = [0x82, (EXCEPTION << 5) | 1];
  varint(reply.seqid, head);
  varint(name.length, head);
  const fieldMessage: number[] = [0x18]; // delta 1, BINARY
  varint(message.length, fieldMessage);
  const fieldType: number[] = [0x15]; // delta 1, I32
  varint(((reply.type << 1) ^ (reply.type >> 31)) >>> 0, fieldType);
  const body = head.length + name.length + fieldMessage.length + message.length + fieldType.length + 1;
  const out = Buffer.allocUnsafe(4 + body);
  let at = out.writeInt32BE(body, 0);
  for (const b of head) out[at++] = b;
  at += name.copy(out, at);
  for (const b of fieldMessage) out[at++] = b;
  at += message.copy(out, at);
  for (const b of fieldType) out[at++] = b;
  out[at] = 0; // STOP
  return out;
}

/** TJSONProtocol: `[1,"name",3,seqid,{"1":{"str":message},"2":{"i32":type}}]`, with the length prefix. */
function json(reply: ApplicationExceptionReply): Buffer {
  const text = `[1,${JSON.stringify(reply.name)},${EXCEPTION},${reply.seqid | 0},{"1":{"str":${JSON.stringify(reply.message)}},"2":{"i32":${reply.type | 0}}}]`;
  const body = Buffer.byteLength(text, 'utf8');
  const out = Buffer.allocUnsafe(4 + body);
  out.writeInt32BE(body, 0);
  out.write(text, 4, 'utf8');
  return out;
}
