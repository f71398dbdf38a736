/**
 * Core benchmarks: our limiters against bottleneck, limiter, p-queue, p-throttle and
 * rate-limiter-flexible, in one process, side by side (memory: one child process per library).
 * Writes bench/results/core.md.
 *
 *   npm run bench:core                full run (about 2 minutes)
 *   node dist/bench/core.js --quick   under 20 s: checks the suite runs and writes its report
 *
 * Every figure in the report is measured in the run that writes it; every target line is
 * computed from those figures.
 */
import { cpus, loadavg } from 'node:os';
import Bottleneck from 'bottleneck';
import { RateLimiter as LimiterRateLimiter } from 'limiter';
import PQueue from 'p-queue';
import pThrottle from 'p-throttle';
import { RateLimiterMemory, RateLimiterQueue } from 'rate-limiter-flexible';
import { systemClock, type Clock } from '../src/clock.js';
import { ConcurrencyLimit } from '../src/limiters/concurrency-limit.js';
import { FixedWindow } from '../src/limiters/fixed-window.js';
import type { Permit } from '../src/limiters/permit.js';
import { TokenBucket } from '../src/limiters/token-bucket.js';
import { memoryRun, type MemoryResult } from './lib/memory.js';
import { nsPerCall, type MicroOptions, type Op } from './lib/micro.js';
import { overload, waitUntil, type OverloadResult, type OverloadSpec, type Subject } from './lib/overload.js';
import { fmt, median, quick, table, verdict, writeResult } from './lib/report.js';
import { sharedBucketRun, type ThreadsResult } from './lib/threads.js';

/** One token per nanosecond: the fastest rate a limiter keeps, so the benchmarks never wait. */
const HUGE = 1e9;
const BATCH = 100;
const MICRO: MicroOptions = quick ? { runs: 1, timeMs: 60, warmupMs: 20 } : { runs: 5, timeMs: 300, warmupMs: 100 };
const THREAD_RUNS = quick ? 1 : 3;
const THREAD_MS = quick ? 250 : 1000;
const OVERLOAD: OverloadSpec = quick ? { rate: 1000, burst: 10, calls: 300, windowMs: 250 } : { rate: 1000, burst: 10, calls: 5000, windowMs: 3000 };
const OURS_OVERLOAD_RUNS = quick ? 1 : 3;
const MEMORY_COUNT = quick ? 20_000 : 100_000;
const MEMORY_RUNS = quick ? 1 : 3;
/** Float rounding allowance when judging decision times (ns integers) against the bucket: 1 ns. */
const LEAD_TOLERANCE_MS = 1e-6;
/** The wake-up credit λ of the overload bucket, ms (src/limiters/gcra.ts): its bound is burst + rate × (L + λ). */
const CREDIT_MS = Math.max(1000 / OVERLOAD.rate, 2);

const noop = (): void => {};
const noopAsync = async (): Promise<void> => {};
const releasePermit = (p: Permit): void => p.release();
const RESOLVED = Promise.resolve();

const t0 = performance.now();
function progress(what: string): void {
  console.log(`[${((performance.now() - t0) / 1000).toFixed(1)} s] ${what}`);
}

// ---------------------------------------------------------------------------------------------
// acquire + run of a no-op, tokens plentiful

const REF_RUN = 'ours: TokenBucket `tb.run(noop)`';
const REF_ACQUIRE = 'ours: TokenBucket `tb.acquire()`';
const FLOOR = '(floor) an already-resolved promise';

/** Fresh instances for each measurement, so no state carries over between phases. */
function acquireTasks(): Record<string, Op> {
  const tb = new TokenBucket({ rate: HUGE, burst: 1e9 });
  const fw = new FixedWindow({ maxCalls: 16_000_000, periodMs: 1000 });
  const cl = new ConcurrencyLimit({ max: 1000 });
  const bottleneck = new Bottleneck();
  const limiter = new LimiterRateLimiter({ tokensPerInterval: HUGE, interval: 'second' });
  const pq = new PQueue({ intervalCap: HUGE, interval: 1000 });
  const throttled = pThrottle({ limit: HUGE, interval: 1000 })(noop);
  const rlf = new RateLimiterQueue(new RateLimiterMemory({ points: HUGE, duration: 1 }));
  return {
    [FLOOR]: () => RESOLVED,
    [REF_ACQUIRE]: () => tb.acquire(),
    [REF_RUN]: () => tb.run(noop),
    'ours: FixedWindow `acquire()`': () => fw.acquire(),
    'ours: ConcurrencyLimit `acquire()` + `release()`': () => cl.acquire().then(releasePermit),
    'bottleneck `schedule(noop)`': () => bottleneck.schedule(noopAsync),
    'limiter `removeTokens(1)`': () => limiter.removeTokens(1),
    'p-queue `add(noop)`, interval mode': () => pq.add(noop),
    'p-throttle `throttled()`': () => throttled(),
    'rate-limiter-flexible `RateLimiterQueue.removeTokens(1)`': () => rlf.removeTokens(1),
  };
}

function tryTasks(): Record<string, Op> {
  const tb = new TokenBucket({ rate: HUGE, burst: 1e9 });
  const fw = new FixedWindow({ maxCalls: 16_000_000, periodMs: 1000 });
  const limiter = new LimiterRateLimiter({ tokensPerInterval: HUGE, interval: 'second' });
  return {
    'ours: TokenBucket `tryAcquire()`': () => tb.tryAcquire(),
    'ours: FixedWindow `tryAcquire()`': () => fw.tryAcquire(),
    'limiter `tryRemoveTokens(1)`': () => limiter.tryRemoveTokens(1),
    '(reference) `process.hrtime.bigint()`': () => process.hrtime.bigint(),
  };
}

// ---------------------------------------------------------------------------------------------
// Overload subjects: 1000/s with bursts of 10, or the closest each library offers

function oursSubject(spec: OverloadSpec): Subject {
  // The system clock, remembering its last reading: read from inside an admitted call, that is
  // the reading the call was admitted on (the queue reads the clock again only after the call
  // has started), so admission decisions can be checked exactly.
  let last = 0n;
  const clock: Clock = { now: () => (last = process.hrtime.bigint()), setTimer: (at, callback) => systemClock.setTimer(at, callback) };
  const tb = new TokenBucket({ rate: spec.rate, burst: spec.burst, clock });
  return {
    decisionNs: () => last,
    name: `ours: TokenBucket ${spec.rate}/s burst ${spec.burst}, \`run(fn)\``,
    submit: (fn) => tb.run(fn),
    // No cancel-all in the API (and a per-call signal would change the path measured): drain.
    stop: async () => {
      if (!(await waitUntil(() => tb.size === 0, (1000 * spec.calls) / spec.rate + 2000))) console.warn('  ours: queue not drained in time');
    },
  };
}

function bottleneckSubject(spec: OverloadSpec): Subject {
  const tokenMs = 1000 / spec.rate;
  // Bottleneck's token bucket: a reservoir topped up by 1 every token interval, up to the burst.
  // The heartbeat (default 250 ms) must tick every interval, or it adds one token per tick.
  const b = new Bottleneck({
    reservoir: spec.burst,
    reservoirIncreaseAmount: 1,
    reservoirIncreaseInterval: tokenMs,
    reservoirIncreaseMaximum: spec.burst,
    heartbeatInterval: tokenMs,
  });
  return {
    name: `bottleneck reservoir ${spec.burst}, +1 per ${tokenMs} ms`,
    submit: (fn) =>
      b.schedule(() => {
        fn();
        return RESOLVED;
      }),
    stop: async () => {
      await b.stop({ dropWaitingJobs: true });
      await b.disconnect();
    },
  };
}

function pQueueSubject(spec: OverloadSpec): Subject {
  const intervalMs = (1000 * spec.burst) / spec.rate;
  const q = new PQueue({ intervalCap: spec.burst, interval: intervalMs });
  return {
    name: `p-queue interval mode, ${spec.burst} per ${intervalMs} ms`,
    submit: (fn) => q.add(fn),
    stop: () => {
      q.pause();
      q.clear();
      return Promise.resolve();
    },
  };
}

async function overloadRuns(): Promise<{ ours: OverloadResult[]; peers: OverloadResult[] }> {
  const makers = [oursSubject, bottleneckSubject, pQueueSubject];
  // Warm-up: the same calls on the same code path at 20 × the rate (so what is left drains
  // fast), so that no library is measured in cold code or with a young generation sized for less.
  const warm: OverloadSpec = { ...OVERLOAD, rate: 20 * OVERLOAD.rate, windowMs: quick ? 50 : 150 };
  for (const make of makers) await overload(make(warm), warm);
  const ours: OverloadResult[] = [];
  for (let i = 0; i < OURS_OVERLOAD_RUNS; i++) ours.push(await overload(oursSubject(OVERLOAD), OVERLOAD));
  const peers: OverloadResult[] = [];
  for (const make of makers.slice(1)) peers.push(await overload(make(OVERLOAD), OVERLOAD));
  return { ours, peers };
}

// ---------------------------------------------------------------------------------------------

async function threadRuns(): Promise<{ one: ThreadsResult[]; two: ThreadsResult[]; check: ThreadsResult }> {
  const one: ThreadsResult[] = [];
  const two: ThreadsResult[] = [];
  for (let i = 0; i < THREAD_RUNS; i++) {
    one.push(await sharedBucketRun(1, HUGE, 1e9, THREAD_MS));
    two.push(await sharedBucketRun(2, HUGE, 1e9, THREAD_MS));
  }
  // A finite limit, so the shared state is actually contended and the bound can be checked.
  const check = await sharedBucketRun(2, 1e6, 1000, quick ? 200 : 500);
  return { one, two, check };
}

const rate = (r: ThreadsResult): number => r.admitted / r.spanS;

function mNs(v: number): string {
  return v >= 1e5 ? `${fmt(v / 1e6, 2)} ms` : `${fmt(v, 0)} ns`;
}

async function main(): Promise<void> {
  const c = cpus();
  const machineLine = `${c.length} × ${c[0]?.model ?? 'unknown CPU'}, Node ${process.version}, ${process.platform}/${process.arch}, load average at start ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' / ')}`;
  const date = new Date().toISOString();
  progress(`core benchmarks${quick ? ' (quick)' : ''}: ${machineLine}`);

  const serial = await nsPerCall(acquireTasks(), { kind: 'serial' }, MICRO);
  progress('acquire, awaited one by one: done');
  const batch = await nsPerCall(acquireTasks(), { kind: 'batch', size: BATCH }, MICRO);
  progress(`acquire, ${BATCH} in flight: done`);
  const tries = await nsPerCall(tryTasks(), { kind: 'sync' }, MICRO);
  progress('tryAcquire: done');
  const threads = await threadRuns();
  progress('threads: done');
  const over = await overloadRuns();
  progress('overload: done');
  const memory: MemoryResult[] = await memoryRun(MEMORY_COUNT, MEMORY_RUNS);
  progress('memory: done');

  // --- figures the targets are judged on
  const oursRun = serial[REF_RUN]!;
  const oursAcquire = serial[REF_ACQUIRE]!;
  const oursWorst = Math.max(oursRun, oursAcquire);
  const peerNames = Object.keys(serial).filter((k) => !k.startsWith('ours') && k !== FLOOR);
  const fastestPeer = peerNames.reduce((best, k) => (serial[k]! < serial[best]! ? k : best), peerNames[0]!);
  const fastestPeerBatch = peerNames.reduce((best, k) => (batch[k]! < batch[best]! ? k : best), peerNames[0]!);
  const oursWorstBatch = Math.max(batch[REF_RUN]!, batch[REF_ACQUIRE]!);
  const twoRate = median(threads.two.map(rate));
  const oneRate = median(threads.one.map(rate));
  const checkBound = 1000 + 1e6 * threads.check.spanS;
  const ours = over.ours;
  const completion = median(ours.map((r) => r.completed / r.ideal));
  const p99 = median(ours.map((r) => r.p99));
  const worst100 = Math.max(...ours.map((r) => r.most100));
  const worstLeadMs = Math.max(...ours.map((r) => r.leadMs));
  const worstDecisionLeadMs = Math.max(...ours.map((r) => r.decisionLeadMs));
  const bound100 = ours[0]!.bound100;
  const creditedBound100 = bound100 + (OVERLOAD.rate * CREDIT_MS) / 1000;
  const oursMem = memory.find((m) => m.name.startsWith('ours: TokenBucket acquire'))!;
  const oursRunMem = memory.find((m) => m.name.startsWith('ours: TokenBucket run'))!;
  const runsNote = ours.length > 1 ? `median of ${ours.length} runs; ` : '';

  const overRow = (r: OverloadResult, label = r.name): (string | number)[] => [
    label,
    `${r.completed} / ${r.ideal} (${fmt((100 * r.completed) / r.ideal, 2)} %)`,
    `${r.most100} / ${r.bound100}`,
    fmt(r.leadMs * 1000, 1),
    `${fmt(r.p50, 2)} / ${fmt(r.p99, 2)} / ${fmt(r.max, 2)}`,
    fmt(r.submitMs, 1),
  ];

  const oursTry = tries['ours: TokenBucket `tryAcquire()`']!;
  const threadRow = (label: string, runs: ThreadsResult[]): (string | number)[] => [
    label,
    fmt(median(runs.map((r) => r.nsPerAttempt)), 0),
    fmt(median(runs.map(rate)), 0),
    '',
  ];
  // Headings are followed directly by their tables, and the report stays under 60 lines.
  const lines = [
    `# Core benchmarks${quick ? ' — QUICK smoke run (short runs, figures indicative only)' : ''}`,
    `- Machine: ${machineLine}. Date: ${date}. Command: \`npm run bench:core\`${quick ? ' with `--quick`' : ''}.`,
    `- Method: every library in one process, same run (memory: one \`node --expose-gc\` child each). Per-call costs: tinybench, ${MICRO.runs} run(s) of ${MICRO.timeMs} ms per task, each iteration as many calls as fit in ~2 ms; figure = median over runs of each run's mean; task order rotated between runs. The host's 2 cores are shared and noisy: compare rows within one run.`,
    '',
    '## Targets',
    `- acquire + run ≤ 100 ns: ${verdict(oursWorst <= 100)} — \`await tb.run(noop)\` ${fmt(oursRun, 0)} ns, \`await tb.acquire()\` ${fmt(oursAcquire, 0)} ns (floor for one \`await\`: ${fmt(serial[FLOOR]!, 0)} ns)`,
    `- faster than every peer: ${verdict(oursWorst < serial[fastestPeer]!)} — fastest peer ${fastestPeer} ${fmt(serial[fastestPeer]!, 0)} ns = ${fmt(serial[fastestPeer]! / oursWorst, 2)} × our slower form (${BATCH} in flight: ${fastestPeerBatch} ${fmt(batch[fastestPeerBatch]! / oursWorstBatch, 2)} ×)`,
    `- no over-admission, ≤ burst + rate × (L + λ) with the wake-up credit λ = ${CREDIT_MS} ms: ${verdict(worst100 <= creditedBound100 && worstDecisionLeadMs <= CREDIT_MS + LEAD_TOLERANCE_MS && threads.check.admitted <= checkBound)} — worst run: ${worst100} starts in a 100 ms window (bound ${creditedBound100}; the bucket alone ${bound100}); any interval: admission decisions ${fmt(worstDecisionLeadMs * 1000, 1)} µs ahead of the bucket alone (at most λ = ${fmt(CREDIT_MS * 1000, 0)} µs), recorded starts ${fmt(worstLeadMs * 1000, 1)} µs; 2 threads sharing 1 M/s burst 1,000 through \`tryAcquire()\` (no waiter, so no credit): ${fmt(threads.check.admitted, 0)} admitted in ${fmt(threads.check.spanS, 3)} s, bound burst + rate × L = ${fmt(checkBound, 0)}`,
    `- completed ≥ 99.8 % of ideal: ${verdict(completion >= 0.998)} — ${fmt(100 * completion, 2)} % (${runsNote}runs: ${ours.map((r) => `${r.completed}/${r.ideal}`).join(', ')}${quick ? `; in a ${OVERLOAD.windowMs} ms window one call is ${fmt(100 / ours[0]!.ideal, 2)} %` : ''})`,
    `- p99 start error ≤ 2 ms: ${verdict(p99 <= 2)} — ${fmt(p99, 2)} ms (${runsNote}runs: ${ours.map((r) => fmt(r.p99, 2)).join(', ')})`,
    `- ≤ 350 bytes per queued call: ${verdict(oursMem.bytesPerCall <= 350)} — ${fmt(oursMem.bytesPerCall, 0)} B per \`acquire()\`, ${fmt(oursRunMem.bytesPerCall, 0)} B per \`run(noop)\`${MEMORY_COUNT !== 100_000 ? ` (${fmt(MEMORY_COUNT, 0)} waiters, not 100,000)` : ''}`,
    `- 2-thread aggregate ≥ 6 M acquires/s: ${verdict(twoRate >= 6e6)} — ${fmt(twoRate / 1e6, 2)} M/s (1 thread: ${fmt(oneRate / 1e6, 2)} M/s)`,
    '',
    `## acquire + run of a no-op, tokens plentiful (rate ${HUGE.toExponential(0)}/s); per call; × = relative to \`tb.run(noop)\``,
    table(
      ['library: call', 'awaited one by one', '×', `${BATCH} in flight, then \`Promise.all\``, '×'],
      Object.keys(serial).map((k) => [k, mNs(serial[k]!), fmt(serial[k]! / oursRun, 2), mNs(batch[k]!), fmt(batch[k]! / batch[REF_RUN]!, 2)]),
    ),
    '',
    `## tryAcquire alone; then one TokenBucket shared by worker threads (each \`attach\`es it, loops ${THREAD_MS} ms; median of ${THREAD_RUNS})`,
    table(
      ['call', 'ns per call (per thread)', 'admitted/s (all threads)', '× ours'],
      [
        ...Object.keys(tries).map((k) => [k, fmt(tries[k]!, 0), fmt(1e9 / tries[k]!, 0), fmt(tries[k]! / oursTry, 2)]),
        threadRow('ours: TokenBucket `tryAcquire()`, 1 worker thread', threads.one),
        threadRow('ours: TokenBucket `tryAcquire()`, 2 worker threads, one bucket', threads.two),
      ],
    ),
    '',
    `## Overload: ${OVERLOAD.calls} calls submitted at once to ${OVERLOAD.rate}/s, burst ${OVERLOAD.burst}; ${OVERLOAD.windowMs} ms observed (each after a warm-up run at 20 × the rate)`,
    `t0 = clock just before the first submit; starts recorded in the task with \`process.hrtime.bigint()\`, sorted; ideal start of call k (0-based) = t0 + max(0, k − ${OVERLOAD.burst - 1}) × ${1000 / OVERLOAD.rate} ms (burst − 1 = ${OVERLOAD.burst - 1}); start error = actual − ideal. Ideal count = min(calls, burst + ⌊rate × window⌋). Ahead = max over all pairs of starts of (count − burst) / rate − span, 0 if never positive (recorded starts lag the admission decision; ours' decisions, read through a wrapping clock, are judged in Targets). Bound = the bucket alone, burst + rate × 100 ms; ours may go past it by its wake-up credit (burst + rate × (L + λ), λ = ${CREDIT_MS} ms: ${creditedBound100} in 100 ms, up to ${fmt(CREDIT_MS * 1000, 0)} µs ahead), peers have none. Peers: one run each.`,
    '',
    table(
      ['library', 'completed / ideal', 'most in 100 ms / bound', 'ahead of bucket, any interval (µs)', 'start error p50 / p99 / max (ms)', 'submit loop (ms)'],
      [...ours.map((r, i) => overRow(r, ours.length > 1 ? `${r.name} #${i + 1}` : r.name)), ...over.peers.map((r) => overRow(r))],
    ),
    '',
    `## Memory: bytes per queued call, ${fmt(MEMORY_COUNT, 0)} waiters (heap used after full GC: after − before, ÷ count; limiter and promises kept reachable; median of ${MEMORY_RUNS} process${MEMORY_RUNS > 1 ? 'es' : ''})`,
    table(
      ['library: call', 'bytes per queued call', '× ours (`acquire()`)', 'queued (as reported)'],
      memory.map((m) => [m.name, fmt(m.bytesPerCall, 0), fmt(m.bytesPerCall / oursMem.bytesPerCall, 2), Number.isNaN(m.queued) ? 'n/a' : fmt(m.queued, 0)]),
    ),
  ];
  const text = lines.join('\n') + '\n';
  const path = writeResult('core.md', text);
  console.log(`\n${text}`);
  progress(`wrote ${path} (${text.split('\n').length} lines)`);
}

// Every phase is bounded in count and time; this catches a call that never settles.
setTimeout(
  () => {
    console.error('core benchmarks: watchdog expired, giving up');
    process.exit(2);
  },
  quick ? 60_000 : 300_000,
).unref();
await main();
// Limiters with pending timers (peers dropped mid-run) would otherwise keep the process alive.
process.exit(0);
