import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { runServe, startServe } from '../serve-cli.js';
import { connect } from '../server/calculator.js';

const dir = mkdtempSync(join(tmpdir(), 'tql-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Writes `config` as JSON to a file of the test's directory; returns its path. */
function configFile(name: string, config: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, typeof config === 'string' ? config : JSON.stringify(config));
  return path;
}

/**
 * Keeps `connections` × `inFlight` calls of `add` outstanding until `stop()` (bounded: at most
 * 30 s); records each reply's instant and counts calls that failed.
 */
function driveLoad(port: number, connections: number, inFlight: number): { replies: number[]; failed: () => number; stop: () => Promise<void> } {
  const replies: number[] = [];
  let failed = 0;
  let stopping = false;
  const deadline = performance.now() + 30_000;
  const loops = Array.from({ length: connections }, async () => {
    const { client, close } = await connect(port);
    const lane = async (): Promise<void> => {
      while (!stopping && performance.now() < deadline) {
        try {
          expect(await client.add(2, 3)).toBe(5);
          replies.push(performance.now());
        } catch {
          failed++;
        }
      }
    };
    await Promise.all(Array.from({ length: inFlight }, lane));
    close();
  });
  return {
    replies,
    failed: () => failed,
    stop: async () => {
      stopping = true;
      await Promise.all(loops);
    },
  };
}

const rate = (replies: number[], from: number, to: number): number => (replies.filter((t) => t >= from && t < to).length * 1000) / (to - from);

describe('serve --config and SIGHUP', () => {
  test('kill -HUP raises a limit from 50/s to 200/s as a client measures it, with one log line; an invalid file is refused with one line and the limit stays; no call fails', async () => {
    const file = configFile('limits.json', { limits: { add: { rate: 50, burst: 1 } }, queue: { maxWaitMs: 20_000 } });
    const serve = await startServe(['--config', file, '--stats-interval', '60s']);
    expect(serve.out()).toMatch(/limits: add 50\/s, burst 1/);
    const load = driveLoad(serve.port, 4, 8);
    try {
      await sleep(1500);
      writeFileSync(file, JSON.stringify({ limits: { add: { rate: 200, burst: 1 } }, queue: { maxWaitMs: 20_000 } }));
      const hup = performance.now();
      serve.child.kill('SIGHUP');
      await expect.poll(() => serve.out(), { timeout: 5000 }).toMatch(/reloaded .*limits\.json: add 50\/s, burst 1 → 200\/s, burst 1\n/);
      await sleep(1500);
      writeFileSync(file, JSON.stringify({ limits: { add: { rate: 10 }, gett: { rate: 5 } } }));
      const badHup = performance.now();
      serve.child.kill('SIGHUP');
      await expect
        .poll(() => serve.err(), { timeout: 5000 })
        .toMatch(/limits\.json not reloaded, the limits stay as they were: limits\.gett: the server has no method "gett"/);
      await sleep(1000);
      await load.stop();
      const before = rate(load.replies, hup - 1000, hup);
      const after = rate(load.replies, hup + 300, badHup);
      const afterBad = rate(load.replies, badHup + 200, badHup + 1000);
      expect(before).toBeGreaterThan(40);
      expect(before).toBeLessThan(60);
      expect(after).toBeGreaterThan(160);
      expect(after).toBeLessThan(215);
      expect(afterBad).toBeGreaterThan(160);
      expect(load.failed()).toBe(0);
    } finally {
      await load.stop();
      serve.child.kill('SIGTERM');
    }
    expect(await serve.exited).toBe(0);
    // One line per reload; nothing else on stderr.
    expect(
      serve
        .out()
        .split('\n')
        .filter((l) => l.includes('reloaded')),
    ).toHaveLength(1);
    expect(serve.err().trim().split('\n')).toHaveLength(1);
    expect(serve.out()).toMatch(/stopped: admitted (\d+), completed \1, refused 0/);
  });

  test('flags override the file: --limit replaces its limit of that method, --max-wait its queue bound', async () => {
    const file = configFile('override.json', { limits: { add: { rate: 50 }, echo: { concurrency: 3 } }, queue: { maxWaitMs: 1 } });
    const serve = await startServe(['--config', file, '--limit', 'add=100/s,burst=7', '--max-wait', '5s', '--stats-interval', '60s']);
    try {
      expect(serve.out()).toMatch(/limits: add 100\/s, burst 7; echo concurrency 3/);
      // maxWaitMs 1 from the file would refuse the 9th call (waiting ~10 ms); --max-wait 5s lets it wait.
      const { client, close } = await connect(serve.port);
      expect(await Promise.all(Array.from({ length: 12 }, (_, k) => client.add(k, 0)))).toHaveLength(12);
      close();
      // A reload keeps the flags on top of the file.
      writeFileSync(file, JSON.stringify({ limits: { add: { rate: 10 } } }));
      serve.child.kill('SIGHUP');
      await expect.poll(() => serve.out(), { timeout: 5000 }).toMatch(/reloaded .*override\.json: echo removed \(was concurrency 3\)\n/);
    } finally {
      serve.child.kill('SIGTERM');
    }
    expect(await serve.exited).toBe(0);
  });

  test('a limit for a method the service does not have, in --limit or in the file, is refused at start naming the methods; so is an invalid file', async () => {
    const methods = 'add, echo, ping, record, divide, translate, work, sleep, fail, counters';
    const fromFlag = await runServe(['--limit', 'gett=100/s']);
    expect(fromFlag.code).toBe(2);
    expect(fromFlag.stderr.trim().split('\n')).toHaveLength(1);
    expect(fromFlag.stderr).toContain(`limits.gett: the server has no method "gett"; its methods: ${methods}`);
    const file = configFile('typo.json', { limits: { ad: { rate: 5 } } });
    const fromFile = await runServe(['--config', file]);
    expect(fromFile.code).toBe(2);
    expect(fromFile.stderr).toContain(`limits.ad: the server has no method "ad" (did you mean "add"?); its methods: ${methods}`);
    for (const [name, content, message] of [
      ['broken.json', '{ "limits": ', /not valid JSON/],
      ['unknown.json', { limit: {} }, /--config .*unknown\.json: config: unknown option "limit" \(did you mean "limits"\?\)/],
      ['queue.json', { queue: { maxWaitMs: -1 } }, /--config .*queue\.json: queue\.maxWaitMs must be 0 or more/],
    ] as const) {
      const bad = await runServe(['--config', configFile(name, content)]);
      expect(bad.code, name).toBe(2);
      expect(bad.stderr.trim().split('\n'), name).toHaveLength(1);
      expect(bad.stderr, name).toMatch(message);
    }
  });
});
