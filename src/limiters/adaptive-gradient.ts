/**
 * The algorithm of the adaptive concurrency limit: one step per window of latency samples, from
 * the limit in force, the no-load latency and the window's mean latency to the next limit. Pure
 * arithmetic; the shared-memory protocol around it lives in `adaptive-concurrency-limit.ts`.
 *
 * ## Which algorithm, and why
 *
 * The anchors are Netflix concurrency-limits (AIMD, Vegas, Gradient2) and Envoy's adaptive
 * concurrency filter (a gradient controller). This is a gradient controller, Envoy's way of
 * measuring the no-load latency with Gradient2's step:
 *
 * - **AIMD** moves on drops and timeouts. Calls over this library's limit queue instead of being
 *   dropped, so there is no drop signal; latency is the signal.
 * - **Vegas** updates on every sample and takes the no-load latency as the smallest sample seen
 *   (re-probed every 30 × limit samples by taking one sample as the new floor). A per-sample update
 *   would be a CAS on a shared estimate per release, across threads; and a minimum of single
 *   samples is biased low by noise, so the limit reads queueing where there is none.
 * - **Gradient2** compares a short-term mean latency with a long-term one (an exponential average
 *   over 600 samples) and sets `limit × gradient + queueSize`. Its baseline is measured under the
 *   load the limit admits: under sustained overload, which is the normal state in front of a queue,
 *   the baseline creeps up and the limit with it (its own comments note the lag).
 * - **Envoy** measures the no-load latency (minRTT) apart: periodically it pins the limit to a small
 *   concurrency and takes the latency of requests started then. Its step
 *   `limit × minRTT·1.25 / sample + √limit` settles near `1.25 × M + √M` for a downstream that
 *   queues beyond M in flight: the 25 % buffer and the √ headroom are added at equilibrium.
 *
 * So: the no-load latency is measured Envoy's way (at `minLimit` concurrency, see below), and each
 * window of at least `windowMs` and `minSamples` samples moves the limit L by
 *
 * ```
 * gradient = clamp(noLoad × (1 + tolerance) / windowMean, 0.5, 1)
 * target   = gradient < 1 ? L × gradient          queueing: the concurrency the downstream serves
 *                                                  without queueing, by Little's law
 *                         : L + k × √L            no queueing: probe upwards (Envoy's headroom),
 *                                                  k = windows in a row without queueing, at most 4
 * w        = gradient < 1 ? max(smoothing, 0.5) : smoothing
 * L'       = L × (1 − w) + target × w,   clamped to [minLimit, maxLimit]
 * ```
 *
 * Adding the headroom only when no queueing is measured (Gradient2 and Envoy add it always) is what
 * keeps the equilibrium close to the downstream's capacity: for a downstream with M parallel slots
 * the window mean is noLoad × L / M once L > M, so the target is M × (1 + tolerance) and the limit
 * hovers there (1.1 × M with the defaults) instead of at M + headroom. When the capacity grows, the
 * latency falls back to the no-load level and the limit grows by smoothing × k × √L per window: the
 * step widens while window after window shows no queueing (TCP's slow start, Vegas's larger step
 * when it sees no queue at all), so a limit far below the capacity doubles within about a second,
 * while at the equilibrium, where windows with and without queueing alternate, k stays at 1 or 2.

 * As in Gradient2, a window whose mean in-flight (Little's law: the sum of its latencies over its
 * duration) is under half the limit changes nothing: the load, not the downstream, set its
 * latency, and growing the limit then would only let a later burst through unchecked.
 *
 * ## The constants
 *
 * - gradient clamped to [0.5, 1] (Gradient2 and Envoy's floor): one window at most halves the
 *   target, so a single outlier window costs at most a quarter of the limit (see the next item).
 * - smoothing 0.2 (Gradient2's default) on the way up, at least 0.5 on the way down: the two costs
 *   are not alike (TCP's and AIMD's asymmetry). A limit above the capacity costs every call that
 *   waits in the downstream's queue, at once; a limit below it costs throughput for the few windows
 *   the growth step takes. With the same 0.2 both ways the error to the equilibrium shrank by 0.8
 *   per window, so after the capacity halved the limit took 9 windows (0.9 s) to come within 25 %
 *   and the calls of those windows waited up to 2.2 × the service time: they set the run's p99
 *   (measured on the benchmark's downstream, M halved: 0.92 s and a phase p99 of 43 ms at 0.2;
 *   0.32 s and 41 ms at 0.5; 0.26 s and 41 ms at 1, Envoy's unsmoothed step, which leaves one
 *   noisy window free to halve the limit). At 0.5, one window at the gradient's floor costs at most
 *   a quarter of the limit, and the growth step wins it back within a few windows.
 * - tolerance 0.1: window means of the no-load latency scatter by a few percent (timer and
 *   scheduling jitter); a tolerance below that scatter would read noise as queueing and hold the
 *   limit down. It is also the equilibrium's margin over M, which keeps the downstream busy through
 *   that jitter. Raise it for a downstream whose latency is noisier.
 * - headroom √L (Envoy's), widened up to 4 × √L: growth of 0.2 × √L to 0.8 × √L per window, so
 *   no size of limit grows in a cliff; measured on the simulated downstream of the benchmark, a cap
 *   of 4 reached the new capacity after a doubling about twice as fast as 1, while 8 and more
 *   overshot it at the start (the limit passes the capacity with a wide step still in hand).
 *
 * ## The no-load latency, and how it is re-measured when it drifts
 *
 * The limit starts by measuring it: the limit is pinned to `minLimit` and only permits admitted
 * after every older permit has drained (so at most `minLimit` were ever in flight while they ran)
 * count; the median of the first 32 of them, over at least `windowMs` and `minSamples` samples,
 * is the no-load latency (a median, as Envoy's p50, because a measurement has few samples and one
 * stalled event loop among them would move a mean; windows, with many more samples, use their
 * mean). Then the limit goes to `initialLimit`. The measurement is repeated
 *
 * - 10 windows later (1 s by default) whenever a measurement found a no-load latency lower than the
 *   one before by more than the tolerance, the first one included: the first runs while the process
 *   starts and its calls are slow (cold code, first timers, new connections; measured: 7–27 % above
 *   the warm no-load latency on the benchmark's in-process downstream, 2.5 × through the threaded
 *   server's workers and a fresh HTTP client), and an inflated no-load latency holds the limit that
 *   much above the capacity; rechecking until the value stops falling settles it within seconds;
 * - every `probeIntervalMs` (default 30 s, plus up to 15 % random jitter so processes sharing a
 *   downstream do not measure in step; at least 20 × the last measurement's duration, so a slow
 *   downstream never spends more than 5 % of the time at `minLimit`), and the limit returns to
 *   where it was; this follows a downstream that got slower or faster for good;
 * - at once when 5 windows in a row ended at `minLimit` still showing queueing (Envoy's rule): a
 *   no-load latency that is too low (the downstream got slower since) would otherwise hold the
 *   limit at the floor until the next periodic measurement.
 */

/** What one window of samples says. */
export interface GradientWindow {
  /** Mean latency of the window's samples, µs. */
  meanUs: number;
  /** Mean concurrency over the window by Little's law: the sum of its latencies over its duration. */
  inFlight: number;
}

/** The settings of the step (validated options). */
export interface GradientSettings {
  minLimit: number;
  maxLimit: number;
  smoothing: number;
  tolerance: number;
}

/** The lowest gradient one window may apply. */
const MIN_GRADIENT = 0.5;

/** The widest growth step, in √limit: see "The constants". */
const MAX_STEPS = 4;

/** The least weight a window that shows queueing gets (the backoff): see "The constants". */
const MIN_BACKOFF = 0.5;

/** What one window does to the limit. */
export interface GradientStep {
  /** The next limit. */
  limit: number;
  /** Whether the window showed queueing. */
  queueing: boolean;
  /** Windows in a row without queueing, this one included. */
  quiet: number;
}

/**
 * The limit after one window.
 * @param limit the limit in force (fractional: the algorithm keeps fractions so small steps add up).
 * @param noLoadUs the no-load latency, µs.
 * @param quiet windows in a row without queueing before this one.
 */
export function nextLimit(limit: number, noLoadUs: number, quiet: number, window: GradientWindow, s: GradientSettings): GradientStep {
  const gradient = Math.min(1, Math.max(MIN_GRADIENT, (noLoadUs * (1 + s.tolerance)) / window.meanUs));
  const queueing = gradient < 1;
  if (window.inFlight < limit / 2) return { limit, queueing, quiet };
  const steps = queueing ? 0 : Math.min(MAX_STEPS, quiet + 1);
  const target = queueing ? limit * gradient : limit + steps * Math.sqrt(limit);
  const weight = queueing ? Math.max(s.smoothing, MIN_BACKOFF) : s.smoothing;
  const next = limit * (1 - weight) + target * weight;
  return { limit: Math.min(s.maxLimit, Math.max(s.minLimit, next)), queueing, quiet: queueing ? 0 : quiet + 1 };
}
