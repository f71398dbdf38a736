import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { cliPath } from '../serve-cli.js';

const run = promisify(execFile);
const out = mkdtempSync(join(tmpdir(), 'tql-bench-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('thrift-queue-limiter bench --quick', () => {
  test('runs every suite and writes every report and chart (a smoke run: speed is not asserted)', async () => {
    await run(process.execPath, [cliPath, 'bench', '--quick', '--out', out], { timeout: 180_000 });
    const core = readFileSync(join(out, 'core.md'), 'utf8');
    expect(core).toMatch(/^# Core benchmarks.*QUICK/);
    for (const section of ['## acquire + run of a no-op', '## tryAcquire alone', '## Overload', '## Memory', '## Targets']) {
      expect(core).toContain(section);
    }
    for (const peer of ['bottleneck', 'limiter', 'p-queue', 'p-throttle', 'rate-limiter-flexible']) expect(core).toContain(peer);
    const server = readFileSync(join(out, 'server.md'), 'utf8');
    for (const section of [
      '## (a) echo of 100 bytes',
      '## (b) echo of 100 bytes, buffered transport',
      '## (c) work',
      '## Limited server',
      '## Targets',
      '## Charts',
    ]) {
      expect(server).toContain(section);
    }
    const adaptive = readFileSync(join(out, 'adaptive.md'), 'utf8');
    expect(adaptive).toMatch(/^# Adaptive concurrency benchmark.*QUICK/);
    for (const section of ['## Throughput and downstream latency, side by side', '## The adaptive limit', '## Targets', '## Charts']) {
      expect(adaptive).toContain(section);
    }
    for (const subject of ['no limit', 'static limit too high', 'static limit too low', 'adaptive: AdaptiveConcurrencyLimit'])
      expect(adaptive).toContain(subject);
    for (const chart of ['server-limited-rate.svg', 'server-limited-wait.svg', 'server-throughput.svg', 'adaptive-limit.svg', 'adaptive-latency.svg']) {
      expect(existsSync(join(out, chart)), chart).toBe(true);
      const svg = readFileSync(join(out, chart), 'utf8');
      expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
      expect(svg).toMatch(/<(polyline|rect) [^>]*(points="[\d.]+,[\d.]+|height="[\d.]+")/);
    }
  }, 200_000);
});
