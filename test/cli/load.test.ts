import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { ThreadedServer } from '../../src/server/threaded-server.js';
import type { LoadReport } from '../../src/load/load-generator.js';
import { servicePath, startServer } from '../server/calculator.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));

describe('thrift-queue-limiter load against the example server', () => {
  let server: ThreadedServer;
  let port: number;
  beforeAll(async () => {
    ({ server, port } = await startServer({ workers: 1, limits: { add: { rate: 100, burst: 5 } }, queue: { maxWaitMs: 200 } }));
  });
  afterAll(() => server.close({ timeoutMs: 100 }));

  async function load(...args: string[]): Promise<{ code: number; report: LoadReport }> {
    const result = await run(process.execPath, [cli, 'load', '--service', servicePath, '--port', String(port), '--json', ...args], { timeout: 30_000 })
      .then((r) => ({ code: 0, stdout: r.stdout }), (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }));
    return { code: result.code, report: JSON.parse(result.stdout) as LoadReport };
  }

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
    const { code, report } = await load('--method', 'add', '--args', '[1, 2]', '--rate', '300/s', '--duration', '1s');
    expect(code).toBe(1);
    expect(report.mode).toBe('open');
    expect(report.sent).toBeGreaterThanOrEqual(290);
    const refused = report.errors['TApplicationException 11'] ?? 0;
    expect(refused).toBeGreaterThan(0);
    expect(report.completed + refused).toBe(report.sent);
    // Admitted calls kept to about 100/s over the second, each waiting up to 200 ms.
    expect(report.completed).toBeLessThanOrEqual(5 + 100 * report.seconds + 1);
    expect(report.latencyMs.max).toBeGreaterThan(50);
  });

  test('a bad flag or an unknown method exits non-zero with one line', async () => {
    const bad = (await run(process.execPath, [cli, 'load', '--service', servicePath, '--port', String(port), '--method', 'add']).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe('thrift-queue-limiter: give exactly one of --rate R/s (open loop) or --concurrency N (closed loop)');
    const unknown = (await run(process.execPath, [cli, 'load', '--service', servicePath, '--port', String(port), '--method', 'nope', '--concurrency', '1']).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/--method nope is not a method/);
  });
});
