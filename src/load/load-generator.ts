/**
 * A Thrift load generator for any generated service: calls one method with fixed arguments over
 * several connections in any wire the threaded server answers (framed, buffered, THeader or HTTP
 * transport; binary, compact or JSON protocol; optionally multiplexed), either on a schedule (open
 * loop: `rate` calls per second whatever the server does, latency counted from each call's
 * scheduled time so a slow server cannot hide its queueing, i.e. coordinated omission is accounted
 * for) or with a fixed number of calls outstanding (closed loop). Latencies go into an HDR
 * histogram. Every run is bounded in time and stops by itself; calls still unanswered after the
 * drain time count as errors, and a connection that closes or fails stops the run at once.
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import { createRequire } from 'node:module';
import { isAbsolute, resolve } from 'node:path';
import * as hdr from 'hdr-histogram-js';
import thrift from 'thrift';

/** How calls are carried: length-prefixed frames, bare messages, THeader frames, or HTTP POSTs. */
export type LoadTransport = 'framed' | 'buffered' | 'header' | 'http';

/** How calls are encoded. */
export type LoadProtocol = 'binary' | 'compact' | 'json';

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
  /** Connections the calls are spread over (for HTTP, keep-alive sockets of one call each). Default 8. */
  connections?: number;
  /** Default binary; THeader carries binary or compact only. */
  protocol?: LoadProtocol;
  /** Default framed. */
  transport?: LoadTransport;
  /** Call the method as `NAME:method` (TMultiplexedProtocol), for a server of several services. */
  multiplexed?: string;
  /** How long to wait for outstanding calls after the run. Default 10 s. */
  drainMs?: number;
  /** Called every {@link PROGRESS_EVERY_MS} while the run sends and drains, with the counts so far. */
  onProgress?: (progress: LoadProgress) => void;
}

/** The counts of a run so far, as {@link LoadOptions.onProgress} sees them. */
export interface LoadProgress {
  /** Since the first call, ms. */
  elapsedMs: number;
  sent: number;
  /** Calls answered so far: results and declared exceptions. */
  completed: number;
  /** Calls failed so far (every kind of {@link LoadReport.errors}). */
  failed: number;
}

/** How often {@link LoadOptions.onProgress} is called. */
export const PROGRESS_EVERY_MS = 250;

/** What a run measured. */
export interface LoadReport {
  mode: 'open' | 'closed';
  method: string;
  sent: number;
  /** Calls answered: with a result, or with an exception the IDL declares (the server did its work). */
  completed: number;
  /**
   * Answers that were a declared exception, by the exception's name; counted in `completed` and
   * timed in `latencyMs`, as the server answered them. Empty when none came.
   */
  exceptions: Record<string, number>;
  /**
   * Failed calls by kind: `TApplicationException 11`, `transport`, `unanswered` (after the drain
   * time), `connection closed` (outstanding when the run stopped early).
   */
  errors: Record<string, number>;
  /** Why the run stopped early, as one sentence: a connection closed or failed. Absent when it ran its course. */
  stopped?: string;
  /** From the first call to the last answer, s. */
  seconds: number;
  /** Completed calls per second. */
  throughput: number;
  /**
   * Latency of the answered calls in ms (open loop: from the scheduled send time). Each percentile
   * is at most `max`: the histogram's buckets are read back as their highest value, which can lie
   * above the largest latency recorded.
   */
  latencyMs: { mean: number; p50: number; p90: number; p99: number; p999: number; max: number };
}

type AnyClient = Record<string, (...args: unknown[]) => Promise<unknown>>;

/** An open connection with its client. */
interface Wire {
  /** Emits 'error' (and, for sockets, 'close') when the connection fails. */
  events: EventEmitter;
  /** Sends one call of the method; settles with its answer. */
  call(): Promise<unknown>;
  /** Closes at once when `abrupt` (calls were abandoned), else politely. */
  close(abrupt: boolean): void;
}

/**
 * Bounds each connect: the npm Connection's own connect_timeout only emits 'timeout', so a host that
 * drops the SYN would stall the start for the kernel's minutes.
 */
const CONNECT_TIMEOUT_MS = 10_000;

/** TApplicationException type a server answers a wire it does not accept with (Apache Thrift numbering). */
const UNSUPPORTED_CLIENT_TYPE = 10;

const PROTOCOLS = { binary: thrift.TBinaryProtocol, compact: thrift.TCompactProtocol, json: thrift.TJSONProtocol };

/** The npm library's THeader pieces, which its typings leave out. */
const headerLib = thrift as unknown as { THeaderProtocol: thrift.TProtocolConstructor };
/** What every npm transport inherits from THeaderTransport. */
interface HeaderTransport {
  setProtocolId(id: number): void;
  writeHeaders(): void;
}

/**
 * A client transport that sends THeader frames. The npm library's THeaderProtocol writes the header
 * in its own flush, but generated clients flush the transport, so with a plain transport it sends
 * bare unframed messages; this writes the header at the transport's flush instead. Replies are
 * read by THeaderProtocol through the buffered receiver, as the library intends.
 */
function headerTransport(protocol: 'binary' | 'compact'): thrift.TTransportConstructor {
  // THeader's subprotocol ids (HeaderFormat.md).
  const id = protocol === 'binary' ? 0 : 2;
  class THeaderClientTransport extends thrift.TBufferedTransport {
    constructor(buffer?: Buffer, callback?: thrift.TTransportCallback) {
      super(buffer, callback);
      (this as unknown as HeaderTransport).setProtocolId(id);
    }

    override flush(): void {
      (this as unknown as HeaderTransport).writeHeaders();
      super.flush();
    }
  }
  return THeaderClientTransport;
}

/**
 * The name of a declared exception (one the IDL lists in `throws`: an answer), or undefined for a
 * failure. Generated exceptions extend TException and set `name`; TApplicationException is the
 * only other TException, and the npm library's protocol and transport errors are plain Errors.
 */
function declaredException(error: unknown): string | undefined {
  if (!(error instanceof thrift.Thrift.TException) || error instanceof thrift.Thrift.TApplicationException) return undefined;
  return error.name || 'declared exception';
}

function errorKind(error: unknown): string {
  if (error instanceof thrift.Thrift.TApplicationException) return `TApplicationException ${(error as unknown as { type: number }).type}`;
  return 'transport';
}

/** Resolves once `connection` connects; rejects on its error or after {@link CONNECT_TIMEOUT_MS}. */
function connected(connection: thrift.Connection, where: string): Promise<void> {
  return new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`could not connect to ${where} within ${CONNECT_TIMEOUT_MS / 1000} s`)), CONNECT_TIMEOUT_MS);
    connection.once('connect', () => {
      clearTimeout(timer);
      ok();
    });
    connection.once('error', (error: Error) => {
      clearTimeout(timer);
      fail(error);
    });
  });
}

/** Opens one connection in the chosen wire; closes it again if it does not connect. */
async function openWire(service: unknown, options: LoadOptions, transport: LoadTransport, protocol: LoadProtocol): Promise<Wire> {
  const host = options.host ?? '127.0.0.1';
  const caller = (connection: unknown): (() => Promise<unknown>) => {
    const client =
      options.multiplexed === undefined
        ? thrift.createClient<AnyClient>(service as never, connection as never)
        : new thrift.Multiplexer().createClient<AnyClient>(options.multiplexed, service as never, connection as never);
    return () => client[options.method]!(...options.args);
  };
  if (transport === 'http') {
    // One keep-alive socket per connection with one call on it at a time, as HTTP/1.1 answers in
    // order. The calls wait here rather than in the agent, whose queued requests would each open
    // a new socket once the run destroys the old one.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const connection = thrift.createHttpConnection(host, options.port, {
      transport: thrift.TBufferedTransport,
      protocol: PROTOCOLS[protocol],
      path: '/',
      nodeOptions: { agent },
    });
    const send = caller(connection);
    let previous: Promise<unknown> = Promise.resolve();
    const call = (): Promise<unknown> => {
      const answer = previous.then(send);
      previous = answer.catch(() => {});
      return answer;
    };
    return { events: connection, call, close: () => agent.destroy() };
  }
  const connection = thrift.createConnection(
    host,
    options.port,
    transport === 'header'
      ? { transport: headerTransport(protocol as 'binary' | 'compact'), protocol: headerLib.THeaderProtocol }
      : { transport: transport === 'buffered' ? thrift.TBufferedTransport : thrift.TFramedTransport, protocol: PROTOCOLS[protocol] },
  );
  // Node turns an 'error' without a listener into an exception; the run listens for real later.
  connection.on('error', () => {});
  try {
    await connected(connection, `${host}:${options.port}`);
  } catch (error) {
    connection.destroy();
    throw error;
  }
  return { events: connection, call: caller(connection), close: (abrupt) => (abrupt ? connection.destroy() : connection.end()) };
}

/** One sentence on why a connection event stopped the run. */
function stopReason(error: (Error & { code?: unknown; statusCode?: unknown }) | undefined, wire: string, answered: number): string {
  const after = `after ${answered} answered call${answered === 1 ? '' : 's'}`;
  // Before any answer the likeliest cause is a wire the server does not take; after answers, it is not.
  const hint = answered === 0 ? ` (it may not accept ${wire}; see its log)` : '';
  if (error === undefined || error.code === 'ECONNRESET' || error.code === 'EPIPE' || error.message === 'socket hang up') {
    return `the server closed the connection ${after}${hint}`;
  }
  if (typeof error.statusCode === 'number') return `the server answered HTTP ${error.statusCode} ${after}${hint}`;
  if (typeof error.code === 'string') return `the connection failed ${after}: ${error.message}`;
  return `an answer could not be read as ${wire} ${after}: ${error.message}${hint}`;
}

/**
 * Runs the load; resolves with the report. Rejects (TypeError, RangeError) on a service, method or
 * wire it cannot use, and when a connection cannot be opened.
 */
export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const transport = options.transport ?? 'framed';
  const protocol = options.protocol ?? 'binary';
  if (transport === 'header' && protocol === 'json') throw new RangeError('--transport header takes --protocol binary or compact, not json');
  const require = createRequire(import.meta.url);
  const servicePath = isAbsolute(options.service) ? options.service : resolve(options.service);
  const service = require(servicePath) as { Client?: unknown };
  if (typeof service.Client !== 'function') throw new TypeError(`--service ${options.service} does not export a Thrift Client`);
  if (typeof (service.Client as { prototype: Record<string, unknown> }).prototype[options.method] !== 'function') {
    throw new TypeError(`--method ${options.method} is not a method of ${options.service}`);
  }
  const opening = await Promise.allSettled(Array.from({ length: options.connections ?? 8 }, () => openWire(service, options, transport, protocol)));
  const wires = opening.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  const refused = opening.find((o) => o.status === 'rejected');
  if (refused !== undefined) {
    for (const w of wires) w.close(true);
    throw refused.reason;
  }

  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
  const errors: Record<string, number> = {};
  const exceptions: Record<string, number> = {};
  let sent = 0;
  let completed = 0;
  let lastAnswer = 0;
  const outstanding = new Set<Promise<void>>();

  // The npm client leaves its calls pending when their connection closes or an answer cannot be
  // decoded, so the first such event stops the whole run: the calls then outstanding are counted
  // and later answers ignored, instead of waiting out the drain time for what cannot come.
  let stopped: string | undefined;
  // A server restricted from this wire answers the first call of each connection with a
  // TApplicationException 10 saying so, then closes: that stops the run, and its words explain
  // the stop best.
  let refusal: string | undefined;
  let finished = false;
  let onStop!: () => void;
  const stopping = new Promise<void>((r) => {
    onStop = r;
  });
  let stopSeen = false;
  const stop = (error?: Error): void => {
    if (stopSeen || finished) return;
    stopSeen = true;
    // Judged a turn later: an answer that arrived with the close (a refusal, say) is read first.
    setImmediate(() => judgeStop(error));
  };
  const judgeStop = (error?: Error): void => {
    if (finished) return;
    stopped =
      refusal !== undefined
        ? `the server does not accept ${transport} ${protocol}: ${refusal}`
        : stopReason(error, `${transport} ${protocol}`, sent - outstanding.size);
    if (outstanding.size > 0) errors['connection closed'] = outstanding.size;
    onStop();
  };
  for (const w of wires) {
    w.events.on('error', stop);
    w.events.on('close', () => stop());
  }

  const start = performance.now();
  const failedSoFar = (): number => Object.values(errors).reduce((a, b) => a + b, 0);
  const progressTimer =
    options.onProgress === undefined
      ? undefined
      : setInterval(() => options.onProgress!({ elapsedMs: performance.now() - start, sent, completed, failed: failedSoFar() }), PROGRESS_EVERY_MS);
  const answered = (scheduledAt: number): void => {
    lastAnswer = performance.now();
    completed++;
    histogram.recordValue(Math.max(1, Math.round((lastAnswer - scheduledAt) * 1000)));
  };
  const call = (scheduledAt: number): Promise<void> => {
    const wire = wires[sent % wires.length]!;
    sent++;
    const p = wire.call().then(
      () => {
        if (stopped !== undefined) return;
        answered(scheduledAt);
      },
      (error: unknown) => {
        if (stopped !== undefined) return;
        const declared = declaredException(error);
        if (declared !== undefined) {
          exceptions[declared] = (exceptions[declared] ?? 0) + 1;
          answered(scheduledAt);
          return;
        }
        lastAnswer = performance.now();
        const kind = errorKind(error);
        errors[kind] = (errors[kind] ?? 0) + 1;
        if (kind === `TApplicationException ${UNSUPPORTED_CLIENT_TYPE}`) {
          // Definitive, and over HTTP the next call would just open another socket to be refused.
          refusal ??= (error as Error).message;
          stop();
        }
      },
    );
    outstanding.add(p);
    void p.then(() => outstanding.delete(p));
    return Promise.race([p, stopping]);
  };

  if ('rate' in options.mode) {
    const rate = options.mode.rate;
    await new Promise<void>((done) => {
      const timer = setInterval(() => {
        const elapsed = performance.now() - start;
        if (stopped === undefined) {
          const due = Math.floor((Math.min(elapsed, options.durationMs) * rate) / 1000);
          while (sent < due) void call(start + (sent * 1000) / rate);
        }
        if (elapsed >= options.durationMs || stopped !== undefined) {
          clearInterval(timer);
          done();
        }
      }, 1);
    });
  } else {
    // The slots send until the time is up; the run does not wait for their last answers, which a
    // stalled server never sends: the drain bounds those.
    let sending = true;
    const slot = async (): Promise<void> => {
      while (sending && stopped === undefined) await call(performance.now());
    };
    for (let i = 0; i < options.mode.concurrency; i++) void slot();
    let sendingTimer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((r) => {
        sendingTimer = setTimeout(() => {
          sending = false;
          r();
        }, options.durationMs);
      }),
      stopping,
    ]);
    clearTimeout(sendingTimer);
  }

  let drainTimer: NodeJS.Timeout | undefined;
  const drained = await Promise.race([
    Promise.all(outstanding).then(() => true),
    stopping.then(() => false),
    new Promise<boolean>((r) => {
      drainTimer = setTimeout(() => r(false), options.drainMs ?? 10_000);
    }),
  ]);
  clearTimeout(drainTimer);
  if (!drained && stopped === undefined) errors.unanswered = outstanding.size;
  finished = true;
  clearInterval(progressTimer);
  for (const w of wires) w.close(!drained);

  const seconds = Math.max(1e-9, ((lastAnswer || performance.now()) - start) / 1000);
  const max = histogram.maxValue / 1000;
  const ms = (p: number): number => Math.min(histogram.getValueAtPercentile(p) / 1000, max);
  const report: LoadReport = {
    mode: 'rate' in options.mode ? 'open' : 'closed',
    method: options.method,
    sent,
    completed,
    exceptions,
    errors,
    ...(stopped === undefined ? {} : { stopped }),
    seconds,
    throughput: completed / seconds,
    latencyMs: { mean: Math.min(histogram.mean / 1000, max), p50: ms(50), p90: ms(90), p99: ms(99), p999: ms(99.9), max },
  };
  histogram.destroy();
  return report;
}
