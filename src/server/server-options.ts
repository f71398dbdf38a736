/**
 * Options of the threaded server: types, defaults and validation in one place.
 */
import { isAbsolute, resolve } from 'node:path';
import type { TlsOptions } from 'node:tls';
import { pathToFileURL } from 'node:url';
import { availableParallelism } from 'node:os';
import { isLimiterStore, type LimiterStore } from '../stores/store.js';
import type { LimitsConfig, QueueBounds } from './method-limits.js';
import { resolveFairnessOptions, type FairnessOptions, type ResolvedFairnessOptions } from '../fair/fair-options.js';
import type { Protocol } from '../thrift/message-header.js';

/** Options of {@link createThreadedServer}. */
export interface ThreadedServerOptions {
  /** The generated service module (e.g. `./gen-nodejs/Calculator.js`), a path or file URL. */
  service: string | URL;
  /** The handler module: exports `createHandler(context)`, `handler`, or a default handler object. */
  handler: string | URL;
  /** Worker threads running handlers. Default: `os.availableParallelism()`. */
  workers?: number;
  /** Wire protocol. Default `'binary'` (strict and non-strict are both read). */
  protocol?: Protocol;
  /** Transport. Only `'framed'` (TFramedTransport) is supported. */
  transport?: 'framed';
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
  /** A connection silent this long in the middle of a frame is closed. Default 30 000 ms; 0 disables. */
  idleTimeoutMs?: number;
  /** Most open connections; more are refused by the socket server. Default: unbounded. */
  maxConnections?: number;
  /** Serve TLS with these options (as `tls.createServer`), like thrift's `tls` option. */
  tls?: TlsOptions;
  /** Where one-line log messages go. Default: `console.warn`. */
  log?: (line: string) => void;
}

/** Options after defaults and validation. */
export interface ResolvedServerOptions {
  serviceUrl: string;
  handlerUrl: string;
  workers: number;
  protocol: Protocol;
  maxFrameBytes: number;
  limits: LimitsConfig;
  store: LimiterStore | undefined;
  queue: QueueBounds;
  fairness: ResolvedFairnessOptions | undefined;
  idleTimeoutMs: number;
  maxConnections: number;
  tls: TlsOptions | undefined;
  log: (line: string) => void;
}

const DEFAULT_MAX_FRAME = 16 * 1024 * 1024;
const DEFAULT_IDLE_MS = 30_000;

function moduleUrl(name: string, value: unknown): string {
  if (value instanceof URL) return value.href;
  if (typeof value !== 'string' || value.length === 0) throw new TypeError(`${name} must be a module path or file URL, got ${String(value)}`);
  if (value.startsWith('file:')) return value;
  return pathToFileURL(isAbsolute(value) ? value : resolve(value)).href;
}

function wholeNumber(name: string, value: unknown, min: number, allowInfinity = false): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, got ${String(value)}`);
  if (allowInfinity && value === Infinity) return value;
  if (!Number.isInteger(value) || value < min) throw new RangeError(`${name} must be a whole number of at least ${min}, got ${value}`);
  return value;
}

function resolveServerStore(store: unknown): LimiterStore | undefined {
  if (store !== undefined && !isLimiterStore(store)) throw new TypeError(`store must be a store from createRedisStore(), got ${String(store)}`);
  return store;
}

/** Validates {@link ThreadedServerOptions} and fills in defaults. */
export function resolveServerOptions(options: ThreadedServerOptions): ResolvedServerOptions {
  if (options === null || typeof options !== 'object') throw new TypeError('createThreadedServer needs an options object');
  const protocol = options.protocol ?? 'binary';
  if (protocol !== 'binary' && protocol !== 'compact') throw new RangeError(`protocol must be 'binary' or 'compact', got ${String(protocol)}`);
  if (options.transport !== undefined && options.transport !== 'framed') {
    throw new RangeError(`transport must be 'framed' (the buffered transport cannot be split into calls safely), got ${String(options.transport)}`);
  }
  if (options.log !== undefined && typeof options.log !== 'function') throw new TypeError('log must be a function');
  const queue = options.queue ?? {};
  if (queue === null || typeof queue !== 'object') throw new TypeError('queue must be an object { maxQueued, maxWaitMs }');
  return {
    serviceUrl: moduleUrl('service', options.service),
    handlerUrl: moduleUrl('handler', options.handler),
    workers: options.workers === undefined ? availableParallelism() : wholeNumber('workers', options.workers, 1),
    protocol,
    maxFrameBytes: options.maxFrameBytes === undefined ? DEFAULT_MAX_FRAME : wholeNumber('maxFrameBytes', options.maxFrameBytes, 16),
    limits: options.limits ?? {},
    store: resolveServerStore(options.store),
    queue,
    fairness: options.fairness === undefined ? undefined : resolveFairnessOptions(options.fairness),
    idleTimeoutMs: options.idleTimeoutMs === undefined ? DEFAULT_IDLE_MS : wholeNumber('idleTimeoutMs', options.idleTimeoutMs, 0, true),
    maxConnections: options.maxConnections === undefined ? Infinity : wholeNumber('maxConnections', options.maxConnections, 1, true),
    tls: options.tls,
    log: options.log ?? ((line) => console.warn(line)),
  };
}
