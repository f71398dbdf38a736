/**
 * The deterministic schedule of the keyed thread test's "phases" job, shared by the worker
 * fixture (which runs it) and the test (which replays it on the single-threaded model).
 *
 * In phase p every thread calls tryAcquireAt at the same instant t_p for the keys of that phase.
 * At one instant the order of the calls does not matter: a key admits min(demand, tokens it has),
 * however the threads interleave. So the sum over threads of each key's admissions is fixed, and
 * any lost admission (a CAS failure dropped, a refusal judged on another key's state) or doubled
 * one (a key living in two slots) changes it.
 */

/** Parameters of the phases job. */
export interface PhasePlan {
  phases: number;
  keysPerPhase: number;
  /** Keys the window moves by from one phase to the next (the rest carry over). */
  shift: number;
  /** µs between phases. */
  stepUs: number;
  workers: number;
}

/** The key of slot `j` of phase `p`. */
export function phaseKey(plan: PhasePlan, p: number, j: number): string {
  return `tenant-${p * plan.shift + j}`;
}

/** Instant of phase `p`, ns since the table's epoch. */
export function phaseTime(plan: PhasePlan, p: number): bigint {
  return BigInt((p + 1) * plan.stepUs) * 1000n;
}

/** Calls thread `w` makes for slot `j` of phase `p`: 0, 1 or 2. */
export function demand(p: number, j: number, w: number): number {
  return (p + 2 * j + w) % 3;
}

/**
 * The order thread `w` visits the slots of phase `p` in: every thread the same order in even
 * phases (all threads insert the same new key at once), rotated and reversed per thread in odd ones.
 */
export function visitOrder(plan: PhasePlan, p: number, w: number): number[] {
  const k = plan.keysPerPhase;
  const order = Array.from({ length: k }, (_, j) => (p % 2 === 0 ? j : (j + Math.floor((w * k) / plan.workers)) % k));
  return p % 2 === 1 && w % 2 === 1 ? order.reverse() : order;
}
