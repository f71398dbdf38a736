import { beforeAll, describe, expect, test } from 'vitest';
import { MalformedMessageError, MessageScanner } from '../../src/thrift/message-end.js';
import type { Protocol } from '../../src/thrift/message-header.js';
import {
  libraryMessages,
  MESSAGE_KINDS,
  nestedLists,
  nestedStructs,
  protocolOf,
  pythonMessages,
  mulberry32,
  written,
  type MessageKind,
} from './library-messages.js';

const LIMITS = { maxMessageBytes: 1 << 20, maxDepth: 64 };

let python: Record<MessageKind, Buffer[]>;
beforeAll(async () => {
  python = await pythonMessages();
});

function scanner(protocol: Protocol, limits = LIMITS): MessageScanner {
  return new MessageScanner(protocol, limits);
}

/** Feeds `chunks` in order; returns the messages found (copied: a view may alias a chunk) and checks nothing is left over. */
function scanAll(protocol: Protocol, chunks: Buffer[]): string[] {
  const s = scanner(protocol);
  const found = chunks.flatMap((chunk) => s.push(chunk)).map((m) => m.toString('hex'));
  expect(s.buffered).toBe(0);
  return found;
}

/** `stream` cut at the given offsets. */
function cut(stream: Buffer, at: number[]): Buffer[] {
  const bounds = [0, ...at, stream.length];
  return bounds.slice(1).map((end, i) => stream.subarray(bounds[i], end));
}

function thrown(f: () => unknown): MalformedMessageError {
  try {
    f();
  } catch (error) {
    expect(error).toBeInstanceOf(MalformedMessageError);
    return error as MalformedMessageError;
  }
  throw new Error('expected a MalformedMessageError');
}

describe.each(MESSAGE_KINDS)('MessageScanner on %s messages of real Thrift stacks', (kind) => {
  const protocol = protocolOf(kind);
  const sources = (): [string, Buffer[]][] => [
    ['npm thrift', libraryMessages(kind)],
    ['python3-thrift', python[kind]],
  ];

  test('finds every message of a stream of several back to back, pushed in one chunk, as views of it', () => {
    for (const [, messages] of sources()) {
      const stream = Buffer.concat(messages);
      const found = scanner(protocol).push(stream);
      expect(found.map((m) => m.toString('hex'))).toEqual(messages.map((m) => m.toString('hex')));
      expect(found.every((m) => m.buffer === stream.buffer)).toBe(true);
    }
  });

  test('finds the same messages wherever the stream is cut in two (every byte boundary)', () => {
    for (const [, messages] of sources()) {
      const stream = Buffer.concat(messages);
      const expected = messages.map((m) => m.toString('hex'));
      for (let at = 1; at < stream.length; at++) expect(scanAll(protocol, cut(stream, [at]))).toEqual(expected);
    }
  });

  test('finds the same messages when the stream arrives in random chunks', () => {
    const random = mulberry32(42);
    for (const [, messages] of sources()) {
      const stream = Buffer.concat(messages);
      const expected = messages.map((m) => m.toString('hex'));
      for (let round = 0; round < 200; round++) {
        const cuts = Array.from({ length: 1 + Math.floor(random() * 30) }, () => Math.floor(random() * stream.length)).sort((a, b) => a - b);
        expect(scanAll(protocol, cut(stream, cuts))).toEqual(expected);
      }
    }
  });

  test('returns a message trickled in byte by byte exactly once, with its last byte, and holds only its bytes until then', () => {
    for (const [, messages] of sources()) {
      const s = scanner(protocol);
      for (const message of messages) {
        for (let i = 0; i < message.length; i++) {
          const found = s.push(message.subarray(i, i + 1));
          if (i < message.length - 1) {
            expect(found).toEqual([]);
            expect(s.buffered).toBe(i + 1);
          } else {
            expect(found.map((m) => m.toString('hex'))).toEqual([message.toString('hex')]);
            expect(s.buffered).toBe(0);
          }
        }
      }
    }
  });

  test('rejects a message larger than maxMessageBytes and accepts one of exactly that size', () => {
    const message = libraryMessages(kind)[0]!;
    expect(new MessageScanner(protocol, { ...LIMITS, maxMessageBytes: message.length }).push(message)).toHaveLength(1);
    const error = thrown(() => new MessageScanner(protocol, { ...LIMITS, maxMessageBytes: message.length - 1 }).push(message));
    expect(error.message).toMatch(/exceeds maxMessageBytes/);
  });

  test('rejects values nested deeper than maxDepth, and accepts them at the limit', () => {
    // The i32 inside n nested lists is nested in n + 1 containers (the argument struct counts).
    const atLimit = nestedLists(kind, 63);
    expect(scanner(protocol).push(atLimit)).toHaveLength(1);
    if (protocol === 'json') {
      // JSON counts brackets (2 × maxDepth + 2): a struct in a struct field costs two.
      expect(scanner(protocol).push(nestedStructs(kind, 63))).toHaveLength(1);
      expect(thrown(() => scanner(protocol).push(nestedStructs(kind, 64))).message).toMatch(/nested deeper than 130 brackets/);
    } else {
      expect(thrown(() => scanner(protocol).push(nestedLists(kind, 64))).message).toMatch(/nested deeper than 64 containers/);
      expect(thrown(() => scanner(protocol).push(nestedStructs(kind, 64))).message).toMatch(/nested deeper than 64 containers/);
    }
  });

  test('hands over the messages complete before a malformed one, then refuses the stream for good', () => {
    const good = libraryMessages(kind)[0]!;
    const s = scanner(protocol);
    const error = thrown(() => s.push(Buffer.concat([good, Buffer.from('\x7f\xff\xff\xff garbage', 'latin1')])));
    expect(error.precedingMessages.map((m) => m.toString('hex'))).toEqual([good.toString('hex')]);
    expect(s.buffered).toBe(0);
    expect(thrown(() => s.push(good)).message).toMatch(/stream already failed/);
  });
});

/** A strict binary call header for `name` (seqid 1), ready for argument bytes. */
function binaryHeader(name = 'm'): number[] {
  return [0x80, 0x01, 0x00, 0x01, 0, 0, 0, name.length, ...Buffer.from(name), 0, 0, 0, 1];
}

/** A compact call header for `name` (seqid 1). */
function compactHeader(name = 'm'): number[] {
  return [0x82, 0x21, 0x01, name.length, ...Buffer.from(name)];
}

describe('MessageScanner on malformed input', () => {
  const cases: [string, Protocol, number[] | string, RegExp][] = [
    ['a binary message of another version', 'binary', [0x80, 0x02, 0, 1, 0, 0, 0, 1, 0x6d, 0, 0, 0, 1, 0], /bad binary protocol version 0x80020001/],
    ['a non-strict name length beyond any method name', 'binary', [0x7f, 0xff, 0xff, 0xff], /method name length 2147483647 out of range/],
    ['an unknown binary type id', 'binary', [...binaryHeader(), 0x11, 0, 1], /unknown binary type id 17/],
    ['a negative binary string length', 'binary', [...binaryHeader(), 0x0b, 0, 1, 0xff, 0xff, 0xff, 0xfe], /negative string length -2/],
    ['a negative binary list size', 'binary', [...binaryHeader(), 0x0f, 0, 1, 0x08, 0xff, 0xff, 0xff, 0xff], /negative list size -1/],
    ['a negative binary map size', 'binary', [...binaryHeader(), 0x0d, 0, 1, 0x08, 0x0b, 0x80, 0, 0, 0], /negative map size -2147483648/],
    ['a list of an unknown element type', 'binary', [...binaryHeader(), 0x0f, 0, 1, 0x01, 0, 0, 0, 1, 0], /unknown binary type id 1/],
    ['a compact message of another protocol id', 'compact', [0x83, 0x21, 1, 1, 0x6d, 0], /bad compact protocol id 0x83/],
    ['a compact message of another version', 'compact', [0x82, 0x22, 1, 1, 0x6d, 0], /bad compact protocol version 2/],
    ['a compact seqid varint of more than 5 bytes', 'compact', [0x82, 0x21, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], /varint longer than 5 bytes/],
    [
      'a compact integer varint of more than 10 bytes',
      'compact',
      [...compactHeader(), 0x16, ...Array<number>(10).fill(0xff), 0x01],
      /varint longer than 10 bytes/,
    ],
    ['an unknown compact type id', 'compact', [...compactHeader(), 0x1e], /unknown compact type id 14/],
    [
      'a compact binary length that is negative as an i32',
      'compact',
      [...compactHeader(), 0x18, 0xff, 0xff, 0xff, 0xff, 0x0f],
      /binary length 4294967295 out of range/,
    ],
    [
      'a compact list size that is negative as an i32',
      'compact',
      [...compactHeader(), 0x19, 0xf5, 0x80, 0x80, 0x80, 0x80, 0x08],
      /list size 2147483648 out of range/,
    ],
    ['JSON that is not an array', 'json', '{"1":{"i32":1}}', /a message is a JSON array, got '\{'/],
    ['a JSON message of another version', 'json', '[2,"m",1,0,{}]', /its version must be the number 1, got '2'/],
    ['a JSON message whose version has more digits', 'json', '[10,"m",1,0,{}]', /version must be 1/],
    ['a JSON message whose name is not a string', 'json', '[1,2,1,0,{}]', /its name must be a string/],
    ['a JSON message whose seqid is not a number', 'json', '[1,"m",1,"0",{}]', /its seqid must be a number/],
    ['a JSON message whose arguments are not an object', 'json', '[1,"m",1,0,[]]', /its arguments must be an object/],
    ['a JSON message with too few elements', 'json', '[1,"m",1]', /ends at its type element/],
    ['a JSON message with too many elements', 'json', '[1,"m",1,0,{},{}]', /more than 5 elements/],
    ['a JSON message with a missing comma', 'json', '[1,"m" 1,0,{}]', /two values in the name element/],
    ['a JSON message with brackets that do not pair', 'json', '[1,"m",1,0,{"1":{"lst":["i32",1,2}}}]', /'\}' closes '\['/],
    ['JSON literals no Thrift writer emits', 'json', '[1,"m",1,0,{"1":{"tf":true}}]', /unexpected 't'/],
    ['a bad JSON escape', 'json', '[1,"m\\q",1,0,{}]', /bad escape \\q/],
    ['a bad JSON \\u escape', 'json', '[1,"\\u12g4",1,0,{}]', /'g' is not a hex digit/],
  ];

  test.each(cases)('rejects %s, saying what is wrong', (_what, protocol, input, message) => {
    const bytes = typeof input === 'string' ? Buffer.from(input) : Buffer.from(input);
    expect(thrown(() => scanner(protocol).push(bytes)).message).toMatch(message);
    // Byte by byte: the same verdict, as soon as the bad byte arrives.
    const s = scanner(protocol);
    expect(
      thrown(() => {
        for (let i = 0; i < bytes.length; i++) s.push(bytes.subarray(i, i + 1));
      }).message,
    ).toMatch(message);
  });

  test.each(['binary', 'compact'] as const)(
    'refuses a stream of random bytes in the %s protocol within maxMessageBytes, instead of waiting for ever',
    (protocol) => {
      const random = mulberry32(7);
      const maxMessageBytes = 4096;
      for (let round = 0; round < 300; round++) {
        const s = scanner(protocol, { maxMessageBytes, maxDepth: 64 });
        // The first message starts well, so that garbage in its body is judged too.
        const header = Buffer.from(protocol === 'binary' ? binaryHeader() : compactHeader());
        thrown(() => {
          s.push(header);
          for (let pushed = 0; pushed <= maxMessageBytes; pushed += 64) {
            s.push(Buffer.from(Array.from({ length: 64 }, () => Math.floor(random() * 256))));
          }
        });
      }
    },
  );

  test('refuses a string announced larger than maxMessageBytes as soon as its length arrives, without buffering toward it', () => {
    for (const [protocol, bytes] of [
      ['binary', [...binaryHeader(), 0x0b, 0, 1, 0x3f, 0xff, 0xff, 0xff]],
      ['compact', [...compactHeader(), 0x18, 0xff, 0xff, 0xff, 0xff, 0x03]],
    ] as const) {
      const s = new MessageScanner(protocol, { maxMessageBytes: 1 << 20, maxDepth: 64 });
      expect(thrown(() => s.push(Buffer.from(bytes))).message).toMatch(/a message of at least \d+ bytes exceeds maxMessageBytes 1048576/);
      expect(s.buffered).toBe(0);
    }
  });

  test('refuses a JSON message that grows past maxMessageBytes before it ends', () => {
    const s = new MessageScanner('json', { maxMessageBytes: 1000, maxDepth: 64 });
    expect(s.push(Buffer.from(`[1,"m",1,0,{"1":{"str":"${'A'.repeat(900)}`))).toEqual([]);
    expect(thrown(() => s.push(Buffer.from('A'.repeat(200)))).message).toMatch(/exceeds maxMessageBytes 1000/);
  });

  test('checks its options', () => {
    expect(() => new MessageScanner('binary', { maxMessageBytes: 0, maxDepth: 64 })).toThrow(/maxMessageBytes must be a whole number/);
    expect(() => new MessageScanner('binary', { maxMessageBytes: 100, maxDepth: 1.5 })).toThrow(/maxDepth must be a whole number/);
  });
});

describe('MessageScanner cost', () => {
  test('trickling a large message of many small fields in byte by byte takes time linear in its size', () => {
    // 100,000 varints (compact) or strings (binary): re-scanning from the message start on every
    // byte would take ~10¹⁰ steps (minutes); resuming takes milliseconds.
    for (const kind of ['compact', 'binary'] as const) {
      const message = written(kind, (p, _client, flush) => {
        p.writeMessageBegin('big', 1, 1);
        p.writeStructBegin('big_args');
        p.writeFieldBegin('v', 15, 1);
        p.writeListBegin(kind === 'compact' ? 10 : 11, 100_000);
        for (let i = 0; i < 100_000; i++) {
          if (kind === 'compact') p.writeI64(i * 1000);
          else p.writeString('x');
        }
        p.writeListEnd();
        p.writeFieldEnd();
        p.writeFieldStop();
        p.writeStructEnd();
        p.writeMessageEnd();
        flush();
      })[0]!;
      const s = scanner(kind);
      // CPU time, not wall time: the loop is synchronous, so a stall while it runs (another process
      // taking the core) would show in the wall clock but says nothing about the scanner.
      const cpu = process.cpuUsage();
      let found = 0;
      for (let i = 0; i < message.length; i++) found += s.push(message.subarray(i, i + 1)).length;
      expect(found).toBe(1);
      const used = process.cpuUsage(cpu);
      expect((used.user + used.system) / 1000).toBeLessThan(5000);
    }
  });
});
