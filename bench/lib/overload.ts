/**
 * Overload run: `calls` calls submitted in one synchronous loop to a limiter of `rate`/s with
 * bursts of `burst`, each call recording its start with process.hrtime.bigint(); after `windowMs`
 * the subject is stopped and the starts inside the window are judged against the ideal schedule.
 *
 * Definitions (t0 = clock reading just before the first call is submitted; starts sorted, k 0-based):
 * - ideal start of call k = t0 + max(0, k − burst + 1) × (1 s / rate): the burst at t0, then one
 *   call every token interval;
 * - start error of call k = its actual start − its ideal start (negative: earlier than a token
 *   bucket would allow);
 * - completed = starts within [t0, t0 + window]; ideal = min(calls, burst + ⌊rate × window⌋);
 * - most in any 100 ms = the largest number of starts in a closed interval [t, t + 100 ms]; the
 *   bound is burst + rate × 0.1 s;
 * - lead over the bucket (any interval) = max over every pair of starts i ≤ j of
 *   (j − i + 1 − burst) / rate − (start_j − start_i), 0 if never positive: how much earlier than
 *   a token bucket of `rate` and `burst` allows any start came, over intervals of every length
 *   (not only 100 ms). On recorded starts it includes the lag from the admission decision to
 *   the task's first instruction (usually microseconds; a GC pause or a stolen CPU in between
 *   makes it more), so where the subject exposes its decision times they are judged too.
 */
import { percentile } from './report.js';

export interface OverloadSpec {
  /** Calls per second the subject is configured for. */
  rate: number;
  /** Calls it may start at one instant. */
  burst: number;
  /** Calls submitted at once. */
  calls: number;
  /** Observation window, ms. */
  windowMs: number;
}

/** A limiter under test. */
export interface Subject {
  name: string;
  /** Submits one call that runs `fn` once admitted; a rejection (after stop) is ignored. */
  submit(fn: () => void): Promise<unknown>;
  /** Ends the run: drops or drains what is still queued (bounded in time). */
  stop(): Promise<void>;
  /**
   * Where the limiter exposes it: the clock reading it admitted the running call on (read from
   * inside the call). Judges admission decisions exactly, apart from the lag to the recorded start.
   */
  decisionNs?: () => bigint;
}

export interface OverloadResult {
  name: string;
  /** Time the submitting loop took, ms. */
  submitMs: number;
  completed: number;
  ideal: number;
  most100: number;
  bound100: number;
  /** Lead of the recorded starts over the bucket schedule, any interval, ms (0: never ahead). */
  leadMs: number;
  /** The same for the admission decisions, when the subject exposes them (else NaN). */
  decisionLeadMs: number;
  /** Start error percentiles, ms. */
  p50: number;
  p99: number;
  max: number;
}

const noop = (): void => {};

/** Runs one overload measurement of `subject`. */
export async function overload(subject: Subject, spec: OverloadSpec): Promise<OverloadResult> {
  const { calls, rate, burst, windowMs } = spec;
  const starts = new BigInt64Array(calls);
  const decisions = new BigInt64Array(subject.decisionNs ? calls : 0);
  const decisionNs = subject.decisionNs;
  let started = 0;
  const record =
    decisionNs === undefined
      ? (): void => {
          if (started < calls) starts[started++] = process.hrtime.bigint();
        }
      : (): void => {
          if (started < calls) {
            starts[started] = process.hrtime.bigint();
            decisions[started++] = decisionNs();
          }
        };
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) subject.submit(record).catch(noop);
  const submitMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const leftMs = windowMs - Number(process.hrtime.bigint() - t0) / 1e6;
  await new Promise((r) => setTimeout(r, Math.max(0, Math.ceil(leftMs))));
  await subject.stop();

  const windowNs = windowMs * 1e6;
  const inWindow = (times: BigInt64Array): number[] =>
    Array.from(times.subarray(0, started), (s) => Number(s - t0))
      .filter((t) => t <= windowNs)
      .sort((a, b) => a - b);
  const rel = inWindow(starts);
  const intervalNs = 1e9 / rate;

  let most100 = 0;
  for (let i = 0, j = 0; j < rel.length; j++) {
    while (rel[j]! - rel[i]! > 100e6) i++;
    most100 = Math.max(most100, j - i + 1);
  }

  const errors = rel.map((t, k) => (t - Math.max(0, k - burst + 1) * intervalNs) / 1e6).sort((a, b) => a - b);
  return {
    name: subject.name,
    submitMs,
    completed: rel.length,
    ideal: Math.min(calls, burst + Math.floor((rate * windowMs) / 1000)),
    most100,
    bound100: burst + rate * 0.1,
    leadMs: leadOverBucketNs(rel, burst, intervalNs) / 1e6,
    decisionLeadMs: decisionNs === undefined ? NaN : leadOverBucketNs(inWindow(decisions), burst, intervalNs) / 1e6,
    p50: percentile(errors, 0.5),
    p99: percentile(errors, 0.99),
    max: errors.at(-1) ?? NaN,
  };
}

/**
 * max over i ≤ j of (j − i + 1 − burst)·T − (t_j − t_i), at least 0, for sorted times t (ns):
 * = ((j + 1 − burst)·T − t_j) − (i·T − t_i), so keep the smallest (i·T − t_i) seen so far.
 */
function leadOverBucketNs(t: number[], burst: number, intervalNs: number): number {
  let lead = 0;
  let minPrefix = Infinity;
  for (let j = 0; j < t.length; j++) {
    minPrefix = Math.min(minPrefix, j * intervalNs - t[j]!);
    lead = Math.max(lead, (j + 1 - burst) * intervalNs - t[j]! - minPrefix);
  }
  return lead;
}

/** Resolves once `done()` holds or `limitMs` has passed, checking every 20 ms. */
export async function waitUntil(done: () => boolean, limitMs: number): Promise<boolean> {
  const end = performance.now() + limitMs;
  while (!done()) {
    if (performance.now() >= end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}
