// Thrift frames built and read by hand, for tests that send what no well-behaved client sends
// (wrong message types, trickled or oversized frames, replies never read, random bytes).
// Layouts: see /work/shared/THRIFT-NOTES.md and src/thrift/message-header.ts.
import type net from 'node:net';
export { mulberry32 } from '../../bench/lib/prng.js';

export type Protocol = 'binary' | 'compact';

/** Thrift message types. */
export const MessageType = { CALL: 1, REPLY: 2, EXCEPTION: 3, ONEWAY: 4 } as const;

/** One TFramedTransport frame: 4-byte big-endian length, then `body`. */
export function framed(body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

function varint(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return out;
}

const zigzag = (n: number): number => ((n << 1) ^ (n >> 31)) >>> 0;

/** A message header (no length prefix): binary strict or compact. */
export function messageHeader(protocol: Protocol, name: string, type: number, seqid: number): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  if (protocol === 'compact') {
    return Buffer.concat([Buffer.from([0x82, ((type << 5) | 1) & 0xff, ...varint(seqid | 0), ...varint(nameBytes.length)]), nameBytes]);
  }
  const out = Buffer.allocUnsafe(12 + nameBytes.length);
  out.writeInt32BE(0x80010000 | type | 0, 0);
  out.writeInt32BE(nameBytes.length, 4);
  nameBytes.copy(out, 8);
  out.writeInt32BE(seqid | 0, 8 + nameBytes.length);
  return out;
}

/** An argument of a call's struct, by field id. */
export type Arg = { id: number; i32: number } | { id: number; binary: Buffer | string };

/** The argument struct of a call, encoded (fields in order, then STOP). */
export function argsStruct(protocol: Protocol, args: Arg[]): Buffer {
  const parts: Buffer[] = [];
  let lastId = 0;
  for (const arg of args) {
    if ('i32' in arg) {
      if (protocol === 'compact') parts.push(Buffer.from([((arg.id - lastId) << 4) | 5, ...varint(zigzag(arg.i32))]));
      else {
        const b = Buffer.allocUnsafe(7);
        b.writeUInt8(8, 0);
        b.writeInt16BE(arg.id, 1);
        b.writeInt32BE(arg.i32 | 0, 3);
        parts.push(b);
      }
    } else {
      const data = typeof arg.binary === 'string' ? Buffer.from(arg.binary, 'utf8') : arg.binary;
      if (protocol === 'compact') parts.push(Buffer.from([((arg.id - lastId) << 4) | 8, ...varint(data.length)]), data);
      else {
        const b = Buffer.allocUnsafe(7);
        b.writeUInt8(11, 0);
        b.writeInt16BE(arg.id, 1);
        b.writeInt32BE(data.length, 3);
        parts.push(b, data);
      }
    }
    lastId = arg.id;
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** A complete request frame (length prefix included). */
export function callFrame(protocol: Protocol, name: string, type: number, seqid: number, args: Arg[] = []): Buffer {
  return framed(Buffer.concat([messageHeader(protocol, name, type, seqid), argsStruct(protocol, args)]));
}

/** A reply as read back from the wire. */
export interface Reply {
  name: string;
  type: number;
  seqid: number;
  /** For type EXCEPTION: the TApplicationException's fields. */
  exception?: { message: string; type: number };
  /** For type REPLY: the success field as an i32 when it is one (add's result). */
  i32?: number;
  /** Size of the frame, prefix included. */
  bytes: number;
}

/** Reads a reply frame's body (no prefix). Throws on anything malformed. */
export function parseReply(protocol: Protocol, body: Buffer, bytes = body.length + 4): Reply {
  let at = 0;
  let name: string;
  let type: number;
  let seqid: number;
  const readVarint = (): number => {
    let result = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = body[at++];
      if (b === undefined) throw new Error('truncated varint');
      result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result >>> 0;
    }
    throw new Error('varint too long');
  };
  if (protocol === 'compact') {
    if (body[0] !== 0x82) throw new Error(`not a compact message: 0x${body[0]?.toString(16)}`);
    type = (body[1]! >> 5) & 7;
    at = 2;
    seqid = readVarint() | 0;
    const n = readVarint();
    name = body.toString('utf8', at, at + n);
    at += n;
  } else {
    const word = body.readInt32BE(0);
    if ((word & 0xffff0000) !== (0x80010000 | 0)) throw new Error(`not a strict binary message: 0x${(word >>> 0).toString(16)}`);
    type = word & 0xff;
    const n = body.readInt32BE(4);
    name = body.toString('utf8', 8, 8 + n);
    seqid = body.readInt32BE(8 + n);
    at = 12 + n;
  }
  const reply: Reply = { name, type, seqid, bytes };
  // The first fields of the struct: enough for an application exception (1: string, 2: i32) and
  // for an i32 success field (0: i32).
  const fields = new Map<number, string | number>();
  let lastId = 0;
  for (let k = 0; k < 4 && at < body.length; k++) {
    let ftype: number;
    let id: number;
    if (protocol === 'compact') {
      const head = body[at++]!;
      if (head === 0) break;
      ftype = head & 0x0f;
      const delta = head >> 4;
      if (delta === 0) {
        const z = readVarint();
        id = (z >>> 1) ^ -(z & 1);
      } else id = lastId + delta;
      lastId = id;
      if (ftype === 8) {
        const n = readVarint();
        fields.set(id, body.toString('utf8', at, at + n));
        at += n;
      } else if (ftype === 5) {
        const z = readVarint();
        fields.set(id, (z >>> 1) ^ -(z & 1));
      } else break;
    } else {
      ftype = body[at++]!;
      if (ftype === 0) break;
      id = body.readInt16BE(at);
      at += 2;
      if (ftype === 11) {
        const n = body.readInt32BE(at);
        fields.set(id, body.toString('utf8', at + 4, at + 4 + n));
        at += 4 + n;
      } else if (ftype === 8) {
        fields.set(id, body.readInt32BE(at));
        at += 4;
      } else break;
    }
  }
  if (type === MessageType.EXCEPTION) reply.exception = { message: String(fields.get(1) ?? ''), type: Number(fields.get(2) ?? -1) };
  else if (typeof fields.get(0) === 'number') reply.i32 = fields.get(0) as number;
  return reply;
}

/** Collects the replies arriving on `socket` (it attaches a 'data' listener: the socket is read). */
export class ReplyCollector {
  readonly replies: Reply[] = [];
  private pending: Buffer = Buffer.alloc(0);
  private waiters: Array<() => void> = [];

  constructor(
    socket: net.Socket,
    private readonly protocol: Protocol,
  ) {
    socket.on('data', (chunk: Buffer) => this.push(chunk));
  }

  private push(chunk: Buffer): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 4) {
      const size = this.pending.readInt32BE(0);
      if (this.pending.length < 4 + size) break;
      this.replies.push(parseReply(this.protocol, this.pending.subarray(4, 4 + size), 4 + size));
      this.pending = this.pending.subarray(4 + size);
    }
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves once `count` replies have arrived; rejects after `timeoutMs` saying how many did. */
  async waitFor(count: number, timeoutMs: number): Promise<Reply[]> {
    const deadline = performance.now() + timeoutMs;
    while (this.replies.length < count) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`${this.replies.length} of ${count} replies after ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.replies.slice(0, count);
  }
}

/** Resolves with `promise`'s value, or rejects with `what` after `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** What `promise` settled with within `ms`: `{ value }`, `{ error }`, or `{ pending: true }`. */
export async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<{ value?: T; error?: unknown; pending?: true; ms: number }> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    promise.then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    ),
    new Promise<{ pending: true }>((resolve) => {
      timer = setTimeout(() => resolve({ pending: true }), ms);
    }),
  ]);
  clearTimeout(timer);
  return { ...result, ms: performance.now() - started };
}
