/**
 * A Thrift load client that is cheap enough not to be the bottleneck: every request frame is
 * encoded once, up front, one per outstanding slot (its seqid is the slot number), and replies are
 * matched by reading only their header. Closed loop: each slot sends its next call as soon as its
 * reply arrives. Bounded in time; stops by itself.
 */
import net from 'node:net';
import thrift from 'thrift';
import { readMessageHeader } from '../../src/thrift/message-header.js';
import { FrameReader } from '../../src/thrift/frame-reader.js';
import type { MessageReader } from '../../src/thrift/message-reader.js';
import { UnframedReader } from '../../src/thrift/unframed-reader.js';

/** Writes one call's arguments with the thrift library's protocol writer. */
export type ArgsWriter = (out: thrift.TProtocol) => void;

/** What a load run measured. */
export interface LoadResult {
  calls: number;
  errors: number;
  seconds: number;
  latenciesMs: number[];
  /** When each reply arrived, ms after the run started. */
  completionsAtMs: number[];
}

/** Encodes a framed binary request (length prefix included). */
export function encodeCall(method: string, seqid: number, writeArgs: ArgsWriter): Buffer {
  let frame: Buffer | undefined;
  const out = new thrift.TBinaryProtocol(
    new thrift.TFramedTransport(undefined, (buf?: Buffer) => {
      frame = buf;
    }),
  );
  out.writeMessageBegin(method, thrift.Thrift.MessageType.CALL, seqid);
  out.writeStructBegin('args');
  writeArgs(out);
  out.writeFieldStop();
  out.writeStructEnd();
  out.writeMessageEnd();
  out.flush();
  return frame!;
}

/**
 * Runs `connections × perConnection` outstanding calls of one pre-encoded method for `seconds`,
 * framed (TFramedTransport) or buffered (no length prefix, as TBufferedTransport sends them).
 */
export async function closedLoop(
  port: number,
  method: string,
  writeArgs: ArgsWriter,
  connections: number,
  perConnection: number,
  seconds: number,
  transport: 'framed' | 'buffered' = 'framed',
): Promise<LoadResult> {
  const result: LoadResult = { calls: 0, errors: 0, seconds, latenciesMs: [], completionsAtMs: [] };
  const sockets: net.Socket[] = [];
  const began = performance.now();
  const deadline = began + seconds * 1000;
  let started = 0;
  const done: Promise<void>[] = [];
  for (let c = 0; c < connections; c++) {
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    sockets.push(socket);
    const frames = Array.from({ length: perConnection }, (_, s) => {
      const frame = encodeCall(method, s, writeArgs);
      return transport === 'framed' ? frame : frame.subarray(4);
    });
    const sentAt = new Array<number>(perConnection).fill(0);
    let outstanding = 0;
    done.push(
      new Promise<void>((resolve) => {
        const onReply = (frame: Buffer): void => {
          const { seqid, type } = readMessageHeader(frame, 'binary');
          const now = performance.now();
          result.calls++;
          if (type === 3) result.errors++;
          result.latenciesMs.push(now - sentAt[seqid]!);
          result.completionsAtMs.push(now - began);
          outstanding--;
          if (now < deadline) {
            sentAt[seqid] = now;
            outstanding++;
            socket.write(frames[seqid]!);
          } else if (outstanding === 0) {
            socket.end();
            resolve();
          }
        };
        const reader: MessageReader =
          transport === 'framed'
            ? new FrameReader({ maxFrameBytes: 1 << 24, onError: () => socket.destroy(), onFrame: onReply })
            : new UnframedReader('binary', { maxMessageBytes: 1 << 24, onError: () => socket.destroy(), onMessage: onReply });
        socket.on('data', (chunk: Buffer) => reader.push(chunk, 0));
        socket.on('error', () => resolve());
        socket.on('close', () => resolve());
        socket.on('connect', () => {
          started++;
          const now = performance.now();
          for (let s = 0; s < perConnection; s++) {
            sentAt[s] = now;
            outstanding++;
            socket.write(frames[s]!);
          }
        });
      }),
    );
  }
  await Promise.all(done);
  result.seconds = (performance.now() - began) / 1000;
  void started;
  return result;
}
