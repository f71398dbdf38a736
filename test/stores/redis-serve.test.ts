/**
 * `serve` on a Redis Cluster (`--redis-cluster`) and behind Sentinel (`--redis-sentinel`,
 * `--redis-master`), each started by the test: a rate limit and a concurrency limit held there
 * and enforced on real Thrift calls; and the flags' misuse, each refused with one line naming the
 * flag (exit 2).
 */
import type { ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, test } from 'vitest';
import { runServe, startServe } from '../serve-cli.js';
import { connect } from '../server/calculator.js';
import { startCluster, type TestCluster } from './redis-cluster.js';
import { startSentinel, type TestSentinel } from './redis-sentinel.js';

let cluster: TestCluster | undefined;
let sentinel: TestSentinel | undefined;
let server: ChildProcess | undefined;
afterEach(async () => {
  server?.kill('SIGKILL');
  server = undefined;
  await cluster?.stop();
  await sentinel?.stop();
  cluster = undefined;
  sentinel = undefined;
});

/** Starts `serve` with `args` (killed after the test) and resolves once it serves. */
async function serve(args: string[]): Promise<{ port: number; out: () => string }> {
  const s = await startServe(args);
  server = s.child;
  return s;
}

/** 12 add calls through a limit of 20/s burst 2 take ≥ 0.5 s; 4 sleep(150) calls through concurrency 1 take ≥ 600 ms. */
async function checkLimits(port: number): Promise<void> {
  const { client, close } = await connect(port);
  try {
    let t0 = performance.now();
    expect(await Promise.all(Array.from({ length: 12 }, (_, k) => client.add(k, 1)))).toEqual(Array.from({ length: 12 }, (_, k) => k + 1));
    expect(performance.now() - t0).toBeGreaterThanOrEqual(490);
    t0 = performance.now();
    await Promise.all(Array.from({ length: 4 }, () => client.sleep(150)));
    expect(performance.now() - t0).toBeGreaterThanOrEqual(590);
  } finally {
    close();
  }
}

const LIMITS = ['--limit', 'add=20/s,burst=2', '--limit', 'sleep=concurrency=1', '--redis-prefix', 'srv:'];

describe('serve on Redis Cluster and Sentinel', () => {
  test('--redis-cluster: the limits live on the cluster (rate and concurrency), found from one node', async () => {
    cluster = await startCluster();
    const s = await serve([...LIMITS, '--redis-cluster', cluster.urls[0]!]);
    expect(s.out()).toMatch(/in Redis at cluster 127\.0\.0\.1:\d+/);
    await checkLimits(s.port);
    expect(cluster.masterOf(cluster.slotOf('{add}')).cli('exists', 'srv:{add}:tb')).toBe('1');
    // The concurrency limit went through the cluster too, and all its permits came back.
    expect(cluster.masterOf(cluster.slotOf('{sleep}')).cli('hget', 'srv:{sleep}:cl', 'n')).toBe('0');
  }, 60_000);

  test('--redis-sentinel with --redis-master: the limits live on the master the sentinel names', async () => {
    sentinel = await startSentinel();
    const s = await serve([...LIMITS, '--redis-sentinel', sentinel.sentinels.join(','), '--redis-master', sentinel.name]);
    expect(s.out()).toMatch(/in Redis at master "tql" of sentinels 127\.0\.0\.1:\d+/);
    await checkLimits(s.port);
    expect(sentinel.cli(sentinel.masterPort(), 'exists', 'srv:{add}:tb')).toBe('1');
    expect(sentinel.cli(sentinel.masterPort(), 'hget', 'srv:{sleep}:cl', 'n')).toBe('0');
  }, 60_000);

  test.each([
    [['--redis-sentinel', '127.0.0.1:1'], 'thrift-queue-limiter: --redis-sentinel needs --redis-master NAME'],
    [['--redis-master', 'm'], 'thrift-queue-limiter: --redis-master needs --redis-sentinel HOST:PORT,…'],
    [
      ['--redis', 'redis://127.0.0.1:1', '--redis-cluster', 'redis://127.0.0.1:2'],
      'thrift-queue-limiter: --redis and --redis-cluster name two stores: give one',
    ],
    [['--redis-cluster', '127.0.0.1:7000'], 'thrift-queue-limiter: --redis-cluster: cluster[0] must be a redis:// or rediss:// URL, got "127.0.0.1:7000"'],
    [['--redis-sentinel', 'nohost', '--redis-master', 'm'], 'thrift-queue-limiter: --redis-sentinel: sentinel.sentinels[0] must be "host:port", got "nohost"'],
    [['--permit-lease', '5s'], 'thrift-queue-limiter: --permit-lease needs --redis URL (or --redis-cluster, --redis-sentinel)'],
  ])('%j exits 2 with one line naming the flag', async (args, line) => {
    const e = await runServe(args);
    expect(e.code).toBe(2);
    expect(e.stderr.trim()).toBe(line);
  });
});
