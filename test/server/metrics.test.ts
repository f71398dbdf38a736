import { Worker } from 'node:worker_threads';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { describe, expect, test, vi } from 'vitest';
import { StoreUnavailableError } from '../../src/errors.js';
import { TokenBucket } from '../../src/limiters/token-bucket.js';
import { limiterMetrics } from '../../src/metrics/prometheus.js';
import { createRedisStore } from '../../src/stores/redis-store.js';
import { freePort } from '../stores/redis-server.js';
import type { WorkerJob } from '../fixtures/limiter-worker.js';
import { fixture } from '../helpers.js';
import { connect, startServer, type AppException } from './calculator.js';

interface Family {
  name: string;
  type: string;
  metrics: { value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; count?: string; sum?: string }[];
}

describe('metrics in shared memory', () => {
  test('counters are one set of numbers for every thread: 3 workers × 200 calls and 100 on the main thread are all counted', async () => {
    const tb = new TokenBucket({ rate: 1e9, burst: 1_000_000 });
    const go = new SharedArrayBuffer(4);
    const workers = [0, 1, 2].map(
      () => new Worker(fixture('limiter-worker'), { workerData: { mode: 'run', descriptor: tb.share(), count: 200, go } satisfies WorkerJob }),
    );
    await Promise.all(workers.map((w) => new Promise((r) => w.once('message', r))));
    const done = workers.map((w) => new Promise((r) => w.once('message', r)));
    Atomics.store(new Int32Array(go), 0, 1);
    Atomics.notify(new Int32Array(go), 0);
    await Promise.all(Array.from({ length: 100 }, () => tb.acquire()));
    await Promise.all(done);
    await Promise.all(workers.map((w) => w.terminate()));
    // The workers' warm-up uses private limiters, so exactly these calls are counted.
    expect(tb.snapshot()).toMatchObject({ kind: 'token-bucket', admitted: 700, queued: 0, refused: { queue_full: 0, queue_timeout: 0, aborted: 0 } });
  });

  test('the Prometheus text parses with a real parser and its counters match what the test sent', async () => {
    const { server, port } = await startServer({ workers: 1, limits: { add: { rate: 20, burst: 5 } }, queue: { maxWaitMs: 120 } });
    try {
      const { client, close } = await connect(port);
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, k) =>
          client.add(k, 0).then(
            () => 'ok',
            (e: AppException) => `refused ${e.type}`,
          ),
        ),
      );
      close();
      const ok = results.filter((r) => r === 'ok').length;
      const refused = results.filter((r) => r === 'refused 11').length;
      expect(ok + refused).toBe(20);
      expect(refused).toBeGreaterThan(0);
      const text = await server.metricsRegistry().metrics();
      const families = parsePrometheusTextFormat(text) as Family[];
      const family = (name: string): Family => families.find((f) => f.name === name)!;
      const value = (name: string, labels: Record<string, string>): number =>
        Number(family(name).metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))!.value);
      expect(family('tql_admitted_total').type).toBe('COUNTER');
      expect(value('tql_admitted_total', { limit: 'add' })).toBe(ok);
      expect(value('tql_refused_total', { limit: 'add', reason: 'queue_timeout' })).toBe(refused);
      expect(value('tql_refused_total', { limit: 'add', reason: 'queue_full' })).toBe(0);
      expect(value('tql_queued', { limit: 'add' })).toBe(0);
      const wait = family('tql_wait_seconds');
      expect(wait.type).toBe('HISTOGRAM');
      // The parser keeps a histogram's buckets but drops its labels, _sum and _count (it does the
      // same with prom-client's own Histogram); those two lines are read from the text.
      const h = wait.metrics[0]!;
      expect(Number(/^tql_wait_seconds_count\{limit="add"\} (\d+)$/m.exec(text)![1])).toBe(ok);
      const sum = Number(/^tql_wait_seconds_sum\{limit="add"\} ([\d.e-]+)$/m.exec(text)![1]);
      const buckets = Object.entries(h.buckets!)
        .map(([le, n]) => [Number(le), Number(n)] as const)
        .sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < buckets.length; i++) expect(buckets[i]![1]).toBeGreaterThanOrEqual(buckets[i - 1]![1]);
      expect(buckets.at(-1)![1]).toBe(ok);
      // Five were admitted at once (the burst); the rest waited up to 120 ms.
      expect(buckets.find(([le]) => le === 0.001)![1]).toBeGreaterThanOrEqual(5);
      expect(sum).toBeGreaterThan(0);
      expect(value('tql_server_completed_total', {})).toBe(ok);
      expect(value('tql_method_admitted_total', { method: 'add' })).toBe(ok);
      expect(value('tql_method_refused_total', { method: 'add', reason: 'queue_timeout' })).toBe(refused);
    } finally {
      await server.close({ timeoutMs: 100 });
    }
  });

  test('limiterMetrics exposes any limiters, under a chosen prefix', async () => {
    const tb = new TokenBucket({ rate: 1, burst: 2 });
    tb.tryAcquire();
    tb.tryAcquire();
    const text = await limiterMetrics({ downstream: tb }, { prefix: 'app_' }).metrics();
    expect(text).toContain('app_admitted_total{limit="downstream"} 2');
  });

  test("a scrape reads each limiter's snapshot once per metric it has series in, and tql_refused_total shows its queue and store refusals", async () => {
    // A real Redis client towards a port where nothing listens: the limit is down, fail-closed.
    const store = createRedisStore({ url: `redis://127.0.0.1:${await freePort()}`, onStoreError: 'fail-closed', timeoutMs: 200, log: () => {} });
    try {
      const remote = new TokenBucket({ rate: 100, burst: 1, store, key: 'scrape' });
      const local = new TokenBucket({ rate: 1, burst: 1, maxQueued: 0 });
      const refusals = await Promise.all([remote.acquire(), remote.acquire(), local.acquire(), local.acquire()].map((p) => p.catch((e: unknown) => e)));
      expect(refusals.map((e) => (e instanceof Error ? e.name : 'admitted'))).toEqual([
        'StoreUnavailableError',
        'StoreUnavailableError',
        'admitted',
        'QueueFullError',
      ]);
      expect(refusals[0]).toBeInstanceOf(StoreUnavailableError);
      const reads = { remote: vi.spyOn(remote, 'snapshot'), local: vi.spyOn(local, 'snapshot') };
      const text = await limiterMetrics({ remote, local }).metrics();
      // Families by their TYPE line; a histogram's series are its _bucket, _sum and _count lines.
      const names = [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!);
      const samples = text.split('\n').filter((line) => !line.startsWith('#'));
      const withSeriesOf = (limit: string): number =>
        names.filter((name) => samples.some((line) => new RegExp(`^${name}(?:_bucket|_sum|_count)?\\{[^}]*limit="${limit}"`).test(line))).length;
      expect(withSeriesOf('remote')).toBe(11);
      expect(withSeriesOf('local')).toBe(4);
      expect(reads.remote).toHaveBeenCalledTimes(withSeriesOf('remote'));
      expect(reads.local).toHaveBeenCalledTimes(withSeriesOf('local'));
      const refused = text.split('\n').filter((line) => line.startsWith('tql_refused_total{'));
      expect(refused).toEqual([
        'tql_refused_total{limit="remote",reason="queue_full"} 0',
        'tql_refused_total{limit="remote",reason="queue_timeout"} 0',
        'tql_refused_total{limit="remote",reason="aborted"} 0',
        'tql_refused_total{limit="remote",reason="store_unavailable"} 2',
        'tql_refused_total{limit="local",reason="queue_full"} 1',
        'tql_refused_total{limit="local",reason="queue_timeout"} 0',
        'tql_refused_total{limit="local",reason="aborted"} 0',
      ]);
    } finally {
      await store.close();
    }
  }, 20_000);
});
