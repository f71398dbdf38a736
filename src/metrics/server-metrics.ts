/**
 * The threaded server's own Prometheus metrics, beside its limits' (prometheus.ts): its counters,
 * per-method admissions, refusals and handler durations, workers, wires, and, when configured, the
 * fair queues' levels and the per-key limits. Every value is read at scrape time; nothing is
 * counted for them per call beyond the server's own counters.
 */
import type { MetricValue } from 'prom-client';
import type { LevelStats } from '../fair/priority-level.js';
import type { KeyedSnapshot, KeyedTokenBucket } from '../keyed/keyed-token-bucket.js';
import type { MethodCounters, ServerStatsSnapshot } from '../server/stats.js';
import { histogramValues, refusalValues, type LimiterMetricsOptions } from './prometheus.js';

type ExtraMetrics = NonNullable<LimiterMetricsOptions['extra']>;

/** What {@link serverMetrics} reads from a running server, at each scrape. */
export interface ServerMetricsSource {
  /** The server's counters now. */
  stats(): ServerStatsSnapshot;
  /** Admissions and refusals by method. */
  methods(): Iterable<[string, MethodCounters]>;
  /** Messages received by wire, keyed `"<transport> <protocol>"`. */
  wireCalls(): Iterable<[string, { calls: number }]>;
  /** Handler results that came after their call had been answered. */
  lateReplies(): number;
  /** Worker threads configured, and those that have loaded the handler and are not being replaced. */
  workers(): { configured: number; ready: number };
  /** The fair queues' levels; absent without fairness. */
  levels: (() => Record<string, LevelStats>) | undefined;
  /** The per-key limits now, by configured name (their metrics are registered if there are some when {@link serverMetrics} is called). */
  keyed: () => readonly (readonly [string, KeyedTokenBucket])[];
}

/**
 * The server's metrics, as the `extra` of {@link limiterMetrics} (names are given without prefix;
 * `prefix` is needed for the sample names of the histogram).
 */
export function serverMetrics(source: ServerMetricsSource, prefix: string): ExtraMetrics {
  const s = (): ServerStatsSnapshot => source.stats();
  return [
    { name: 'server_connections', help: 'Client connections open now.', type: 'gauge', read: () => [{ labels: {}, value: s().connections }] },
    { name: 'server_completed_total', help: 'Calls answered by a worker.', type: 'counter', read: () => [{ labels: {}, value: s().completed }] },
    {
      name: 'server_worker_failures_total',
      help: 'Calls answered INTERNAL_ERROR because a worker failed.',
      type: 'counter',
      read: () => [{ labels: {}, value: s().workerFailures }],
    },
    {
      name: 'server_protocol_errors_total',
      help: 'Connections closed for a protocol violation.',
      type: 'counter',
      read: () => [{ labels: {}, value: s().protocolErrors }],
    },
    {
      name: 'method_admitted_total',
      help: 'Calls handed to workers, by method.',
      type: 'counter',
      read: () => [...source.methods()].map(([method, m]) => ({ labels: { method }, value: m.admitted })),
    },
    {
      name: 'method_handler_duration_seconds',
      help: 'Time from the hand-off of a call to a worker to its answer (replied, failed or timed out), by method.',
      type: 'histogram',
      read: () =>
        [...source.methods()].flatMap(([method, m]) =>
          histogramValues(`${prefix}method_handler_duration_seconds`, { method }, m.handlerDuration.buckets(), m.handlerDuration.sum, m.handlerDuration.count),
        ),
    },
    {
      name: 'server_workers',
      help: 'Worker threads the server runs (configured).',
      type: 'gauge',
      read: () => [{ labels: {}, value: source.workers().configured }],
    },
    {
      name: 'server_workers_ready',
      help: 'Worker threads that have loaded the handler and are not being replaced now.',
      type: 'gauge',
      read: () => [{ labels: {}, value: source.workers().ready }],
    },
    {
      name: 'method_refused_total',
      help: 'Calls not run, by method and reason.',
      type: 'counter',
      read: () => [...source.methods()].flatMap(([method, m]) => Object.entries(m.refused).map(([reason, value]) => ({ labels: { method, reason }, value }))),
    },
    {
      name: 'server_oneway_dropped_total',
      help: 'Oneway calls dropped over a queue bound.',
      type: 'counter',
      read: () => [{ labels: {}, value: s().onewayDropped }],
    },
    {
      name: 'server_handler_timeouts_total',
      help: 'Calls answered INTERNAL_ERROR because the handler did not finish within handlerTimeoutMs.',
      type: 'counter',
      read: () => [{ labels: {}, value: s().handlerTimeouts }],
    },
    {
      name: 'server_late_replies_total',
      help: 'Handler results that came after their call had been answered (deadline passed, worker replaced), dropped.',
      type: 'counter',
      read: () => [{ labels: {}, value: source.lateReplies() }],
    },
    {
      name: 'server_worker_replacements_total',
      help: 'Worker threads terminated and replaced because their event loop was blocked past handlerTimeoutMs.',
      type: 'counter',
      read: () => [{ labels: {}, value: s().workerReplacements }],
    },
    {
      name: 'server_wire_calls_total',
      help: 'Messages received, by transport and protocol.',
      type: 'counter',
      read: () => [...source.wireCalls()].map(([wire, c]) => ({ labels: { transport: wire.split(' ')[0]!, protocol: wire.split(' ')[1]! }, value: c.calls })),
    },
    {
      name: 'server_invalid_calls_total',
      help: 'Calls answered on the I/O thread without running: unknown method, or CALL for a oneway method.',
      type: 'counter',
      read: () => [{ labels: {}, value: s().invalidCalls }],
    },
    {
      name: 'server_idle_closed_total',
      help: 'Connections closed after idleTimeoutMs without activity.',
      type: 'counter',
      read: () => [{ labels: {}, value: s().idleClosed }],
    },
    {
      name: 'server_connections_refused_total',
      help: 'Connections refused because maxConnections were open.',
      type: 'counter',
      read: () => [{ labels: {}, value: s().connectionsRefused }],
    },
    {
      name: 'server_read_pauses_total',
      help: 'Times a connection stopped being read because its client had maxInFlightPerConnection calls or maxPendingReplyBytes of unread replies outstanding.',
      type: 'counter',
      read: () => [{ labels: {}, value: s().readPauses }],
    },
    ...(source.levels === undefined ? [] : fairMetrics(source.levels)),
    ...keyedMetrics(source.keyed),
  ];
}

/** The per-key limits' counters, labelled by limit (snapshot() scans the table: once per metric per scrape). */
function keyedMetrics(keyed: ServerMetricsSource['keyed']): ExtraMetrics {
  if (keyed().length === 0) return [];
  const each = (read: (s: KeyedSnapshot) => number) => (): MetricValue<string>[] =>
    keyed().map(([limit, k]) => ({ labels: { limit }, value: read(k.snapshot()) }));
  return [
    {
      name: 'keyed_admitted_total',
      help: "Calls admitted by a per-key limit (a key's bucket or the overflow bucket), all threads.",
      type: 'counter',
      read: each((s) => s.admitted),
    },
    {
      name: 'keyed_overflow_admitted_total',
      help: 'Calls admitted by the overflow bucket of a per-key limit (their key found no slot).',
      type: 'counter',
      read: each((s) => s.overflowAdmitted),
    },
    {
      name: 'keyed_refused_total',
      help: 'Calls refused by a per-key limit, by reason, all threads.',
      type: 'counter',
      read: () => keyed().flatMap(([limit, k]) => refusalValues(limit, k.snapshot().refused)),
    },
    { name: 'keyed_queued', help: 'Calls waiting for a per-key limit now, all keys and threads.', type: 'gauge', read: each((s) => s.queued) },
    { name: 'keyed_keys', help: "Keys holding a slot of a per-key limit's table now.", type: 'gauge', read: each((s) => s.keysInUse) },
  ];
}

function fairMetrics(levelsNow: () => Record<string, LevelStats>): ExtraMetrics {
  const levels = (): [string, LevelStats][] => Object.entries(levelsNow());
  return [
    {
      name: 'fair_level_admitted_total',
      help: 'Calls started by the fair queues, by priority level.',
      type: 'counter',
      read: () => levels().map(([level, l]) => ({ labels: { level }, value: l.admitted })),
    },
    {
      name: 'fair_level_refused_total',
      help: 'Calls refused by the fair queues, by priority level and reason.',
      type: 'counter',
      read: () => levels().flatMap(([level, l]) => Object.entries(l.refused).map(([reason, value]) => ({ labels: { level, reason }, value }))),
    },
    {
      name: 'fair_level_queued',
      help: 'Calls waiting in the fair queues, by priority level.',
      type: 'gauge',
      read: () => levels().map(([level, l]) => ({ labels: { level }, value: l.queued })),
    },
    {
      name: 'fair_level_flows',
      help: 'Flows with waiting calls, by priority level.',
      type: 'gauge',
      read: () => levels().map(([level, l]) => ({ labels: { level }, value: l.flows })),
    },
  ];
}
