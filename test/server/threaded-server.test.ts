import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, test } from 'vitest';
import type { ThreadedServer } from '../../src/server/threaded-server.js';
import { OVERLOADED } from '../../src/server/threaded-server.js';
import { stalledMs, watchStalls } from '../helpers.js';
import { closed, connect, rawSocket, startServer, types, type AppException, type Protocol } from './calculator.js';

let running: ThreadedServer[] = [];
afterEach(async () => {
  await Promise.all(running.map((s) => s.close({ timeoutMs: 100 })));
  running = [];
});

async function start(options: Parameters<typeof startServer>[0] = {}): Promise<{ server: ThreadedServer; port: number }> {
  const started = await startServer(options);
  running.push(started.server);
  return started;
}

describe.each(['binary', 'compact'] as Protocol[])('threaded server, %s protocol, npm thrift client', (protocol) => {
  test('answers every method kind: value, void, oneway, declared exception, CPU-bound', async () => {
    const { port } = await start({ protocol, workers: 1 });
    const { client, close } = await connect(port, protocol);
    expect(await client.add(2, 40)).toBe(42);
    expect((await client.echo(Buffer.from('hello'))).toString()).toBe('hello');
    expect(await client.ping()).toBeUndefined();
    await client.record('event');
    const error = await client.divide(1, 0).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(types.DivideByZero);
    expect((error as { message: string }).message).toBe('cannot divide 1 by zero');
    expect(await client.work(200)).toBeDefined();
    const counters = await client.counters();
    // The oneway call ran too (same worker, so it is counted before `counters`).
    expect(Object.keys(counters).sort()).toEqual(['add', 'counters', 'divide', 'echo', 'ping', 'record', 'work']);
    close();
  });

  test('handler failures become TApplicationException INTERNAL_ERROR (6) with a useful message, and the server keeps serving', async () => {
    const { port } = await start({ protocol, workers: 1 });
    const { client, close } = await connect(port, protocol);
    const cases: [string, RegExp][] = [
      ['throw', /fail: handler failed on purpose/],
      ['reject-null', /fail: rejected with null/],
      ['bad-result', /fail: the handler's result could not be encoded/],
    ];
    for (const [how, message] of cases) {
      const e = (await client.fail(how).catch((x: unknown) => x)) as AppException;
      expect(e.type, how).toBe(6);
      expect(e.message, how).toMatch(message);
    }
    expect(await client.add(1, 1)).toBe(2);
    close();
  });

  test('async handlers run concurrently in a worker and each replies when it is done, not with its batch', async () => {
    const { port } = await start({ protocol, workers: 1 });
    const { client, close } = await connect(port, protocol);
    await client.ping(); // the worker has started and loaded its modules
    const watch = watchStalls();
    const started = performance.now();
    const finished: number[] = [];
    await Promise.all([
      client.sleep(300).then(() => finished.push(performance.now() - started)),
      ...Array.from({ length: 10 }, () => client.sleep(30).then(() => finished.push(performance.now() - started))),
    ]);
    // This process (client, I/O thread) stalled: replies were late by as long.
    const stalled = stalledMs(watch.stop());
    finished.sort((a, b) => a - b);
    expect(finished[9]).toBeLessThan(200 + stalled); // the short calls did not wait for the long one
    expect(finished[10]).toBeGreaterThanOrEqual(290);
    expect(finished[10]).toBeLessThan(1000 + stalled); // and the ten 30 ms calls ran concurrently
    close();
  });

  test('many connections with several calls outstanding each get their own replies', async () => {
    const { port } = await start({ protocol, workers: 2 });
    const clients = await Promise.all(Array.from({ length: 8 }, () => connect(port, protocol)));
    const results = await Promise.all(
      clients.flatMap(({ client }, c) => Array.from({ length: 16 }, (_, k) => client.add(c * 1000, k).then((r) => [r, c * 1000 + k]))),
    );
    for (const [got, want] of results) expect(got).toBe(want);
    clients.forEach((c) => c.close());
  });
});

describe('threaded server admission', () => {
  test('with a limit of R/s and 5 × R calls offered at once, every call succeeds and completions follow R/s', async () => {
    const rate = 100;
    const burst = 10;
    const { server, port } = await start({ limits: { add: { rate, burst } } });
    const clients = await Promise.all(Array.from({ length: 5 }, () => connect(port)));
    await clients[0]!.client.ping(); // workers started: the run measures the limit, not start-up
    const watch = watchStalls();
    const started = performance.now();
    const done: number[] = [];
    await Promise.all(
      clients.flatMap(({ client }) =>
        Array.from({ length: rate }, (_, k) =>
          client.add(k, 1).then((r) => {
            expect(r).toBe(k + 1);
            done.push(performance.now() - started);
          }),
        ),
      ),
    );
    done.sort((a, b) => a - b);
    expect(done).toHaveLength(5 * rate);
    // The k-th completion (0-based) cannot come before (k + 1 − burst) / R seconds.
    const early = done.findIndex((t, k) => t < ((k + 1 - burst) / rate) * 1000);
    expect(early, `completion ${early} at ${done[early]} ms`).toBe(-1);
    // The run as a whole keeps up with R/s, over the time this process (where the I/O thread
    // admits) was not stalled; 90 % leaves room for the replies' own latency.
    const elapsed = done.at(-1)! / 1000;
    const stalled = stalledMs(watch.stop()) / 1000;
    expect((5 * rate - burst) / (elapsed - stalled), `${5 * rate} calls took ${elapsed} s, ${stalled} s of it stalled`).toBeGreaterThanOrEqual(rate * 0.9);
    expect(server.stats().refused).toEqual({ queue_full: 0, queue_timeout: 0, store_unavailable: 0, disconnected: 0, shutdown: 0 });
    clients.forEach((c) => c.close());
  });

  test('over maxQueued a call is answered on the I/O thread with TApplicationException 11 naming the bound', async () => {
    const { server, port } = await start({ limits: { add: { rate: 1, burst: 1 } }, queue: { maxQueued: 2 } });
    const { client, close } = await connect(port);
    const calls = Array.from({ length: 5 }, (_, k) => client.add(k, 0).catch((e: unknown) => e as AppException));
    const first = await calls[0];
    expect(first).toBe(0);
    const refused = (await Promise.all(calls.slice(3))) as AppException[];
    for (const e of refused) {
      expect(e.type).toBe(OVERLOADED);
      expect(e.message).toBe('server overloaded: method add queue full (2 calls waiting)');
    }
    expect(server.stats().refused.queue_full).toBe(2);
    close();
  });

  test('over maxWaitMs a call is refused at once when its wait is known to exceed the bound, with the limit in the message', async () => {
    const { server, port } = await start({ limits: { add: { rate: 10, burst: 1 } }, queue: { maxWaitMs: 150 } });
    const { client, close } = await connect(port);
    const results = await Promise.all(Array.from({ length: 4 }, (_, k) => client.add(k, 0).catch((e: unknown) => e as AppException)));
    expect(results.slice(0, 2)).toEqual([0, 1]); // now, and after 100 ms
    for (const e of results.slice(2) as AppException[]) {
      expect(e.type).toBe(OVERLOADED);
      expect(e.message).toMatch(/^server overloaded: method add would wait \d+ ms, over limit 150 ms$/);
    }
    expect(server.stats().refused.queue_timeout).toBe(2);
    close();
  });

  test('a oneway call over a bound is dropped and counted', async () => {
    const { server, port } = await start({ limits: { record: { rate: 1, burst: 1 } }, queue: { maxQueued: 1 } });
    const { client, close } = await connect(port);
    for (let k = 0; k < 4; k++) void client.record(`e${k}`);
    await expect.poll(() => server.stats().onewayDropped).toBe(2);
    close();
  });
});

describe('threaded server robustness', () => {
  test('a 2 GB length prefix closes that connection only; others keep working', async () => {
    const { server, port } = await start();
    const good = await connect(port);
    const bad = await rawSocket(port);
    const wasClosed = closed(bad);
    bad.write(Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2, 3]));
    await wasClosed;
    expect(server.stats().protocolErrors).toBe(1);
    expect(await good.client.add(1, 2)).toBe(3);
    good.close();
  });

  test('a garbage (negative) length prefix closes that connection only', async () => {
    const { port } = await start();
    const good = await connect(port);
    const bad = await rawSocket(port);
    const wasClosed = closed(bad);
    bad.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    bad.write(Buffer.from([0xff, 0xff, 0xff, 0xf0]));
    await wasClosed;
    expect(await good.client.add(2, 2)).toBe(4);
    good.close();
  });

  test('a malformed message header closes that connection only', async () => {
    const { port } = await start();
    const good = await connect(port);
    const bad = await rawSocket(port);
    const wasClosed = closed(bad);
    bad.write(Buffer.from([0, 0, 0, 6, 0x80, 0x05, 0, 1, 0, 0]));
    await wasClosed;
    expect(await good.client.add(2, 3)).toBe(5);
    good.close();
  });

  test('a connection silent in the middle of a frame is closed after frameTimeoutMs; an idle one between calls is not', async () => {
    const { port } = await start({ frameTimeoutMs: 200 });
    const idle = await connect(port);
    const stuck = await rawSocket(port);
    const closedAfter = closed(stuck);
    // A strict binary frame's first bytes (garbage would be refused at once by wire detection).
    stuck.write(Buffer.from([0, 0, 0, 100, 0x80, 0x01, 0, 1]));
    const ms = await closedAfter;
    expect(ms).toBeGreaterThanOrEqual(150);
    await new Promise((r) => setTimeout(r, 100));
    expect(await idle.client.add(3, 3)).toBe(6);
    idle.close();
  });

  test('a client that disconnects while its calls are queued: the calls leave the queue and their handlers never run', async () => {
    const { server, port } = await start({ workers: 1, limits: { add: { rate: 5, burst: 1 } } });
    const leaving = await connect(port);
    for (let k = 0; k < 6; k++) void leaving.client.add(k, k).catch(() => undefined);
    await expect.poll(() => server.stats().queued).toBe(5);
    leaving.connection.destroy();
    await expect.poll(() => server.stats().refused.disconnected).toBe(5);
    expect(server.stats().queued).toBe(0);
    const observer = await connect(port);
    await new Promise((r) => setTimeout(r, 300));
    const counters = await observer.client.counters();
    expect(Number((counters.add as { toNumber?: () => number })?.toNumber?.() ?? counters.add)).toBe(1);
    observer.close();
  });

  test('a worker that crashes fails only its in-flight call, which is answered; the pool replaces the worker', async () => {
    const { server, port } = await start({ workers: 2, handler: fileURLToPath(new URL('../fixtures/crashing-handler.js', import.meta.url)) });
    const a = await connect(port);
    const b = await connect(port);
    const crash = (await a.client.fail('crash-worker').catch((e: unknown) => e)) as AppException;
    expect(crash.type).toBe(6);
    expect(crash.message).toMatch(/worker/);
    expect(await b.client.add(5, 5)).toBe(10);
    expect(await a.client.add(6, 6)).toBe(12);
    await expect.poll(() => server.stats().workerFailures).toBe(1);
    a.close();
    b.close();
  });

  test('close() lets running calls finish within its deadline and answers queued ones past it with TApplicationException', async () => {
    const { server, port } = await start({ workers: 1, limits: { add: { rate: 1, periodMs: 10_000, burst: 1 } } });
    const { client } = await connect(port);
    await client.ping(); // the worker is up, so the deadline below is not spent starting it
    const running = client.work(100_000).then(
      () => 'finished',
      (e: unknown) => e,
    );
    const queued = [client.add(1, 1), client.add(2, 2)].map((p) => p.catch((e: unknown) => e as AppException));
    await expect.poll(() => server.stats().queued).toBe(1);
    await server.close({ timeoutMs: 1000 });
    expect(await running).toBe('finished');
    const [first, second] = await Promise.all(queued);
    expect(first).toBe(2);
    expect((second as AppException).message).toBe('server shutting down');
  });
});

describe('limits shared with handler code in workers', () => {
  test('handlers in 2 workers waiting on one shared limiter (createHandler context) are paced by one count, and worker timers fire', async () => {
    const { fileURLToPath } = await import('node:url');
    const handler = fileURLToPath(new URL('../fixtures/paced-handler.js', import.meta.url));
    const { port } = await start({ workers: 2, handler, limits: { '@downstream': { rate: 20, burst: 1 } } });
    const { client, close } = await connect(port);
    await client.ping();
    const started = performance.now();
    // Calls a few ms apart go out in separate batches, which the pool spreads over its workers.
    const calls: Promise<string>[] = [];
    for (let k = 0; k < 6; k++) {
      calls.push(client.fail('paced'));
      await new Promise((r) => setTimeout(r, 5));
    }
    const answers = await Promise.all(calls);
    const threads = new Set(answers.map((a) => /thread (\d+)/.exec(a)![1]));
    expect(threads.size).toBe(2);
    // One shared bucket of 20/s, burst 1: six calls need at least 5 × 50 ms whichever worker ran
    // them; two unshared buckets would let them through in about half that.
    expect(performance.now() - started).toBeGreaterThanOrEqual(245);
    close();
  });
});
