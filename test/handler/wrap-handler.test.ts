import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import thrift from 'thrift';
import { afterEach, describe, expect, test } from 'vitest';
import { ConcurrencyLimit } from '../../src/limiters/concurrency-limit.js';
import { wrapHandler } from '../../src/handler/wrap-handler.js';
import { connect, Calculator, type AppException } from '../server/calculator.js';

const require = createRequire(import.meta.url);
const { createHandler } = require(fileURLToPath(new URL('../../examples/calculator-handler.js', import.meta.url))) as {
  createHandler: (c: { limiters: object; threadId: number }) => Record<string, (...args: unknown[]) => unknown>;
};

let servers: ReturnType<typeof thrift.createServer>[] = [];
afterEach(() => {
  for (const s of servers) s.close();
  servers = [];
});

/** The stock thrift server with a wrapped handler, framed binary, on 127.0.0.1. */
async function stockServer(handler: object): Promise<number> {
  const server = thrift.createServer(Calculator as never, handler as never, { transport: thrift.TFramedTransport, protocol: thrift.TBinaryProtocol });
  server.on('error', () => {});
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

describe('wrapHandler on the stock thrift server', () => {
  test('methods queue for their rate limit instead of failing: 20 calls at 100/s burst 5 all succeed, paced', async () => {
    const port = await stockServer(wrapHandler(createHandler({ limiters: {}, threadId: 0 }), { add: { rate: 100, burst: 5 } }));
    const { client, close } = await connect(port);
    const started = performance.now();
    const results = await Promise.all(Array.from({ length: 20 }, (_, k) => client.add(k, 1)));
    const elapsed = performance.now() - started;
    expect(results).toEqual(Array.from({ length: 20 }, (_, k) => k + 1));
    expect(elapsed).toBeGreaterThanOrEqual(140); // 15 calls past the burst, 10 ms apart
    expect(await client.ping()).toBeUndefined(); // unlimited methods pass straight through
    close();
  });

  test('over the wait bound the client gets an exception naming the limit', async () => {
    const port = await stockServer(wrapHandler(createHandler({ limiters: {}, threadId: 0 }), { add: { rate: 10, burst: 1 } }, { maxWaitMs: 50 }));
    const { client, close } = await connect(port);
    const results = await Promise.all(Array.from({ length: 3 }, (_, k) => client.add(k, 0).catch((e: unknown) => e as AppException)));
    expect(results[0]).toBe(0);
    expect((results[2] as AppException).message).toMatch(/^server overloaded: method add would wait \d+ ms, over limit 50 ms$/);
    close();
  });

  test('a callback-style method keeps its style and holds a concurrency permit until its callback runs', async () => {
    const limit = new ConcurrencyLimit({ max: 1 });
    let inFlight = 0;
    let most = 0;
    const handler = {
      add(a: number, b: number, callback: (err: unknown, value?: number) => void): void {
        most = Math.max(most, ++inFlight);
        setTimeout(() => {
          inFlight--;
          callback(null, a + b);
        }, 5);
      },
    };
    const port = await stockServer(wrapHandler(handler, { add: limit }));
    const { client, close } = await connect(port);
    expect(await Promise.all([client.add(1, 1), client.add(2, 2), client.add(3, 3)])).toEqual([2, 4, 6]);
    expect(most).toBe(1);
    expect(limit.inFlight).toBe(0);
    close();
  });
});
