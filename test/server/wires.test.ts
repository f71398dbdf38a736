// One port, every wire: the threaded server tells from each connection's first bytes what its
// client speaks and answers in kind. Checked with Debian's python3-thrift clients (every
// transport × protocol they offer) and the npm thrift client where it has the combination.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import thrift from 'thrift';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { ThreadedServer } from '../../src/server/threaded-server.js';
import { stalledMs, watchStalls } from '../helpers.js';
import { Calculator, closed, rawSocket, servicePath, handlerPath, startServer } from './calculator.js';

const run = promisify(execFile);
const client = fileURLToPath(new URL('../fixtures/py_wire_client.py', import.meta.url));
// Debian's interpreter: python3-thrift is installed for it, not for another python3 on PATH.
const PYTHON = '/usr/bin/python3';

/** Every combination a Python client offers and the server answers on one port. */
const WIRES = [
  ['framed', 'binary'],
  ['framed', 'compact'],
  ['framed', 'json'],
  ['buffered', 'binary'],
  ['buffered', 'compact'],
  ['buffered', 'json'],
  ['header', 'binary'],
  ['header', 'compact'],
  ['http', 'binary'],
  ['http', 'json'],
] as const;

async function python(port: number, ...args: string[]): Promise<unknown> {
  const { stdout } = await run(PYTHON, [client, String(port), ...args], { timeout: 20_000 });
  return JSON.parse(stdout);
}

const EVERY_KIND = {
  add: 42,
  translate: [11, 22, 'p'],
  divide: 'DivideByZero: cannot divide 1 by zero',
  echo: 'after oneway',
  unknown: 1,
  counters: ['add', 'counters', 'divide', 'echo', 'record', 'translate'],
};

describe('one port answers every wire', () => {
  let server: ThreadedServer;
  let port: number;
  beforeAll(async () => {
    ({ server, port } = await startServer({ workers: 1 }));
  });
  afterAll(() => server.close({ timeoutMs: 100 }));

  test.each(WIRES)(
    'a Python %s %s client gets a value, a struct, a declared exception, a oneway call and an unknown method answered as its IDL declares',
    async (transport, protocol) => {
      expect(await python(port, transport, protocol)).toEqual(EVERY_KIND);
    },
  );

  const NODE_WIRES = [
    ['framed', 'binary'],
    ['framed', 'compact'],
    ['framed', 'json'],
    ['buffered', 'binary'],
    ['buffered', 'compact'],
    ['buffered', 'json'],
    ['http', 'binary'],
    ['http', 'compact'],
    ['http', 'json'],
  ] as const;
  test.each(NODE_WIRES)('an npm thrift %s %s client gets a struct and a declared exception answered', async (transport, protocol) => {
    const Protocol = { binary: thrift.TBinaryProtocol, compact: thrift.TCompactProtocol, json: thrift.TJSONProtocol }[protocol];
    const options = { transport: transport === 'framed' ? thrift.TFramedTransport : thrift.TBufferedTransport, protocol: Protocol };
    const connection =
      transport === 'http'
        ? thrift.createHttpConnection('127.0.0.1', port, { ...options, path: '/', headers: { Connection: 'keep-alive' } })
        : thrift.createConnection('127.0.0.1', port, options);
    connection.on('error', () => {});
    const c = thrift.createClient<{
      translate(p: unknown, dx: number, dy: number): Promise<{ x: number; y: number; label: string }>;
      divide(a: number, b: number): Promise<number>;
      add(a: number, b: number): Promise<number>;
    }>(Calculator as never, connection as never);
    try {
      const p = await c.translate({ x: 1, y: 2, label: 'n' }, 1, 1);
      expect([p.x, p.y, p.label]).toEqual([2, 3, 'n']);
      await expect(c.divide(1, 0)).rejects.toMatchObject({ message: 'cannot divide 1 by zero' });
      expect(await c.add(2, 3)).toBe(5);
    } finally {
      (connection as unknown as { end?: () => void; destroy?: () => void }).end?.();
    }
  });

  test('calls are counted by wire in the metrics', async () => {
    const text = await server.metricsRegistry().metrics();
    for (const [transport, protocol] of WIRES) {
      expect(text).toMatch(new RegExp(`tql_server_wire_calls_total\\{transport="${transport}",protocol="${protocol}"\\} [1-9]`));
    }
  });

  test('an unframed message trickled in byte by byte is answered once complete, and only then', async () => {
    const socket = await rawSocket(port);
    const replies: Buffer[] = [];
    socket.on('data', (d: Buffer) => replies.push(d));
    const call = bufferedBinaryAdd(7, 8, 42);
    for (let i = 0; i < call.length; i++) {
      socket.write(call.subarray(i, i + 1));
      await new Promise((r) => setTimeout(r, 3));
      if (i < call.length - 1) expect(replies).toHaveLength(0);
    }
    await expect.poll(() => Buffer.concat(replies).length).toBeGreaterThan(0);
    const reply = Buffer.concat(replies);
    // A strict binary REPLY (type 2) for seqid 42 carrying i32 15 in field 0.
    expect(reply.readInt32BE(0)).toBe(0x80010000 | 2 | 0);
    expect(reply.readInt32BE(reply.length - 5)).toBe(15);
    socket.destroy();
  });

  test('garbage after an unframed binary header closes that connection only', async () => {
    const bad = await rawSocket(port);
    const wasClosed = closed(bad);
    // A strict binary CALL whose argument struct holds a field of type 99.
    const head = bufferedBinaryAdd(1, 1, 1).subarray(0, 4 + 4 + 3 + 4);
    bad.write(Buffer.concat([head, Buffer.from([99, 0, 1, 1, 2, 3, 4, 5, 6, 7])]));
    await wasClosed;
    expect(await python(port, 'buffered', 'binary')).toEqual(EVERY_KIND);
  });
});

describe('hostile or broken clients on the other wires', () => {
  let server: ThreadedServer;
  let port: number;
  beforeAll(async () => {
    ({ server, port } = await startServer({ workers: 1, maxFrameBytes: 4096, frameTimeoutMs: 500 }));
  });
  afterAll(() => server.close({ timeoutMs: 100 }));

  /** Sends `bytes` on a fresh socket; resolves with what came back once the server closed it. */
  async function answerThenClose(bytes: Buffer): Promise<string> {
    const socket = await rawSocket(port);
    const got: Buffer[] = [];
    socket.on('data', (d: Buffer) => got.push(d));
    const wasClosed = closed(socket);
    socket.write(bytes);
    await wasClosed;
    return Buffer.concat(got).toString('latin1');
  }

  test('an HTTP GET is closed; a chunked POST is answered 411, a body over maxFrameBytes 413, a head over 16 KiB 431, each then closed', async () => {
    expect(await answerThenClose(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))).toBe('');
    expect(await answerThenClose(Buffer.from('POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n'))).toMatch(/^HTTP\/1.1 411 /);
    expect(await answerThenClose(Buffer.from('POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n'))).toMatch(/^HTTP\/1.1 413 /);
    expect(await answerThenClose(Buffer.from(`POST / HTTP/1.1\r\nX: ${'y'.repeat(20_000)}`))).toMatch(/^HTTP\/1.1 431 /);
  });

  test('an unframed message over maxFrameBytes closes the connection before it has all arrived', async () => {
    const socket = await rawSocket(port);
    const wasClosed = closed(socket);
    socket.on('error', () => {});
    // echo(binary of 1 MiB): the string length alone tells it is too big.
    const head = Buffer.alloc(4 + 4 + 4 + 4 + 1 + 2 + 4);
    let at = head.writeInt32BE(0x80010000 | 1 | 0, 0);
    at = head.writeInt32BE(4, at);
    at += head.write('echo', at, 'latin1');
    at = head.writeInt32BE(1, at);
    at = head.writeUInt8(11, at);
    at = head.writeInt16BE(1, at);
    head.writeInt32BE(1 << 20, at);
    socket.write(head);
    await wasClosed;
    expect(server.stats().protocolErrors).toBeGreaterThan(0);
  });

  test('an HTTP request whose body trickles in is closed at frameTimeoutMs, and a keep-alive connection that stays silent is not', async () => {
    const watch = watchStalls();
    const slow = await rawSocket(port);
    const slowClosed = closed(slow);
    slow.write('POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n');
    const timer = setInterval(() => {
      if (!slow.destroyed) slow.write('x');
    }, 100);
    const ms = await slowClosed;
    clearInterval(timer);
    expect(ms).toBeGreaterThan(400);
    expect(ms).toBeLessThan(3000 + stalledMs(watch.stop())); // the I/O thread's sweep runs late by as much as it stalled
    expect(await python(port, 'http', 'json')).toEqual(EVERY_KIND);
  });
});

describe('multiplexed services', () => {
  let server: ThreadedServer;
  let port: number;
  beforeAll(async () => {
    ({ server, port } = await startServer({
      workers: 1,
      service: undefined,
      handler: undefined,
      services: { Calc: { service: servicePath, handler: handlerPath }, Other: { service: servicePath, handler: handlerPath } },
      limits: { 'Calc:sleep': { rate: 1, burst: 1 }, 'Other:*': { rate: 1000 } },
      queue: { maxWaitMs: 100 },
    }));
  });
  afterAll(() => server.close({ timeoutMs: 100 }));

  test.each([
    ['framed', 'binary'],
    ['buffered', 'binary'],
    ['buffered', 'compact'],
    ['header', 'compact'],
    ['http', 'json'],
  ] as const)('a Python multiplexed %s %s client calls Service:method and gets every kind answered', async (transport, protocol) => {
    expect(await python(port, transport, protocol, 'Calc')).toEqual(EVERY_KIND);
  });

  test('limits, stats and metrics name methods Service:method, with Service:* as the service default', async () => {
    expect(await python(port, 'framed', 'binary', 'Calc', '--overload', '3')).toEqual({ answered: 1, exceptions: { '11': 2 } });
    expect(server.stats().refused.queue_timeout).toBe(2);
    const text = await server.metricsRegistry().metrics();
    expect(text).toMatch(/tql_method_refused_total\{method="Calc:sleep",reason="queue_timeout"\} 2/);
    expect(text).toMatch(/tql_method_admitted_total\{method="Calc:add"\} [1-9]/);
    expect(server.limits.limitFor('Other:add')).toBe(server.limits.limitFor('Other:echo'));
    expect(server.limits.limitFor('Calc:add')).toBeUndefined();
  });

  test('an unprefixed call to a multiplexed-only server is answered UNKNOWN_METHOD', async () => {
    const socket = await rawSocket(port);
    const replies: Buffer[] = [];
    socket.on('data', (d: Buffer) => replies.push(d));
    socket.write(bufferedBinaryAdd(1, 2, 5));
    await expect.poll(() => Buffer.concat(replies).length).toBeGreaterThan(12);
    const reply = Buffer.concat(replies);
    expect(reply.readInt32BE(0)).toBe(0x80010000 | 3 | 0);
    socket.destroy();
  });
});

describe('overload on every kind of wire', () => {
  let server: ThreadedServer;
  let port: number;
  beforeAll(async () => {
    ({ server, port } = await startServer({ workers: 1, limits: { sleep: { rate: 1, burst: 1 } }, queue: { maxWaitMs: 100 } }));
  });
  afterAll(() => server.close({ timeoutMs: 100 }));

  test.each([
    ['buffered', 'binary'],
    ['header', 'binary'],
    ['http', 'binary'],
    ['http', 'json'],
    ['framed', 'json'],
  ] as const)('a %s %s client over its limit gets TApplicationException 11 in its own wire', async (transport, protocol) => {
    await new Promise((r) => setTimeout(r, 1100)); // a fresh token for each wire
    expect(await python(port, transport, protocol, '--overload', '3')).toEqual({ answered: 1, exceptions: { '11': 2 } });
  });
});

describe('restricting what is accepted', () => {
  test('a server restricted to framed tells an unframed client so in a TApplicationException of its own wire, logs one line, and closes', async () => {
    const log: string[] = [];
    const { server, port } = await startServer({ workers: 1, transport: 'framed', protocol: ['binary', 'compact'], log: (l) => log.push(l) });
    try {
      const refused = (await python(port, 'buffered', 'binary').catch((e: { stderr: string }) => e.stderr)) as string;
      expect(refused).toMatch(/TApplicationException: buffered binary request, but this server accepts framed only/);
      expect(log.filter((l) => /buffered binary request, but this server accepts framed only/.test(l))).toHaveLength(1);
      const json = (await python(port, 'framed', 'json').catch((e: { stderr: string }) => e.stderr)) as string;
      expect(json).toMatch(/TApplicationException: framed json request, but this server accepts the binary, compact protocols only/);
      const framed = (await python(port, 'framed', 'compact')) as { add: number };
      expect(framed.add).toBe(42);
    } finally {
      await server.close({ timeoutMs: 100 });
    }
  });

  test('invalid transport and protocol options are RangeErrors naming the option', async () => {
    await expect(startServer({ transport: 'udp' as never })).rejects.toThrow(/transport must be/);
    await expect(startServer({ protocol: ['binary', 'xml'] as never })).rejects.toThrow(/protocol must be/);
  });
});

/** A strict binary `add(a, b)` call without framing. */
function bufferedBinaryAdd(a: number, b: number, seqid: number): Buffer {
  const out = Buffer.alloc(4 + 4 + 3 + 4 + 7 + 7 + 1);
  let at = out.writeInt32BE(0x80010000 | 1 | 0, 0);
  at = out.writeInt32BE(3, at);
  at += out.write('add', at, 'latin1');
  at = out.writeInt32BE(seqid, at);
  at = out.writeUInt8(8, at);
  at = out.writeInt16BE(1, at);
  at = out.writeInt32BE(a, at);
  at = out.writeUInt8(8, at);
  at = out.writeInt16BE(2, at);
  at = out.writeInt32BE(b, at);
  out.writeUInt8(0, at);
  return out;
}
