import thrift from 'thrift';
import { describe, expect, test } from 'vitest';
import { applicationExceptionFrame } from '../../src/thrift/application-exception.js';
import { FrameReader } from '../../src/thrift/frame-reader.js';
import { readMessageHeader, type Protocol } from '../../src/thrift/message-header.js';

/** A message header written by the real thrift library, as a frame without its prefix. */
function libraryFrame(protocol: 'binary-strict' | 'binary-nonstrict' | 'compact', name: string, type: number, seqid: number): Buffer {
  let out: Buffer | undefined;
  const transport = new thrift.TFramedTransport(undefined, (buf?: Buffer) => {
    out = buf;
  });
  const proto =
    protocol === 'compact'
      ? new thrift.TCompactProtocol(transport)
      : new (thrift.TBinaryProtocol as unknown as new (t: unknown, strictRead: boolean, strictWrite: boolean) => thrift.TProtocol)(
          transport,
          false,
          protocol === 'binary-strict',
        );
  proto.writeMessageBegin(name, type, seqid);
  proto.writeStructBegin('args');
  proto.writeFieldStop();
  proto.writeStructEnd();
  proto.writeMessageEnd();
  proto.flush();
  return out!.subarray(4);
}

describe('FrameReader', () => {
  const frames = [Buffer.from('a'), Buffer.alloc(0), Buffer.from('hello world'), Buffer.alloc(70_000, 7)];
  const stream = Buffer.concat(frames.flatMap((f) => [Buffer.from([0, 0, 0, 0].map((_, i) => (f.length >>> (24 - 8 * i)) & 0xff)), f]));

  test('delivers the same frames whatever the chunk boundaries: byte by byte, all at once, random cuts', () => {
    for (const cut of [1, 3, 7, 4096, stream.length]) {
      const got: Buffer[] = [];
      const reader = new FrameReader({
        maxFrameBytes: 1 << 20,
        onFrame: (f) => got.push(Buffer.from(f)),
        onError: (e) => {
          throw e;
        },
      });
      for (let at = 0; at < stream.length; at += cut) reader.push(stream.subarray(at, at + cut));
      expect(got.map((f) => f.toString('hex'))).toEqual(frames.map((f) => f.toString('hex')));
      expect(reader.hasPartialFrame).toBe(false);
    }
  });

  test('rejects an oversize or negative length prefix at once, without buffering the announced bytes', () => {
    for (const prefix of [
      [0x7f, 0xff, 0xff, 0xff],
      [0x80, 0, 0, 0],
      [0, 0x10, 0, 1],
    ]) {
      const errors: string[] = [];
      const reader = new FrameReader({
        maxFrameBytes: 1 << 20,
        onFrame: () => {
          throw new Error('no frame expected');
        },
        onError: (e) => errors.push(e.message),
      });
      reader.push(Buffer.from(prefix));
      reader.push(Buffer.alloc(100));
      expect(errors).toHaveLength(1);
      expect(reader.hasPartialFrame).toBe(false);
    }
  });

  test('reports a partial frame until its last byte arrives', () => {
    const reader = new FrameReader({ maxFrameBytes: 100, onFrame: () => {}, onError: () => {} });
    reader.push(Buffer.from([0, 0, 0, 3, 1]));
    expect(reader.hasPartialFrame).toBe(true);
    reader.push(Buffer.from([2, 3]));
    expect(reader.hasPartialFrame).toBe(false);
  });
});

describe('readMessageHeader against frames written by the thrift library', () => {
  const cases: ['binary-strict' | 'binary-nonstrict' | 'compact', Protocol][] = [
    ['binary-strict', 'binary'],
    ['binary-nonstrict', 'binary'],
    ['compact', 'compact'],
  ];
  test.each(cases)('%s: name, type and seqid, including negative seqids and non-ASCII names', (written, protocol) => {
    for (const [name, type, seqid] of [
      ['add', 1, 0],
      ['work', 4, 2_147_483_647],
      ['λ-méthode', 1, -5],
      ['x'.repeat(300), 1, -2_147_483_648],
    ] as const) {
      expect(readMessageHeader(libraryFrame(written, name, type, seqid), protocol)).toEqual({ name, type, seqid });
    }
  });

  test('malformed or truncated headers throw a clear error and never read out of bounds', () => {
    const good = libraryFrame('binary-strict', 'add', 1, 7);
    for (let cut = 0; cut < 15; cut++) expect(() => readMessageHeader(good.subarray(0, cut), 'binary')).toThrow(/too short|out of range/);
    expect(() => readMessageHeader(Buffer.from([0x80, 0x02, 0, 1, 0, 0, 0, 1, 0x61, 0, 0, 0, 0]), 'binary')).toThrow(/bad binary protocol version/);
    expect(() => readMessageHeader(Buffer.from([0x81, 0x21, 0, 0]), 'compact')).toThrow(/bad compact protocol id/);
    expect(() => readMessageHeader(Buffer.from([0x82, 0x21, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 'compact')).toThrow(/varint too long/);
    expect(() => readMessageHeader(Buffer.from([0, 0x10, 0, 0, 0x61]), 'binary')).toThrow(/out of range/);
  });
});

describe('applicationExceptionFrame', () => {
  test.each(['binary', 'compact'] as Protocol[])('%s: the thrift library decodes the right type (not 0), message, name and seqid', (protocol) => {
    const frame = applicationExceptionFrame({ name: 'work', seqid: -3, type: 11, message: 'server overloaded: method work waited limit 5000 ms', protocol });
    expect(frame.readInt32BE(0)).toBe(frame.length - 4);
    const Proto = protocol === 'compact' ? thrift.TCompactProtocol : thrift.TBinaryProtocol;
    const input = new Proto(new thrift.TFramedTransport(frame.subarray(4)));
    const begin = input.readMessageBegin();
    expect(begin).toMatchObject({ fname: 'work', mtype: 3, rseqid: protocol === 'compact' ? -3 >>> 0 : -3 });
    const x = new thrift.Thrift.TApplicationException();
    x.read(input);
    expect((x as unknown as { type: number }).type).toBe(11);
    expect(x.message).toBe('server overloaded: method work waited limit 5000 ms');
  });
});
