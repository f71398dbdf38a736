// The metrics port's endpoints on a real threaded server, served by a real HTTP server on
// 127.0.0.1: /healthz, /readyz through start, serving, a worker replacement and shutdown, /limits,
// and what /metrics adds for operators (handler durations, workers, process metrics).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { metricsRequestListener, type MetricsEndpointSource, type Readiness } from '../../src/metrics/http-endpoint.js';
import type { ThreadedServer } from '../../src/server/threaded-server.js';
import { connect, handlerPath, serverModule, servicePath, type AppException } from './calculator.js';

const gatedHandler = fileURLToPath(new URL('../fixtures/gated-handler.js', import.meta.url));

/** The endpoints of `source` on a free port of 127.0.0.1. */
async function endpoint(source: MetricsEndpointSource): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer(metricsRequestListener(source));
  server.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function get<T = unknown>(url: string, init?: RequestInit): Promise<{ status: number; body: T; headers: Headers }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: (res.headers.get('content-type')?.startsWith('application/json') ? JSON.parse(text) : text) as T };
}

/** Polls `check` every 10 ms until it returns true; false if `ms` passed first. */
async function eventually(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

describe('health endpoints', () => {
  let gateDir: string;
  let gate: string;
  const servers: ThreadedServer[] = [];
  const endpoints: { close: () => Promise<void> }[] = [];

  beforeEach(() => {
    gateDir = mkdtempSync(join(tmpdir(), 'tql-gate-'));
    gate = join(gateDir, 'open');
    process.env.TQL_TEST_GATE = gate;
  });
  afterEach(async () => {
    writeFileSync(gate, '');
    await Promise.all(servers.splice(0).map((s) => s.close({ timeoutMs: 100 })));
    await Promise.all(endpoints.splice(0).map((e) => e.close()));
    delete process.env.TQL_TEST_GATE;
    rmSync(gateDir, { recursive: true, force: true });
  });

  async function create(options: Record<string, unknown>): Promise<{ server: ThreadedServer; url: string }> {
    const { createThreadedServer } = await serverModule();
    const server = createThreadedServer({ service: servicePath, handler: handlerPath, workers: 2, log: () => {}, ...options });
    servers.push(server);
    const e = await endpoint(server);
    endpoints.push(e);
    return { server, url: e.url };
  }

  test('/readyz is 503 before listen and while createHandler has not resolved in the workers, 200 once listening; /healthz is 200 throughout', async () => {
    const { server, url } = await create({ handler: gatedHandler });
    const before = await get<Readiness>(`${url}/readyz`);
    expect(before.status).toBe(503);
    expect(before.body).toMatchObject({ ready: false, state: 'created' });

    const listening = server.listen(0);
    // The workers wait at the gate: the server stays starting for as long as it is closed.
    for (let i = 0; i < 5; i++) {
      const starting = await get<Readiness>(`${url}/readyz`);
      expect(starting.status).toBe(503);
      expect(starting.body).toMatchObject({ ready: false, state: 'starting', reason: expect.stringMatching(/^starting/) as unknown });
      expect((await get(`${url}/healthz`)).status).toBe(200);
      await new Promise((r) => setTimeout(r, 50));
    }
    writeFileSync(gate, '');
    await listening;
    const ready = await get<Readiness>(`${url}/readyz`);
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ ready: true, state: 'serving', workers: { ready: 2, configured: 2 } });
    expect(await get(`${url}/healthz`)).toMatchObject({ status: 200, body: { alive: true, state: 'serving' } });
  });

  test('close() during a start wins: listen rejects, nothing is left listening, and the state ends closed', async () => {
    const { server, url } = await create({ handler: gatedHandler });
    const listening = server.listen(0);
    listening.catch(() => {});
    await new Promise((r) => setTimeout(r, 100));
    const closing = server.close({ timeoutMs: 100 });
    writeFileSync(gate, '');
    await expect(listening).rejects.toThrow('server closed while starting');
    await closing;
    expect(server.address()).toBeNull();
    expect((await get<Readiness>(`${url}/readyz`)).body).toMatchObject({ ready: false, state: 'closed' });
  });

  test('/readyz is 503 while the server shuts down with a call still running, and after; /healthz stays 200', async () => {
    const { server, url } = await create({});
    const { port } = await server.listen(0);
    expect((await get(`${url}/readyz`)).status).toBe(200);
    const { client, close } = await connect(port);
    try {
      const slow = client.sleep(600);
      expect(await eventually(() => Promise.resolve(server.stats().running === 1), 5000)).toBe(true);
      const closing = server.close({ timeoutMs: 5000 });
      const during = await get<Readiness>(`${url}/readyz`);
      expect(during.status).toBe(503);
      expect(during.body).toMatchObject({ ready: false, state: 'closing', reason: 'shutting down' });
      expect((await get(`${url}/healthz`)).status).toBe(200);
      // The running call still finishes during the shutdown.
      expect(await slow).toBe(600);
      await closing;
    } finally {
      close();
    }
    const after = await get<Readiness>(`${url}/readyz`);
    expect(after.status).toBe(503);
    expect(after.body).toMatchObject({ ready: false, state: 'closed' });
    expect(await get(`${url}/healthz`)).toMatchObject({ status: 200, body: { alive: true, state: 'closed' } });
  });

  test('/readyz is 503 while the pool has no ready worker (the only worker blocked, replaced, its replacement still loading), 200 once it is ready', async () => {
    writeFileSync(gate, '');
    const { server, url } = await create({ handler: gatedHandler, workers: 1, handlerTimeoutMs: 300 });
    const { port } = await server.listen(0);
    expect((await get(`${url}/readyz`)).status).toBe(200);
    // Replacements now wait at the gate.
    rmSync(gate);
    const { client, close } = await connect(port);
    try {
      // A 5 s synchronous loop: the watchdog terminates the worker after ~300 ms.
      const blocked = await client.work(5_000_000).then(
        () => 'answered',
        (e: AppException) => `type ${e.type}`,
      );
      expect(blocked).toBe('type 6');
      let seen: { status: number; body: Readiness } | undefined;
      expect(
        await eventually(async () => {
          seen = await get<Readiness>(`${url}/readyz`);
          return seen.status === 503;
        }, 5000),
      ).toBe(true);
      expect(seen!.body).toMatchObject({
        ready: false,
        state: 'serving',
        workers: { ready: 0, configured: 1 },
        reason: expect.stringMatching(/no worker is ready/) as unknown,
      });
      const metrics = await get<string>(`${url}/metrics`);
      expect(metrics.body).toMatch(/^tql_server_workers_ready 0$/m);
      expect(metrics.body).toMatch(/^tql_server_workers 1$/m);
      expect(metrics.body).toMatch(/^tql_server_worker_replacements_total 1$/m);
      writeFileSync(gate, '');
      expect(await eventually(async () => (await get(`${url}/readyz`)).status === 200, 10_000)).toBe(true);
      expect(await client.add(2, 3)).toBe(5);
    } finally {
      close();
    }
  });
});

describe('/limits', () => {
  test('shows every limit with its kind and options, the limit of each method, and fairness; read-only', async () => {
    const { createThreadedServer } = await serverModule();
    const server = createThreadedServer({
      service: servicePath,
      handler: handlerPath,
      workers: 1,
      log: () => {},
      limits: {
        add: { rate: 100, burst: 5 },
        divide: { maxCalls: 50, periodMs: 2000 },
        echo: { rate: 10, perKey: { field: 1 }, slots: 128 },
        '*': { maxCalls: 1000, periodMs: 1000 },
      },
      queue: { maxWaitMs: 2000, maxQueued: 100 },
      fairness: {
        flow: 'connection',
        levels: { interactive: { share: 3, methods: ['add'] }, batch: { share: 1, borrow: false, methods: ['divide'] } },
        quantum: 2,
      },
    });
    const e = await endpoint(server);
    try {
      await server.listen(0);
      const { status, body, headers } = await get<Record<string, unknown>>(`${e.url}/limits`);
      expect(status).toBe(200);
      expect(headers.get('content-type')).toMatch(/^application\/json/);
      expect(body).toEqual({
        limits: {
          add: { kind: 'token-bucket', rate: 100, periodMs: 1000, burst: 5, maxQueued: 100, maxWaitMs: 2000, maxThreads: 64 },
          divide: { kind: 'fixed-window', maxCalls: 50, periodMs: 2000, maxQueued: 100, maxWaitMs: 2000, maxThreads: 64 },
          echo: {
            kind: 'keyed-token-bucket',
            rate: 10,
            periodMs: 1000,
            burst: 10,
            perKey: { field: 1 },
            slots: 128,
            probeWindow: 16,
            overflowRate: 10,
            overflowBurst: 10,
            maxQueued: 100,
            maxWaitMs: 2000,
            maxThreads: 64,
          },
          '*': { kind: 'fixed-window', maxCalls: 1000, periodMs: 1000, maxQueued: 100, maxWaitMs: 2000, maxThreads: 64 },
        },
        methods: {
          add: 'add',
          divide: 'divide',
          echo: 'echo',
          ping: '*',
          record: '*',
          translate: '*',
          work: '*',
          sleep: '*',
          fail: '*',
          counters: '*',
        },
        fairness: {
          flow: 'connection',
          levels: [
            { name: 'interactive', share: 3, methods: ['add'], borrow: true },
            { name: 'batch', share: 1, methods: ['divide'], borrow: false },
            { name: 'default', share: 1, methods: [], borrow: true },
          ],
          defaultLevel: 'default',
          quantum: 2,
          maxQueuedPerFlow: null,
        },
      });
      const post = await get<{ error: string }>(`${e.url}/limits`, { method: 'POST', body: '{"limits":{}}' });
      expect(post.status).toBe(405);
      expect(post.headers.get('allow')).toBe('GET, HEAD');
      expect((await get<{ limits: Record<string, unknown> }>(`${e.url}/limits`)).body.limits.add).toMatchObject({ rate: 100, burst: 5 });
    } finally {
      await server.close({ timeoutMs: 100 });
      await e.close();
    }
  });

  test('a method without a limit is null, unbounded values are null, no fairness is null', async () => {
    const { createThreadedServer } = await serverModule();
    const server = createThreadedServer({
      service: servicePath,
      handler: handlerPath,
      workers: 1,
      log: () => {},
      limits: { add: { rate: 5 }, work: { concurrency: 2 } },
    });
    try {
      await server.listen(0);
      const d = server.describeLimits();
      expect(d.limits).toEqual({
        add: { kind: 'token-bucket', rate: 5, periodMs: 1000, burst: 5, maxQueued: null, maxWaitMs: null, maxThreads: 64 },
        work: { kind: 'concurrency', max: 2, maxQueued: null, maxWaitMs: null, maxThreads: 64 },
      });
      expect(d.methods.add).toBe('add');
      expect(d.methods.echo).toBeNull();
      expect(d.fairness).toBeNull();
      // What /limits sends is this, as JSON.
      expect(JSON.parse(JSON.stringify(d))).toEqual(d);
    } finally {
      await server.close({ timeoutMs: 100 });
    }
  });
});

describe('metrics port', () => {
  test('other paths are 404, other methods 405, HEAD answers without a body, a query string is ignored', async () => {
    const { createThreadedServer } = await serverModule();
    const server = createThreadedServer({ service: servicePath, handler: handlerPath, workers: 1, log: () => {} });
    const e = await endpoint(server);
    try {
      await server.listen(0);
      const missing = await get<{ error: string; paths: string[] }>(`${e.url}/metricz`);
      expect(missing.status).toBe(404);
      expect(missing.body.paths).toEqual(['/metrics', '/healthz', '/readyz', '/limits']);
      for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
        for (const path of ['/metrics', '/healthz', '/readyz', '/limits']) expect((await get(`${e.url}${path}`, { method })).status).toBe(405);
      }
      const head = await fetch(`${e.url}/readyz`, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(await head.text()).toBe('');
      expect((await get(`${e.url}/healthz?verbose=1`)).status).toBe(200);
      const metrics = await get<string>(`${e.url}/metrics`);
      expect(metrics.status).toBe(200);
      expect(metrics.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    } finally {
      await server.close({ timeoutMs: 100 });
      await e.close();
    }
  });

  test('tql_method_handler_duration_seconds: one histogram series per method called, every answered call observed, durations at least the handler took', async () => {
    const { createThreadedServer } = await serverModule();
    const server = createThreadedServer({ service: servicePath, handler: handlerPath, workers: 2, log: () => {} });
    try {
      const { port } = await server.listen(0);
      const { client, close } = await connect(port);
      await Promise.all(Array.from({ length: 10 }, (_, k) => client.add(k, 1)));
      await Promise.all([client.sleep(60), client.sleep(60), client.sleep(60)]);
      await client.fail('throw').catch(() => {});
      close();
      const text = await server.metricsRegistry().metrics();
      expect(text).toContain('# TYPE tql_method_handler_duration_seconds histogram');
      const sample = (name: string, labels: string): number => {
        const m = new RegExp(`^tql_method_handler_duration_seconds_${name}\\{${labels.replace(/[+.]/g, '\\$&')}\\} (\\S+)$`, 'm').exec(text);
        expect(m, `${name}{${labels}} in\n${text}`).not.toBeNull();
        return Number(m![1]);
      };
      expect(sample('count', 'method="add"')).toBe(10);
      expect(sample('count', 'method="sleep"')).toBe(3);
      // A handler that threw is answered (INTERNAL_ERROR) by its worker: it is observed too.
      expect(sample('count', 'method="fail"')).toBe(1);
      expect(sample('bucket', 'method="sleep",le="+Inf"')).toBe(3);
      // Each sleep took at least 60 ms from the hand-off: none can be in a bucket up to 50 ms.
      expect(sample('bucket', 'method="sleep",le="0.05"')).toBe(0);
      expect(sample('sum', 'method="sleep"')).toBeGreaterThanOrEqual(0.18);
      expect(sample('bucket', 'method="add",le="+Inf"')).toBe(10);
      const buckets = [...text.matchAll(/^tql_method_handler_duration_seconds_bucket\{method="add",le="([^"]+)"\} (\d+)$/gm)].map((m) => Number(m[2]));
      expect(buckets.length).toBeGreaterThan(10);
      for (let i = 1; i < buckets.length; i++) expect(buckets[i]).toBeGreaterThanOrEqual(buckets[i - 1]!);
      expect(text).not.toMatch(/handler_duration_seconds_count\{method="echo"\}/);
    } finally {
      await server.close({ timeoutMs: 100 });
    }
  });

  test("prom-client's default process metrics are in the server's registry under its prefix; one registry per prefix", async () => {
    const { createThreadedServer } = await serverModule();
    const server = createThreadedServer({ service: servicePath, handler: handlerPath, workers: 1, log: () => {} });
    try {
      await server.listen(0);
      const registry = server.metricsRegistry();
      expect(server.metricsRegistry()).toBe(registry);
      const text = await registry.metrics();
      for (const name of [
        'tql_process_cpu_seconds_total',
        'tql_process_resident_memory_bytes',
        'tql_process_start_time_seconds',
        'tql_nodejs_eventloop_lag_p99_seconds',
        'tql_nodejs_heap_size_used_bytes',
        'tql_nodejs_version_info',
      ]) {
        expect(text).toMatch(new RegExp(`^${name}(\\{[^}]*\\})? [\\d.e+-]+$`, 'm'));
      }
      const other = await server.metricsRegistry('app_').metrics();
      expect(other).toMatch(/^app_process_cpu_seconds_total [\d.e+-]+$/m);
      expect(other).toMatch(/^app_server_workers 1$/m);
      expect(other).not.toContain('tql_');
    } finally {
      await server.close({ timeoutMs: 100 });
    }
  });
});
