/**
 * Per-call cost of cheap operations with tinybench. One call is too short to time on its own, and
 * the libraries compared differ by four orders of magnitude, so each timed iteration runs as many
 * "units" as fit in about ITERATION_MS (calibrated per task), where a unit is one call awaited,
 * a batch of calls awaited together, or one synchronous call. The figure kept per run is the mean
 * ns per call; the reported figure is the median over runs, with task order rotated between runs.
 */
import { Bench } from 'tinybench';
import { median } from './report.js';

/** How the calls of a task are issued. */
export type Mode =
  /** `await op()`, one call after another. */
  | { kind: 'serial' }
  /** `size` calls started back to back, then `await Promise.all(...)`. */
  | { kind: 'batch'; size: number }
  /** `op()` in a plain loop; its result is ignored. */
  | { kind: 'sync' };

export interface MicroOptions {
  /** tinybench runs (the median over them is reported). */
  runs: number;
  /** Time budget per task and run, ms. */
  timeMs: number;
  /** Warm-up budget per task and run, ms. */
  warmupMs: number;
}

export type Op = () => unknown;

const ITERATION_MS = 2;
/** Bounds of the calibration: time spent and units run per task. */
const CALIBRATE_MS = 20;
const CALIBRATE_MAX_UNITS = 1_000_000;

/**
 * The body of one timed iteration: `k` units. Written out per mode so that the harness adds one
 * `await` per awaited call and nothing else.
 */
function iterationOf(op: Op, mode: Mode, k: number): () => unknown {
  switch (mode.kind) {
    case 'serial':
      return async () => {
        for (let j = 0; j < k; j++) await op();
      };
    case 'batch': {
      const size = mode.size;
      const pending: unknown[] = new Array<unknown>(size);
      return async () => {
        for (let j = 0; j < k; j++) {
          for (let i = 0; i < size; i++) pending[i] = op();
          await Promise.all(pending);
        }
      };
    }
    case 'sync':
      return () => {
        for (let j = 0; j < k; j++) op();
      };
  }
}

/** Units that fit in about ITERATION_MS (at least one), judged over a bounded trial. */
async function calibrate(op: Op, mode: Mode): Promise<number> {
  const unit = iterationOf(op, mode, 1);
  let n = 0;
  const start = performance.now();
  let elapsed = 0;
  while (n < CALIBRATE_MAX_UNITS) {
    if (mode.kind !== 'sync') await unit();
    else unit();
    n++;
    elapsed = performance.now() - start;
    if (elapsed >= CALIBRATE_MS) break;
  }
  return Math.max(1, Math.round((n * ITERATION_MS) / Math.max(elapsed, 1e-3)));
}

/** Median over runs of the mean ns per call of each task. Task order rotates from run to run. */
export async function nsPerCall(tasks: Record<string, Op>, mode: Mode, o: MicroOptions): Promise<Record<string, number>> {
  const names = Object.keys(tasks);
  const callsPerUnit = mode.kind === 'batch' ? mode.size : 1;
  const perIteration: Record<string, number> = {};
  for (const name of names) perIteration[name] = await calibrate(tasks[name]!, mode);
  const perRun: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let run = 0; run < o.runs; run++) {
    const bench = new Bench({ time: o.timeMs, warmupTime: o.warmupMs, iterations: 4, warmupIterations: 2, throws: true });
    for (let i = 0; i < names.length; i++) {
      const name = names[(i + run) % names.length]!;
      bench.add(name, iterationOf(tasks[name]!, mode, perIteration[name]!));
    }
    await bench.run();
    for (const task of bench.tasks) {
      const r = task.result;
      if (r.state !== 'completed') throw new Error(`${task.name}: ${r.state === 'errored' ? r.error.message : r.state}`);
      perRun[task.name]!.push((r.latency.mean * 1e6) / (perIteration[task.name]! * callsPerUnit));
    }
  }
  return Object.fromEntries(names.map((n) => [n, median(perRun[n]!)]));
}
