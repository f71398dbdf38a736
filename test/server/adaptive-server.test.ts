import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, test } from 'vitest';
import { SimulatedDownstream } from '../../bench/lib/downstream.js';
import type { ThreadedServer } from '../../src/server/threaded-server.js';
import { connect, startServer } from './calculator.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** The simulated downstream behind an HTTP server on 127.0.0.1: every request is one call. */
async function startDownstream(slots: number, serviceMs: number): Promise<{ down: SimulatedDownstream; port: number }> {
  const down = new SimulatedDownstream(slots, serviceMs);
  const server = http.createServer((_req, res) => {
    void down.call().then(() => res.end('ok'));
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  cleanup.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  cleanup.push(() => server.closeAllConnections());
  return { down, port: (server.address() as AddressInfo).port };
}

describe('a threaded server with an adaptive limit, in front of a downstream of 8 slots', () => {
  test("100 calls outstanding from real clients: the limit settles near the downstream's slots, the downstream sees a few times its slots at most instead of 100, and every call is answered", async () => {
    const slots = 8;
    const serviceMs = 20;
    const { down, port: downstreamPort } = await startDownstream(slots, serviceMs);
    process.env.TQL_TEST_DOWNSTREAM_PORT = String(downstreamPort);
    const handler = fileURLToPath(new URL('../fixtures/downstream-handler.js', import.meta.url));
    const { server, port } = await startServer({ workers: 2, handler, limits: { add: { adaptive: { minLimit: 2, maxLimit: 100 } } } });
    cleanup.push(() => server.close({ timeoutMs: 2000 }));

    let stop = false;
    let answered = 0;
    const wrong: unknown[] = [];
    const connections = await Promise.all(Array.from({ length: 4 }, () => connect(port)));
    cleanup.push(() => connections.forEach((c) => c.close()));
    const loops = connections.flatMap(({ client }) =>
      Array.from({ length: 25 }, async (_, k) => {
        while (!stop) {
          const sum = await client.add(k, 1000).catch((error: unknown) => error);
          if (sum === k + 1000) answered++;
          else wrong.push(sum);
        }
      }),
    );
    const seen: { atMs: number; limit: number; inside: number }[] = [];
    const began = performance.now();
    const sampler = setInterval(() => {
      seen.push({ atMs: performance.now() - began, limit: limitOf(server), inside: down.takeMostInside() });
    }, 100);
    await new Promise((resolve) => setTimeout(resolve, 4000));
    clearInterval(sampler);
    const completedBefore = down.calls.filter((c) => c.endMs - began <= 2500).length;
    const completedIn = down.calls.filter((c) => c.endMs - began > 2500 && c.endMs - began <= 4000).length;

    // Prometheus shows the same limit as stats (read again if a window moved it in between).
    let shown: number | undefined;
    for (let attempt = 0; attempt < 5 && shown !== limitOf(server); attempt++) {
      const text = await server.metricsRegistry().metrics();
      shown = Number(/^tql_concurrency_limit\{limit="add"\} (\d+)$/m.exec(text)?.[1]);
    }
    expect(shown).toBe(limitOf(server));

    stop = true;
    down.slots = 1000;
    await Promise.all(loops);
    expect(wrong).toEqual([]);
    expect(answered).toBeGreaterThan(0);
    expect(completedBefore).toBeGreaterThan(0);

    // The last 1.5 s: the limit near the slots, the downstream never sees anything like the 100
    // calls the clients keep outstanding, and it is kept busy. (Near, not at 1.1 × slots as on the
    // benchmark's quiet downstream: here the clients, the downstream and the server's I/O thread
    // share one process and two cores, so the latency also grows with the load before the
    // downstream's slots are full, and the limit stops where it does.)
    const late = seen.filter((s) => s.atMs > 2500);
    const limits = late.map((s) => s.limit);
    const mean = limits.reduce((a, b) => a + b, 0) / limits.length;
    expect(mean, `limits: ${limits.join(' ')}`).toBeGreaterThanOrEqual(slots / 2);
    expect(mean, `limits: ${limits.join(' ')}`).toBeLessThanOrEqual(2 * slots);
    expect(Math.max(...limits), `limits: ${limits.join(' ')}`).toBeLessThanOrEqual(3 * slots);
    expect(Math.max(...late.map((s) => s.inside))).toBeLessThanOrEqual(3 * slots);
    expect(completedIn, `${completedIn} calls in 1.5 s`).toBeGreaterThan(0.4 * (1500 / serviceMs) * slots);
  }, 60_000);
});

function limitOf(server: ThreadedServer): number {
  return server.stats().concurrencyLimits.add!;
}
