import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));

describe('thrift-queue-limiter demo', () => {
  test('offers twice the rate from 4 threads and finishes with every call admitted, none refused, the rate held', async () => {
    const { stdout } = await run(process.execPath, [cli, 'demo', '--duration', '1s', '--rate', '300', '--burst', '10'], { timeout: 30_000 });
    const offered = Number(/offered\s+(\d+)/.exec(stdout)![1]);
    const admitted = Number(/admitted\s+(\d+) calls in ([\d.]+) s/.exec(stdout)![1]);
    const seconds = Number(/admitted\s+\d+ calls in ([\d.]+) s/.exec(stdout)![1]);
    expect(offered).toBeGreaterThanOrEqual(590);
    expect(admitted).toBe(offered);
    expect(admitted).toBeLessThanOrEqual(10 + 300 * seconds);
    expect(stdout).toMatch(/refused\s+0\n/);
    expect(stdout).toContain('demo: ok');
  });

  test('a bad flag exits with code 2 and one line naming it', async () => {
    const error = await run(process.execPath, [cli, 'demo', '--rate', 'fast']).catch((e: { code: number; stderr: string }) => e);
    expect((error as { code: number }).code).toBe(2);
    expect((error as { stderr: string }).stderr.trim()).toBe('thrift-queue-limiter: --rate must be a positive number, got "fast"');
  });
});
