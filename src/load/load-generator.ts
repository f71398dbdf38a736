/**
 * A Thrift load generator for any generated service: calls one method with fixed arguments over
 * several framed connections, either on a schedule (open loop: `rate` calls per second whatever
 * the server does, latency counted from each call's scheduled time so a slow server cannot hide
 * its queueing, i.e. coordinated omission is accounted for) or with a fixed number of calls
 * outstanding (closed loop). Latencies go into an HDR histogram. Every run is bounded in time and
 * stops by itself; calls still unanswered after the drain time count as errors.
 */
import { createRequire } from 'node:module';
import { isAbsolute, resolve } from 'node:path';
import * as hdr from 'hdr-histogram-js';
import thrift from 'thrift';

/** Options of {@link runLoad}. */
export interface LoadOptions {
  /** The generated service module (its `Client` is used). */
  service: string;
  /** Method to call. */
  method: string;
  /** Its arguments, in IDL order. */
  args: unknown[];
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Open loop at this many calls per second, or closed loop with this many outstanding. */
  mode: { rate: number } | { concurrency: number };
  durationMs: number;
  /** Connections the calls are spread over. Default 8. */
  connections?: number;
  protocol?: 'binary' | 'compact';
  transport?: 'framed' | 'buffered';
  /** How long to wait for outstanding calls after the run. Default 10 s. */
  drainMs?: number;
}

/** What a run measured. */
export interface LoadReport {
  mode: 'open' | 'closed';
  method: string;
  sent: number;
  completed: number;
  /** Failed calls by kind: `TApplicationException 11`, a declared exception's name, `transport`, `unanswered`. */
  errors: Record<string, number>;
  /** From the first call to the last answer, s. */
  seconds: number;
  /** Completed calls per second. */
  throughput: number;
  /** Latency percentiles in ms (open loop: from the scheduled send time). */
  latencyMs: { mean: number; p50: number; p90: number; p99: number; p999: number; max: number };
}

type AnyClient = Record<string, (...args: unknown[]) => Promise<unknown>>;

function errorKind(error: unknown): string {
  if (error instanceof thrift.Thrift.TApplicationException) return `TApplicationException ${(error as unknown as { type: number }).type}`;
  if (error instanceof thrift.Thrift.TException) return error.constructor.name || 'declared exception';
  return 'transport';
}

/** Runs the load; resolves with the report. */
export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const require = createRequire(import.meta.url);
  const servicePath = isAbsolute(options.service) ? options.service : resolve(options.service);
  const service = require(servicePath) as { Client?: unknown };
  if (typeof service.Client !== 'function') throw new TypeError(`--service ${options.service} does not export a Thrift Client`);
  if (typeof (service.Client as { prototype: Record<string, unknown> }).prototype[options.method] !== 'function') {
    throw new TypeError(`--method ${options.method} is not a method of ${options.service}`);
  }
  const connections: thrift.Connection[] = [];
  const clients: AnyClient[] = [];
  for (let i = 0; i < (options.connections ?? 8); i++) {
    const connection = thrift.createConnection(options.host ?? '127.0.0.1', options.port, {
      transport: options.transport === 'buffered' ? thrift.TBufferedTransport : thrift.TFramedTransport,
      protocol: options.protocol === 'compact' ? thrift.TCompactProtocol : thrift.TBinaryProtocol,
    });
    connection.on('error', () => {});
    await new Promise<void>((ok, fail) => {
      connection.once('connect', () => ok());
      connection.once('error', fail);
    });
    connections.push(connection);
    clients.push(thrift.createClient(service as never, connection) as unknown as AnyClient);
  }

  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
  const errors: Record<string, number> = {};
  let sent = 0;
  let completed = 0;
  let lastAnswer = 0;
  const outstanding = new Set<Promise<void>>();
  const start = performance.now();
  const call = (scheduledAt: number): Promise<void> => {
    const client = clients[sent % clients.length]!;
    sent++;
    const p = client[options.method]!(...options.args).then(
      () => {
        lastAnswer = performance.now();
        completed++;
        histogram.recordValue(Math.max(1, Math.round((lastAnswer - scheduledAt) * 1000)));
      },
      (error: unknown) => {
        lastAnswer = performance.now();
        const kind = errorKind(error);
        errors[kind] = (errors[kind] ?? 0) + 1;
      },
    );
    outstanding.add(p);
    void p.then(() => outstanding.delete(p));
    return p;
  };

  if ('rate' in options.mode) {
    const rate = options.mode.rate;
    await new Promise<void>((done) => {
      const timer = setInterval(() => {
        const elapsed = performance.now() - start;
        const due = Math.floor((Math.min(elapsed, options.durationMs) * rate) / 1000);
        while (sent < due) void call(start + (sent * 1000) / rate);
        if (elapsed >= options.durationMs) {
          clearInterval(timer);
          done();
        }
      }, 1);
    });
  } else {
    const end = start + options.durationMs;
    const slot = async (): Promise<void> => {
      while (performance.now() < end) await call(performance.now());
    };
    await Promise.all(Array.from({ length: options.mode.concurrency }, slot));
  }

  let drainTimer: NodeJS.Timeout | undefined;
  const drained = await Promise.race([
    Promise.all(outstanding).then(() => true),
    new Promise<boolean>((r) => { drainTimer = setTimeout(() => r(false), options.drainMs ?? 10_000); }),
  ]);
  clearTimeout(drainTimer);
  if (!drained) errors.unanswered = outstanding.size;
  for (const c of connections) c.end();

  const seconds = Math.max(1e-9, ((lastAnswer || performance.now()) - start) / 1000);
  const ms = (p: number): number => histogram.getValueAtPercentile(p) / 1000;
  const report: LoadReport = {
    mode: 'rate' in options.mode ? 'open' : 'closed',
    method: options.method,
    sent,
    completed,
    errors,
    seconds,
    throughput: completed / seconds,
    latencyMs: { mean: histogram.mean / 1000, p50: ms(50), p90: ms(90), p99: ms(99), p999: ms(99.9), max: histogram.maxValue / 1000 },
  };
  histogram.destroy();
  return report;
}
