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
 * - calls over bound (any interval) = max over every pair of starts i ≤ j of
 *   (j − i + 1) − (burst + rate × (start_j − start_i)), rounded up, 0 if negative: the token
 *   bucket's guarantee checked for every interval length, not only 100 ms.
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
}

export interface OverloadResult {
  name: string;
  /** Time the submitting loop took, ms. */
  submitMs: number;
  completed: number;
  ideal: number;
  most100: number;
  bound100: number;
  overAnyInterval: number;
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
  let started = 0;
  const record = (): void => {
    if (started < calls) starts[started++] = process.hrtime.bigint();
  };
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) subject.submit(record).catch(noop);
  const submitMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const leftMs = windowMs - Number(process.hrtime.bigint() - t0) / 1e6;
  await new Promise((r) => setTimeout(r, Math.max(0, Math.ceil(leftMs))));
  await subject.stop();

  const windowNs = windowMs * 1e6;
  const rel = Array.from(starts.subarray(0, started), (s) => Number(s - t0))
    .filter((t) => t <= windowNs)
    .sort((a, b) => a - b);
  const intervalNs = 1e9 / rate;

  let most100 = 0;
  for (let i = 0, j = 0; j < rel.length; j++) {
    while (rel[j]! - rel[i]! > 100e6) i++;
    most100 = Math.max(most100, j - i + 1);
  }

  // (j − i + 1) − burst − rate·(s_j − s_i) = (j + 1 − s_j/T) − (i − s_i/T) − burst: keep the
  // smallest (i − s_i/T) seen so far.
  let excess = -Infinity;
  let minPrefix = Infinity;
  for (let j = 0; j < rel.length; j++) {
    minPrefix = Math.min(minPrefix, j - rel[j]! / intervalNs);
    excess = Math.max(excess, j + 1 - rel[j]! / intervalNs - minPrefix - burst);
  }

  const errors = rel.map((t, k) => (t - Math.max(0, k - burst + 1) * intervalNs) / 1e6).sort((a, b) => a - b);
  return {
    name: subject.name,
    submitMs,
    completed: rel.length,
    ideal: Math.min(calls, burst + Math.floor((rate * windowMs) / 1000)),
    most100,
    bound100: burst + rate * 0.1,
    overAnyInterval: excess > 1e-9 ? Math.ceil(excess - 1e-9) : 0,
    p50: percentile(errors, 0.5),
    p99: percentile(errors, 0.99),
    max: errors.at(-1) ?? NaN,
  };
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
