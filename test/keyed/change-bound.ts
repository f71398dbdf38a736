/**
 * The bound a token bucket keeps across changes of its limit, checked on admission instants: an
 * interval inside one setting admits at most that setting's b + L/T, and one that holds one
 * change at most the larger of the bounds before and after it (gcra.ts). Intervals holding two
 * changes or more are not judged.
 */

/**
 * One setting and when it took effect: somewhere in [before, after] (ns on the limiter's clock;
 * the same instant twice for a change made with an injected clock). The first: both 0.
 */
export interface TimedSetting {
  before: bigint;
  after: bigint;
  rate: number;
  burst: number;
}

/**
 * Largest excess of admissions over the bound in any interval [times[i], times[j]] holding at
 * most one change. An interval that reaches into a change's [before, after] holds it (calls
 * admitted at the instant of a change may come before or after it). ≤ 0 when the bound holds.
 * @param times sorted admission instants, ns.
 * @param changes settings in order, the first at 0.
 * @param periodMs the period the rates refer to.
 */
export function intervalExcess(times: readonly bigint[], changes: readonly TimedSetting[], periodMs: number): number {
  const bound = (s: TimedSetting, lengthNs: number): number => s.burst + (s.rate * lengthNs) / (periodMs * 1e6);
  let worst = -Infinity;
  let first = 1; // the first change not over before times[i]
  for (let i = 0; i < times.length; i++) {
    while (first < changes.length && changes[first]!.after < times[i]!) first++;
    const was = changes[first - 1]!;
    let inside = 0;
    for (let j = i; j < times.length; j++) {
      while (first + inside < changes.length && changes[first + inside]!.before <= times[j]!) inside++;
      if (inside > 1) break;
      const length = Number(times[j]! - times[i]!);
      const limit = inside === 0 ? bound(was, length) : Math.max(bound(was, length), bound(changes[first]!, length));
      worst = Math.max(worst, j - i + 1 - limit - 1e-9);
    }
  }
  return worst;
}
