/**
 * Prometheus metrics of a set of limiters, read from their shared-memory counters at scrape time:
 * nothing is done per call beyond the atomic adds the limiters make anyway, and every thread's
 * calls are in the numbers because every thread adds to the same counters.
 *
 * Exposed through a prom-client Registry (its text format, content type and registry merging),
 * with metric objects of our own whose `get()` reads `Limiter.snapshot()`.
 */
import { Registry, type Metric, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { QUEUE_REFUSAL_REASONS, type RefusalCounts, type RefusalReason } from '../errors.js';
import type { AnyLimiter } from '../limiters/attach.js';
import { PermitLimit } from '../limiters/concurrency-limit.js';

/** What prom-client's registry reads from a metric (its own type also asks for a collect()). */
type Values = Omit<MetricObjectWithValues<MetricValue<string>>, 'collect'>;

/** A metric computed at scrape time. */
class CollectedMetric {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
    private readonly read: () => MetricValue<string>[],
  ) {}

  get(): Values {
    return { name: this.name, help: this.help, type: this.type as never, values: this.read(), aggregator: 'sum' };
  }
}

/** Options of {@link limiterMetrics}. */
export interface LimiterMetricsOptions {
  /** Registry to add to (default: a new one). */
  registry?: Registry;
  /** Metric name prefix. Default `tql_`. */
  prefix?: string;
  /** Extra metrics to expose alongside, e.g. the server's own counters. */
  extra?: { name: string; help: string; type: 'counter' | 'gauge' | 'histogram'; read: () => MetricValue<string>[] }[];
}

/**
 * The sample lines of one histogram series: `<name>_bucket{le}` for each cumulative bucket (upper
 * bounds in the metric's unit; Infinity is `+Inf`), `<name>_sum` and `<name>_count`, all with `labels`.
 */
export function histogramValues(
  name: string,
  labels: Record<string, string>,
  buckets: readonly { le: number; count: number }[],
  sum: number,
  count: number,
): MetricValue<string>[] {
  const values = buckets.map(
    (b) => ({ metricName: `${name}_bucket`, labels: { ...labels, le: b.le === Infinity ? '+Inf' : String(b.le) }, value: b.count }) as MetricValue<string>,
  );
  values.push({ metricName: `${name}_sum`, labels, value: sum } as MetricValue<string>);
  values.push({ metricName: `${name}_count`, labels, value: count } as MetricValue<string>);
  return values;
}

/**
 * The `refused_total` values of one limit's queue refusals, labelled by limit and reason (the
 * reason as spelled everywhere: {@link RefusalReason}).
 */
export function refusalValues(limit: string, refused: RefusalCounts): MetricValue<string>[] {
  return QUEUE_REFUSAL_REASONS.map((reason) => ({ labels: { limit, reason }, value: refused[reason] }));
}

/**
 * Registers, for each named limiter, `<prefix>admitted_total`, `<prefix>refused_total{reason}`,
 * `<prefix>queued` and the histogram `<prefix>wait_seconds` (every admission; the ones admitted at
 * once fall in the first bucket); for concurrency limits `<prefix>concurrency_limit`, the limit in
 * force (an adaptive limit's current value); for limits held in a distributed store also
 * `<prefix>store_round_trips_total`, `_errors_total`, `_incidents_total`, `store_down`,
 * `store_admitted_without_store_total{policy}`, `store_tokens_lapsed_total` and `store_state_lost_total`. Returns the
 * registry; `await registry.metrics()` is the text.
 *
 * @param limiters the limiters by name, or a function returning them, called at each scrape (so
 *   limits added or removed at runtime show; the store metrics are registered if a limiter has a
 *   store when this is called).
 */
export function limiterMetrics(limiters: Record<string, AnyLimiter> | (() => Record<string, AnyLimiter>), options: LimiterMetricsOptions = {}): Registry {
  const registry = options.registry ?? new Registry();
  const prefix = options.prefix ?? 'tql_';
  const current = typeof limiters === 'function' ? limiters : () => limiters;
  const each = <T>(f: (name: string, l: AnyLimiter) => T[]): T[] => Object.entries(current()).flatMap(([name, l]) => f(name, l));
  const add = (m: CollectedMetric): void => registry.registerMetric(m as unknown as Metric<string>);
  add(
    new CollectedMetric(`${prefix}admitted_total`, 'Calls admitted by the limit (at once or after waiting), all threads.', 'counter', () =>
      each((limit, l) => [{ labels: { limit }, value: l.snapshot().admitted }]),
    ),
  );
  add(
    new CollectedMetric(`${prefix}refused_total`, 'Calls refused by the limit, by reason, all threads.', 'counter', () =>
      each((limit, l) => {
        const s = l.snapshot();
        const queue = refusalValues(limit, s.refused);
        return s.store === undefined ? queue : [...queue, { labels: { limit, reason: 'store_unavailable' satisfies RefusalReason }, value: s.store.refused }];
      }),
    ),
  );
  add(
    new CollectedMetric(`${prefix}queued`, 'Calls waiting for the limit now, all threads.', 'gauge', () =>
      each((limit, l) => [{ labels: { limit }, value: l.snapshot().queued }]),
    ),
  );
  add(
    new CollectedMetric(`${prefix}wait_seconds`, 'Time admitted calls waited for their token.', 'histogram', () =>
      each((limit, l) => {
        const s = l.snapshot();
        // Calls admitted at once never waited: they are in the first bucket.
        let cumulative = s.admitted - s.waited;
        const buckets = s.waitHistogram.map((b) => ({ le: b.leMs / 1000, count: (cumulative += b.count) }));
        return histogramValues(`${prefix}wait_seconds`, { limit }, buckets, s.waitMsTotal / 1000, s.admitted);
      }),
    ),
  );
  add(
    new CollectedMetric(`${prefix}concurrency_limit`, 'The concurrency limit in force now (an adaptive limit moves it), all threads.', 'gauge', () =>
      each((limit, l) => (l instanceof PermitLimit ? [{ labels: { limit }, value: l.limit }] : [])),
    ),
  );
  if (Object.values(current()).some((l) => l.store !== undefined)) addStoreMetrics(add, prefix, current);
  for (const e of options.extra ?? []) add(new CollectedMetric(`${prefix}${e.name}`, e.help, e.type, e.read));
  return registry;
}

/** Counters of the limits held in a distributed store (this process's view of each). */
function addStoreMetrics(add: (m: CollectedMetric) => void, prefix: string, limiters: () => Record<string, AnyLimiter>): void {
  const each = (f: (limit: string, s: NonNullable<ReturnType<AnyLimiter['snapshot']>['store']>) => MetricValue<string>[]) => () =>
    // A limiter without a store has no series here: its snapshot is not read for nothing.
    Object.entries(limiters()).flatMap(([limit, l]) => (l.store === undefined ? [] : f(limit, l.snapshot().store!)));
  add(
    new CollectedMetric(
      `${prefix}store_round_trips_total`,
      'Round trips to the limit store that answered, this process.',
      'counter',
      each((limit, s) => [{ labels: { limit }, value: s.roundTrips }]),
    ),
  );
  add(
    new CollectedMetric(
      `${prefix}store_errors_total`,
      'Limit store calls that failed or timed out, this process.',
      'counter',
      each((limit, s) => [{ labels: { limit }, value: s.errors }]),
    ),
  );
  add(
    new CollectedMetric(
      `${prefix}store_incidents_total`,
      'Times the limit store went from answering to failing, this process.',
      'counter',
      each((limit, s) => [{ labels: { limit }, value: s.incidents }]),
    ),
  );
  add(
    new CollectedMetric(
      `${prefix}store_down`,
      '1 while the limit store is failing for this process.',
      'gauge',
      each((limit, s) => [{ labels: { limit }, value: s.down ? 1 : 0 }]),
    ),
  );
  add(
    new CollectedMetric(
      `${prefix}store_admitted_without_store_total`,
      'Calls admitted by the fault policy while the store was down.',
      'counter',
      each((limit, s) => [
        { labels: { limit, policy: 'fail_open' }, value: s.admittedFailOpen },
        { labels: { limit, policy: 'local_share' }, value: s.admittedLocalShare },
      ]),
    ),
  );
  add(
    new CollectedMetric(
      `${prefix}store_tokens_lapsed_total`,
      'Tokens granted by the store that lapsed unused, this process.',
      'counter',
      each((limit, s) => [{ labels: { limit }, value: s.lapsed }]),
    ),
  );
  add(
    new CollectedMetric(
      `${prefix}store_state_lost_total`,
      'Times the limit store answered that it had lost the limit state (restarted empty), this process.',
      'counter',
      each((limit, s) => [{ labels: { limit }, value: s.stateLost }]),
    ),
  );
}
