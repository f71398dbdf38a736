// Per-key limits end to end: the threaded server (and wrapHandler on the stock server, and
// `serve`) with real npm-thrift clients on 127.0.0.1. With `add` limited to 50/s burst 5 per key,
// 30 calls of one key take 25 token intervals of 20 ms, about 0.5 s; two keys sending 30 calls
// each at once both finish in about 0.5 s when each key has its own bucket, but would need about
// 1.1 s for the 55 calls past one shared burst. The bounds below sit between the two (≥ 0.45 s,
// ≤ 0.95 s, the latter not counting the time this process, clients and server, was stalled);
// every load is a few dozen calls.
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import thrift from 'thrift';
import { afterEach, describe, expect, test } from 'vitest';
import type { ThreadedServer } from '../../src/server/threaded-server.js';
import type { ThreadedServerOptions } from '../../src/server/server-options.js';
import { wrapHandler } from '../../src/handler/wrap-handler.js';
import { stalledMs, watchStalls } from '../helpers.js';
import { startServe } from '../serve-cli.js';
import { Calculator, connect, handlerPath, serverModule, servicePath, startServer, type CalculatorClient } from '../server/calculator.js';

const require = createRequire(import.meta.url);
const { createHandler } = require(handlerPath) as {
  createHandler: (c: { limiters: object; threadId: number }) => Record<string, (...args: unknown[]) => unknown>;
};

const CALLS = 30; // per key
const PER_KEY = { rate: 50, burst: 5 } as const; // 25 calls past the burst, 20 ms apart: ~0.5 s
const MIN_MS = 450; // the key's own pacing holds
const MAX_MS = 950; // one bucket for both keys would need ~1100 ms

let running: ThreadedServer[] = [];
let stock: ReturnType<typeof thrift.createServer>[] = [];
afterEach(async () => {
  await Promise.all(running.map((s) => s.close({ timeoutMs: 100 })));
  running = [];
  for (const s of stock) s.close();
  stock = [];
});

async function start(options: Partial<ThreadedServerOptions>): Promise<{ server: ThreadedServer; port: number }> {
  const started = await startServer({ workers: 1, ...options });
  running.push(started.server);
  return started;
}

/**
 * Sends CALLS add(a, k) calls at once and resolves with the results, the time to the last answer
 * (ms) and that time less this process's stalls meanwhile (`netMs`).
 */
async function burst(client: CalculatorClient, a: number): Promise<{ results: number[]; ms: number; netMs: number }> {
  const watch = watchStalls();
  const sent = performance.now();
  const results = await Promise.all(Array.from({ length: CALLS }, (_, k) => client.add(a, k)));
  const ms = performance.now() - sent;
  return { results, ms, netMs: ms - stalledMs(watch.stop()) };
}

const expected = (a: number): number[] => Array.from({ length: CALLS }, (_, k) => a + k);

describe('per-key limits on the threaded server, npm thrift clients on 127.0.0.1', () => {
  test("perKey 'connection': two connections sending 30 calls each at once both finish in 0.45–0.95 s (each its own 50/s bucket, not serialized behind one)", async () => {
    const { server, port } = await start({ limits: { add: { ...PER_KEY, perKey: 'connection' } } });
    const [c1, c2] = await Promise.all([connect(port), connect(port)]);
    const [r1, r2] = await Promise.all([burst(c1.client, 0), burst(c2.client, 1000)]);
    expect(r1.results).toEqual(expected(0));
    expect(r2.results).toEqual(expected(1000));
    for (const r of [r1, r2]) {
      expect(r.ms).toBeGreaterThanOrEqual(MIN_MS);
      expect(r.netMs).toBeLessThanOrEqual(MAX_MS);
    }
    expect(server.limits.keyedEntries().map(([name]) => name)).toEqual(['add']);
    expect(server.limits.keyedFor('add')!.limiter.snapshot()).toMatchObject({ admitted: 2 * CALLS, inserted: 2, overflowAdmitted: 0 });
    const s = server.stats();
    expect(s.refused).toMatchObject({ queue_full: 0, queue_timeout: 0 });
    expect(s.queued).toBe(0);
    const metrics = await server.metricsRegistry().metrics();
    expect(metrics).toContain(`tql_keyed_admitted_total{limit="add"} ${2 * CALLS}`);
    expect(metrics).toContain('tql_keyed_refused_total{limit="add",reason="queue_full"} 0');
    c1.close();
    c2.close();
  });

  test("perKey { field: 1 }: two tenants (add's first argument) on ONE compact connection each get their own bucket (both finish in 0.45–0.95 s)", async () => {
    const { port } = await start({ protocol: 'compact', limits: { add: { ...PER_KEY, perKey: { field: 1 } } } });
    const { client, close } = await connect(port, 'compact');
    const [r1, r2] = await Promise.all([burst(client, 7), burst(client, 8)]);
    expect(r1.results).toEqual(expected(7));
    expect(r2.results).toEqual(expected(8));
    for (const r of [r1, r2]) {
      expect(r.ms).toBeGreaterThanOrEqual(MIN_MS);
      expect(r.netMs).toBeLessThanOrEqual(MAX_MS);
    }
    close();
  });

  test("'*' per key with fairness also configured: the per-key limit is admitted per key (no fair queue over it); a plain limit beside it still goes through its fair queue", async () => {
    const { server, port } = await start({ limits: { '*': { ...PER_KEY, perKey: 'connection' }, ping: { rate: 1000 } }, fairness: { flow: 'connection' } });
    const [c1, c2] = await Promise.all([connect(port), connect(port)]);
    const [r1, r2] = await Promise.all([burst(c1.client, 0), burst(c2.client, 1)]);
    expect(r1.results).toEqual(expected(0));
    expect(r2.results).toEqual(expected(1));
    for (const r of [r1, r2]) expect(r.netMs).toBeLessThanOrEqual(MAX_MS);
    expect(await c1.client.ping()).toBeUndefined();
    expect(server.stats().levels?.default?.admitted).toBe(1); // the fair queue saw ping only
    c1.close();
    c2.close();
  });

  test('a tiny table (2 slots) and 40 keys: keys without a slot share the overflow bucket, the server answers every call, none refused', async () => {
    const KEYS = 40;
    const EACH = 3;
    const { server, port } = await start({
      limits: { add: { rate: 10, burst: 5, perKey: { field: 1 }, slots: 2, overflowRate: 1000, overflowBurst: 50 } },
      queue: { maxWaitMs: 5000 },
    });
    const { client, close } = await connect(port);
    const calls = Array.from({ length: KEYS * EACH }, (_, i) => [i % KEYS, Math.floor(i / KEYS)] as const);
    const results = await Promise.all(calls.map(([a, b]) => client.add(a, b)));
    expect(results).toEqual(calls.map(([a, b]) => a + b));
    expect(server.stats().refused).toMatchObject({ queue_full: 0, queue_timeout: 0 });
    const snapshot = server.limits.keyedFor('add')!.limiter.snapshot();
    expect(snapshot.admitted).toBe(KEYS * EACH);
    expect(snapshot.overflowAdmitted).toBeGreaterThan(0);
    expect(snapshot.keysInUse).toBeLessThanOrEqual(2);
    close();
  });

  test('options are validated: a bad perKey or a store on a per-key limit names limits.<method>', async () => {
    const { createThreadedServer } = await serverModule();
    const base = { service: servicePath, handler: handlerPath };
    expect(() => createThreadedServer({ ...base, limits: { add: { rate: 10, perKey: 'ip' as never } } })).toThrow(TypeError);
    expect(() => createThreadedServer({ ...base, limits: { add: { rate: 10, perKey: 'ip' as never } } })).toThrow(
      /limits\.add\.perKey must be 'address', 'connection', 'method', \{ field: N \} or a function/,
    );
    expect(() => createThreadedServer({ ...base, limits: { add: { rate: 10, perKey: { field: 1.5 } } } })).toThrow(/limits\.add\.perKey\.field/);
    expect(() => createThreadedServer({ ...base, limits: { add: { rate: 10, perKey: 'address', slots: 0 } } })).toThrow(
      /limits\.add: slots must be at least 1/,
    );
    // probeWindow, as KeyedTokenBucket takes it: validated there, named under the limit.
    const probed = createThreadedServer({ ...base, limits: { add: { rate: 10, perKey: 'address', slots: 64, probeWindow: 4 } } });
    expect(probed.limits.keyedFor('add')!.limiter.probeWindow).toBe(4);
    expect(probed.describeLimits().limits.add).toMatchObject({ slots: 64, probeWindow: 4 });
    for (const [probeWindow, message] of [
      [0, /^limits\.add: probeWindow must be at least 1/],
      [65, /^limits\.add: probeWindow must be at most 64/],
      [2.5, /^limits\.add: probeWindow must be a whole number/],
    ] as const) {
      expect(() => createThreadedServer({ ...base, limits: { add: { rate: 10, perKey: 'address', probeWindow } } })).toThrow(RangeError);
      expect(() => createThreadedServer({ ...base, limits: { add: { rate: 10, perKey: 'address', probeWindow } } })).toThrow(message);
    }
    expect(() => probed.setLimits({ add: { rate: 10, perKey: 'address', probeWindow: 0 } })).toThrow(/^limits\.add: probeWindow must be at least 1/);
    expect(() => createThreadedServer({ ...base, limits: { add: { rate: 10, perKey: 'address', capacity: 64 } as never } })).toThrow(
      /^limits\.add: option "capacity" was renamed "slots"$/,
    );
    expect(() => createThreadedServer({ ...base, limits: { add: { rate: 10, perKey: 'address', store: {} } as never } })).toThrow(
      /limits\.add\.store: a per-key limit/,
    );
  });
});

describe('per-key limits with wrapHandler on the stock thrift server', () => {
  test('perKey ({ args }) => String(args[0]): two keys on one connection each get their own bucket (both finish in 0.45–0.95 s); a non-function perKey is a TypeError naming it', async () => {
    const handler = wrapHandler(createHandler({ limiters: {}, threadId: 0 }), { add: { ...PER_KEY, perKey: ({ args }) => String(args[0]) } });
    const server = thrift.createServer(Calculator as never, handler as never, { transport: thrift.TFramedTransport, protocol: thrift.TBinaryProtocol });
    server.on('error', () => {});
    stock.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { client, close } = await connect((server.address() as AddressInfo).port);
    const [r1, r2] = await Promise.all([burst(client, 1), burst(client, 2)]);
    expect(r1.results).toEqual(expected(1));
    expect(r2.results).toEqual(expected(2));
    for (const r of [r1, r2]) {
      expect(r.ms).toBeGreaterThanOrEqual(MIN_MS);
      expect(r.netMs).toBeLessThanOrEqual(MAX_MS);
    }
    expect(await client.ping()).toBeUndefined();
    close();
    expect(() => wrapHandler({}, { add: { rate: 10, perKey: 'address' as never } })).toThrow(TypeError);
    expect(() => wrapHandler({}, { add: { rate: 10, perKey: 'address' as never } })).toThrow(
      /limits\.add\.perKey must be a function \(\{ method, args \}\) => string/,
    );
  });
});

describe('serve with a per-key --limit', () => {
  test("--limit 'add=20/s,per=connection' starts, answers every call, and exits cleanly on SIGTERM", async () => {
    const serve = await startServe(['--limit', 'add=20/s,per=connection', '--stats-interval', '10s']);
    try {
      expect(serve.out()).toContain('limits: add 20/s, burst 20, per connection');
      const [c1, c2] = await Promise.all([connect(serve.port), connect(serve.port)]);
      const results = await Promise.all([c1, c2].flatMap(({ client }, c) => Array.from({ length: 10 }, (_, k) => client.add(c, k))));
      expect(results).toEqual([0, 1].flatMap((c) => Array.from({ length: 10 }, (_, k) => c + k)));
      c1.close();
      c2.close();
    } finally {
      serve.child.kill('SIGTERM');
    }
    expect(await serve.exited).toBe(0);
    expect(serve.out()).toMatch(/stopped: admitted 20, completed 20, refused 0/);
  });
});
