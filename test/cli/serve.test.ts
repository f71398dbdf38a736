import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { stalledMs, watchStalls } from '../helpers.js';
import { cliPath, runServe, spawnServe, startServe } from '../serve-cli.js';
import { closed, connect, handlerPath, rawSocket, type AppException } from '../server/calculator.js';

const run = promisify(execFile);
const fixtureHandler = (name: string): string => fileURLToPath(new URL(`../fixtures/${name}.js`, import.meta.url));

/** A port of 127.0.0.1 held open by this process until `release()`. */
async function takenPort(): Promise<{ port: number; release: () => Promise<void> }> {
  const holder = net.createServer((socket) => socket.destroy());
  holder.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => holder.once('listening', () => resolve()));
  return { port: (holder.address() as AddressInfo).port, release: () => new Promise<void>((resolve) => holder.close(() => resolve())) };
}

/** stderr as its non-empty lines. */
const lines = (text: string): string[] =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);

describe('thrift-queue-limiter serve', () => {
  test('serves the example service with limits, prints stats lines, and shuts down cleanly on SIGTERM', async () => {
    const serve = await startServe([
      ...['--limit', 'add=200/s,burst=5', '--limit', '*=1000/s', '--max-wait', '2s'],
      ...['--stats-interval', '200ms', '--metrics-port', '0'],
    ]);
    try {
      const { client, close } = await connect(serve.port);
      expect(await Promise.all(Array.from({ length: 20 }, (_, k) => client.add(k, k)))).toEqual(Array.from({ length: 20 }, (_, k) => 2 * k));
      await expect.poll(() => /admitted \d+\/s {2}queued \d+/.test(serve.out()), { timeout: 5_000 }).toBe(true);
      const metricsUrl = /metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(serve.out())![1]!;
      const metrics = await (await fetch(metricsUrl)).text();
      expect(metrics).toContain('tql_admitted_total{limit="add"} 20');
      expect(metrics).toContain('tql_refused_total{limit="add",reason="queue_full"} 0');
      close();
    } finally {
      serve.child.kill('SIGTERM');
    }
    expect(await serve.exited).toBe(0);
    expect(serve.out()).toMatch(/SIGTERM: shutting down/);
    expect(serve.out()).toMatch(/stopped: admitted 2\d, completed 2\d, refused 0/);
  });

  test('a reader of its output that goes away (serve | head -1) does not end it: it keeps answering calls, and stops cleanly on SIGTERM', async () => {
    const serve = await startServe(['--limit', 'add=1000/s', '--stats-interval', '50ms']);
    try {
      expect(serve.out()).toMatch(/\(1 worker, /);
      // The pipe's reading end closes; the stats lines written every 50 ms from now on hit EPIPE.
      serve.child.stdout!.destroy();
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(serve.child.exitCode).toBeNull();
      const { client, close } = await connect(serve.port);
      expect(await client.add(2, 3)).toBe(5);
      close();
    } finally {
      serve.child.kill('SIGTERM');
    }
    expect(await serve.exited).toBe(0);
    expect(serve.err()).toBe('');
  });

  test('a bad --limit exits 2 with one line naming it', async () => {
    const e = await runServe(['--limit', 'add=fast']);
    expect(e.code).toBe(2);
    expect(e.stderr.trim()).toBe('thrift-queue-limiter: --limit "add=fast": expected RATE/PERIOD (e.g. 100/s), concurrency=N or adaptive');
  });

  test('a module that does not export a service exits non-zero with a one-line reason', async () => {
    const e = await runServe([], { service: handlerPath });
    expect(e.code).toBe(1);
    expect(e.stderr.trim().split('\n')).toHaveLength(1);
    expect(e.stderr).toMatch(/does not export a Thrift service \(no Processor\)/);
  });
  test('serve exits non-zero and says so when the metrics port is taken', async () => {
    const taken = await takenPort();
    try {
      const ended = await runServe(['--metrics-port', String(taken.port)]);
      expect(ended.killed, `serve still running after 15 s; stdout: ${ended.stdout} stderr: ${ended.stderr}`).toBe(false);
      expect(ended.code).toBe(1);
      const errors = lines(ended.stderr);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toContain(String(taken.port));
      expect(errors[0]).toMatch(/metrics/);
      expect(errors[0]).toMatch(/EADDRINUSE|address already in use/);
      expect(ended.stdout).not.toMatch(/serving /);
    } finally {
      await taken.release();
    }
  });

  test('serve exits non-zero when the Thrift port is taken', async () => {
    const taken = await takenPort();
    try {
      const ended = await runServe([], { port: taken.port });
      expect(ended.killed, `serve still running after 15 s; stderr: ${ended.stderr}`).toBe(false);
      expect(ended.code).toBe(1);
      const last = lines(ended.stderr).at(-1) ?? '';
      expect(last).toMatch(/^thrift-queue-limiter: /);
      expect(last).toContain(`127.0.0.1:${taken.port}`);
      expect(last).toMatch(/EADDRINUSE|address already in use/);
      expect(ended.stdout).not.toMatch(/serving /);
    } finally {
      await taken.release();
    }
  });

  test('serve exits non-zero with one line when createHandler throws', async () => {
    const ended = await runServe([], { handler: fixtureHandler('throwing-handler'), workers: 2 });
    expect(ended.killed, `serve still running after 15 s; stdout: ${ended.stdout}`).toBe(false);
    expect(ended.code).toBe(1);
    const errors = lines(ended.stderr);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/throwing-handler/);
    expect(errors[0]).toMatch(/createHandler threw: boom/);
    expect(ended.stdout).not.toMatch(/serving /);
  });

  test('serve exits non-zero when createHandler never resolves, after --start-timeout', async () => {
    const watch = watchStalls();
    const ended = await runServe(['--start-timeout', '1500ms'], { handler: fixtureHandler('never-ready-handler') });
    expect(ended.killed, `serve still running after 15 s; stdout: ${ended.stdout}`).toBe(false);
    expect(ended.code).toBe(1);
    expect(ended.ms).toBeGreaterThan(1400);
    // serve runs in a child process: this process's stalls stand for the machine's load there.
    expect(ended.ms).toBeLessThan(10_000 + stalledMs(watch.stop()));
    const errors = lines(ended.stderr);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/never-ready-handler/);
    expect(errors[0]).toMatch(/1500 ms/);
  });

  test('serve passes --handler-timeout and --idle-timeout to the server: a never-settling call is answered type 6, an idle connection is closed', async () => {
    const serve = await startServe([
      ...['--handler-timeout', '500ms', '--idle-timeout', '300ms', '--frame-timeout', '2s', '--max-connections', '50'],
      ...['--max-in-flight-per-connection', '100', '--max-pending-reply-bytes', '1000000', '--start-timeout', '10s', '--stats-interval', '200ms'],
    ]);
    const port = serve.port;
    try {
      const { client, close } = await connect(port);
      // serve runs in a child process: this process's stalls stand for the machine's load there.
      const watch = watchStalls();
      const started = performance.now();
      const error = (await Promise.race([
        client.sleep(2_000_000_000).catch((e: unknown) => e),
        new Promise((resolve) => setTimeout(() => resolve('still waiting after 5 s'), 5000)),
      ])) as AppException;
      expect(error).toBeInstanceOf(Error);
      expect(error.type).toBe(6);
      expect(error.message).toMatch(/500/);
      expect(performance.now() - started).toBeLessThan(3000 + stalledMs(watch.stop()));
      close();
      const idleWatch = watchStalls();
      const idle = await rawSocket(port);
      const idleFor = await Promise.race([closed(idle), new Promise<number>((resolve) => setTimeout(() => resolve(Infinity), 3000))]);
      idle.destroy();
      expect(idleFor).toBeLessThan(2000 + stalledMs(idleWatch.stop()));
      await expect.poll(() => /timeouts 1\b/.test(serve.out()), { timeout: 3000 }).toBe(true);
    } finally {
      serve.child.kill('SIGTERM');
    }
    expect(await serve.exited).toBe(0);
  });

  test('a bad --handler-timeout or --max-connections exits 2 with one line naming it', async () => {
    const e = await runServe(['--handler-timeout', 'soon']);
    expect(e.code).toBe(2);
    expect(e.stderr.trim()).toBe('thrift-queue-limiter: --handler-timeout must be a duration like 500ms, 5s or 2m, got "soon"');
    const m = await runServe(['--max-connections', '0']);
    expect(m.code).toBe(2);
    expect(m.stderr.trim()).toMatch(/--max-connections must be a positive whole number/);
  });

  test('--help lists the connection and timeout flags', async () => {
    const { stdout } = await run(process.execPath, [cliPath, 'serve', '--help']);
    for (const flag of [
      '--handler-timeout',
      '--frame-timeout',
      '--idle-timeout',
      '--max-connections',
      '--max-in-flight-per-connection',
      '--max-pending-reply-bytes',
      '--start-timeout',
    ]) {
      expect(stdout).toContain(flag);
    }
    expect(stdout).toMatch(/--idle-timeout DUR +close a connection idle this long, between frames too/);
  });
});

describe('serve: the metrics port for operators', () => {
  test('the metrics port opens before the workers load the handler: /readyz 503 while they do, 200 once serving, 503 while shutting down', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tql-gate-'));
    const gate = join(dir, 'open');
    const { child, out, exited, serving } = spawnServe(['--stats-interval', '1m', '--metrics-port', '0'], {
      handler: fixtureHandler('gated-handler'),
      env: { TQL_TEST_GATE: gate },
    });
    try {
      await expect.poll(() => /metrics on (http:\/\/127\.0\.0\.1:\d+)\/metrics/.test(out()), { timeout: 10_000 }).toBe(true);
      const base = /metrics on (http:\/\/127\.0\.0\.1:\d+)\/metrics/.exec(out())![1]!;
      const starting = await fetch(`${base}/readyz`);
      expect(starting.status).toBe(503);
      expect(await starting.json()).toMatchObject({ ready: false, state: 'starting' });
      expect(out()).not.toMatch(/serving /);
      writeFileSync(gate, '');
      const port = await serving;
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      const { client, close } = await connect(port);
      try {
        const slow = client.sleep(3000);
        await expect
          .poll(async () => (await (await fetch(`${base}/metrics`)).text()).includes('tql_method_admitted_total{method="sleep"} 1'), { timeout: 5000 })
          .toBe(true);
        child.kill('SIGTERM');
        await expect.poll(() => /SIGTERM: shutting down/.test(out()), { timeout: 5000 }).toBe(true);
        const closing = await fetch(`${base}/readyz`);
        expect(closing.status).toBe(503);
        expect(await closing.json()).toMatchObject({ ready: false, state: 'closing' });
        expect((await fetch(`${base}/healthz`)).status).toBe(200);
        expect(await slow).toBe(3000);
      } finally {
        close();
      }
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--metrics-host binds the metrics port on that address, and only there', async () => {
    const { child, out, exited, serving } = spawnServe(['--stats-interval', '1m', '--metrics-port', '0', '--metrics-host', '127.0.0.2']);
    try {
      await expect.poll(() => /metrics on http:\/\/127\.0\.0\.2:(\d+)\/metrics/.test(out()), { timeout: 10_000 }).toBe(true);
      const port = Number(/metrics on http:\/\/127\.0\.0\.2:(\d+)\/metrics/.exec(out())![1]);
      await serving;
      expect((await fetch(`http://127.0.0.2:${port}/healthz`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.2:${port}/limits`)).status).toBe(200);
      const elsewhere = await fetch(`http://127.0.0.1:${port}/healthz`).catch((e: Error) => e);
      expect(elsewhere).toBeInstanceOf(Error);
      expect(String((elsewhere as Error & { cause?: { code?: string } }).cause?.code)).toBe('ECONNREFUSED');
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('a --metrics-host that cannot be bound exits 1 with one line naming it; --metrics-host without --metrics-port exits 2', async () => {
    // 192.0.2.0/24 is TEST-NET-1: no interface of this machine has it, so bind fails at once.
    const ended = await runServe(['--metrics-port', '0', '--metrics-host', '192.0.2.1']);
    expect(ended.killed).toBe(false);
    expect(ended.code).toBe(1);
    const errors = lines(ended.stderr);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^thrift-queue-limiter: cannot serve metrics on 192\.0\.2\.1:0: .*EADDRNOTAVAIL/);
    expect(ended.stdout).not.toMatch(/serving /);
    const e = await runServe(['--metrics-host', '127.0.0.1']);
    expect(e.code).toBe(2);
    expect(e.stderr.trim()).toBe('thrift-queue-limiter: --metrics-host needs --metrics-port N');
  });
});
