/**
 * A deterministic overload scenario on a ManualClock: one heavy client and several light ones
 * submit calls on a fixed schedule, through a fair queue or straight to the limiter (FIFO), and
 * every call's arrival, start or refusal is recorded. Used by the fairness benchmark and by
 * test/fair/fair-queue.test.ts.
 */
import { ManualClock } from '../../src/clock.js';
import { FairQueue } from '../../src/fair/fair-queue.js';
import { TokenBucket } from '../../src/limiters/token-bucket.js';
import { mulberry32 } from './prng.js';

/** Who sends what. */
export interface Scenario {
  /** Limit, calls per second, and its burst. */
  rate: number;
  burst: number;
  /** Heavy client's offered rate, calls per second. */
  heavyRate: number;
  /** Number of light clients and each one's offered rate. */
  lights: number;
  lightRate: number;
  /** Simulated duration, ms (every call arrives on a whole millisecond). */
  durationMs: number;
  /** Total waiting calls allowed: the FIFO's maxQueued, the fair queue's maxQueuedPerFlow × flows. */
  maxQueued: number;
}

/** What happened to one client's calls. */
export interface ClientResult {
  offered: number;
  served: number;
  refused: number;
  /** Waits of served calls, ms, sorted. */
  waits: number[];
}

/** Results of one run. */
export interface RunResult {
  heavy: ClientResult;
  lights: ClientResult[];
  /** Start times of every call, ns, in order. */
  starts: bigint[];
}

/** Runs `scenario` through a fair queue (flows by client) or the limiter's own FIFO. */
export async function simulate(scenario: Scenario, mode: 'fair' | 'fifo'): Promise<RunResult> {
  const clock = new ManualClock();
  const flows = scenario.lights + 1;
  const bucket = new TokenBucket({ rate: scenario.rate, burst: scenario.burst, clock, ...(mode === 'fifo' ? { maxQueued: scenario.maxQueued } : {}) });
  const fair = mode === 'fair' ? new FairQueue(bucket, { clock, maxQueuedPerFlow: Math.floor(scenario.maxQueued / flows) }) : undefined;
  const client = (): ClientResult => ({ offered: 0, served: 0, refused: 0, waits: [] });
  const result: RunResult = { heavy: client(), lights: Array.from({ length: scenario.lights }, client), starts: [] };
  const random = mulberry32(42);
  // Arrival schedule: client c sends at phase_c + k × interval_c (whole ms).
  const heavyEvery = 1000 / scenario.heavyRate;
  const lightEvery = 1000 / scenario.lightRate;
  const phases = Array.from({ length: scenario.lights }, () => Math.floor(random() * lightEvery));
  const submit = (who: ClientResult, flow: string): void => {
    who.offered++;
    const arrived = clock.nowMs();
    const task = (): void => {
      result.starts.push(clock.now());
      who.served++;
      who.waits.push(clock.nowMs() - arrived);
    };
    const p = fair ? fair.run(task, { flow }) : bucket.run(task);
    p.catch(() => {
      who.refused++;
    });
  };
  let nextHeavy = 0;
  for (let t = 0; t < scenario.durationMs; t++) {
    while (nextHeavy <= t) {
      submit(result.heavy, 'heavy');
      nextHeavy += heavyEvery;
    }
    for (let i = 0; i < scenario.lights; i++) {
      if (t >= phases[i]! && (t - phases[i]!) % lightEvery === 0) submit(result.lights[i]!, `light${i}`);
    }
    await clock.advance(1);
  }
  // Stop: what still waits is refused, and not counted as served or refused.
  const pending = [result.heavy, ...result.lights].map((c) => c.refused);
  if (fair) fair.clear();
  else bucket.clear();
  await clock.advance(0);
  [result.heavy, ...result.lights].forEach((c, i) => {
    c.refused = pending[i]!;
  });
  for (const c of [result.heavy, ...result.lights]) c.waits.sort((a, b) => a - b);
  return result;
}

/** The p-th percentile (0..100) of sorted values, nearest rank; 0 when empty. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/**
 * The max-min fair allocation of `capacity` among demands: every client gets its demand or an
 * equal share of what is left, whichever is smaller (water filling).
 */
export function maxMinFair(demands: number[], capacity: number): number[] {
  const share = new Array<number>(demands.length).fill(0);
  let left = capacity;
  let open = demands.map((_, i) => i);
  while (open.length > 0 && left > 1e-9) {
    const each = left / open.length;
    const satisfied = open.filter((i) => demands[i]! - share[i]! <= each);
    if (satisfied.length === 0) {
      for (const i of open) share[i]! += each;
      break;
    }
    for (const i of satisfied) {
      left -= demands[i]! - share[i]!;
      share[i] = demands[i]!;
    }
    open = open.filter((i) => !satisfied.includes(i));
  }
  return share;
}

/** Jain's fairness index of `x`: (Σx)² / (n Σx²); 1 when all equal, 1/n when one takes all. */
export function jain(x: number[]): number {
  const sum = x.reduce((a, b) => a + b, 0);
  const squares = x.reduce((a, b) => a + b * b, 0);
  return squares === 0 ? 1 : (sum * sum) / (x.length * squares);
}
