// Fair admission end to end: the threaded server (and wrapHandler on the stock server) with real
// npm-thrift clients on 127.0.0.1. A heavy client queues a backlog of 2 s worth of calls at once;
// nine light clients then send a few calls each. With fairness the light calls overtake the
// backlog (each waits for about one heavy call per light flow); with the FIFO they wait behind it.
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import thrift from 'thrift';
import { afterEach, describe, expect, test } from 'vitest';
import type { ThreadedServer } from '../../src/server/threaded-server.js';
import type { ThreadedServerOptions } from '../../src/server/server-options.js';
import { wrapHandler } from '../../src/handler/wrap-handler.js';
import { stalledMs, watchStalls } from '../helpers.js';
import { Calculator, connect, startServer, type CalculatorClient, type Protocol } from '../server/calculator.js';

const require = createRequire(import.meta.url);
const { createHandler } = require(fileURLToPath(new URL('../../examples/calculator-handler.js', import.meta.url))) as {
  createHandler: (c: { limiters: object; threadId: number }) => Record<string, (...args: unknown[]) => unknown>;
};

const RATE = 200; // calls/s: token interval 5 ms
const HEAVY = 400; // the heavy client's backlog: 2 s at the rate
const LIGHTS = 9;
const LIGHT_CALLS = 4; // per light client, 100 ms apart

let running: ThreadedServer[] = [];
let stock: ReturnType<typeof thrift.createServer>[] = [];
afterEach(async () => {
  await Promise.all(running.map((s) => s.close({ timeoutMs: 100 })));
  running = [];
  for (const s of stock) s.close();
  stock = [];
});

/**
 * Sends the heavy backlog through `heavy`, waits 50 ms, then LIGHT_CALLS calls through each
 * light client 100 ms apart. Returns the light calls' latencies (ms, sorted), the same less the
 * time this process (clients and server) was stalled during each call (`lightNetMs`, sorted), and
 * how many heavy calls succeeded.
 */
async function scenario(
  heavy: (k: number) => Promise<number>,
  light: (client: number, k: number) => Promise<number>,
): Promise<{ lightMs: number[]; lightNetMs: number[]; heavyOk: number }> {
  const watch = watchStalls();
  let heavyOk = 0;
  const backlog = Promise.all(
    Array.from({ length: HEAVY }, (_, k) =>
      heavy(k).then(
        () => {
          heavyOk++;
        },
        () => {},
      ),
    ),
  );
  await new Promise((resolve) => setTimeout(resolve, 50));
  const calls: { sent: bigint; answered: bigint }[] = [];
  await Promise.all(
    Array.from({ length: LIGHTS }, async (_, c) => {
      for (let k = 0; k < LIGHT_CALLS; k++) {
        const sent = process.hrtime.bigint();
        expect(await light(c, k)).toBe(c + k);
        calls.push({ sent, answered: process.hrtime.bigint() });
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }),
  );
  await backlog;
  const stalls = watch.stop();
  const lightMs = calls.map((x) => Number(x.answered - x.sent) / 1e6);
  const lightNetMs = calls.map((x, i) => lightMs[i]! - stalledMs(stalls, x.sent, x.answered));
  const ascending = (a: number, b: number): number => a - b;
  return { lightMs: lightMs.sort(ascending), lightNetMs: lightNetMs.sort(ascending), heavyOk };
}

async function start(options: Partial<ThreadedServerOptions>): Promise<number> {
  const { server, port } = await startServer({ workers: 1, limits: { add: { rate: RATE, burst: 1 } }, ...options });
  running.push(server);
  return port;
}

/** Heavy and light clients as separate connections. */
async function connections(port: number, protocol: Protocol): Promise<{ heavy: CalculatorClient; lights: CalculatorClient[]; close: () => void }> {
  const all = await Promise.all(Array.from({ length: LIGHTS + 1 }, () => connect(port, protocol)));
  return { heavy: all[0]!.client, lights: all.slice(1).map((c) => c.client), close: () => all.forEach((c) => c.close()) };
}

describe('fair admission on the threaded server, npm thrift clients on 127.0.0.1', () => {
  test("flows by 'connection': light clients' calls overtake a heavy client's 2 s backlog (every light call under 500 ms not counting this process's stalls, vs over 1 s FIFO); the heavy client still gets all its calls", async () => {
    const port = await start({ fairness: { flow: 'connection' } });
    const { heavy, lights, close } = await connections(port, 'binary');
    const r = await scenario(
      (k) => heavy.add(k, 0),
      (c, k) => lights[c]!.add(c, k),
    );
    expect(r.lightMs).toHaveLength(LIGHTS * LIGHT_CALLS);
    expect(r.lightNetMs.at(-1)).toBeLessThan(500);
    expect(r.heavyOk).toBe(HEAVY);
    close();
  });

  test('without fairness (FIFO), the same light calls wait behind the heavy backlog: the first ones take over a second', async () => {
    const port = await start({});
    const { heavy, lights, close } = await connections(port, 'binary');
    const r = await scenario(
      (k) => heavy.add(k, 0),
      (c, k) => lights[c]!.add(c, k),
    );
    expect(r.lightMs.at(-1)).toBeGreaterThan(1000);
    close();
  });

  test('flows by argument field 1 (a tenant id) over one compact connection, with priority levels and the stats by level', async () => {
    const port = await start({
      protocol: 'compact',
      fairness: { flow: { field: 1 }, levels: { interactive: { share: 3, methods: ['add'] }, rest: { share: 1 } }, maxQueuedPerFlow: 1000 },
    });
    const { client, close } = await connect(port, 'compact');
    // add(a, b): field 1 is `a`. The heavy tenant is a = 1000; light tenant c sends a = c.
    const r = await scenario(
      (k) => client.add(1000, k),
      (c, k) => client.add(c, k),
    );
    expect(r.lightNetMs.at(-1)).toBeLessThan(500);
    expect(r.heavyOk).toBe(HEAVY);
    const s = running[0]!.stats();
    expect(s.levels?.interactive).toMatchObject({ share: 3, admitted: HEAVY + LIGHTS * LIGHT_CALLS, queued: 0, flows: 0 });
    expect(s.levels?.rest?.admitted).toBe(0);
    expect(s.queued).toBe(0);
    const metrics = await running[0]!.metricsRegistry().metrics();
    expect(metrics).toContain(`tql_fair_level_admitted_total{level="interactive"} ${HEAVY + LIGHTS * LIGHT_CALLS}`);
    close();
  });

  test('a flow over maxQueuedPerFlow gets the overloaded TApplicationException (type 11) while other flows are served', async () => {
    const port = await start({ limits: { add: { rate: 20, burst: 1 } }, fairness: { flow: 'connection', maxQueuedPerFlow: 5 } });
    const { heavy, lights, close } = await connections(port, 'binary');
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, k) =>
        heavy.add(k, 0).then(
          () => 'ok',
          (e: { type?: number; message: string }) => `${e.type}: ${e.message}`,
        ),
      ),
    );
    expect(results.filter((x) => x === 'ok')).toHaveLength(6); // 1 at once + 5 queued
    expect(results.filter((x) => x !== 'ok')).toEqual(Array(4).fill('11: server overloaded: method add queue full (5 calls waiting)'));
    expect(await lights[0]!.add(1, 2)).toBe(3);
    close();
  });

  test('options are validated: a bad flow key or level names the option', async () => {
    const { serverModule, servicePath, handlerPath } = await import('../server/calculator.js');
    const { createThreadedServer } = await serverModule();
    const base = { service: servicePath, handler: handlerPath };
    expect(() => createThreadedServer({ ...base, fairness: { flow: 'ip' as never } })).toThrow(
      /fairness\.flow must be 'address', 'connection', 'method', \{ field: N \} or a function/,
    );
    expect(() => createThreadedServer({ ...base, fairness: { flow: { field: 1.5 } } })).toThrow(/fairness\.flow\.field/);
    expect(() => createThreadedServer({ ...base, fairness: { levels: { a: { share: 0 } } } })).toThrow(/fairness\.levels\.a\.share must be greater than 0/);
    expect(() => createThreadedServer({ ...base, limits: { add: { concurrency: 2 } }, fairness: { levels: { a: { share: 1, borrow: false } } } })).toThrow(
      /fairness\.levels\.a\.borrow: false needs a rate limit/,
    );
  });
});

describe('wrapHandler with fairness on the stock thrift server', () => {
  test('flows from the arguments: light tenants overtake a heavy tenant backlog on one connection', async () => {
    const handler = wrapHandler(createHandler({ limiters: {}, threadId: 0 }), { add: { rate: RATE, burst: 1 } }, {}, { flow: ({ args }) => String(args[0]) });
    const server = thrift.createServer(Calculator as never, handler as never, { transport: thrift.TFramedTransport, protocol: thrift.TBinaryProtocol });
    server.on('error', () => {});
    stock.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { client, close } = await connect((server.address() as AddressInfo).port);
    const r = await scenario(
      (k) => client.add(1000, k),
      (c, k) => client.add(c, k),
    );
    expect(r.lightNetMs.at(-1)).toBeLessThan(500);
    expect(r.heavyOk).toBe(HEAVY);
    expect(() => wrapHandler({}, {}, {}, { flow: 'address' as never })).toThrow(/fairness\.flow must be a function/);
    close();
  });
});
