import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { stalledMs, watchStalls } from '../helpers.js';
import { onTerminal } from './terminal.js';
import { cliPath } from '../serve-cli.js';

const run = promisify(execFile);

describe('thrift-queue-limiter demo (npm start)', () => {
  test('drives the Thrift demo server at twice its limit: every call admitted and answered, none refused, the limit held', async () => {
    const out = mkdtempSync(join(tmpdir(), 'tql-demo-'));
    const watch = watchStalls();
    const { stdout } = await run(process.execPath, [cliPath, 'demo', '--duration', '2s', '--rate', '200', '--burst', '10', '--out', out], { timeout: 60_000 });
    const sent = Number(/offered\s+(\d+) calls at 400\/s/.exec(stdout)![1]);
    const [, admitted, seconds] = /admitted\s+(\d+) calls in ([\d.]+) s/.exec(stdout)!;
    // The demo runs in a child process: this process's stalls stand for the machine's load there.
    const stalled = stalledMs(watch.stop());
    // 800 offered over 2 s, less what a stall costs the schedule.
    expect(sent).toBeGreaterThanOrEqual(780 - (400 * stalled) / 1000);
    expect(Number(admitted)).toBe(sent);
    expect(Number(admitted)).toBeLessThanOrEqual(10 + 200 * Number(seconds));
    expect(stdout).toMatch(/refused\s+0\s+failed 0\n/);
    expect(stdout).toContain('demo: ok');
    // Off a terminal the progress is plain lines, about one a second of the ~4 s run (longer by a
    // stall), without a bar.
    expect(stdout).not.toContain('\r');
    const progress = stdout.split('\n').filter((l) => /^ {2}t=/.test(l));
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.length).toBeLessThanOrEqual(6 + Math.ceil(stalled / 1000));
    for (const line of progress) expect(line).toMatch(/^ {2}t=\s*[\d.]+ s {2}sent\s+\d+ {2}admitted\s+\d+\/s {2}queued\s+\d+ {2}replied\s+\d+$/);
    expect(stdout).toContain(`report: ${join(out, 'demo.md')}   chart: ${join(out, 'demo.svg')}`);
    const report = readFileSync(join(out, 'demo.md'), 'utf8');
    expect(report).toMatch(new RegExp(`\\| ${sent} \\| ${sent} \\| [\\d.]+/s \\(limit 200/s\\) \\| 0 \\| 0 \\|`));
    const svg = readFileSync(join(out, 'demo.svg'), 'utf8');
    expect(svg).toContain('limit 200/s');
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    // The admitted rate on the left axis, the queue depth on a right axis of its own.
    expect(svg).toContain('admitted/s (250 ms samples) (left axis)');
    expect(svg).toContain('calls waiting in the queue (right axis)');
    expect(svg).toMatch(/rotate\(-90 [^)]*\)">admitted calls\/s</);
    expect(svg).toMatch(/rotate\(90 [^)]*\)">calls waiting</);
    const rightTicks = [...svg.matchAll(/text-anchor="start" font-size="11">([^<]+)</g)].map((m) => m[1]);
    expect(rightTicks.length).toBeGreaterThanOrEqual(3);
    expect(rightTicks[0]).toBe('0');
    rmSync(out, { recursive: true, force: true });
  });

  test('on a terminal the progress is a bar rewritten in place, cut to the terminal width', async () => {
    const out = mkdtempSync(join(tmpdir(), 'tql-demo-'));
    const { code, output } = await onTerminal([cliPath, 'demo', '--duration', '1s', '--rate', '100', '--burst', '5', '--out', out], 60);
    rmSync(out, { recursive: true, force: true });
    expect(code).toBe(0);
    const live = output.split('\r\n').find((l) => l.startsWith('\r'));
    const frames = live!.split('\r').slice(1);
    expect(frames.length).toBeGreaterThanOrEqual(4);
    // Each rewrite: the bar and figures, at most 59 columns, then ANSI "erase to the end of the line".
    for (const frame of frames) {
      expect(frame.endsWith('\x1b[K')).toBe(true);
      expect(frame).toMatch(/^ {2}\[[#.]{30}\] t=/);
      expect(frame.length - '\x1b[K'.length).toBeLessThanOrEqual(59);
    }
    expect(frames.at(-1)).toMatch(/^ {2}\[#{25,30}/);
    expect(frames.some((f) => f.length - '\x1b[K'.length === 59)).toBe(true);
    expect(output).toContain('demo: ok');
  });

  test('a bad flag exits with code 2 and one line naming it', async () => {
    const error = (await run(process.execPath, [cliPath, 'demo', '--rate', 'fast']).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(error.code).toBe(2);
    expect(error.stderr.trim()).toBe('thrift-queue-limiter: --rate must be a positive number, got "fast"');
  });
});
