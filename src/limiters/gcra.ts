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
 * ## Late wake-ups: the credit λ
 * A waiting call is released by a timer, which fires a little after the moment its tokens were
 * due (wait-queue.ts). Plain GCRA then counts it at the late clock, TAT ← t + n·T, and the delay
 * is lost for good: at burst 1 every token pays its timer's lateness (measured: 88.8 % of the rate
 * at 1000/s). So a waiter's take gets a credit λ = max(T, {@link WAKE_CREDIT_NS}):
 *
 *     TAT ← max(TAT, t − λ) + n·T,   admitted iff that − t ≤ b·T
 *
 * (with λ = 0 the plain step above), i.e. the call is counted at the instant the bucket could
 * first have admitted it (it was due then and woke late), but no earlier than λ ago: what lies
 * further back is forgotten as always, so a thread that slept through a long stall starts at most
 * b + λ/T calls at once, never a backlog. Only a waiter takes the credit, and a waiter that finds
 * TAT in the past was always due then: the bucket had room while it waited. The fast path (no
 * waiter, possibly an idle bucket) takes none. Admission is judged at t, and the call starts at t.
 *
 * Bound with the credit: over any closed interval [a, a + L] of admission instants, calls
 * admitted ≤ b + (L + λ)/T = burst + rate × (L + λ), i.e. burst + rate × L + max(1, rate × 2 ms).
 * Proof: take those calls in CAS order k₁ … k_m. Each admission, with the credit or without,
 * leaves TAT ≥ t − λ + n·T, so after k₁ TAT ≥ a − λ + n₁·T; each later one (and anything admitted
 * between) only moves it forward, by at least its own n·T, so after k_m TAT ≥ a − λ + Σn·T.
 * Admitting k_m required TAT − t ≤ b·T with t ≤ a + L. Hence Σn·T ≤ L + λ + b·T. The instants
 * need not be increasing (threads read the clock independently): the argument uses only the CAS
 * order.
 *
 * The keyed table's slots run the same test on µs-wide words with the ns remainder kept apart
 * (keyed-table.ts), without the credit; every ns-wide word goes through the functions here.
 */
import type { Nanos } from '../clock.js';
import { WAKE_CREDIT_NS } from '../queue/wait-queue.js';

/**
 * Takes n tokens at `now` from the GCRA word `i64[index]` if the bucket holds them.
 * @param cost n·T, ns.
 * @param tolerance b·T, ns: how far TAT may run ahead of the clock.
 * @param credit λ, ns: a waiter's wake-up credit ({@link gcraCredit}); 0 on the fast path.
 * @returns true iff admitted (TAT moved as the top of this file says).
 */
export function gcraTake(i64: BigInt64Array, index: number, now: Nanos, cost: bigint, tolerance: bigint, credit = 0n): boolean {
  const since = now - credit;
  for (;;) {
    const tat = Atomics.load(i64, index);
    const next = (tat > since ? tat : since) + cost;
    if (next - now > tolerance) return false;
    if (Atomics.compareExchange(i64, index, tat, next) === tat) return true;
  }
}

/** The wake-up credit λ of a bucket with emission interval T (ns): max(T, {@link WAKE_CREDIT_NS}). */
export function gcraCredit(interval: bigint): bigint {
  return interval > WAKE_CREDIT_NS ? interval : WAKE_CREDIT_NS;
}

/** {@link gcraCredit} for a store's script, in µs: max(T, 2 ms). */
export function gcraCreditUs(intervalUs: number): number {
  return Math.max(intervalUs, Number(WAKE_CREDIT_NS) / 1000);
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
 * With the wake-up credit λ (above), the admissions before the change count at most
 * (D + A + λ)/T (the first of them may be counted λ early); after it nothing changes, since a
 * waiter's step never moves TAT back. The same two cases then bound the interval by the larger of
 * b + (L + λ)/T and b' + (L + λ)/T', λ the old bucket's credit.
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
