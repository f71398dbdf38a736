/**
 * Prometheus metrics of a set of limiters, read from their shared-memory counters at scrape time:
 * nothing is done per call beyond the atomic adds the limiters make anyway, and every thread's
 * calls are in the numbers because every thread adds to the same counters.
 *
 * Exposed through a prom-client Registry (its text format, content type and registry merging),
 * with metric objects of our own whose `get()` reads `Limiter.snapshot()`.
 */
import { Registry, type Metric, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { AnyLimiter } from '../limiters/attach.js';

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
  extra?: { name: string; help: string; type: 'counter' | 'gauge'; read: () => MetricValue<string>[] }[];
}

/**
 * Registers, for each named limiter, `<prefix>admitted_total`, `<prefix>refused_total{reason}`,
 * `<prefix>queued` and the histogram `<prefix>wait_seconds` (every admission; the ones admitted at
 * once fall in the first bucket). Returns the registry; `await registry.metrics()` is the text.
 */
export function limiterMetrics(limiters: Record<string, AnyLimiter>, options: LimiterMetricsOptions = {}): Registry {
  const registry = options.registry ?? new Registry();
  const prefix = options.prefix ?? 'tql_';
  const each = <T>(f: (name: string, l: AnyLimiter) => T[]): T[] => Object.entries(limiters).flatMap(([name, l]) => f(name, l));
  const add = (m: CollectedMetric): void => registry.registerMetric(m as unknown as Metric<string>);
  add(new CollectedMetric(`${prefix}admitted_total`, 'Calls admitted by the limit (at once or after waiting), all threads.', 'counter',
    () => each((limit, l) => [{ labels: { limit }, value: l.snapshot().admitted }])));
  add(new CollectedMetric(`${prefix}refused_total`, 'Calls refused by the limit, by reason, all threads.', 'counter',
    () => each((limit, l) => {
      const r = l.snapshot().refused;
      return [
        { labels: { limit, reason: 'queue_full' }, value: r.queueFull },
        { labels: { limit, reason: 'wait_limit' }, value: r.timeout },
        { labels: { limit, reason: 'aborted' }, value: r.aborted },
      ];
    })));
  add(new CollectedMetric(`${prefix}queued`, 'Calls waiting for the limit now, all threads.', 'gauge',
    () => each((limit, l) => [{ labels: { limit }, value: l.snapshot().queued }])));
  add(new CollectedMetric(`${prefix}wait_seconds`, 'Time admitted calls waited for their token.', 'histogram',
    () => each((limit, l) => {
      const s = l.snapshot();
      const values: MetricValue<string>[] = [];
      let cumulative = s.admitted - s.waited;
      for (const b of s.waitHistogram) {
        cumulative += b.count;
        values.push({ metricName: `${prefix}wait_seconds_bucket`, labels: { limit, le: b.leMs === Infinity ? '+Inf' : String(b.leMs / 1000) }, value: cumulative } as MetricValue<string>);
      }
      values.push({ metricName: `${prefix}wait_seconds_sum`, labels: { limit }, value: s.waitMsTotal / 1000 } as MetricValue<string>);
      values.push({ metricName: `${prefix}wait_seconds_count`, labels: { limit }, value: s.admitted } as MetricValue<string>);
      return values;
    })));
  for (const e of options.extra ?? []) add(new CollectedMetric(`${prefix}${e.name}`, e.help, e.type, e.read));
  return registry;
}
