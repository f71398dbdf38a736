/**
 * A histogram of durations kept by one thread (the server's I/O thread): plain numbers, no atomics,
 * one bucket search per observation. Its buckets are Prometheus's, so it is exported as a
 * `histogram` at scrape time with nothing computed per call beyond the increment.
 */

/**
 * Upper bounds in seconds: from the cost of a thread round trip (~0.1 ms) to the default handler
 * timeout (60 s), about three buckets per decade.
 */
export const DURATION_BUCKETS_SECONDS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/** Counts of durations per bucket, their sum and count. */
export class DurationHistogram {
  /** Observations per bucket, not cumulative; the last one counts everything above the largest bound. */
  readonly counts = new Array<number>(DURATION_BUCKETS_SECONDS.length + 1).fill(0);
  /** Sum of the observations, seconds. */
  sum = 0;
  /** Number of observations. */
  count = 0;

  /** Counts one duration, in milliseconds (what `performance.now()` differences give). */
  observeMs(ms: number): void {
    const seconds = ms / 1000;
    let k = 0;
    while (k < DURATION_BUCKETS_SECONDS.length && seconds > DURATION_BUCKETS_SECONDS[k]!) k++;
    this.counts[k]!++;
    this.sum += seconds;
    this.count++;
  }

  /** The buckets as Prometheus reads them: cumulative counts by upper bound (seconds; the last is Infinity). */
  buckets(): { le: number; count: number }[] {
    let cumulative = 0;
    return this.counts.map((n, k) => ({ le: DURATION_BUCKETS_SECONDS[k] ?? Infinity, count: (cumulative += n) }));
  }
}
