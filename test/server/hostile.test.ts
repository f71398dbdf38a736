// The threaded server against clients and handlers that misbehave: wrong message types, handlers
// that never finish or block their thread, clients that never read, idle or trickling
// connections, too many connections, handler modules that cannot start. Real sockets on
// 127.0.0.1, real worker threads; every wait is bounded.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import type net from 'node:net';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import type { ThreadedServer } from '../../src/server/threaded-server.js';
import type { ThreadedServerOptions } from '../../src/server/server-options.js';
import { ExceptionType } from '../../src/thrift/application-exception.js';
import { stalledMs, watchStalls } from '../helpers.js';
import { closed, connect, rawSocket, startServer, type AppException } from './calculator.js';
import { callFrame, MessageType, ReplyCollector, settledWithin, within } from './frames.js';

const fixturePath = (name: string): string => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const MiB = 1024 * 1024;

/** The server's counters, the hardening ones included (read loosely: a missing one reads undefined). */
type Stats = ReturnType<ThreadedServer['stats']> & { lateReplies?: number; handlerTimeouts?: number; workerReplacements?: number; idleClosed?: number };
const stats = (server: ThreadedServer): Stats => server.stats();

/** The example service on the threaded server, its log lines collected. */
async function start(options: Partial<ThreadedServerOptions>): Promise<{ server: ThreadedServer; port: number; log: string[] }> {
  const log: string[] = [];
  const { server, port } = await startServer({ log: (line) => log.push(line), ...options });
  return { server, port, log };
}

const addArgs = (a: number, b: number) => [
  { id: 1, i32: a },
  { id: 2, i32: b },
];

describe('threaded server against hostile clients and handlers', () => {
  test('a CALL-typed message for a oneway method is answered INVALID_MESSAGE_TYPE, and 300 of them (one per turn) leave the server serving a fresh client', async () => {
    const { server, port } = await start({ workers: 1, handlerTimeoutMs: 5000 });
    try {
      const socket = await rawSocket(port);
      const replies = new ReplyCollector(socket, 'binary');
      for (let k = 0; k < 300; k++) {
        socket.write(callFrame('binary', 'record', MessageType.CALL, 1000 + k, [{ id: 1, binary: `event ${k}` }]));
        await new Promise((resolve) => setImmediate(resolve));
      }
      const got = await replies.waitFor(300, 5000);
      expect(got.map((r) => r.seqid).sort((a, b) => a - b)).toEqual(Array.from({ length: 300 }, (_, k) => 1000 + k));
      for (const r of got) {
        expect(r).toMatchObject({ name: 'record', type: MessageType.EXCEPTION });
        expect(r.exception?.type).toBe(ExceptionType.INVALID_MESSAGE_TYPE);
      }

      // A ONEWAY-typed message for a two-way method runs, gets no reply, and the next call on the
      // same socket is answered (and is the next reply on it).
      socket.write(callFrame('binary', 'add', MessageType.ONEWAY, 5000, addArgs(1, 2)));
      socket.write(callFrame('binary', 'add', MessageType.CALL, 5001, addArgs(20, 22)));
      const next = (await replies.waitFor(301, 5000))[300]!;
      expect(next).toMatchObject({ name: 'add', type: MessageType.REPLY, seqid: 5001, i32: 42 });
      await sleep(300);
      expect(replies.replies.map((r) => r.seqid).filter((s) => s >= 5000)).toEqual([5001]);

      const fresh = await connect(port);
      expect(await within(fresh.client.add(2, 3), 5000, 'add(2, 3) on a fresh client')).toBe(5);
      // One worker: its counters show `record` never ran and the ONEWAY-typed `add` did.
      const counters = await within(fresh.client.counters(), 5000, 'counters()');
      expect(Object.keys(counters)).not.toContain('record');
      expect(Number(String(counters.add))).toBe(3); // the oneway-typed add, add(20, 22), add(2, 3)
      await expect.poll(() => stats(server).running, { timeout: 2000 }).toBe(0);
      socket.destroy();
      fresh.close();
    } finally {
      await server.close({ timeoutMs: 100 });
    }
  }, 20_000);

  test('a handler that never settles is answered INTERNAL_ERROR at handlerTimeoutMs and its concurrency permit comes back', async () => {
    const { server, port } = await start({ workers: 2, handlerTimeoutMs: 500, limits: { sleep: { concurrency: 2 } } });
    try {
      const { client, close } = await connect(port);
      const watch = watchStalls();
      const outcomes = await Promise.all(Array.from({ length: 4 }, () => settledWithin(client.sleep(2_000_000_000), 4000)));
      const stalled = stalledMs(watch.stop()); // this process (the I/O thread, whose timer answers) was held up as long
      for (const o of outcomes) {
        expect(o.pending, 'a never-settling sleep was not answered within 4 s').toBeUndefined();
        const error = o.error as AppException;
        expect(error).toBeInstanceOf(Error);
        expect(error.type).toBe(ExceptionType.INTERNAL_ERROR);
        expect(error.message).toContain('sleep');
        expect(error.message).toContain('500');
        expect(o.ms).toBeGreaterThan(400);
        expect(o.ms).toBeLessThan(2500 + stalled);
      }
      // Two at a time: the second pair waited for the first pair's permits.
      expect(Math.max(...outcomes.map((o) => o.ms))).toBeGreaterThan(900);
      expect(await within(client.add(1, 2), 2000, 'add after the timeouts')).toBe(3);
      expect(await within(Promise.all([client.sleep(10), client.sleep(10), client.sleep(10)]), 2000, 'sleep(10) × 3 after the timeouts')).toEqual([10, 10, 10]);
      expect(stats(server).handlerTimeouts).toBeGreaterThanOrEqual(4);
      await expect.poll(() => stats(server).running, { timeout: 2000 }).toBe(0);
      close();
    } finally {
      await server.close({ timeoutMs: 100 });
    }
  }, 20_000);

  test('a result arriving after handlerTimeoutMs is dropped and counted, and the connection keeps working', async () => {
    const { server, port } = await start({ workers: 1, handlerTimeoutMs: 300 });
    try {
      const socket = await rawSocket(port);
      const replies = new ReplyCollector(socket, 'binary');
      socket.write(callFrame('binary', 'sleep', MessageType.CALL, 7, [{ id: 1, i32: 800 }]));
      const [timedOut] = await replies.waitFor(1, 2000);
      expect(timedOut).toMatchObject({ seqid: 7, type: MessageType.EXCEPTION });
      expect(timedOut!.exception?.type).toBe(ExceptionType.INTERNAL_ERROR);
      await sleep(900); // the handler's result comes back now
      await expect.poll(() => stats(server).lateReplies, { timeout: 2000 }).toBeGreaterThanOrEqual(1);
      socket.write(callFrame('binary', 'add', MessageType.CALL, 8, addArgs(3, 4)));
      const all = await replies.waitFor(2, 2000);
      expect(all[1]).toMatchObject({ seqid: 8, type: MessageType.REPLY, i32: 7 });
      await sleep(100);
      expect(replies.replies).toHaveLength(2); // nothing else: the late result never reached the socket
      socket.destroy();
    } finally {
      await server.close({ timeoutMs: 100 });
    }
  }, 20_000);

  test('a worker blocked in a synchronous loop is replaced and a fresh client is served while it is still blocked', async () => {
    const { server, port, log } = await start({ workers: 1, handlerTimeoutMs: 500 });
    try {
      const blocker = await connect(port);
      const watch = watchStalls();
      const startedAt = performance.now();
      const blocked = settledWithin(blocker.client.work(20_000_000), 8000); // 20 s of CPU
      await sleep(1500);
      const fresh = await connect(port);
      const added = await settledWithin(fresh.client.add(1, 2), 6000 - (performance.now() - startedAt));
      expect(added.pending, 'add(1, 2) not answered within 6 s of the blocking call').toBeUndefined();
      expect(added.value).toBe(3);
      const b = await blocked;
      expect(b.pending, 'the blocking call was never answered').toBeUndefined();
      expect((b.error as AppException).type).toBe(ExceptionType.INTERNAL_ERROR);
      expect(b.ms).toBeLessThan(5000 + stalledMs(watch.stop()));
      expect(stats(server).workerReplacements).toBeGreaterThanOrEqual(1);
      expect(log.filter((line) => /replaced/.test(line))).toHaveLength(stats(server).workerReplacements);
      const metrics = await server.metricsRegistry().metrics();
      expect(metrics).toMatch(/^tql_server_worker_replacements_total(\{[^}]*\})? [1-9]/m);
      await expect.poll(() => stats(server).running, { timeout: 2000 }).toBe(0);
      blocker.close();
      fresh.close();
    } finally {
      await server.close({ timeoutMs: 100 });
    }
  }, 20_000);

  test('with 2 workers both blocked in synchronous loops, both are replaced and a fresh client is served', async () => {
    const { server, port, log } = await start({ workers: 2, handlerTimeoutMs: 500 });
    try {
      const a = await connect(port);
      const b = await connect(port);
      const startedAt = performance.now();
      const blockedA = settledWithin(a.client.work(20_000_000), 9000);
      await sleep(200); // a separate hand-off: the idle worker takes it
      const blockedB = settledWithin(b.client.work(20_000_000), 9000);
      await sleep(1500);
      const fresh = await connect(port);
      const added = await settledWithin(fresh.client.add(1, 2), 6000 - (performance.now() - startedAt));
      expect(added.pending, 'add(1, 2) not answered within 6 s of the blocking calls').toBeUndefined();
      expect(added.value).toBe(3);
      for (const outcome of [await blockedA, await blockedB]) {
        expect(outcome.pending, 'a blocking call was never answered').toBeUndefined();
        expect((outcome.error as AppException).type).toBe(ExceptionType.INTERNAL_ERROR);
      }
      expect(stats(server).workerReplacements).toBeGreaterThanOrEqual(2);
      expect(log.filter((line) => /replaced/.test(line)).length).toBeGreaterThanOrEqual(2);
      await expect.poll(() => stats(server).running, { timeout: 2000 }).toBe(0);
      for (const c of [a, b, fresh]) c.close();
    } finally {
      await server.close({ timeoutMs: 100 });
    }
  }, 20_000);

  test('a client that never reads its replies costs bounded memory and does not slow others', async () => {
    const watch = watchStalls();
    const r = await neverReadingClient({ slowWorkerMicros: 0 });
    // The server runs in a child process: this process's stalls stand for the machine's load there.
    const stalled = stalledMs(watch.stop());
    expect(r.stalled, `the server read all ${r.sent} frames without stopping`).toBe(true);
    expect(r.rssGrowth).toBeLessThan(100 * MiB);
    expect(r.maxLatencyWhileFlooding).toBeLessThan(2000 + stalled);
    expect(r.twentyAddsMs).toBeLessThan(2000 + stalled);
  }, 30_000);

  test('a client that never reads its replies costs bounded memory even when the worker falls behind', async () => {
    // The only worker is busy for 1.5 s when the flood starts, so calls pile up in flight: the
    // bound must hold in bytes, not only in calls (1000 calls of 64 KiB are 64 MiB each way).
    const r = await neverReadingClient({ slowWorkerMicros: 1_500_000 });
    expect(r.stalled, `the server read all ${r.sent} frames without stopping`).toBe(true);
    expect(r.rssGrowth).toBeLessThan(100 * MiB);
  }, 30_000);

  test('a connection idle between frames is closed after idleTimeoutMs', async () => {
    const { server, port } = await start({ workers: 1, idleTimeoutMs: 300 });
    try {
      // A busy client is never idle: a call every 100 ms for 1.2 s.
      const busy = await connect(port);
      let busyClosed = false;
      busy.connection.on('close', () => {
        busyClosed = true;
      });

      const watch = watchStalls();
      const silent = await rawSocket(port);
      const silentClosed = settledWithin(closed(silent), 3000);

      const oneCall = await rawSocket(port);
      const replies = new ReplyCollector(oneCall, 'binary');
      oneCall.write(callFrame('binary', 'add', MessageType.CALL, 1, addArgs(1, 2)));
      await replies.waitFor(1, 2000);
      const oneCallClosed = settledWithin(closed(oneCall), 3000);

      for (let k = 0; k < 12; k++) {
        expect(await within(busy.client.add(k, k), 1000, 'add on the busy connection')).toBe(2 * k);
        await sleep(100);
      }
      expect(busyClosed).toBe(false);

      const s = await silentClosed;
      const o = await oneCallClosed;
      const stalled = stalledMs(watch.stop()); // the I/O thread's sweep runs late by as much
      expect(s.pending, 'a silent connection was not closed within 3 s').toBeUndefined();
      expect(s.value).toBeGreaterThan(200);
      expect(s.value).toBeLessThan(1000 + stalled);
      expect(o.pending, 'a connection silent after one call was not closed within 3 s').toBeUndefined();
      expect(o.value).toBeGreaterThan(200);
      expect(o.value).toBeLessThan(1000 + stalled);
      expect(stats(server).idleClosed).toBeGreaterThanOrEqual(2);
      busy.close();
    } finally {
      await server.close({ timeoutMs: 100 });
    }
  }, 20_000);

  test('a frame trickled one byte every 100 ms is closed at frameTimeoutMs', async () => {
    const { server, port, log } = await start({ workers: 1, idleTimeoutMs: 5000, frameTimeoutMs: 500 });
    try {
      const socket = await rawSocket(port);
      socket.on('error', () => {});
      const frame = callFrame('binary', 'echo', MessageType.CALL, 1, [{ id: 1, binary: Buffer.alloc(200, 1) }]); // 235 bytes: 23 s at this pace
      const watch = watchStalls();
      const whenClosed = settledWithin(closed(socket), 3000);
      let at = 0;
      const timer = setInterval(() => {
        if (!socket.destroyed && at < frame.length) socket.write(frame.subarray(at, ++at));
      }, 100);
      const c = await whenClosed;
      clearInterval(timer);
      expect(c.pending, `still open after 3 s and ${at} bytes`).toBeUndefined();
      expect(c.value).toBeGreaterThan(500);
      expect(c.value).toBeLessThan(1500 + stalledMs(watch.stop()));
      expect(stats(server).protocolErrors).toBeGreaterThanOrEqual(1);
      expect(log.some((line) => /frame/.test(line))).toBe(true);
    } finally {
      await server.close({ timeoutMs: 100 });
    }
  }, 20_000);

  test('a length prefix announcing 16 MiB followed by nothing costs no memory and is closed at frameTimeoutMs', async () => {
    const { server, port } = await start({ workers: 1, idleTimeoutMs: 5000, frameTimeoutMs: 500 });
    try {
      const before = process.memoryUsage().arrayBuffers;
      const sockets = await Promise.all(Array.from({ length: 20 }, () => rawSocket(port)));
      const prefix = Buffer.alloc(4);
      prefix.writeInt32BE(16 * MiB, 0);
      const watch = watchStalls();
      const whenClosed = sockets.map((s) => settledWithin(closed(s), 3000));
      for (const s of sockets) s.write(prefix);
      await sleep(200);
      const growth = process.memoryUsage().arrayBuffers - before;
      console.log(`20 connections announcing 16 MiB frames: arrayBuffers growth ${(growth / MiB).toFixed(1)} MiB`);
      expect(growth).toBeLessThan(32 * MiB); // 320 MiB if the frames were allocated up front
      const closings = await Promise.all(whenClosed);
      const stalled = stalledMs(watch.stop());
      for (const c of closings) {
        expect(c.pending, 'a connection announcing 16 MiB was still open after 3 s').toBeUndefined();
        expect(c.value).toBeGreaterThan(400);
        expect(c.value).toBeLessThan(1500 + stalled);
      }
      expect(stats(server).protocolErrors).toBeGreaterThanOrEqual(20);
    } finally {
      await server.close({ timeoutMs: 100 });
    }
  }, 20_000);

  test('maxConnections refuses extra connections with a log line, and a freed slot is reused', async () => {
    const { server, port, log } = await start({ workers: 1, maxConnections: 5 });
    try {
      const clients = [];
      for (let k = 0; k < 5; k++) {
        const c = await connect(port);
        expect(await within(c.client.add(k, 1), 2000, `add on connection ${k}`)).toBe(k + 1);
        clients.push(c);
      }
      const extra = await Promise.all(Array.from({ length: 3 }, () => rawSocket(port)));
      for (const outcome of await Promise.all(extra.map((s) => settledWithin(closed(s), 2000)))) {
        expect(outcome.pending, 'a connection over maxConnections stayed open').toBeUndefined();
      }
      const refusals = log.filter((line) => /maxConnections/.test(line));
      expect(refusals.length).toBeGreaterThanOrEqual(1);
      expect(refusals.length).toBeLessThanOrEqual(3);
      for (const [k, c] of clients.entries()) expect(await within(c.client.add(k, 2), 2000, `add on connection ${k} after the refusals`)).toBe(k + 2);

      clients[0]!.close();
      await expect.poll(() => stats(server).connections, { timeout: 2000 }).toBeLessThanOrEqual(4);
      const again = await connect(port);
      expect(await within(again.client.add(40, 2), 2000, 'add on the connection in the freed slot')).toBe(42);
      again.close();
      for (const c of clients.slice(1)) c.close();
    } finally {
      await server.close({ timeoutMs: 100 });
    }
  }, 20_000);

  test('listen() rejects with one line when createHandler throws in the workers', async () => {
    const { result, exitedAfterMs } = await listenOnce('throwing-handler.js', {});
    expect(result.ok, 'listen() resolved').toBe(false);
    expect(result.message).toMatch(/throwing-handler/);
    expect(result.message).toMatch(/createHandler threw: boom/);
    expect(result.message).not.toContain('\n');
    expect(exitedAfterMs, `the process did not exit by itself after the rejection (still active: ${String(result.resources)})`).not.toBeNull();
  }, 20_000);

  test('listen() rejects when createHandler never resolves, after startTimeoutMs', async () => {
    const watch = watchStalls();
    const { result, exitedAfterMs } = await listenOnce('never-ready-handler.js', { startTimeoutMs: 1500 });
    expect(result.ok, 'listen() resolved').toBe(false);
    expect(result.ms).toBeGreaterThan(1400);
    // Timed in a child process: this process's stalls stand for the machine's load there.
    expect(result.ms).toBeLessThan(5000 + stalledMs(watch.stop()));
    expect(result.message).toMatch(/never-ready-handler/);
    expect(result.message).toMatch(/1500 ms/);
    expect(result.message).not.toContain('\n');
    expect(exitedAfterMs, `the process did not exit by itself after the rejection (still active: ${String(result.resources)})`).not.toBeNull();
  }, 20_000);

  test('a handler module that cannot be imported in the workers makes listen() reject', async () => {
    const watch = watchStalls();
    const { result, exitedAfterMs } = await listenOnce('worker-only-import-error-handler.js', { startTimeoutMs: 10_000 });
    expect(result.ok, 'listen() resolved').toBe(false);
    expect(result.ms).toBeLessThan(5000 + stalledMs(watch.stop())); // the import error, not the 10 s start timeout (this process's stalls stand for the child's)
    expect(result.message).toMatch(/worker-only-import-error-handler/);
    expect(result.message).toMatch(/no worker/);
    expect(result.message).not.toContain('\n');
    expect(exitedAfterMs, `the process did not exit by itself after the rejection (still active: ${String(result.resources)})`).not.toBeNull();
  }, 20_000);

  test('handler exceptions answered INTERNAL_ERROR are logged with the method name, rate-limited', async () => {
    const { server, port, log } = await start({ workers: 1 });
    try {
      const { client, close } = await connect(port);
      expect(await within(client.add(1, 1), 2000, 'add')).toBe(2);
      const mentions = (): string[] => log.filter((line) => /\bfail\b/.test(line));
      expect(mentions()).toEqual([]);
      const error = (await within(
        client.fail('throw').catch((e: unknown) => e),
        2000,
        "fail('throw')",
      )) as AppException;
      expect(error.type).toBe(ExceptionType.INTERNAL_ERROR);
      await expect.poll(() => mentions().length, { timeout: 1000 }).toBe(1);
      expect(mentions()[0]).toMatch(/handler failed on purpose/);
      // 50 more in a burst: logged, but not line by line.
      await within(Promise.all(Array.from({ length: 50 }, () => client.fail('throw').catch(() => undefined))), 5000, "50 × fail('throw')");
      await sleep(100);
      expect(mentions().length).toBeLessThan(20);
      close();
    } finally {
      await server.close({ timeoutMs: 100 });
    }
  }, 20_000);
});

/**
 * The example service (1 worker) in a child process, and a raw socket that sends up to 3,000
 * framed echo calls of 64 KiB and never reads (writes wait for 'drain' at most 2 s, then count as
 * stalled), while a normal client calls add() every 100 ms. With `slowWorkerMicros`, the worker
 * is first kept busy that long by a work() call. Reports the server's RSS growth (after a GC on
 * both sides of the flood), latencies, and logs the figures.
 */
async function neverReadingClient({ slowWorkerMicros }: { slowWorkerMicros: number }): Promise<{
  sent: number;
  stalled: boolean;
  rssGrowth: number;
  maxLatencyWhileFlooding: number;
  twentyAddsMs: number;
}> {
  const child = spawn(process.execPath, ['--expose-gc', fixturePath('rss-server.js'), JSON.stringify({ workers: 1 })], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  const server = serverChild(child);
  let hostile: net.Socket | undefined;
  try {
    const { port } = (await server.next(10_000)) as { port: number };
    const normal = await connect(port);
    // Warm up: the steady state of a server that has echoed 64 KiB payloads is the baseline.
    for (let k = 0; k < 20; k++) expect((await within(normal.client.echo(Buffer.alloc(64 * 1024, k)), 2000, 'warm-up echo')).length).toBe(64 * 1024);
    const before = (await server.ask('mem')) as Mem;

    let slow: Promise<unknown> = Promise.resolve();
    if (slowWorkerMicros > 0) {
      const busy = await connect(port);
      slow = within(busy.client.work(slowWorkerMicros), 30_000, 'the slow work() call').finally(() => busy.close());
    }
    hostile = await rawSocket(port);
    hostile.pause(); // never read: no 'data' listener either
    const template = callFrame('binary', 'echo', MessageType.CALL, 0, [{ id: 1, binary: Buffer.alloc(64 * 1024, 0x5a) }]);
    const SEQID_AT = 4 + 4 + 4 + 'echo'.length;
    let sent = 0;
    let stalled = false;
    const latencies: number[] = [];
    let flooding = slowWorkerMicros === 0; // with a busy worker, add() would only measure the work() call
    const prober = (async () => {
      while (flooding) {
        const t = performance.now();
        await within(normal.client.add(1, 1), 5000, 'add while flooding');
        latencies.push(performance.now() - t);
        await sleep(100);
      }
    })();
    const deadline = performance.now() + 8000;
    while (sent < 3000 && performance.now() < deadline) {
      const frame = Buffer.from(template);
      frame.writeInt32BE(sent, SEQID_AT);
      sent++;
      if (!hostile.write(frame)) {
        const drained = await Promise.race([once(hostile, 'drain').then(() => true), sleep(2000).then(() => false)]);
        if (!drained) {
          stalled = true;
          break;
        }
      }
    }
    flooding = false;
    await prober;
    await slow;
    const after = (await server.ask('mem')) as Mem;

    const quick = performance.now();
    for (let k = 0; k < 20; k++) expect(await within(normal.client.add(k, 1), 2000, 'add after the flood')).toBe(k + 1);
    const twentyAddsMs = performance.now() - quick;

    const rssGrowth = after.rss - before.rss;
    const maxLatencyWhileFlooding = latencies.length > 0 ? Math.max(...latencies) : 0;
    console.log(
      `never-reading client${slowWorkerMicros > 0 ? ` (worker busy ${slowWorkerMicros / 1000} ms first)` : ''}: sent ${sent} frames of 64 KiB (${((sent * template.length) / MiB).toFixed(0)} MiB) before writes ${stalled ? 'stalled' : 'ended'}; ` +
        `server RSS ${(before.rss / MiB).toFixed(1)} -> ${(after.rss / MiB).toFixed(1)} MiB (growth ${(rssGrowth / MiB).toFixed(1)} MiB), ` +
        `arrayBuffers growth ${((after.arrayBuffers - before.arrayBuffers) / MiB).toFixed(1)} MiB; ` +
        `add latency while flooding max ${maxLatencyWhileFlooding.toFixed(1)} ms over ${latencies.length} calls; 20 adds after: ${twentyAddsMs.toFixed(0)} ms; ` +
        `server at the stall: running ${after.stats.running}, completed ${after.stats.completed - before.stats.completed}, readPauses ${String(after.stats.readPauses)}`,
    );
    hostile.destroy();
    normal.close();
    return { sent, stalled, rssGrowth, maxLatencyWhileFlooding, twentyAddsMs };
  } finally {
    hostile?.destroy();
    child.stdin.end('close\n');
    const done = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
    if (!done) child.kill('SIGKILL');
  }
}

interface Mem {
  rss: number;
  arrayBuffers: number;
  stats: { running: number; completed: number; readPauses?: number };
}

/** Line-by-line JSON conversation with test/fixtures/rss-server.js. */
function serverChild(child: ChildProcessByStdio<Writable, Readable, null>): { next(ms: number): Promise<unknown>; ask(command: string): Promise<unknown> } {
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    lines.push(line);
    for (const w of waiters.splice(0)) w();
  });
  const next = async (ms: number): Promise<unknown> => {
    const deadline = performance.now() + ms;
    while (lines.length === 0) {
      if (performance.now() > deadline) throw new Error(`no line from the server process within ${ms} ms`);
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    return JSON.parse(lines.shift()!);
  };
  return {
    next,
    ask: (command) => {
      child.stdin.write(`${command}\n`);
      return next(5000);
    },
  };
}

/** Outcome of test/fixtures/listen-once.js: what listen() did, and whether the process then exited by itself. */
async function listenOnce(
  handler: string,
  options: Partial<ThreadedServerOptions>,
): Promise<{ result: { ok: boolean; message?: string; ms: number; resources?: unknown }; exitedAfterMs: number | null }> {
  const child = spawn(process.execPath, [fixturePath('listen-once.js'), fixturePath(handler), JSON.stringify(options)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit');
  try {
    const line = await within(once(createInterface({ input: child.stdout }), 'line') as Promise<[string]>, 15_000, 'listen() in the child');
    const result = JSON.parse(line[0]) as { ok: boolean; message?: string; ms: number; resources?: unknown };
    const t = performance.now();
    const exitedBy = await Promise.race([exited.then(() => performance.now() - t), sleep(5000).then(() => null)]);
    return { result, exitedAfterMs: exitedBy };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
