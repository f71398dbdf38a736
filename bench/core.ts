/**
 * Core benchmarks: our limiters against bottleneck, limiter, p-queue, p-throttle and
 * rate-limiter-flexible, in one process, side by side. Writes bench/results/core.md.
 *
 *   npm run bench:core            full run (a few minutes)
 *   node dist/bench/core.js --quick   a few seconds: checks the suite runs and writes its report
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import Bottleneck from 'bottleneck';
import { RateLimiter as LimiterRateLimiter } from 'limiter';
import PQueue from 'p-queue';
import pThrottle from 'p-throttle';
import { RateLimiterMemory, RateLimiterQueue } from 'rate-limiter-flexible';
import { Bench } from 'tinybench';
import { ConcurrencyLimit } from '../src/limiters/concurrency-limit.js';
import { FixedWindow } from '../src/limiters/fixed-window.js';
import { TokenBucket } from '../src/limiters/token-bucket.js';
import { fmt, machine, median, percentile, quick, table, verdict, writeResult } from './lib/report.js';

// Operations per timed iteration: single calls are too short to time one by one, and peers differ
// by four orders of magnitude, so each task gets as many as fit in about 2 ms.
const ITERATION_MS = 2;
const RUNS = quick ? 1 : 5;
const HUGE = 1e12;
const noop = (): void => {};

type Op = () => Promise<unknown> | unknown;

/** How many calls of `op` fit in about ITERATION_MS (at least 1). */
async function calibrate(op: Op, isAsync: boolean): Promise<number> {
  let n = 0;
  const end = performance.now() + 5 * ITERATION_MS;
  while (performance.now() < end) {
    if (isAsync) await op();
    else op();
    n++;
  }
  return Math.max(1, Math.round(n / 5));
}

/** ns per operation of each task, median over RUNS tinybench runs. */
async function nsPerOp(tasks: Record<string, Op>, isAsync: boolean): Promise<Record<string, number>> {
  const perRun: Record<string, number[]> = {};
  const ops: Record<string, number> = {};
  for (const [name, op] of Object.entries(tasks)) ops[name] = await calibrate(op, isAsync);
  for (let run = 0; run < RUNS; run++) {
    const bench = new Bench({ time: quick ? 100 : 400, warmupTime: quick ? 20 : 100 });
    for (const [name, op] of Object.entries(tasks)) {
      const n = ops[name]!;
      bench.add(
        name,
        isAsync
          ? async () => { for (let i = 0; i < n; i++) await op(); }
          : () => { for (let i = 0; i < n; i++) op(); },
      );
    }
    await bench.run();
    for (const task of bench.tasks) {
      const r = task.result;
      if (r.state !== 'completed') throw new Error(`${task.name}: ${r.state === 'errored' ? r.error.message : r.state}`);
      (perRun[task.name] ??= []).push((r.latency.mean * 1e6) / ops[task.name]!);
    }
  }
  return Object.fromEntries(Object.entries(perRun).map(([k, v]) => [k, median(v)]));
}

async function acquireRun(): Promise<Record<string, number>> {
  const tb = new TokenBucket({ rate: HUGE, burst: 1_000_000 });
  const fw = new FixedWindow({ maxCalls: 2_000_000_000, periodMs: 1000 });
  const cl = new ConcurrencyLimit({ max: 1000 });
  const bottleneck = new Bottleneck();
  const limiter = new LimiterRateLimiter({ tokensPerInterval: HUGE, interval: 'second' });
  const pq = new PQueue({ intervalCap: HUGE, interval: 1000 });
  const throttled = pThrottle({ limit: HUGE, interval: 1000 })(noop);
  const rlf = new RateLimiterQueue(new RateLimiterMemory({ points: HUGE, duration: 1 }));
  return nsPerOp(
    {
      'ours: TokenBucket await acquire()': () => tb.acquire(),
      'ours: TokenBucket await run(noop)': () => tb.run(noop),
      'ours: FixedWindow await acquire()': () => fw.acquire(),
      'ours: ConcurrencyLimit acquire + release': async () => (await cl.acquire()).release(),
      'bottleneck schedule(noop)': () => bottleneck.schedule(async () => {}),
      'limiter removeTokens(1)': () => limiter.removeTokens(1),
      'p-queue add(noop), interval mode': () => pq.add(noop),
      'p-throttle throttled()': () => throttled(),
      'rate-limiter-flexible RateLimiterQueue.removeTokens(1)': () => rlf.removeTokens(1),
    },
    true,
  );
}

async function tryRun(): Promise<Record<string, number>> {
  const tb = new TokenBucket({ rate: HUGE, burst: 1_000_000 });
  const fw = new FixedWindow({ maxCalls: 2_000_000_000, periodMs: 1000 });
  const limiter = new LimiterRateLimiter({ tokensPerInterval: HUGE, interval: 'second' });
  return nsPerOp(
    {
      'ours: TokenBucket tryAcquire()': () => tb.tryAcquire(),
      'ours: FixedWindow tryAcquire()': () => fw.tryAcquire(),
      'limiter tryRemoveTokens(1)': () => limiter.tryRemoveTokens(1),
    },
    false,
  );
}

/** Aggregate tryAcquire/s of `threads` threads on one shared bucket. */
async function threadsRun(threads: number): Promise<number> {
  const tb = new TokenBucket({ rate: HUGE, burst: 1_000_000 });
  const go = new SharedArrayBuffer(4);
  const durationMs = quick ? 300 : 1000;
  const workers = Array.from({ length: threads }, () => new Worker(new URL('./core-thread.js', import.meta.url), { workerData: { descriptor: tb.share(), durationMs, go } }));
  await Promise.all(workers.map((w) => new Promise((r) => w.once('message', r))));
  const results = workers.map((w) => new Promise<number>((r) => w.once('message', (m: { admitted: number }) => r(m.admitted))));
  Atomics.store(new Int32Array(go), 0, 1);
  Atomics.notify(new Int32Array(go), 0);
  const admitted = (await Promise.all(results)).reduce((a, b) => a + b, 0);
  await Promise.all(workers.map((w) => w.terminate()));
  return admitted / (durationMs / 1000);
}

interface OverloadResult {
  name: string;
  completed: number;
  ideal: number;
  most100: number;
  p50: number;
  p99: number;
  max: number;
}

/**
 * 1000/s, burst 10, `calls` submitted at once, measured for `seconds`: starts are recorded in the
 * admitted function. Ideal start of the k-th start (0-based, in order) is t0 + max(0, k − 9) ms:
 * the burst of 10 at t0, then one every millisecond.
 */
async function overload(name: string, schedule: (fn: () => void) => Promise<unknown>, stop: () => void, calls: number, seconds: number): Promise<OverloadResult> {
  const starts: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) schedule(() => { starts.push(performance.now()); }).catch(noop);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  stop();
  const within = starts.filter((t) => t - t0 <= seconds * 1000).sort((a, b) => a - b);
  let most100 = 0;
  for (let i = 0, j = 0; j < within.length; j++) {
    while (within[j]! - within[i]! >= 100) i++;
    most100 = Math.max(most100, j - i + 1);
  }
  const errors = within.map((t, k) => t - (t0 + Math.max(0, k - 9))).sort((a, b) => a - b);
  return { name, completed: within.length, ideal: Math.min(calls, 10 + 1000 * seconds), most100, p50: percentile(errors, 0.5), p99: percentile(errors, 0.99), max: errors.at(-1) ?? NaN };
}

async function overloadRun(): Promise<OverloadResult[]> {
  const calls = quick ? 600 : 5000;
  const seconds = quick ? 0.4 : 3;
  const results: OverloadResult[] = [];
  {
    const tb = new TokenBucket({ rate: 1000, burst: 10 });
    const abort = new AbortController();
    results.push(await overload('ours: TokenBucket 1000/s burst 10', (fn) => tb.run(fn, 1, { signal: abort.signal }), () => abort.abort(), calls, seconds));
  }
  {
    // Bottleneck's reservoir refills too coarsely for a 1 ms token interval; minTime spaces calls.
    const b = new Bottleneck({ minTime: 1 });
    results.push(await overload('bottleneck minTime 1 ms', (fn) => b.schedule(async () => fn()), () => void b.stop({ dropWaitingJobs: true }), calls, seconds));
  }
  {
    const q = new PQueue({ intervalCap: 10, interval: 10 });
    results.push(await overload('p-queue 10 per 10 ms interval', (fn) => q.add(fn), () => q.clear(), calls, seconds));
  }
  {
    const l = new LimiterRateLimiter({ tokensPerInterval: 10, interval: 10 });
    let stopped = false;
    results.push(await overload('limiter 10 per 10 ms (bucket 10)', (fn) => l.removeTokens(1).then(() => { if (!stopped) fn(); }), () => { stopped = true; }, calls, seconds));
  }
  return results;
}

async function memoryRun(): Promise<Record<string, number>> {
  const run = promisify(execFile);
  const script = fileURLToPath(new URL('./core-memory.js', import.meta.url));
  const out: Record<string, number> = {};
  for (const name of ['thrift-queue-limiter', 'bottleneck', 'p-queue', 'limiter', 'rate-limiter-flexible']) {
    const { stdout } = await run(process.execPath, ['--expose-gc', script, name, quick ? '20000' : '100000'], { timeout: 120_000 });
    out[name] = (JSON.parse(stdout) as { bytesPerCall: number }).bytesPerCall;
  }
  return out;
}

async function main(): Promise<void> {
  console.log(`core benchmarks${quick ? ' (quick)' : ''}: ${machine()}`);
  const acquire = await acquireRun();
  console.log('acquire done');
  const tries = await tryRun();
  const one = await threadsRun(1);
  const two = await threadsRun(2);
  console.log('threads done');
  const over = await overloadRun();
  console.log('overload done');
  const memory = await memoryRun();

  const oursAcquire = acquire['ours: TokenBucket await acquire()']!;
  const oursRun = acquire['ours: TokenBucket await run(noop)']!;
  const peers = Object.entries(acquire).filter(([k]) => !k.startsWith('ours'));
  const fastestPeer = Math.min(...peers.map(([, v]) => v));
  const ours = over[0]!;
  const lines = [
    `# Core benchmarks${quick ? ' (QUICK smoke run: figures are not meaningful)' : ''}`,
    '',
    `Machine: ${machine()}. Command: \`npm run bench:core\`${quick ? ' (here `--quick`)' : ''}.`,
    `Method: tinybench, each timed iteration runs as many calls as fit in about ${ITERATION_MS} ms (calibrated per library), median of the per-call mean over ${RUNS} runs; all libraries in the same process, same run. Calls are awaited one after another.`,
    '',
    '## acquire + run of a no-op, tokens plentiful (ns per call, lower is better)',
    '',
    table(['library / call', 'ns per call', 'vs ours (acquire)'], Object.entries(acquire).map(([k, v]) => [k, fmt(v, 0), `${fmt(v / oursAcquire, 1)} ×`])),
    '',
    '## tryAcquire alone (ns per call)',
    '',
    table(['library / call', 'ns per call'], Object.entries(tries).map(([k, v]) => [k, fmt(v, 0)])),
    '',
    '## One shared TokenBucket, tryAcquire in a tight loop per thread',
    '',
    table(['threads', 'aggregate acquires/s'], [[1, fmt(one, 0)], [2, fmt(two, 0)]]),
    '',
    `## Overload: 1000/s, burst 10, ${quick ? 600 : 5000} calls submitted at once, ${quick ? 0.4 : 3} s`,
    '',
    'Start error = actual start − ideal start, where the k-th start (0-based, in order) ideally comes at t0 + max(0, k − 9) ms.',
    '',
    table(['library', 'completed / ideal', 'most starts in any 100 ms (bound 110)', 'start error p50 / p99 / max (ms)'],
      over.map((r) => [r.name, `${r.completed} / ${r.ideal} (${fmt((100 * r.completed) / r.ideal, 2)} %)`, r.most100, `${fmt(r.p50, 2)} / ${fmt(r.p99, 2)} / ${fmt(r.max, 2)}`])),
    '',
    `## Memory: bytes per queued call with ${quick ? '20,000' : '100,000'} waiters (heap after GC)`,
    '',
    table(['library', 'bytes per queued call'], Object.entries(memory).map(([k, v]) => [k, fmt(v, 0)])),
    '',
    '## Targets',
    '',
    `- acquire + run ≤ 100 ns: ${verdict(oursRun <= 100)} (${fmt(oursRun, 0)} ns for \`await run(noop)\`, ${fmt(oursAcquire, 0)} ns for \`await acquire()\`)`,
    `- faster than every peer: ${verdict(Math.max(oursAcquire, oursRun) < fastestPeer)} (fastest peer ${fmt(fastestPeer, 0)} ns, ${fmt(fastestPeer / Math.max(oursAcquire, oursRun), 1)} × ours)`,
    `- zero over-admission: ${verdict(ours.most100 <= 110)} (most in any 100 ms: ${ours.most100}, bound 110)`,
    `- completed ≥ 99.8 % of ideal: ${verdict(ours.completed >= 0.998 * ours.ideal)} (${fmt((100 * ours.completed) / ours.ideal, 2)} %)`,
    `- p99 start error ≤ 2 ms: ${verdict(ours.p99 <= 2)} (${fmt(ours.p99, 2)} ms)`,
    `- ≤ 350 bytes per queued call: ${verdict(memory['thrift-queue-limiter']! <= 350)} (${fmt(memory['thrift-queue-limiter']!, 0)} bytes)`,
    `- 2-thread aggregate ≥ 6 M acquires/s: ${verdict(two >= 6e6)} (${fmt(two / 1e6, 2)} M/s; 1 thread ${fmt(one / 1e6, 2)} M/s)`,
    '',
  ];
  const path = writeResult('core.md', lines.join('\n'));
  console.log(lines.join('\n'));
  console.log(`\nwrote ${path}`);
}

await main();
process.exit(0);
