import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));

describe('thrift-queue-limiter demo (npm start)', () => {
  test('drives the Thrift demo server at twice its limit: every call admitted and answered, none refused, the limit held', async () => {
    const { stdout } = await run(process.execPath, [cli, 'demo', '--duration', '2s', '--rate', '200', '--burst', '10'], { timeout: 60_000 });
    const sent = Number(/offered\s+(\d+) calls at 400\/s/.exec(stdout)![1]);
    const [, admitted, seconds] = /admitted\s+(\d+) calls in ([\d.]+) s/.exec(stdout)!;
    expect(sent).toBeGreaterThanOrEqual(780);
    expect(Number(admitted)).toBe(sent);
    expect(Number(admitted)).toBeLessThanOrEqual(10 + 200 * Number(seconds));
    expect(stdout).toMatch(/refused\s+0\s+failed 0\n/);
    expect(stdout).toContain('demo: ok');
  });

  test('a bad flag exits with code 2 and one line naming it', async () => {
    const error = (await run(process.execPath, [cli, 'demo', '--rate', 'fast']).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(error.code).toBe(2);
    expect(error.stderr.trim()).toBe('thrift-queue-limiter: --rate must be a positive number, got "fast"');
  });
});
