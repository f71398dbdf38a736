import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { connect, handlerPath, servicePath } from '../server/calculator.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));

describe('thrift-queue-limiter serve', () => {
  test('serves the example service with limits, prints stats lines, and shuts down cleanly on SIGTERM', async () => {
    const child = spawn(process.execPath, [cli, 'serve', '--service', servicePath, '--handler', handlerPath, '--port', '0', '--workers', '1',
      '--limit', 'add=200/s,burst=5', '--limit', '*=1000/s', '--max-wait', '2s', '--stats-interval', '200ms', '--metrics-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    try {
      await expect.poll(() => /on 127\.0\.0\.1:(\d+)/.exec(out), { timeout: 10_000 }).toBeTruthy();
      const port = Number(/on 127\.0\.0\.1:(\d+)/.exec(out)![1]);
      const { client, close } = await connect(port);
      expect(await Promise.all(Array.from({ length: 20 }, (_, k) => client.add(k, k)))).toEqual(Array.from({ length: 20 }, (_, k) => 2 * k));
      await expect.poll(() => /admitted \d+\/s {2}queued \d+/.test(out), { timeout: 5_000 }).toBe(true);
      const metricsUrl = /metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(out)![1]!;
      const metrics = await (await fetch(metricsUrl)).text();
      expect(metrics).toContain('tql_admitted_total{limit="add"} 20');
      expect(metrics).toContain('tql_refused_total{limit="add",reason="queue_full"} 0');
      close();
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(out).toMatch(/SIGTERM: shutting down/);
    expect(out).toMatch(/stopped: admitted 2\d, completed 2\d, refused 0/);
  });

  test('a bad --limit exits 2 with one line naming it', async () => {
    const e = (await run(process.execPath, [cli, 'serve', '--service', servicePath, '--handler', handlerPath, '--limit', 'add=fast']).catch((x: unknown) => x)) as { code: number; stderr: string };
    expect(e.code).toBe(2);
    expect(e.stderr.trim()).toBe('thrift-queue-limiter: --limit "add=fast": expected RATE/PERIOD (e.g. 100/s) or concurrency=N');
  });

  test('a module that does not export a service exits non-zero with a one-line reason', async () => {
    const e = (await run(process.execPath, [cli, 'serve', '--service', handlerPath, '--handler', handlerPath, '--port', '0']).catch((x: unknown) => x)) as { code: number; stderr: string };
    expect(e.code).toBe(1);
    expect(e.stderr.trim().split('\n')).toHaveLength(1);
    expect(e.stderr).toMatch(/does not export a Thrift service \(no Processor\)/);
  });
});
