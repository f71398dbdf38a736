/**
 * The generic cell rate algorithm (GCRA): a token bucket kept as one 64-bit word, shared by the
 * token bucket, the keyed table's overflow bucket and a store-backed limit's local share.
 *
 * Instead of a token count and a last-refill time (two words, which cannot change together in
 * one atomic step), GCRA keeps the theoretical arrival time TAT: the moment the bucket would be
 * full again if nothing else were taken. With emission interval T = period / rate and bucket size
 * b, a call of n tokens at time t is admitted iff
 *
 *     max(TAT, t) + n·T − t ≤ b·T
 *
 * and admission sets TAT ← max(TAT, t) + n·T, in one compare-and-swap. An empty history (TAT in
 * the past) is a full bucket: b tokens at once, then one every T.
 *
 * Guarantee: over any closed interval of length L, calls admitted ≤ b + L/T = burst + rate × L,
 * counted over every thread, because every admission moves the one shared TAT forward by n·T and
 * TAT may never run more than b·T ahead of the clock. Rounding T up (to whole ns, or µs) can only
 * admit fewer calls, never more.
 *
 * The keyed table's slots run the same test on µs-wide words with the ns remainder kept apart
 * (keyed-table.ts); every ns-wide word goes through the functions here.
 */
import type { Nanos } from '../clock.js';

/**
 * Takes n tokens at `now` from the GCRA word `i64[index]` if the bucket holds them.
 * @param cost n·T, ns.
 * @param tolerance b·T, ns: how far TAT may run ahead of the clock.
 * @returns true iff admitted (TAT moved to max(TAT, now) + cost).
 */
export function gcraTake(i64: BigInt64Array, index: number, now: Nanos, cost: bigint, tolerance: bigint): boolean {
  for (;;) {
    const tat = Atomics.load(i64, index);
    const next = (tat > now ? tat : now) + cost;
    if (next - now > tolerance) return false;
    if (Atomics.compareExchange(i64, index, tat, next) === tat) return true;
  }
}

/**
 * Earliest time a call of `tokens` (its own n plus any queued ahead of it) passes the admission
 * test against `tat`, i.e. TAT + tokens·T − b·T; a time before now means at once.
 * @param interval T, ns.
 * @param tolerance b·T, ns.
 */
export function gcraReadyAt(tat: Nanos, tokens: number, interval: bigint, tolerance: bigint): Nanos {
  return tat + BigInt(tokens) * interval - tolerance;
}

/**
 * The debt (TAT − now, ns; 0 for a full bucket) a bucket of interval T and burst b has after its
 * limit changes to T', b' at the instant its debt is `debt`: the conversion a change applies, in
 * the same compare-and-swap that installs T' and b' (token-bucket.ts).
 *
 * The change must not let any interval see more admissions than the larger of the two bounds,
 * b + L/T and b' + L/T'. Take an interval [t − A, t + C] around the change at t, with D the debt
 * before and D' after. GCRA before the change admitted at most (D + A)/T in [t − A, t] (every
 * admission moved TAT on by T, and TAT ≤ t + D), and admits at most b' + C/T' − D'/T' in
 * [t, t + C]. So the interval sees at most
 *
 *     A/T + C/T' + b' + D/T − D'/T'.
 *
 * - Rate raised or kept (T' ≤ T): keep the tokens *missing*, D'/T' ≥ D/T. The sum is then at most
 *   b' + A/T + C/T' ≤ b' + (A + C)/T', the new bound. Keeping the tokens *available* instead
 *   (x/time/rate's choice) would break it: a bucket just emptied at the old burst could at once
 *   spend a larger new rate's tokens on top, over both bounds for short intervals.
 * - Rate lowered (T' > T): keep the tokens *available*, at most the new burst: b' − D'/T' ≤
 *   b − D/T. The sum is then at most b + A/T + C/T' ≤ b + (A + C)/T, the old bound.
 *
 * Either way a call waiting when the limit is raised is released as soon as the new bucket holds
 * its tokens: at once where the new burst allows. Debts are rounded up: a larger debt can only
 * admit fewer calls. The result is at most max(b·T, b'·T'), so it stays within a token bucket's
 * bounded span.
 */
export function gcraConvertDebt(debt: bigint, interval: bigint, burst: number, newInterval: bigint, newBurst: number): bigint {
  const missing = (debt * newInterval + interval - 1n) / interval; // the missing tokens, priced at T'
  if (newInterval <= interval) return missing;
  const kept = BigInt(newBurst - burst) * newInterval + missing; // (b' − available) · T'
  return kept > 0n ? kept : 0n;
}
