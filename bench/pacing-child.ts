/**
 * One run of the pacing benchmark (bench/pacing.ts), in a process of its own so every run starts
 * on an idle event loop: a limit at burst 1 (or one call per window), the library loaded from the
 * build the parent names (this checkout's, or an older one to compare with), `count` calls
 * submitted at once through `run()`, each recording the instant its task starts. Sends back the
 * starts and what the process spent: CPU (process.cpuUsage) and event-loop utilization over the
 * run. Bounded in time: the parent kills a child that has not answered in time.
 */
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import pThrottle from 'p-throttle';

/** What the parent passes (JSON in argv[2]). */
export interface PacingConfig {
  subject: 'token-bucket' | 'fixed-window' | 'p-throttle';
  /** The build to load the library from: a directory holding `src/index.js` (a `dist/`). */
  lib: string;
  /** Calls per second. */
  rate: number;
  /** Calls submitted at once. */
  count: number;
  /** token-bucket: hold the limit in Redis at this URL. */
  redisUrl?: string;
}

/** What a run sends back. */
export interface PacingResult {
  /** Start instants, ns relative to the first, as numbers. */
  starts: number[];
  /** Ours: admission instants (the clock reading the admitting step was judged on), same origin. */
  admissions?: number[];
  /** process.cpuUsage (user + system) over the run, µs. */
  cpuUs: number;
  /** Wall time of the run, µs. */
  wallUs: number;
  /** performance.eventLoopUtilization over the run, 0..1. */
  elu: number;
  /** Redis store: the longest a token was held before use, ms (`snapshot().store.maxHoldMs`). */
  holdMs?: number;
}

interface Runner {
  run(task: () => void): Promise<unknown>;
  close(): Promise<void>;
  holdMs?(): number;
  /** Ours: the limiter's last clock reading; inside an admitted task, its admission instant. */
  lastReading?(): bigint;
}

interface Library {
  systemClock: { setTimer(at: bigint, callback: () => void): unknown };
  TokenBucket: new (o: Record<string, unknown>) => { run(task: () => void): Promise<unknown>; snapshot(): { store?: { maxHoldMs: number } } };
  FixedWindow: new (o: Record<string, unknown>) => { run(task: () => void): Promise<unknown> };
  createRedisStore(o: Record<string, unknown>): { connect(): Promise<void>; close(): Promise<void> };
}

async function runner(config: PacingConfig, rate: number, tag: string): Promise<Runner> {
  if (config.subject === 'p-throttle') {
    const throttled = pThrottle({ limit: 1, interval: 1000 / rate })((task: () => void): Promise<void> => {
      task();
      return Promise.resolve();
    });
    return { run: (task) => throttled(task), close: () => Promise.resolve() };
  }
  const lib = (await import(pathToFileURL(join(config.lib, 'src', 'index.js')).href)) as Library;
  // The process clock, remembering its last reading: an admission is judged on a fresh reading and
  // the admitted task starts right after it, so inside the task this is its admission instant.
  let last = 0n;
  const clock = { now: () => (last = process.hrtime.bigint()), setTimer: (at: bigint, callback: () => void) => lib.systemClock.setTimer(at, callback) };
  const lastReading = (): bigint => last;
  if (config.subject === 'fixed-window') {
    const fw = new lib.FixedWindow({ maxCalls: 1, periodMs: 1000 / rate, clock });
    return { run: (task) => fw.run(task), close: () => Promise.resolve(), lastReading };
  }
  if (config.redisUrl === undefined) {
    const tb = new lib.TokenBucket({ rate, burst: 1, clock });
    return { run: (task) => tb.run(task), close: () => Promise.resolve(), lastReading };
  }
  const store = lib.createRedisStore({ url: config.redisUrl, prefix: `pacing:${process.pid}:${tag}:` });
  await store.connect();
  const tb = new lib.TokenBucket({ rate, burst: 1, store, key: 'paced', clock });
  return { run: (task) => tb.run(task), close: () => store.close(), holdMs: () => tb.snapshot().store!.maxHoldMs, lastReading };
}

/**
 * Submits `count` calls at once; `onSubmitted` runs once they all are. Resolves with their start
 * instants (ns) and, for ours, their admission instants.
 */
async function burst(r: Runner, count: number, onSubmitted = (): void => {}): Promise<{ starts: bigint[]; admissions: bigint[] }> {
  const starts: bigint[] = [];
  const admissions: bigint[] = [];
  const calls = Array.from({ length: count }, () =>
    r.run(() => {
      starts.push(process.hrtime.bigint());
      if (r.lastReading) admissions.push(r.lastReading());
    }),
  );
  onSubmitted();
  await Promise.all(calls);
  return { starts, admissions };
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2]!) as PacingConfig;
  // Warm-up on a limiter of its own at 20 × the rate, so the run measures pacing, not V8 compiling
  // the admission path.
  const warm = await runner(config, config.rate * 20, 'warm');
  await burst(warm, Math.max(20, config.rate / 5));
  await warm.close();

  const r = await runner(config, config.rate, 'run');
  // What pacing costs is measured from the end of the submit loop, which costs the same whatever
  // paces the calls afterwards.
  let cpu0 = process.cpuUsage();
  let elu0 = performance.eventLoopUtilization();
  let t0 = process.hrtime.bigint();
  const { starts, admissions } = await burst(r, config.count, () => {
    cpu0 = process.cpuUsage();
    elu0 = performance.eventLoopUtilization();
    t0 = process.hrtime.bigint();
  });
  const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const elu = performance.eventLoopUtilization(elu0).utilization;
  const holdMs = r.holdMs?.();
  await r.close();
  const first = starts[0]!;
  const result: PacingResult = {
    starts: starts.map((t) => Number(t - first)),
    admissions: r.lastReading ? admissions.map((t) => Number(t - first)) : undefined,
    cpuUs: cpu.user + cpu.system,
    wallUs,
    elu,
    holdMs,
  };
  process.send!(result);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
