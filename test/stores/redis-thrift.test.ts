/**
 * The Redis store under the Thrift integrations: two threaded servers (as two hosts would) share
 * one limit through Redis; a store that is down under fail-closed is answered with the overload
 * TApplicationException; `serve --redis` with an address where nothing listens exits with one
 * clear line.
 */
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import thrift from 'thrift';
import { wrapHandler } from '../../src/handler/wrap-handler.js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type * as RedisStoreModule from '../../src/stores/redis-store.js';
import { runServe } from '../serve-cli.js';
import { Calculator, connect, handlerPath, serverModule, servicePath, type AppException } from '../server/calculator.js';
import { freePort, sharedRedis, startRedis, type TestRedis } from './redis-server.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const limitsHandler = fileURLToPath(new URL('../fixtures/limits-handler.js', import.meta.url));
const require = createRequire(import.meta.url);
// The servers run from dist/ (their worker entry is compiled); their store comes from there too.
const storeModule = async (): Promise<typeof RedisStoreModule> =>
  (await import(new URL('../../dist/src/stores/redis-store.js', import.meta.url).href)) as typeof RedisStoreModule;

let redis: Pick<TestRedis, 'url' | 'cli' | 'stop'>;
beforeAll(async () => {
  redis = await sharedRedis();
});
afterAll(async () => {
  await redis?.stop();
});

describe('threaded server on the Redis store', () => {
  test('two servers sharing one Redis-backed limit of 200/s (burst 10) together take ≥ 0.95 s for 200 calls, all answered, none refused', async () => {
    const { createThreadedServer } = await serverModule();
    const { createRedisStore } = await storeModule();
    const prefix = `srv:${Math.random()}:`;
    const stores = [createRedisStore({ url: redis.url, prefix }), createRedisStore({ url: redis.url, prefix })];
    const servers = stores.map((store) =>
      createThreadedServer({ service: servicePath, handler: handlerPath, workers: 1, store, limits: { add: { rate: 200, burst: 10 } } }),
    );
    try {
      const ports = await Promise.all(servers.map(async (s) => (await s.listen(0)).port));
      const clients = await Promise.all(ports.map((p) => connect(p)));
      const t0 = performance.now();
      const results = await Promise.all(clients.flatMap(({ client }) => Array.from({ length: 100 }, (_, k) => client.add(k, 1))));
      const elapsed = performance.now() - t0;
      expect(results).toHaveLength(200);
      // One server alone would need (100 − 10) / 200 s; together they share the rate: (200 − 10) / 200 s.
      expect(elapsed).toBeGreaterThanOrEqual(940);
      const stats = servers.map((s) => s.stats());
      expect(stats.reduce((a, s) => a + s.admitted, 0)).toBe(200);
      expect(stats.every((s) => Object.values(s.refused).every((n) => n === 0))).toBe(true);
      for (const c of clients) c.close();
    } finally {
      await Promise.all(servers.map((s) => s.close({ timeoutMs: 100 })));
      await Promise.all(stores.map((s) => s.close()));
    }
  }, 20_000);

  test('with Redis killed under fail-closed, a call is answered with TApplicationException type 11 naming the store, and the server keeps serving', async () => {
    const own: TestRedis = await startRedis();
    const { createThreadedServer } = await serverModule();
    const { createRedisStore } = await storeModule();
    const store = createRedisStore({ url: own.url, onStoreError: 'fail-closed', timeoutMs: 200, log: () => {} });
    const server = createThreadedServer({ service: servicePath, handler: handlerPath, workers: 1, store, limits: { add: { rate: 100 } } });
    try {
      const { client, close } = await connect((await server.listen(0)).port);
      expect(await client.add(1, 2)).toBe(3);
      await own.kill();
      const error = (await client.add(2, 2).catch((e: unknown) => e)) as AppException;
      expect(error.type).toBe(11);
      expect(error.message).toMatch(/method add limit store unavailable/);
      expect(await client.ping().then(() => 'pong')).toBe('pong'); // unlimited methods still served
      expect(server.stats().refused.store_unavailable).toBe(1);
      close();
    } finally {
      await server.close({ timeoutMs: 100 });
      await store.close();
      await own.stop();
    }
  }, 20_000);
  test('with fairness, a call refused by the store (killed, fail-closed) is counted as store_unavailable by the server, its level and the level metric, not as aborted', async () => {
    const own: TestRedis = await startRedis();
    const { createThreadedServer } = await serverModule();
    const { createRedisStore } = await storeModule();
    const store = createRedisStore({ url: own.url, onStoreError: 'fail-closed', timeoutMs: 200, log: () => {} });
    const server = createThreadedServer({
      service: servicePath,
      handler: handlerPath,
      workers: 1,
      store,
      limits: { add: { rate: 100 } },
      fairness: { flow: 'connection', levels: { interactive: { share: 3, methods: ['add'] }, batch: { share: 1 } } },
    });
    try {
      const { client, close } = await connect((await server.listen(0)).port);
      expect(await client.add(1, 2)).toBe(3);
      await own.kill();
      const error = (await client.add(2, 2).catch((e: unknown) => e)) as AppException;
      expect(error.type).toBe(11);
      expect(error.message).toMatch(/method add limit store unavailable/);
      const stats = server.stats();
      expect(stats.refused.store_unavailable).toBe(1);
      expect(stats.levels!.interactive!.refused).toEqual({ queue_full: 0, queue_timeout: 0, store_unavailable: 1, aborted: 0 });
      const metrics = await server.metricsRegistry().metrics();
      expect(metrics).toContain('tql_fair_level_refused_total{level="interactive",reason="store_unavailable"} 1');
      expect(metrics).toContain('tql_fair_level_refused_total{level="interactive",reason="aborted"} 0');
      close();
    } finally {
      await server.close({ timeoutMs: 100 });
      await store.close();
      await own.stop();
    }
  }, 20_000);
});

describe('limits retired on the Redis store', () => {
  test('ten reloads that rebuild both limits (rate and concurrency, on the shared store) leave one reconnect hook per limit on the store, in the I/O thread and in the worker, not one per limit ever built', async () => {
    const { createThreadedServer } = await serverModule();
    const { createRedisStore } = await storeModule();
    const store = createRedisStore({ url: redis.url, prefix: `reload:${Math.random()}:` });
    // The hooks live on the store, counted through its public onReconnect as they are added and removed.
    let hooks = 0;
    const onReconnect = store.onReconnect.bind(store);
    store.onReconnect = (listener) => {
      hooks++;
      const off = onReconnect(listener);
      let removed = false;
      return () => {
        if (!removed) hooks--;
        removed = true;
        off();
      };
    };
    const limits = (k: number) =>
      k % 2 === 0 ? { add: { rate: 100 }, '@downstream': { concurrency: 2 } } : { add: { maxCalls: 100 }, '@downstream': { rate: 50 } };
    const server = createThreadedServer({ service: servicePath, handler: limitsHandler, workers: 1, store, limits: limits(0) });
    try {
      const { client, close } = await connect((await server.listen(0)).port);
      // The worker's own store instance, as the handler there sees it (test/fixtures/limits-handler.js).
      const workerHooks = async (): Promise<number> => (JSON.parse(await client.fail('limits')) as { storeHooks: number }).storeHooks;
      expect(hooks).toBe(2);
      expect(await workerHooks()).toBe(2);
      const counts: number[] = [];
      for (let k = 1; k <= 10; k++) {
        expect(server.setLimits(limits(k))).toHaveLength(2); // both rebuilt: another kind
        counts.push(hooks);
        await sleep(20); // the worker hears of the change on a BroadcastChannel
      }
      expect(counts).toEqual(Array.from({ length: 10 }, () => 2));
      expect(await workerHooks()).toBe(2);
      expect(await client.add(2, 3)).toBe(5); // still served under the current limit
      close();
    } finally {
      await server.close({ timeoutMs: 100 });
      await store.close();
    }
  }, 20_000);
});

describe('setLimits on the Redis store', () => {
  test('a concurrency limit given another store key is built anew on that key, not changed in place on the old one (a rate limit likewise); the same key is changed in place', async () => {
    const { createThreadedServer } = await serverModule();
    const { createRedisStore } = await storeModule();
    const store = createRedisStore({ url: redis.url, prefix: `rekey:${Math.random()}:` });
    const server = createThreadedServer({
      service: servicePath,
      handler: limitsHandler,
      workers: 1,
      store,
      limits: { add: { rate: 100 }, '@downstream': { concurrency: 2 } },
    });
    try {
      await server.listen(0);
      // Same keys, other values: changed in place (one line each, the limit's description changed).
      expect(server.setLimits({ add: { rate: 200 }, '@downstream': { concurrency: 3 } })).toEqual([
        'add 100/s, burst 100 (store) → 200/s, burst 200 (store)',
        '@downstream concurrency 2 → concurrency 3',
      ]);
      // Same values on other keys: both built anew, so both are reported although they read the same.
      expect(server.setLimits({ add: { rate: 200, key: 'add-2' }, '@downstream': { concurrency: 3, key: 'downstream-2' } })).toEqual([
        'add 200/s, burst 200 (store) → 200/s, burst 200 (store)',
        '@downstream concurrency 3 → concurrency 3',
      ]);
    } finally {
      await server.close({ timeoutMs: 100 });
      await store.close();
    }
  }, 20_000);
});

describe('wrapHandler on the Redis store', () => {
  test('a stock thrift server whose add is limited to 50/s (burst 5) in Redis takes ≥ 0.19 s for 15 calls, all answered', async () => {
    const { createRedisStore } = await storeModule();
    const store = createRedisStore({ url: redis.url, prefix: `wrap:${Math.random()}:` });
    const { createHandler } = require(handlerPath) as { createHandler: (c: { limiters: object; threadId: number }) => object };
    const server = thrift.createServer(
      Calculator as never,
      wrapHandler(createHandler({ limiters: {}, threadId: 0 }), { add: { rate: 50, burst: 5, store, key: 'add' } }) as never,
      {
        transport: thrift.TFramedTransport,
        protocol: thrift.TBinaryProtocol,
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { client, close } = await connect((server.address() as AddressInfo).port);
      const t0 = performance.now();
      expect(await Promise.all(Array.from({ length: 15 }, (_, k) => client.add(k, k)))).toEqual(Array.from({ length: 15 }, (_, k) => 2 * k));
      expect(performance.now() - t0).toBeGreaterThanOrEqual(190);
      close();
    } finally {
      server.close();
      await store.close();
    }
  });
});

describe('serve --redis', () => {
  test('an address where nothing listens exits 1 with one line naming it', async () => {
    const port = await freePort();
    const e = await runServe(['--limit', 'add=10/s', '--redis', `redis://127.0.0.1:${port}`]);
    expect(e.code).toBe(1);
    expect(e.stderr.trim().split('\n')).toHaveLength(1);
    expect(e.stderr).toMatch(new RegExp(`cannot use Redis at redis://127\\.0\\.0\\.1:${port}: nothing listens there`));
  });

  test('--lease without --redis exits 2 naming the flag', async () => {
    const e = await runServe(['--lease']);
    expect(e.code).toBe(2);
    expect(e.stderr.trim()).toBe('thrift-queue-limiter: --lease needs --redis URL (or --redis-cluster, --redis-sentinel)');
  });
});
