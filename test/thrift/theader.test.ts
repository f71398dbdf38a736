import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import thrift from 'thrift';
import { beforeAll, describe, expect, test } from 'vitest';
import { readMessageHeader, type Protocol } from '../../src/thrift/message-header.js';
import { decodeTHeader, encodeTHeader, THeaderError, THeaderProtocolId, type THeaderFields } from '../../src/thrift/theader.js';
import { pythonWires } from './library-messages.js';

const require = createRequire(import.meta.url);
const { Processor } = require(fileURLToPath(new URL('../../examples/gen-nodejs/Calculator.js', import.meta.url))) as {
  Processor: new (handler: object) => { process(input: unknown, output: unknown): void };
};

interface PythonRequest {
  /** The frame as the client wrote it, length prefix included. */
  frame: string;
  /** The same call written by the plain protocol. */
  payload: string;
  seqid: number;
}

interface PythonReply {
  name: string;
  type: number;
  seqid: number;
  headerSeqid: number;
  protocolId: number;
  flags: number;
  headers: Record<string, string>;
  echo: string;
}

let requests: Record<string, PythonRequest>;
beforeAll(async () => {
  requests = await pythonWires<Record<string, PythonRequest>>('theader-requests');
});

/** A request frame of python3-thrift's THeaderProtocol client, without its length prefix. */
function pythonFrame(name: string): Buffer {
  const frame = Buffer.from(requests[name]!.frame, 'hex');
  expect(frame.readInt32BE(0)).toBe(frame.length - 4);
  return frame.subarray(4);
}

/** Runs the generated Calculator processor (echo only) on one call, as a server would; returns the reply message. */
function answer(call: Buffer, protocol: Protocol): Promise<Buffer> {
  const P = protocol === 'compact' ? thrift.TCompactProtocol : thrift.TBinaryProtocol;
  return new Promise((resolve) => {
    const input = new P(new thrift.TFramedTransport(call));
    const output = new P(new thrift.TFramedTransport(undefined, (frame?: Buffer) => resolve(frame!.subarray(4))));
    new Processor({ echo: (data: Buffer) => data }).process(input, output);
  });
}

describe.each(['binary', 'compact'] as const)('THeader against python3-thrift, %s', (protocol) => {
  test('decodes the frames of its THeaderProtocol client: protocol id, seqid, flags, info headers, and the message as the plain protocol writes it', () => {
    for (const variant of ['plain', 'headers']) {
      const request = requests[`${protocol}-${variant}`]!;
      const decoded = decodeTHeader(pythonFrame(`${protocol}-${variant}`));
      expect(decoded).toMatchObject({ protocol, protocolId: THeaderProtocolId[protocol], seqid: request.seqid, flags: 0 });
      expect(Object.fromEntries(decoded.headers)).toEqual(variant === 'headers' ? { tenant: 'acme', 'trace-id': 'é-42' } : {});
      expect(decoded.payload.toString('hex')).toBe(request.payload);
      expect(readMessageHeader(decoded.payload, protocol)).toEqual({ name: 'echo', type: 1, seqid: request.seqid });
    }
  });

  test('refuses a zlib-transformed frame, naming the transform', () => {
    expect(() => decodeTHeader(pythonFrame(`${protocol}-zlib`))).toThrow(/THeader transform zlib \(id 1\) is not supported/);
  });

  test('encodes a reply its THeaderProtocol client reads: same protocol, seqid and flags, with info headers', async () => {
    for (const variant of ['plain', 'headers']) {
      const request = decodeTHeader(pythonFrame(`${protocol}-${variant}`));
      const reply = encodeTHeader(
        {
          protocolId: request.protocolId,
          seqid: request.seqid,
          flags: request.flags,
          headers: new Map([
            ['server', 'thrift-queue-limiter'],
            ['ü', 'é'],
          ]),
        },
        await answer(request.payload, request.protocol),
      );
      const read = await pythonWires<PythonReply>('theader-read', reply.toString('hex'));
      expect(read).toEqual({
        name: 'echo',
        type: thrift.Thrift.MessageType.REPLY,
        seqid: request.seqid,
        headerSeqid: request.seqid,
        protocolId: request.protocolId,
        flags: request.flags,
        headers: { server: 'thrift-queue-limiter', ü: 'é' },
        echo: 'python over theader',
      });
    }
  });
});

describe('THeader encoding and decoding', () => {
  test('decoding what was encoded gives back every field and the payload, whatever the header padding', () => {
    const payload = Buffer.from('any payload');
    const cases: THeaderFields[] = [
      { protocolId: 0, seqid: 0 },
      { protocolId: 2, seqid: -1, flags: 0xffff },
      { protocolId: 0, seqid: 2 ** 31 - 1, flags: 1, headers: new Map([['k', 'v']]) },
      // Header sizes of every remainder mod 4, so every amount of padding.
      ...[0, 1, 2, 3].map((extra): THeaderFields => ({
        protocolId: 2,
        seqid: -(2 ** 31),
        headers: new Map([
          ['key', 'v'.repeat(extra)],
          ['é', 'x'.repeat(200)],
        ]),
      })),
    ];
    for (const fields of cases) {
      const frame = encodeTHeader(fields, payload);
      expect(frame.readInt32BE(0)).toBe(frame.length - 4);
      expect((frame.length - 4 - 10 - payload.length) % 4).toBe(0);
      const decoded = decodeTHeader(frame.subarray(4));
      expect(decoded).toMatchObject({ protocolId: fields.protocolId, seqid: fields.seqid, flags: fields.flags ?? 0 });
      expect(decoded.headers).toEqual(fields.headers ?? new Map());
      expect(decoded.payload.toString()).toBe('any payload');
    }
  });

  const frame = (header: number[], payload: number[] = [0x80, 0x01]): Buffer => {
    const padded = [...header, ...Array<number>((4 - (header.length % 4)) % 4).fill(0)];
    return Buffer.from([0x0f, 0xff, 0, 0, 0, 0, 0, 7, 0, padded.length / 4, ...padded, ...payload]);
  };

  test.each([
    ['a frame shorter than the fixed header', Buffer.from([0x0f, 0xff, 0, 0, 0]), /at least 10 bytes, got 5/],
    [
      'a frame without the magic',
      Buffer.from([0x80, 0x01, 0, 1, 0, 0, 0, 4, 0x65, 0x63, 0x68, 0x6f]),
      /no THeader magic 0x0fff at the frame's start \(0x8001\)/,
    ],
    ['a header length beyond the frame', Buffer.from([0x0f, 0xff, 0, 0, 0, 0, 0, 1, 0, 9, 0, 0]), /header of 36 bytes is longer than the frame/],
    ['a protocol other than binary and compact', frame([1, 0]), /protocol id 1 is not spoken here \(0 binary, 2 compact\)/],
    ['a transform it does not know', frame([0, 1, 5]), /transform id 5 is not supported/],
    ['an info header running past the header', frame([0, 0, 1, 1, 9, 0x61]), /info header key runs past the header length/],
    ['a varint longer than 5 bytes', frame([0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0]), /protocol id varint longer than 5 bytes/],
  ])('refuses %s with a THeaderError saying so', (_what, bytes, message) => {
    expect(() => decodeTHeader(bytes)).toThrow(THeaderError);
    expect(() => decodeTHeader(bytes)).toThrow(message);
  });

  test('stops reading info headers at a type it does not know, as python3-thrift does', () => {
    const decoded = decodeTHeader(frame([0, 0, 1, 1, 1, 0x61, 1, 0x62, 7, 1, 1, 0x63, 1, 0x64]));
    expect(Object.fromEntries(decoded.headers)).toEqual({ a: 'b' });
    expect([...decoded.payload]).toEqual([0x80, 0x01]);
  });
});
