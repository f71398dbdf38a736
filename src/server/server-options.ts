/**
 * Options of the threaded server: their types, defaults and validation (with the checks of
 * `validate.ts`).
 */
import type { TlsOptions } from 'node:tls';
import { availableParallelism } from 'node:os';
import { isLimiterStore, type LimiterStore } from '../stores/store.js';
import { resolveQueueBounds, type LimitsConfig, type QueueBounds } from '../limits/method-limits.js';
import { resolveFairnessOptions, type FairnessOptions, type ResolvedFairnessOptions } from '../fair/fair-options.js';
import type { Protocol } from '../thrift/message-header.js';
import type { Transport } from './wire.js';
import { describe, func, moduleUrl, object, options as knownOptions, someOf, wholeNumber } from '../validate.js';

/** Options of {@link createThreadedServer}. */
export interface ThreadedServerOptions {
  /**
   * The generated service module (e.g. `./gen-nodejs/Calculator.js`), a path (a relative one is
   * resolved against the current directory, not the calling module) or file URL. Its methods are
   * called by their plain names. Give this and `handler`, or `services`, or both.
   */
  service?: string | URL;
  /**
   * The handler module, a path or file URL as for `service`: exports `createHandler(context)`,
   * `handler`, or a default handler object.
   */
  handler?: string | URL;
  /**
   * Services multiplexed on the same port, by name: clients (`TMultiplexedProtocol`) call their
   * methods as `Name:method`, and limits, stats and metrics name them so (`Name:*` is a
   * per-service default limit).
   */
  services?: Record<string, { service: string | URL; handler: string | URL }>;
  /** Worker threads running handlers. Default: `os.availableParallelism()`. */
  workers?: number;
  /**
   * Protocols accepted: each connection is answered in the one it speaks. Default `'all'`
   * (binary strict and non-strict, compact, JSON); one or a list restricts it.
   */
  protocol?: Protocol | readonly Protocol[] | 'all';
  /**
   * Transports accepted, told apart per connection from its first bytes: `'framed'`
   * (TFramedTransport), `'buffered'` (unframed, TBufferedTransport), `'header'` (THeader), `'http'`
   * (HTTP/1.1 POST). Default `'all'`; one or a list restricts it.
   */
  transport?: Transport | readonly Transport[] | 'all';
  /** Largest frame accepted; a bigger length prefix closes that connection. Default 16 MiB. */
  maxFrameBytes?: number;
  /** Limits by method name, `'*'` for the default. */
  limits?: LimitsConfig;
  /**
   * Where rate limits keep their state: a distributed store (`createRedisStore`) shared by every
   * server process using it, each method's limit under its method name. Default: the embedded
   * in-process store. `listen` connects it first and fails with a clear error if it cannot.
   */
  store?: LimiterStore;
  /** Bounds of the waiting queue: a call over them gets a TApplicationException. */
  queue?: QueueBounds;
  /**
   * Fair admission: calls of limited methods wait per flow (client address, connection, method,
   * an argument field or a function) inside priority levels, and flows take turns for the limit's
   * tokens instead of one FIFO. `queue.maxQueued` and `queue.maxWaitMs` apply to the fair queues.
   */
  fairness?: FairnessOptions;
  /**
   * Longest a call may take from its hand-off to a worker to its reply. Past it the client gets a
   * TApplicationException INTERNAL_ERROR naming the method and the timeout, the call's permit is
   * released, and a late result is dropped (counted in `lateReplies`). A worker whose event loop
   * stays blocked this long (a synchronous handler) is terminated and replaced. Default 60 000 ms;
   * 0 or Infinity disables both.
   */
  handlerTimeoutMs?: number;
  /**
   * A connection with nothing read, nothing flushed and no call outstanding for this long is
   * closed. Default 300 000 ms (5 minutes); 0 or Infinity disables.
   */
  idleTimeoutMs?: number;
  /** Longest one frame may take to arrive once its first byte has; a slower one closes the connection. Default 30 000 ms; 0 or Infinity disables. */
  frameTimeoutMs?: number;
  /** Most calls one connection may have accepted and not yet answered; at the bound the server stops reading it until one ends. Default 1000. */
  maxInFlightPerConnection?: number;
  /**
   * Most bytes a connection may hold in the server: the requests of its calls in flight (whose
   * replies are still to come) plus its replies not yet sent; past it the server stops reading it
   * until they drain. Default 4 MiB.
   */
  maxPendingReplyBytes?: number;
  /** Most open connections; more are refused by the socket server, with a log line. Default 1024; Infinity for no bound. */
  maxConnections?: number;
  /** Longest `listen()` waits for every worker to load the handler (`createHandler` included). Default 30 000 ms. */
  startTimeoutMs?: number;
  /** Serve TLS with these options (as `tls.createServer`), like thrift's `tls` option. */
  tls?: TlsOptions;
  /** Where one-line log messages go. Default: `console.warn`. */
  log?: (line: string) => void;
}

/** Options after defaults and validation. */
export interface ResolvedServerOptions {
  /** The services: `name` '' for the plain one (unprefixed method names). */
  services: ServiceModules[];
  workers: number;
  protocols: ReadonlySet<Protocol>;
  transports: ReadonlySet<Transport>;
  maxFrameBytes: number;
  limits: LimitsConfig;
  store: LimiterStore | undefined;
  queue: QueueBounds;
  fairness: ResolvedFairnessOptions | undefined;
  handlerTimeoutMs: number;
  idleTimeoutMs: number;
  frameTimeoutMs: number;
  maxInFlightPerConnection: number;
  maxPendingReplyBytes: number;
  maxConnections: number;
  startTimeoutMs: number;
  tls: TlsOptions | undefined;
  log: (line: string) => void;
}

/**
 * The defaults, with the bounds of issue "every call ends, bounded memory per connection" in mind:
 * a connection can hold at most a partial frame (maxFrameBytes, for at most frameTimeoutMs), its
 * unread replies (maxPendingReplyBytes) and its outstanding calls (maxInFlightPerConnection). At
 * 1024 connections that is a worst case in the tens of GiB only if every client sends maximal
 * frames at once; typical frames are far below the bound.
 */
export const SERVER_DEFAULTS = {
  maxFrameBytes: 16 * 1024 * 1024,
  handlerTimeoutMs: 60_000,
  idleTimeoutMs: 300_000,
  frameTimeoutMs: 30_000,
  maxInFlightPerConnection: 1000,
  maxPendingReplyBytes: 4 * 1024 * 1024,
  maxConnections: 1024,
  startTimeoutMs: 30_000,
} as const;

/** A timeout option: its default when absent, Infinity for 0 or Infinity (disabled), else a whole number of ms. */
function timeout(name: 'handlerTimeoutMs' | 'idleTimeoutMs' | 'frameTimeoutMs', value: unknown): number {
  if (value === undefined) return SERVER_DEFAULTS[name];
  const ms = wholeNumber(name, value, 0, undefined, true);
  return ms === 0 ? Infinity : ms;
}

const PROTOCOL_NAMES: readonly Protocol[] = ['binary', 'compact', 'json'];
const TRANSPORT_NAMES: readonly Transport[] = ['framed', 'buffered', 'header', 'http'];

/** Every option, checked complete against the interface so a new option cannot be refused as unknown. */
const SERVER_KEYS = Object.keys({
  service: true,
  handler: true,
  services: true,
  workers: true,
  protocol: true,
  transport: true,
  maxFrameBytes: true,
  limits: true,
  store: true,
  queue: true,
  fairness: true,
  handlerTimeoutMs: true,
  idleTimeoutMs: true,
  frameTimeoutMs: true,
  maxInFlightPerConnection: true,
  maxPendingReplyBytes: true,
  maxConnections: true,
  startTimeoutMs: true,
  tls: true,
  log: true,
} satisfies Record<keyof ThreadedServerOptions, true>);
const SERVICE_KEYS = ['service', 'handler'];

/** A service's modules, as file URLs. */
export interface ServiceModules {
  /** The name multiplexed clients prefix its methods with; '' for the plain service. */
  name: string;
  serviceUrl: string;
  handlerUrl: string;
}

function resolveServices(options: ThreadedServerOptions): ServiceModules[] {
  const services: ServiceModules[] = [];
  if (options.service !== undefined || options.handler !== undefined) {
    services.push({ name: '', serviceUrl: moduleUrl('service', options.service), handlerUrl: moduleUrl('handler', options.handler) });
  }
  if (options.services !== undefined) {
    if (options.services === null || typeof options.services !== 'object') throw new TypeError('services must be an object of name → { service, handler }');
    for (const [name, s] of Object.entries(options.services)) {
      if (!/^[^:\s]+$/.test(name)) throw new RangeError(`services: a service name must be non-empty, without ':' or spaces, got ${JSON.stringify(name)}`);
      if (s === null || typeof s !== 'object') throw new TypeError(`services.${name} must be { service, handler }`);
      knownOptions(`services.${name}`, s, SERVICE_KEYS);
      services.push({ name, serviceUrl: moduleUrl(`services.${name}.service`, s.service), handlerUrl: moduleUrl(`services.${name}.handler`, s.handler) });
    }
  }
  if (services.length === 0) throw new TypeError('createThreadedServer needs service and handler, or services');
  return services;
}

function resolveServerStore(store: unknown): LimiterStore | undefined {
  if (store !== undefined && !isLimiterStore(store)) throw new TypeError(`store must be a store from createRedisStore(), got ${describe(store)}`);
  return store;
}

/** Validates {@link ThreadedServerOptions} and fills in defaults. */
export function resolveServerOptions(options: ThreadedServerOptions): ResolvedServerOptions {
  if (options === null || typeof options !== 'object') throw new TypeError('createThreadedServer needs an options object');
  knownOptions('createThreadedServer options', options, SERVER_KEYS);
  const protocols = someOf('protocol', options.protocol, PROTOCOL_NAMES);
  const transports = someOf('transport', options.transport, TRANSPORT_NAMES);
  if (options.log !== undefined) func('log', options.log);
  if (options.tls !== undefined) object('tls', options.tls);
  const queue = resolveQueueBounds(options.queue);
  return {
    services: resolveServices(options),
    workers: options.workers === undefined ? availableParallelism() : wholeNumber('workers', options.workers, 1),
    protocols,
    transports,
    maxFrameBytes: options.maxFrameBytes === undefined ? SERVER_DEFAULTS.maxFrameBytes : wholeNumber('maxFrameBytes', options.maxFrameBytes, 16),
    limits: options.limits ?? {},
    store: resolveServerStore(options.store),
    queue,
    fairness: options.fairness === undefined ? undefined : resolveFairnessOptions(options.fairness),
    handlerTimeoutMs: timeout('handlerTimeoutMs', options.handlerTimeoutMs),
    idleTimeoutMs: timeout('idleTimeoutMs', options.idleTimeoutMs),
    frameTimeoutMs: timeout('frameTimeoutMs', options.frameTimeoutMs),
    maxInFlightPerConnection: wholeNumber('maxInFlightPerConnection', options.maxInFlightPerConnection ?? SERVER_DEFAULTS.maxInFlightPerConnection, 1),
    maxPendingReplyBytes: wholeNumber('maxPendingReplyBytes', options.maxPendingReplyBytes ?? SERVER_DEFAULTS.maxPendingReplyBytes, 1),
    maxConnections: wholeNumber('maxConnections', options.maxConnections ?? SERVER_DEFAULTS.maxConnections, 1, undefined, true),
    startTimeoutMs: wholeNumber('startTimeoutMs', options.startTimeoutMs ?? SERVER_DEFAULTS.startTimeoutMs, 1),
    tls: options.tls,
    log: options.log ?? ((line) => console.warn(line)),
  };
}
