/**
 * The bound a token bucket keeps across changes of its limit, checked on admission instants: an
 * interval inside one setting admits at most that setting's b + L/T, and one that holds one
 * change at most the larger of the bounds before and after it (gcra.ts). Intervals holding two
 * changes or more are not judged.
 */

/** One setting and the instant (ns on the limiter's clock) it took effect; the first at 0. */
export interface TimedSetting {
  at: bigint;
  rate: number;
  burst: number;
}

/**
 * Largest excess of admissions over the bound in any interval [times[i], times[j]] holding at
 * most one change (a change at an interval's very end counts as inside it: calls admitted at the
 * instant of a change may come before or after it). ≤ 0 when the bound holds.
 * @param times sorted admission instants, ns.
 * @param changes settings in order, the first at 0.
 * @param periodMs the period the rates refer to.
 */
export function intervalExcess(times: readonly bigint[], changes: readonly TimedSetting[], periodMs: number): number {
  const bound = (s: TimedSetting, lengthNs: number): number => s.burst + (s.rate * lengthNs) / (periodMs * 1e6);
  /** Index of the setting in force just before `t`: the last change strictly before it. */
  const before = (t: bigint): number => {
    let k = 0;
    while (k + 1 < changes.length && changes[k + 1]!.at < t) k++;
    return k;
  };
  let worst = -Infinity;
  for (let i = 0; i < times.length; i++) {
    const k = before(times[i]!);
    for (let j = i; j < times.length; j++) {
      const length = Number(times[j]! - times[i]!);
      // Changes in [times[i], times[j]]: those after k with at ≤ times[j].
      let inside = 0;
      while (k + 1 + inside < changes.length && changes[k + 1 + inside]!.at <= times[j]!) inside++;
      if (inside > 1) break;
      const limit = inside === 0 ? bound(changes[k]!, length) : Math.max(bound(changes[k]!, length), bound(changes[k + 1]!, length));
      worst = Math.max(worst, j - i + 1 - limit - 1e-9);
    }
  }
  return worst;
}
