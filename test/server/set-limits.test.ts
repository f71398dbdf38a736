import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, test } from 'vitest';
import type { ThreadedServer } from '../../src/server/threaded-server.js';
import type { ThreadedServerOptions } from '../../src/server/server-options.js';
import { connect, handlerPath, serverModule, servicePath, startServer, type CalculatorClient } from './calculator.js';

const limitsHandler = fileURLToPath(new URL('../fixtures/limits-handler.js', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let running: ThreadedServer | undefined;
const clients: (() => void)[] = [];
afterEach(async () => {
  for (const close of clients.splice(0)) close();
  await running?.close({ timeoutMs: 1000 });
  running = undefined;
});

async function start(options: Partial<ThreadedServerOptions>): Promise<{ server: ThreadedServer; port: number }> {
  const started = await startServer(options);
  running = started.server;
  return started;
}

async function clientsOf(port: number, count: number): Promise<CalculatorClient[]> {
  const list: CalculatorClient[] = [];
  for (let i = 0; i < count; i++) {
    const { client, close } = await connect(port);
    clients.push(close);
    list.push(client);
  }
  return list;
}

describe('server.setLimits under load from real clients', () => {
  test('a rate limit raised then lowered in place: every call is answered, none refused, and the rate follows each change', async () => {
    const { server, port } = await start({ workers: 2, limits: { add: { rate: 100, burst: 5 } } });
    const conns = await clientsOf(port, 8);
    const t0 = performance.now();
    const done: number[] = [];
    const calls = conns.flatMap((client, c) =>
      Array.from({ length: 100 }, (_, k) =>
        client.add(c, k).then((sum) => {
          expect(sum).toBe(c + k);
          done.push(performance.now() - t0);
        }),
      ),
    );
    // Admissions as the server counts them, sampled a moment after each change and just before the next.
    const admitted = (): { at: number; n: number } => ({ at: performance.now(), n: server.stats().admitted });
    const perSecond = (a: { at: number; n: number }, b: { at: number; n: number }): number => ((b.n - a.n) * 1000) / (b.at - a.at);
    await sleep(100);
    const first = admitted();
    await sleep(500);
    const beforeRaise = admitted();
    expect(server.setLimits({ add: { rate: 400, burst: 5 } })).toEqual(['add 100/s, burst 5 → 400/s, burst 5']);
    await sleep(50);
    const afterRaise = admitted();
    await sleep(550);
    const beforeLower = admitted();
    expect(server.setLimits({ add: { rate: 200, burst: 5 } })).toEqual(['add 400/s, burst 5 → 200/s, burst 5']);
    await sleep(50);
    const afterLower = admitted();
    await sleep(550);
    const end = admitted();
    await Promise.all(calls);
    expect(done.length).toBe(800);
    expect(server.stats().refused).toMatchObject({ queue_full: 0, queue_timeout: 0 });
    // 100/s, then 400/s, then 200/s: never above the limit in force, and each well past the one
    // before (the lower bands leave room for two cores shared with other work).
    expect(perSecond(first, beforeRaise)).toBeGreaterThan(70);
    expect(perSecond(first, beforeRaise)).toBeLessThan(110);
    expect(perSecond(afterRaise, beforeLower)).toBeGreaterThan(200);
    expect(perSecond(afterRaise, beforeLower)).toBeLessThan(415);
    expect(perSecond(afterLower, end)).toBeGreaterThan(120);
    expect(perSecond(afterLower, end)).toBeLessThan(210);
    expect(Object.keys(server.describeLimits().limits)).toEqual(['add']);
    expect(server.describeLimits().limits).toMatchObject({ add: { kind: 'token-bucket', rate: 200, periodMs: 1000, burst: 5 } });
  });

  test('a limit replaced by one of another kind, then removed: the calls waiting on it move to the new limit, then start at once; none is lost or refused', async () => {
    const { server, port } = await start({ workers: 2, limits: { sleep: { rate: 20, burst: 1 } } });
    const conns = await clientsOf(port, 4);
    const finished: number[] = [];
    const calls = conns.flatMap((client) =>
      Array.from({ length: 25 }, () =>
        client.sleep(30).then((ms) => {
          expect(ms).toBe(30);
          finished.push(performance.now());
        }),
      ),
    );
    await sleep(300);
    const admittedBefore = server.stats().admitted;
    expect(admittedBefore).toBeLessThan(15);
    // Rate → concurrency: a new limiter; the ~90 waiting calls move to it, 3 at a time.
    expect(server.setLimits({ sleep: { concurrency: 3 } })).toEqual(['sleep 20/s, burst 1 → concurrency 3']);
    await sleep(150);
    const s = server.stats();
    expect(s.running).toBeLessThanOrEqual(3);
    expect(s.running).toBeGreaterThan(0);
    expect(server.setLimits({})).toEqual(['sleep removed (was concurrency 3)']);
    const removedAt = performance.now();
    await Promise.all(calls);
    expect(finished.length).toBe(100);
    // Unlimited: whatever still waited started at once (each call sleeps 30 ms).
    expect(Math.max(...finished) - removedAt).toBeLessThan(1000);
    expect(server.stats().refused).toMatchObject({ queue_full: 0, queue_timeout: 0, disconnected: 0 });
    expect(server.stats().completed).toBe(100);
    expect(server.describeLimits().limits).toEqual({});
  });

  test('with fairness, calls waiting in the fair queue of a replaced limit move to the new limit’s fair queue', async () => {
    const { server, port } = await start({ workers: 1, limits: { add: { rate: 10, burst: 1 } }, fairness: { flow: 'connection' } });
    const conns = await clientsOf(port, 3);
    const calls = conns.flatMap((client) => Array.from({ length: 10 }, (_, k) => client.add(k, 1)));
    await sleep(200);
    server.setLimits({ add: { maxCalls: 100, periodMs: 1000 } });
    const sums = await Promise.all(calls);
    expect(sums.length).toBe(30);
    expect(server.stats().refused).toMatchObject({ queue_full: 0, queue_timeout: 0 });
  });

  test('the workers’ handler context follows: added, changed and removed limiters, in every worker, and in a worker started after the change', async () => {
    const { server, port } = await start({ workers: 2, handler: limitsHandler, limits: { add: { rate: 50 }, '@downstream': { rate: 5 } } });
    const [client] = await clientsOf(port, 1);
    /**
     * What each worker thread sees, asking until both answered: a sleeping call keeps one worker
     * busy, so piscina hands the next batch to the other.
     */
    const views = async (): Promise<Map<number, Record<string, number>>> => {
      const seen = new Map<number, Record<string, number>>();
      const sleepers: Promise<unknown>[] = [];
      for (let k = 0; k < 40 && seen.size < 2; k++) {
        sleepers.push(client!.sleep(40));
        await sleep(10);
        const view = JSON.parse(await client!.fail('limits')) as { thread: number; limits: Record<string, number> };
        seen.set(view.thread, view.limits);
      }
      await Promise.all(sleepers);
      return seen;
    };
    server.setLimits({ add: { rate: 80 }, '@downstream': { concurrency: 2 }, '@export': { maxCalls: 9 } });
    await sleep(50);
    let seen = await views();
    expect(seen.size).toBe(2);
    for (const limits of seen.values()) expect(limits).toEqual({ add: 80, '@downstream': 2, '@export': 9 });
    // A worker that dies is replaced from the start-up workerData; it catches up when ready.
    await client!.fail('crash-worker').catch(() => {});
    await sleep(500);
    seen = await views();
    expect(seen.size).toBe(2);
    for (const limits of seen.values()) expect(limits).toEqual({ add: 80, '@downstream': 2, '@export': 9 });
    server.setLimits({ add: { rate: 80 } });
    await sleep(50);
    seen = await views();
    for (const limits of seen.values()) expect(limits).toEqual({ add: 80 });
  });

  test('a per-key limit raised in place while 3 clients each have calls waiting: same table, counters and waiting calls; no key starts a fresh burst (admissions right after the change follow the converted buckets), none is lost or refused', async () => {
    const { server, port } = await start({ workers: 2, limits: { add: { rate: 20, burst: 10, perKey: 'connection' } } });
    const keyed = server.limits.keyedFor('add')!.limiter;
    const conns = await clientsOf(port, 3);
    const calls = conns.flatMap((client, c) => Array.from({ length: 40 }, (_, k) => client.add(c * 100, k)));
    // Each connection's burst of 10 at once, then one call every 50 ms: about 20 calls of each key
    // still wait when the limit is raised.
    await sleep(500);
    const before = keyed.snapshot();
    expect(before.queued).toBeGreaterThan(45);
    const changedAt = performance.now();
    expect(server.setLimits({ add: { rate: 40, burst: 10, perKey: 'connection' } })).toEqual([
      'add 20/s, burst 10, per connection → 40/s, burst 10, per connection',
    ]);
    await sleep(30);
    const after = keyed.snapshot();
    const elapsed = (performance.now() - changedAt) / 1000;
    // Each key's bucket was empty (its calls were waiting): converted, it misses all 10 tokens at
    // 40/s, so in the moments after the change each key starts at most 1 + 40 × elapsed calls.
    // Rebuilt, every key would have started 10 at once.
    expect(after.admitted - before.admitted).toBeLessThanOrEqual(3 * (1 + 40 * elapsed));
    expect(server.limits.keyedFor('add')!.limiter).toBe(keyed);
    const sums = await Promise.all(calls);
    expect(sums).toEqual(conns.flatMap((_, c) => Array.from({ length: 40 }, (_, k) => c * 100 + k)));
    expect(keyed.snapshot()).toMatchObject({ admitted: 120, inserted: 3, queued: 0, refused: { queue_full: 0, queue_timeout: 0, aborted: 0 } });
    expect(server.stats().refused).toMatchObject({ queue_full: 0, queue_timeout: 0, disconnected: 0 });
    expect(server.describeLimits().limits).toMatchObject({ add: { rate: 40, burst: 10 } });
    // Another key spec builds a new table; the calls waiting on the old one move to it.
    const more = conns.map((client, c) => client.add(c, 1));
    expect(server.setLimits({ add: { rate: 40, burst: 10, perKey: 'address' } })).toEqual(['add 40/s, burst 10, per connection → 40/s, burst 10, per address']);
    expect(server.limits.keyedFor('add')!.limiter).not.toBe(keyed);
    expect(await Promise.all(more)).toEqual([1, 2, 3]);
  });

  test('a limit for a method the service does not have is refused at listen and by setLimits, naming the methods; an invalid setLimits changes nothing', async () => {
    const { createThreadedServer } = await serverModule();
    const bad = createThreadedServer({ service: servicePath, handler: handlerPath, workers: 1, limits: { gett: { rate: 1 } } });
    await expect(bad.listen(0)).rejects.toThrow(
      /limits\.gett: the server has no method "gett"; its methods: add, echo, ping, record, divide, translate, work, sleep, fail, counters/,
    );
    await bad.close({ timeoutMs: 0 });
    const { server } = await start({ workers: 1, limits: { add: { rate: 10 } } });
    expect(() => server.setLimits({ add: { rate: 20 }, ad: { rate: 5 } })).toThrow(/limits\.ad: the server has no method "ad" \(did you mean "add"\?\)/);
    expect(() => server.setLimits({ add: { rate: 20 }, echo: { rate: -1 } })).toThrow(/limits\.echo: rate must be greater than 0/);
    expect(() => server.setLimits({ add: { rate: 20, brust: 2 } } as never)).toThrow(/limits\.add: unknown option "brust"/);
    expect(Object.keys(server.describeLimits().limits)).toEqual(['add']);
    expect(server.describeLimits().limits).toMatchObject({ add: { kind: 'token-bucket', rate: 10, burst: 10 } });
  });
});
