import { beforeAll, describe, expect, test } from 'vitest';
import { detectWire, type KnownWire, type WireGuess } from '../../src/thrift/wire-detect.js';
import { pythonMessages, pythonWires, written, type MessageKind } from './library-messages.js';

interface Sample {
  what: string;
  bytes: Buffer;
  expected: KnownWire;
  /** Most bytes the detector may ask for before deciding. */
  decidesWithin: number;
}

const known = (transport: KnownWire['transport'], protocol: KnownWire['protocol'], strict?: boolean): KnownWire =>
  (strict === undefined ? { kind: 'known', transport, protocol } : { kind: 'known', transport, protocol, strict }) as KnownWire;

/** An echo call written by the npm library's generated client. */
function npmEcho(kind: MessageKind, transport: 'buffered' | 'framed'): Buffer {
  return written(kind, (_p, client) => client.send_echo(Buffer.from('detect me')), transport)[0]!;
}

const samples: Sample[] = [];

beforeAll(async () => {
  const python = await pythonMessages();
  const theader = await pythonWires<Record<string, { frame: string }>>('theader-requests');
  samples.push(
    { what: 'npm unframed strict binary', bytes: npmEcho('binary', 'buffered'), expected: known('buffered', 'binary', true), decidesWithin: 2 },
    { what: 'npm unframed compact', bytes: npmEcho('compact', 'buffered'), expected: known('buffered', 'compact'), decidesWithin: 2 },
    { what: 'npm unframed JSON', bytes: npmEcho('json', 'buffered'), expected: known('buffered', 'json'), decidesWithin: 1 },
    { what: 'npm framed strict binary', bytes: npmEcho('binary', 'framed'), expected: known('framed', 'binary', true), decidesWithin: 6 },
    {
      what: 'npm framed non-strict binary',
      bytes: npmEcho('binary-nonstrict', 'framed'),
      expected: known('framed', 'binary', false),
      decidesWithin: 4 + 4 + 'echo'.length + 1,
    },
    { what: 'npm framed compact', bytes: npmEcho('compact', 'framed'), expected: known('framed', 'compact'), decidesWithin: 6 },
    { what: 'npm framed JSON', bytes: npmEcho('json', 'framed'), expected: known('framed', 'json'), decidesWithin: 5 },
    { what: 'python unframed strict binary', bytes: python.binary[0]!, expected: known('buffered', 'binary', true), decidesWithin: 2 },
    { what: 'python unframed compact', bytes: python.compact[0]!, expected: known('buffered', 'compact'), decidesWithin: 2 },
    { what: 'python unframed JSON', bytes: python.json[0]!, expected: known('buffered', 'json'), decidesWithin: 1 },
    { what: 'python THeader binary', bytes: Buffer.from(theader['binary-plain']!.frame, 'hex'), expected: known('header', 'binary'), decidesWithin: 15 },
    {
      what: 'python THeader compact with info headers',
      bytes: Buffer.from(theader['compact-headers']!.frame, 'hex'),
      expected: known('header', 'compact'),
      decidesWithin: 15,
    },
    {
      what: 'HTTP POST',
      bytes: Buffer.from('POST /thrift HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-thrift\r\nContent-Length: 30\r\n\r\n'),
      expected: known('http', undefined),
      decidesWithin: 5,
    },
  );
});

/** The guesses for every prefix of `bytes`, shortest first. */
function guesses(bytes: Buffer): (WireGuess | 'need-more')[] {
  return Array.from({ length: bytes.length + 1 }, (_, n) => detectWire(bytes.subarray(0, n)));
}

describe('detectWire on the first bytes of real clients', () => {
  test('tells every wire of the npm library, python3-thrift and HTTP apart', () => {
    for (const s of samples) expect(detectWire(s.bytes), s.what).toEqual(s.expected);
  });

  test('asks for more bytes until it can decide, decides within a few bytes, and never changes its answer after', () => {
    for (const s of samples) {
      const all = guesses(s.bytes);
      const decidedAt = all.findIndex((g) => g !== 'need-more');
      expect(decidedAt, s.what).toBeGreaterThan(0);
      expect(decidedAt, s.what).toBeLessThanOrEqual(s.decidesWithin);
      for (const g of all.slice(decidedAt)) expect(g, s.what).toEqual(s.expected);
    }
  });
});

describe('detectWire on bytes that are no Thrift wire', () => {
  const header = (protocolId: number): number[] => [0, 0, 0, 16, 0x0f, 0xff, 0, 0, 0, 0, 0, 1, 0, 1, protocolId, 0, 0, 0, 0x80, 0x01];
  const cases: [string, number[] | string, RegExp][] = [
    ['a TLS ClientHello', [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03], /a TLS handshake/],
    ['an HTTP GET', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', /an HTTP GET request \(Thrift over HTTP uses POST\)/],
    ['an HTTP OPTIONS', 'OPTIONS * HTTP/1.1\r\n\r\n', /an HTTP OPTIONS request/],
    ['a negative frame length', [0xff, 0xff, 0xff, 0xff, 0], /first bytes ff ff ff ff are neither a message nor a frame length/],
    ['binary of another version', [0x80, 0x02, 0x00, 0x01], /first bytes 80 02 are neither a binary or compact message/],
    ['compact of another version', [0x82, 0x22, 0x05], /first bytes 82 22/],
    ['an empty frame', [0, 0, 0, 0, 0x80, 0x01], /an empty frame/],
    ['a frame of garbage', [0, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4], /a frame of 8 bytes whose payload starts de ad, no Thrift message/],
    ['a THeader of protocol id 1 (JSON)', header(1), /a THeader frame of protocol id 1 \(only 0 binary and 2 compact are spoken\)/],
    ['a THeader frame too short for its header', [0, 0, 0, 6, 0x0f, 0xff, 0, 0, 0, 0], /too short for a THeader/],
    ['a non-strict-looking frame whose name is not printable', [0, 0, 0, 20, 0, 0, 0, 4, 0x65, 0x01, 0x68, 0x6f, 1, 0, 0, 0, 1, 0], /no Thrift message/],
    ['a non-strict-looking frame of an unknown message type', [0, 0, 0, 20, 0, 0, 0, 4, 0x65, 0x63, 0x68, 0x6f, 9, 0, 0, 0, 1, 0], /no Thrift message/],
    ['a non-strict name longer than its frame', [0, 0, 0, 12, 0, 0, 0, 4, 0x65, 0x63, 0x68, 0x6f], /no Thrift message/],
    ['a name length beyond any method name', [0, 0, 0x20, 0, 0, 0, 0x20, 0], /no Thrift message/],
  ];

  test.each(cases)('names what it sees in %s, and keeps that answer as more bytes arrive', (_what, input, reason) => {
    const bytes = Buffer.from(input as never);
    const all = guesses(bytes);
    const decidedAt = all.findIndex((g) => g !== 'need-more');
    expect(decidedAt).toBeGreaterThan(0);
    for (const g of all.slice(decidedAt)) {
      expect(g).toMatchObject({ kind: 'unknown' });
      expect((g as { reason: string }).reason).toMatch(reason);
    }
  });

  test('waits on prefixes that could still be anything', () => {
    for (const prefix of [
      [],
      [0x80],
      [0x82],
      'P',
      'POS',
      'GE',
      [0, 0, 0],
      [0, 0, 0, 50],
      [0, 0, 0, 50, 0x0f, 0xff, 0, 0, 0, 0, 0, 0, 0, 1],
      [0, 0, 0, 50, 0, 0, 0, 4, 0x65, 0x63],
    ]) {
      expect(detectWire(Buffer.from(prefix as never)), JSON.stringify(prefix)).toBe('need-more');
    }
  });
});
