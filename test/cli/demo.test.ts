import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));

describe('thrift-queue-limiter demo (npm start)', () => {
  test('drives the Thrift demo server at twice its limit: every call admitted and answered, none refused, the limit held', async () => {
    const out = mkdtempSync(join(tmpdir(), 'tql-demo-'));
    const { stdout } = await run(process.execPath, [cli, 'demo', '--duration', '2s', '--rate', '200', '--burst', '10', '--out', out], { timeout: 60_000 });
    const sent = Number(/offered\s+(\d+) calls at 400\/s/.exec(stdout)![1]);
    const [, admitted, seconds] = /admitted\s+(\d+) calls in ([\d.]+) s/.exec(stdout)!;
    expect(sent).toBeGreaterThanOrEqual(780);
    expect(Number(admitted)).toBe(sent);
    expect(Number(admitted)).toBeLessThanOrEqual(10 + 200 * Number(seconds));
    expect(stdout).toMatch(/refused\s+0\s+failed 0\n/);
    expect(stdout).toContain('demo: ok');
    expect(stdout).toContain(`report: ${join(out, 'demo.md')}   chart: ${join(out, 'demo.svg')}`);
    const report = readFileSync(join(out, 'demo.md'), 'utf8');
    expect(report).toMatch(new RegExp(`\\| ${sent} \\| ${sent} \\| [\\d.]+/s \\(limit 200/s\\) \\| 0 \\| 0 \\|`));
    const svg = readFileSync(join(out, 'demo.svg'), 'utf8');
    expect(svg).toContain('limit 200/s');
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    rmSync(out, { recursive: true, force: true });
  });

  test('a bad flag exits with code 2 and one line naming it', async () => {
    const error = (await run(process.execPath, [cli, 'demo', '--rate', 'fast']).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(error.code).toBe(2);
    expect(error.stderr.trim()).toBe('thrift-queue-limiter: --rate must be a positive number, got "fast"');
  });
});
