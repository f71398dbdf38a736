import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { ThreadedServer } from '../../src/server/threaded-server.js';
import { runLoad, type LoadOptions, type LoadReport } from '../../src/load/load-generator.js';
import { stalledMs, watchStalls } from '../helpers.js';
import { handlerPath, servicePath, startServer } from '../server/calculator.js';
import { onTerminal } from './terminal.js';
import { cliPath } from '../serve-cli.js';

const run = promisify(execFile);

interface CliOutput {
  code: number;
  stdout: string;
  stderr: string;
  /** From start to exit. */
  ms: number;
}

interface CliRun {
  code: number;
  report: LoadReport;
  stderr: string;
  ms: number;
}

/** Runs `load` with the example service against `port` (stdout not a terminal); bounded by a 30 s kill. */
async function runCli(port: number, ...args: string[]): Promise<CliOutput> {
  const started = performance.now();
  const result = await run(process.execPath, [cliPath, 'load', '--service', servicePath, '--port', String(port), ...args], { timeout: 30_000 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
  return { ...result, ms: performance.now() - started };
}

/** Runs `load --json` against `port` with the example service; bounded by a 30 s kill. */
async function loadCli(port: number, ...args: string[]): Promise<CliRun> {
  const { code, stdout, stderr, ms } = await runCli(port, '--json', ...args);
  return { code, report: JSON.parse(stdout) as LoadReport, stderr, ms };
}

/** Runs `load` with the example service against `port` expecting it to fail: its exit code and stderr. */
function failingCli(port: number, ...args: string[]): Promise<{ code: number; stderr: string }> {
  return run(process.execPath, [cliPath, 'load', '--service', servicePath, '--port', String(port), ...args], { timeout: 30_000 }).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
  );
}

/** A short closed-loop run of `echo` through runLoad. */
function shortRun(port: number, options: Partial<LoadOptions> = {}): Promise<LoadReport> {
  return runLoad({
    service: servicePath,
    method: 'echo',
    args: [Buffer.from('abc')],
    port,
    mode: { concurrency: 4 },
    durationMs: 300,
    connections: 2,
    drainMs: 5_000,
    ...options,
  });
}

/** ANSI "erase to the end of the line", which ends each rewrite of a live progress line. */
const ERASE_TO_END = '\x1b[K';

const failedCalls = (report: LoadReport): number => Object.values(report.errors).reduce((a, b) => a + b, 0);

describe('thrift-queue-limiter load against the example server', () => {
  let server: ThreadedServer;
  let port: number;
  beforeAll(async () => {
    ({ server, port } = await startServer({ workers: 1, limits: { add: { rate: 100, burst: 5 } }, queue: { maxWaitMs: 200 } }));
  });
  afterAll(() => server.close({ timeoutMs: 100 }));

  const load = (...args: string[]): Promise<CliRun> => loadCli(port, ...args);

  test('closed loop: the counts the server saw are the counts reported, with no errors', async () => {
    const before = server.stats().completed;
    const { code, report } = await load('--method', 'echo', '--args', '["abc"]', '--concurrency', '8', '--duration', '500ms');
    expect(code).toBe(0);
    expect(report.mode).toBe('closed');
    expect(report.errors).toEqual({});
    expect(report.completed).toBe(report.sent);
    expect(report.completed).toBeGreaterThan(50);
    expect(server.stats().completed - before).toBe(report.completed);
    expect(report.latencyMs.p50).toBeGreaterThan(0);
    expect(report.latencyMs.p99).toBeGreaterThanOrEqual(report.latencyMs.p50);
  });

  test('open loop over a limit: calls queue (latency from the schedule grows), and those past the wait bound are counted by kind', async () => {
    const watch = watchStalls();
    const { code, report } = await load('--method', 'add', '--args', '[1, 2]', '--rate', '300/s', '--duration', '1s');
    expect(code).toBe(1);
    expect(report.mode).toBe('open');
    // 300 in the second, less what a stall costs the schedule (load runs in a child process: this
    // process's stalls stand for the machine's load there).
    expect(report.sent).toBeGreaterThanOrEqual(290 - (300 * stalledMs(watch.stop())) / 1000);
    const refused = report.errors['TApplicationException 11'] ?? 0;
    expect(refused).toBeGreaterThan(0);
    expect(report.completed + refused).toBe(report.sent);
    // Admitted calls kept to about 100/s over the second, each waiting up to 200 ms.
    expect(report.completed).toBeLessThanOrEqual(5 + 100 * report.seconds + 1);
    expect(report.latencyMs.max).toBeGreaterThan(50);
  });

  test('a declared exception is an answer: every divide by zero completes, timed, counted by name apart from the errors, exit 0', async () => {
    const { code, report } = await load('--method', 'divide', '--args', '[1, 0]', '--concurrency', '4', '--duration', '500ms');
    expect(code).toBe(0);
    expect(report.errors).toEqual({});
    expect(report.sent).toBeGreaterThan(20);
    expect(report.exceptions).toEqual({ DivideByZero: report.sent });
    expect(report.completed).toBe(report.sent);
    expect(report.throughput).toBeGreaterThan(0);
    expect(report.latencyMs.p50).toBeGreaterThan(0);
    expect(report.latencyMs.max).toBeGreaterThanOrEqual(report.latencyMs.p50);
  });

  test('the text report names the declared exceptions on their own line, apart from the errors', async () => {
    const { code, stdout } = await runCli(port, '--method', 'divide', '--args', '[7, 0]', '--concurrency', '2', '--duration', '300ms');
    expect(code).toBe(0);
    const completed = Number(/^closed loop, divide: sent (\d+), completed \1 in /m.exec(stdout)?.[1]);
    expect(completed).toBeGreaterThan(10);
    expect(stdout).toContain(`\ndeclared exceptions: DivideByZero ${completed} (answers: in completed and in the latency)\n`);
    expect(stdout).toMatch(/\nerrors: none\n$/);
    const ok = await runCli(port, '--method', 'divide', '--args', '[7, 2]', '--concurrency', '2', '--duration', '200ms');
    expect(ok.stdout).toContain('\ndeclared exceptions: none\n');
  });

  test('no percentile is above the max: calls of about 20 ms, whose HDR buckets are 16 µs wide and read back as their top', async () => {
    const { code, report } = await load('--method', 'sleep', '--args', '[20]', '--concurrency', '1', '--duration', '300ms');
    expect(code).toBe(0);
    expect(report.completed).toBeGreaterThan(5);
    const l = report.latencyMs;
    expect(l.max).toBeGreaterThanOrEqual(20);
    for (const v of [l.mean, l.p50, l.p90, l.p99, l.p999]) expect(v).toBeLessThanOrEqual(l.max);
    // With a dozen calls the 99.9th percentile is the slowest call, which is the max exactly.
    expect(l.p999).toBe(l.max);
  });

  test('off a terminal the progress is one plain line a second before the report, and none with --json', async () => {
    const { code, stdout } = await runCli(port, '--method', 'echo', '--args', '["abc"]', '--concurrency', '2', '--duration', '2500ms');
    expect(code).toBe(0);
    expect(stdout).not.toContain('\r');
    const lines = stdout.trimEnd().split('\n');
    const progress = lines.filter((l) => l.startsWith('load: '));
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.length).toBeLessThanOrEqual(3);
    for (const line of progress) expect(line).toMatch(/^load: \d+\.\d s of 2\.5 s {2}sent \d+ {2}completed \d+ \(\d+\/s\) {2}failed 0$/);
    expect(lines.slice(0, progress.length)).toEqual(progress);
    expect(lines[progress.length]).toMatch(/^closed loop, echo: sent \d+/);
    const json = await runCli(port, '--json', '--method', 'echo', '--args', '["abc"]', '--concurrency', '2', '--duration', '1500ms');
    expect(json.stdout.trimEnd().split('\n')).toHaveLength(1);
    expect((JSON.parse(json.stdout) as LoadReport).completed).toBeGreaterThan(10);
  });

  test('on a terminal the progress is one line rewritten in place, cut to the terminal width, then the report', async () => {
    const { code, output } = await onTerminal(
      [cliPath, 'load', '--service', servicePath, '--port', String(port), '--method', 'echo', '--args', '["abc"]', '--concurrency', '2', '--duration', '1s'],
      40,
    );
    expect(code).toBe(0);
    const [live, ...report] = output.split('\r\n');
    const frames = live!.split('\r').slice(1);
    expect(frames.length).toBeGreaterThanOrEqual(3);
    // Each rewrite: the text, at most 39 columns, then "erase to the end of the line".
    const texts = frames.map((frame) => {
      expect(frame.endsWith(ERASE_TO_END)).toBe(true);
      return frame.slice(0, -ERASE_TO_END.length);
    });
    for (const text of texts) {
      expect(text).toMatch(/^load: \d+\.\d s of 1 s {2}sent \d+/);
      expect(text.length).toBeLessThanOrEqual(39);
    }
    expect(texts.some((t) => t.length === 39)).toBe(true);
    expect(report[0]).toMatch(/^closed loop, echo: sent \d+, completed \d+ in /);
  });

  test('a bad flag or an unknown method exits non-zero with one line', async () => {
    const bad = await failingCli(port, '--method', 'add');
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe('thrift-queue-limiter: give exactly one of --rate R/s (open loop) or --concurrency N (closed loop)');
    const unknown = await failingCli(port, '--method', 'nope', '--concurrency', '1');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/--method nope is not a method/);
  });
});

describe('load speaks every wire the server answers', () => {
  let server: ThreadedServer;
  let port: number;
  beforeAll(async () => {
    ({ server, port } = await startServer({ workers: 1 }));
  });
  afterAll(() => server.close({ timeoutMs: 100 }));

  const WIRES = [
    ['framed', 'binary'],
    ['framed', 'compact'],
    ['framed', 'json'],
    ['buffered', 'binary'],
    ['buffered', 'compact'],
    ['buffered', 'json'],
    ['http', 'binary'],
    ['http', 'compact'],
    ['http', 'json'],
    ['header', 'binary'],
    ['header', 'compact'],
  ] as const;
  test.each(WIRES)('a %s %s run completes every call it sends, and the server counts them as that wire', async (transport, protocol) => {
    const callsOnWire = async (): Promise<number> => {
      const m = new RegExp(`tql_server_wire_calls_total\\{transport="${transport}",protocol="${protocol}"\\} (\\d+)`).exec(
        await server.metricsRegistry().metrics(),
      );
      return m === null ? 0 : Number(m[1]);
    };
    const before = await callsOnWire();
    const report = await shortRun(port, { transport, protocol });
    expect(report.errors).toEqual({});
    expect(report.stopped).toBeUndefined();
    expect(report.completed).toBe(report.sent);
    expect(report.completed).toBeGreaterThan(10);
    expect((await callsOnWire()) - before).toBe(report.completed);
  });

  test('the CLI takes --transport and --protocol: an http json run exits 0 with no errors', async () => {
    const { code, report, stderr } = await loadCli(
      port,
      '--method',
      'add',
      '--args',
      '[1, 2]',
      '--concurrency',
      '4',
      '--connections',
      '2',
      '--duration',
      '300ms',
      '--transport',
      'http',
      '--protocol',
      'json',
    );
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(report.errors).toEqual({});
    expect(report.completed).toBeGreaterThan(10);
  });

  test('a wire the CLI does not know, or THeader with json, exits 2 with one line', async () => {
    const udp = await failingCli(port, '--method', 'add', '--concurrency', '1', '--transport', 'udp');
    expect(udp.code).toBe(2);
    expect(udp.stderr.trim()).toBe('thrift-queue-limiter: --transport must be framed, buffered, header, http, got "udp"');
    const headerJson = await failingCli(port, '--method', 'add', '--concurrency', '1', '--transport', 'header', '--protocol', 'json');
    expect(headerJson.code).toBe(2);
    expect(headerJson.stderr.trim()).toBe('thrift-queue-limiter: --transport header takes --protocol binary or compact, not json');
  });
});

describe('load against a multiplexed server', () => {
  let server: ThreadedServer;
  let port: number;
  beforeAll(async () => {
    ({ server, port } = await startServer({
      workers: 1,
      service: undefined,
      handler: undefined,
      services: { Calc: { service: servicePath, handler: handlerPath } },
    }));
  });
  afterAll(() => server.close({ timeoutMs: 100 }));

  test('--multiplexed Calc calls Calc:method, and every call completes', async () => {
    const { code, report } = await loadCli(
      port,
      '--method',
      'add',
      '--args',
      '[1, 2]',
      '--concurrency',
      '4',
      '--connections',
      '2',
      '--duration',
      '300ms',
      '--multiplexed',
      'Calc',
    );
    expect(code).toBe(0);
    expect(report.errors).toEqual({});
    expect(report.completed).toBeGreaterThan(10);
  });

  test.each([
    ['buffered', 'compact'],
    ['header', 'binary'],
    ['http', 'json'],
  ] as const)('a multiplexed %s %s run completes every call', async (transport, protocol) => {
    const report = await shortRun(port, { transport, protocol, multiplexed: 'Calc' });
    expect(report.errors).toEqual({});
    expect(report.completed).toBe(report.sent);
    expect(report.completed).toBeGreaterThan(10);
  });

  test('without --multiplexed every call is answered as an unknown method, and the run goes on', async () => {
    const report = await shortRun(port);
    expect(report.stopped).toBeUndefined();
    expect(report.completed).toBe(0);
    expect(report.errors).toEqual({ 'TApplicationException 1': report.sent });
  });
});

describe('load fails fast when the server does not take or answer its wire', () => {
  let server: ThreadedServer;
  let port: number;
  beforeAll(async () => {
    ({ server, port } = await startServer({ workers: 1, transport: 'framed' }));
  });
  afterAll(() => server.close({ timeoutMs: 100 }));

  test.each(['buffered', 'header', 'http'] as const)(
    'a %s run against a framed-only server stops within a second of a 5 s run and 10 s drain, its outstanding calls counted as connection closed',
    async (transport) => {
      const watch = watchStalls();
      const started = performance.now();
      const report = await shortRun(port, { transport, durationMs: 5_000, drainMs: 10_000 });
      expect(performance.now() - started).toBeLessThan(1_000 + stalledMs(watch.stop()));
      const seen = { buffered: 'buffered binary', header: 'THeader binary', http: 'HTTP' }[transport];
      expect(report.stopped).toBe(`the server does not accept ${transport} binary: ${seen} request, but this server accepts framed only`);
      expect(report.completed).toBe(0);
      expect(report.sent).toBeGreaterThan(0);
      // Each connection's first call is answered with the refusal; the rest were cut off.
      expect(report.errors['TApplicationException 10']).toBeGreaterThan(0);
      expect(report.errors['TApplicationException 10']! + (report.errors['connection closed'] ?? 0)).toBe(report.sent);
    },
  );

  test('the CLI prints one line naming the wire and exits 1, long before its duration', async () => {
    const watch = watchStalls();
    const { code, report, stderr, ms } = await loadCli(
      port,
      '--method',
      'add',
      '--args',
      '[1, 2]',
      '--concurrency',
      '4',
      '--duration',
      '5s',
      '--transport',
      'buffered',
      '--protocol',
      'compact',
    );
    expect(code).toBe(1);
    expect(ms).toBeLessThan(4_000 + stalledMs(watch.stop())); // this process's stalls stand for the child's
    expect(stderr).toBe('load: the server does not accept buffered compact: buffered compact request, but this server accepts framed only\n');
    expect(report.errors['TApplicationException 10']! + (report.errors['connection closed'] ?? 0)).toBe(report.sent);
  });

  test('the wire the server accepts still runs clean beside it', async () => {
    const report = await shortRun(port, { transport: 'framed', protocol: 'compact' });
    expect(report.errors).toEqual({});
    expect(report.completed).toBeGreaterThan(10);
  });
});

describe('load against a server answering in another format', () => {
  let server: net.Server;
  let port: number;
  beforeAll(async () => {
    // Answers every chunk with a frame holding a compact message header, which a binary client
    // cannot read.
    server = net.createServer((socket) => {
      socket.on('error', () => {}); // the client resets when it gives up
      socket.on('data', () => socket.write(Buffer.from([0, 0, 0, 4, 0x82, 0x21, 0x00, 0x01])));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  test('a framed binary run stops at the first unreadable answer, naming the wire, and every call sent is accounted for', async () => {
    const watch = watchStalls();
    const started = performance.now();
    const report = await shortRun(port, { durationMs: 5_000, drainMs: 10_000 });
    expect(performance.now() - started).toBeLessThan(1_000 + stalledMs(watch.stop()));
    expect(report.stopped).toMatch(
      /^an answer could not be read as framed binary after 0 answered calls: .*Bad version.* \(it may not accept framed binary; see its log\)$/,
    );
    expect(report.completed).toBe(0);
    expect(failedCalls(report)).toBe(report.sent);
  });
});

describe('load against a server that never answers', () => {
  let server: net.Server;
  let port: number;
  let open = 0;
  let accepted = 0;
  beforeAll(async () => {
    server = net.createServer((socket) => {
      accepted++;
      open++;
      socket.on('close', () => open--);
      socket.on('error', () => {});
      socket.resume();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  test.each([
    ['framed', { concurrency: 4 }],
    ['framed', { rate: 200 }],
    ['http', { concurrency: 4 }],
    ['http', { rate: 200 }],
  ] as const)(
    'a %s run in mode %o ends after its duration and drain, counts its calls unanswered, and leaves no socket open or opening',
    async (transport, mode) => {
      accepted = 0;
      const watch = watchStalls();
      const started = performance.now();
      const report = await shortRun(port, { transport, mode, durationMs: 200, drainMs: 300 });
      const ms = performance.now() - started;
      expect(ms).toBeGreaterThanOrEqual(490);
      expect(ms).toBeLessThan(1_500 + stalledMs(watch.stop()));
      expect(report.sent).toBeGreaterThan(0);
      expect(report.errors).toEqual({ unanswered: report.sent });
      await expect.poll(() => open, { timeout: 2_000 }).toBe(0);
      await new Promise((r) => setTimeout(r, 100));
      expect(accepted).toBe(2);
    },
  );
});

test('a port nobody listens on fails the CLI at once with one line, leaving nothing open', async () => {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const watch = watchStalls();
  const started = performance.now();
  const failed = await failingCli(port, '--method', 'add', '--concurrency', '1');
  expect(performance.now() - started).toBeLessThan(5_000 + stalledMs(watch.stop())); // this process's stalls stand for the child's
  expect(failed.code).toBe(1);
  expect(failed.stderr.trim()).toMatch(/^thrift-queue-limiter: connect ECONNREFUSED 127\.0\.0\.1:\d+$/);
});

describe('load when the server goes away mid-run', () => {
  test('a 10 s run stops within seconds of the server closing, with one line saying so, every call accounted for, exit 1', async () => {
    const { server, port } = await startServer({ workers: 1 });
    const running = loadCli(port, '--method', 'echo', '--args', '["abc"]', '--concurrency', '4', '--duration', '10s');
    await expect.poll(() => server.stats().completed, { timeout: 10_000 }).toBeGreaterThan(100);
    const closing = performance.now();
    await server.close({ timeoutMs: 100 });
    const { code, report, stderr } = await running;
    expect(performance.now() - closing).toBeLessThan(5_000);
    expect(code).toBe(1);
    expect(report.completed).toBeGreaterThan(100);
    const outstanding = report.errors['connection closed'] ?? 0;
    // A call the closing server answered with a TApplicationException is an error of its own kind.
    expect(report.completed + failedCalls(report)).toBe(report.sent);
    expect(stderr).toBe(`load: the server closed the connection after ${report.sent - outstanding} answered calls\n`);
  });
});
