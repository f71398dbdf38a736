/**
 * A half-sync/half-async Thrift server: one I/O thread owns the sockets and decides admission,
 * a pool of worker threads runs the handlers.
 *
 * Per request, the I/O thread reads the frame and only its message header (method, type, seqid),
 * asks the method's limiter for a token (waiting in the shared queue if there is none), and hands
 * the raw frame to a worker in a batch. Overload (queue full, wait limit) is answered right here
 * with a TApplicationException, without touching a worker. See docs/ARCHITECTURE.md.
 */
import { once, setMaxListeners } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { BroadcastChannel } from 'node:worker_threads';
import { isOverloadError, overloadMessage } from '../errors.js';
import type { AnyLimiter } from '../limiters/attach.js';
import { PermitLimit } from '../limiters/concurrency-limit.js';
import { applicationExceptionFrame, ExceptionType } from '../thrift/application-exception.js';
import { readMessageHeader, type MessageHeader } from '../thrift/message-header.js';
import { serviceMethods, type ServiceMethods, type ServiceModule } from '../thrift/service-methods.js';
import { Connection, ConnectionClosedError } from './connection.js';
import type { LimitsMessage, ThriftWorkerData } from './batch.js';
import { Dispatcher, HandlerTimeoutError } from './dispatcher.js';
import { ThrottledLog } from './throttled-log.js';
import type { Wire } from './wire.js';
import { FairAdmission } from './fair-admission.js';
import type { LevelStats } from '../fair/priority-level.js';
import { callKey, type CallKeySpec } from '../limits/call-key.js';
import { checkLimitNames, isKeyedLimit, MethodLimits, type KeyedMethodLimit, type LimitsConfig, type MethodLimit } from '../limits/method-limits.js';
import { ConcurrencyLimit } from '../limiters/concurrency-limit.js';
import { FixedWindow } from '../limiters/fixed-window.js';
import { TokenBucket } from '../limiters/token-bucket.js';
import { resolveServerOptions, type ResolvedServerOptions, type ThreadedServerOptions } from './server-options.js';
import { ServerStats, type ServerStatsSnapshot } from './stats.js';
import { collectDefaultMetrics, type Registry } from 'prom-client';
import { limiterMetrics } from '../metrics/prometheus.js';
import { describeLimits, type LimitsDescription } from '../limits/describe-limits.js';
import { serverMetrics } from '../metrics/server-metrics.js';

const CALL = 1;
const ONEWAY = 4;

/**
 * TApplicationException type sent when a call is refused for overload: 11, fbthrift's
 * LOADSHEDDING (Apache Thrift defines types up to 10; clients read any value as a plain number).
 */
export const OVERLOADED = 11;

/**
 * The reason calls waiting on a limit that `setLimits` retired are taken out of its queue: the
 * server then admits them through the method's current limit (none: at once).
 */
const LIMIT_REPLACED = new Error('the limit was replaced: the call moves to the current limit');

/** Options of {@link ThreadedServer.close}. */
export interface CloseOptions {
  /** How long queued and running calls may still finish before they are answered with an error. Default 5000. */
  timeoutMs?: number;
}

/**
 * Where a server is in its life: `created` (before `listen`), `starting` (the workers are loading
 * the handler), `serving`, `closing` (`close` called: calls still running may finish), `closed`.
 */
export type ServerState = 'created' | 'starting' | 'serving' | 'closing' | 'closed';

/** What health checks read of a server ({@link ThreadedServer.health}). */
export interface ServerHealth {
  /** Where the server is in its life: `created`, `starting`, `serving`, `closing` or `closed`. */
  state: ServerState;
  /** Worker threads configured. */
  workers: number;
  /** Worker threads that have loaded the handler and are not being replaced (0 unless serving or closing). */
  readyWorkers: number;
}

/** Thrown by `listen` when the service or handler module is unusable. */
export class ModuleLoadError extends Error {
  /** Stable machine-readable reason. */
  readonly code = 'MODULE_LOAD' as const;
  /** @param message which module, and why it is unusable. */
  constructor(message: string) {
    super(message);
    this.name = 'ModuleLoadError';
  }
}

/**
 * A multi-threaded Thrift server with queueing admission control.
 *
 * The `ConnectionHost` of its connections (`new Connection(socket, this)` checks that) without
 * saying `implements`: those members are internal, left out of the published types, where the
 * clause would no longer hold.
 */
export class ThreadedServer {
  /** Validated options. */
  readonly options: ResolvedServerOptions;
  /** The limits, by method. */
  readonly limits: MethodLimits;
  /** The fair queues in front of the limits, with the `fairness` option. */
  private readonly fair: FairAdmission | undefined;
  /** Where the workers hear of changed limits (their handler context follows them). */
  private readonly limitsChannel: BroadcastChannel;
  private readonly limitsChannelName = `thrift-queue-limiter:limits:${crypto.randomUUID()}`;
  /** Changes of the limits since start: 0 while the workers' start-up descriptors are current. */
  private limitsVersion = 0;

  /** The `maxFrameBytes` option in force: the largest frame (or unframed message) accepted. */
  readonly maxFrameBytes: number;
  /** The `maxInFlightPerConnection` option in force. */
  readonly maxInFlightPerConnection: number;
  /** The `maxPendingReplyBytes` option in force. */
  readonly maxPendingReplyBytes: number;
  /** Aborted when `close()` stops waiting for calls to drain (at its deadline, or once none is left): calls still queued then are refused. */
  readonly shutdownSignal: AbortSignal;
  private readonly stats_ = new ServerStats();
  private readonly shutdown = new AbortController();
  private readonly server: net.Server;
  private readonly connections = new Set<Connection>();
  private readonly log: ThrottledLog;
  private dispatcher: Dispatcher | undefined;
  /**
   * Every method a client may call (multiplexed ones as `Service:method`), read from the generated
   * code by `listen`, with its kind and its limit: the frame path's one lookup.
   */
  private methods = new Map<string, { oneway: boolean; limit: MethodLimit | undefined }>();
  private sweeper: NodeJS.Timeout | undefined;
  /** Calls by wire ("framed binary", "HTTP json", ...). */
  private readonly wireCalls = new Map<string, { calls: number }>();
  /** Calls accepted and not yet answered or refused (queued or running). */
  private active = 0;
  private drained: (() => void) | undefined;
  private closing: Promise<void> | undefined;
  private starting: Promise<AddressInfo> | undefined;
  private state: ServerState = 'created';
  /** The registry of each metric prefix asked for: one set of process metrics (and their event-loop monitor) per prefix. */
  private readonly registries = new Map<string, Registry>();

  /**
   * Validates `options` (a TypeError or RangeError names the invalid one); nothing starts until
   * `listen()`. The same as {@link createThreadedServer}.
   */
  constructor(options: ThreadedServerOptions) {
    this.options = resolveServerOptions(options);
    this.limits = new MethodLimits(this.options.limits, this.options.queue, this.options.store);
    this.fair = this.options.fairness && new FairAdmission(this.limits, this.options.fairness, this.options.queue);
    this.limitsChannel = new BroadcastChannel(this.limitsChannelName);
    this.limitsChannel.unref();
    this.maxFrameBytes = this.options.maxFrameBytes;
    this.maxInFlightPerConnection = this.options.maxInFlightPerConnection;
    this.maxPendingReplyBytes = this.options.maxPendingReplyBytes;
    this.shutdownSignal = this.shutdown.signal;
    this.log = new ThrottledLog(this.options.log);
    setMaxListeners(0, this.shutdownSignal); // one listener per open connection
    const onSocket = (socket: net.Socket): void => this.accept(socket);
    this.server = this.options.tls ? tls.createServer(this.options.tls, onSocket) : net.createServer(onSocket);
    if (this.options.maxConnections !== Infinity) this.server.maxConnections = this.options.maxConnections;
    this.server.on('drop', () => {
      this.stats_.connectionsRefused++;
      this.log.write('drop', `thrift-queue-limiter: refusing connections: maxConnections ${this.options.maxConnections} are open`);
    });
    if (this.options.tls) {
      this.server.on('tlsClientError', (error: Error) => this.options.log(`thrift-queue-limiter: TLS handshake failed: ${error.message}`));
    }
  }

  /**
   * Loads and checks the service and handler modules, starts the workers (each creates its
   * handler), and listens. Resolves with the bound address (port 0 picks a free port) once every
   * worker is ready; rejects with one line, leaving nothing running, when the modules cannot be
   * loaded, `createHandler` throws or does not resolve within `startTimeoutMs`, a store cannot be
   * reached, or the port cannot be bound.
   */
  async listen(port = 9090, host = '127.0.0.1'): Promise<AddressInfo> {
    this.state = 'starting';
    const start = this.start(port, host);
    this.starting = start;
    try {
      return await start;
    } catch (error) {
      if (this.state === 'starting') this.state = 'created';
      throw error;
    }
  }

  private async start(port: number, host: string): Promise<AddressInfo> {
    for (const modules of this.options.services) {
      for (const [name, oneway] of await checkModules(modules.serviceUrl, modules.handlerUrl)) {
        const full = modules.name === '' ? name : `${modules.name}:${name}`;
        this.methods.set(full, { oneway, limit: this.limits.limitFor(full) });
      }
    }
    this.checkLimitNames(this.limits.names());
    // A store that cannot be reached at start is a configuration error, reported now; outages
    // after this follow the store's onStoreError.
    await Promise.all(this.limits.stores().map((store) => store.connect()));
    this.throwIfClosed();
    const timeoutMs = this.options.handlerTimeoutMs;
    const dispatcher = new Dispatcher({
      filename: fileURLToPath(new URL('../../workers/thrift-worker.js', import.meta.url)),
      workers: this.options.workers,
      workerData: {
        services: this.options.services,
        limiters: this.limits.descriptors(),
        keyedLimiters: this.limits.keyedDescriptors(),
        limitsChannel: this.limitsChannelName,
        handlerTimeoutMs: timeoutMs,
        heartbeatMs: heartbeatMs(timeoutMs),
      } satisfies ThriftWorkerData,
      handlerTimeoutMs: timeoutMs,
      heartbeatMs: heartbeatMs(timeoutMs),
      onWorkerExit: (threadId) => this.limits.reclaimThread(threadId),
      // A worker started after a change of the limits was handed the start-up ones.
      onWorkerReady: () => {
        if (this.limitsVersion > 0) this.broadcastLimits();
      },
      onWorkerReplaced: (threadId, blockedMs) => {
        this.stats_.workerReplacements++;
        this.options.log(
          `thrift-queue-limiter: worker thread ${threadId} replaced: its event loop was blocked for ${blockedMs} ms (handlerTimeoutMs ${timeoutMs}); its calls are answered INTERNAL_ERROR`,
        );
      },
      onWorkerStartFailed: (threadId, reason) =>
        this.log.write('start', `thrift-queue-limiter: worker thread ${threadId} could not load the handler, retrying in 1 s: ${reason}`),
      onHandlerErrors: (lines) => {
        for (const line of lines)
          this.log.write(`handler ${line.slice(0, line.indexOf(':'))}`, `thrift-queue-limiter: handler failed, answered INTERNAL_ERROR: ${line}`);
      },
    });
    try {
      await dispatcher.ready(this.options.startTimeoutMs).catch((error: Error) => {
        throw new ModuleLoadError(`handler ${this.options.services.map((m) => m.handlerUrl).join(', ')} did not start in the workers: ${error.message}`);
      });
      this.throwIfClosed();
      this.server.listen(port, host);
      // A failure to listen rejects here; errors after that are logged.
      await once(this.server, 'listening');
      this.throwIfClosed();
      this.server.on('error', (error) => this.options.log(`thrift-queue-limiter: server error: ${error.message}`));
    } catch (error) {
      await dispatcher.destroy();
      throw error;
    }
    this.dispatcher = dispatcher;
    // The sweep runs four times per the shorter timeout (a connection is closed at most a quarter
    // late), never more often than every 10 ms nor less often than every second.
    const shortest = Math.min(this.options.frameTimeoutMs, this.options.idleTimeoutMs);
    if (shortest !== Infinity) {
      this.sweeper = setInterval(() => this.sweep(), Math.min(1000, Math.max(10, shortest / 4)));
      this.sweeper.unref();
    }
    if (this.state === 'starting') this.state = 'serving';
    return this.server.address() as AddressInfo;
  }

  /** A `close()` called while starting wins: the start undoes what it opened and rejects. */
  private throwIfClosed(): void {
    if (this.closing !== undefined) throw new Error('server closed while starting');
  }

  /** Applies the frame and idle timeouts to every connection. */
  private sweep(): void {
    const now = performance.now();
    for (const c of this.connections) {
      const outcome = c.sweep(now, this.options.frameTimeoutMs, this.options.idleTimeoutMs);
      if (outcome === 'idle') this.stats_.idleClosed++;
    }
  }

  /**
   * Replaces the limits while the server runs, in the I/O thread and every worker: `limits` has the
   * shape of the `limits` option and becomes the whole set. A limit of the same kind is changed in
   * place (`setLimit`: its waiting calls stay and are timed again under the new limit, and handlers
   * holding it see the change), and so is a per-key limit whose rate, period or burst changed (its
   * table and every key's bucket are kept); one of another kind, a per-key limit with another
   * `perKey`, `slots`, `probeWindow` or overflow bucket, or one with another store is built anew.
   * The calls waiting on a limit that was replaced or removed move to the method's current limit
   * (none: they start at once), so none is lost or refused by the change; a retired limiter admits
   * at once whatever still waits on it in the workers. Handlers see the new limiters in
   * `context.limiters` and `context.keyedLimiters` (updated in place: look them up when used rather
   * than keeping one from start-up). `queue` and `fairness` stay as they were.
   * @returns one line per limit added, changed or removed.
   * @throws TypeError | RangeError naming `limits.<method>` (or a method the service does not have);
   *   the limits are then left as they were.
   */
  setLimits(limits: LimitsConfig): string[] {
    if (limits === null || typeof limits !== 'object') throw new TypeError('limits must be an object of method name → limit');
    if (this.methods.size > 0) this.checkLimitNames(Object.keys(limits));
    const { changes, retired } = this.limits.update(limits);
    for (const [name, method] of this.methods) method.limit = this.limits.limitFor(name);
    this.fair?.sync(this.limits, LIMIT_REPLACED);
    for (const limit of retired) retire(limit);
    this.limitsVersion++;
    this.broadcastLimits();
    return changes;
  }

  /** @throws RangeError for a limit named after a method the service does not have. */
  private checkLimitNames(names: Iterable<string>): void {
    const services = this.options.services.map((m) => m.name).filter((name) => name !== '');
    checkLimitNames(names, [...this.methods.keys()], services);
  }

  /** Tells every worker the current limiters (each attaches the new ones and drops the retired). */
  private broadcastLimits(): void {
    this.limitsChannel.postMessage({
      version: this.limitsVersion,
      limiters: this.limits.descriptors(),
      keyedLimiters: this.limits.keyedDescriptors(),
    } satisfies LimitsMessage);
  }

  /** The bound address, once listening. */
  address(): AddressInfo | null {
    return this.server.address() as AddressInfo | null;
  }

  /**
   * Counters since start, plus the number of calls waiting now and the limit in force of each
   * concurrency limit (an adaptive one's current value), by configured name; with `fairness`, the
   * fair queues' counters by priority level (summed over the limits).
   */
  stats(): ServerStatsSnapshot & {
    lateReplies: number;
    queued: number;
    running: number;
    concurrencyLimits: Record<string, number>;
    levels?: Record<string, LevelStats>;
  } {
    const snapshot = {
      ...this.stats_.snapshot(),
      lateReplies: this.dispatcher?.lateReplies ?? 0,
      queued: this.limits.queued() + (this.fair?.uncounted() ?? 0),
      running: this.dispatcher?.outstanding ?? 0,
      concurrencyLimits: Object.fromEntries(this.limits.entries().flatMap(([name, l]) => (l instanceof PermitLimit ? [[name, l.limit]] : []))),
    };
    return this.fair === undefined ? snapshot : { ...snapshot, levels: this.fair.levels() };
  }

  /**
   * A prom-client Registry with the limits' metrics (admitted, refused by reason, queued, wait
   * histogram; read from shared memory at scrape time), the server's own (counters, per-method
   * handler durations, workers) and prom-client's default process metrics, all named with `prefix`.
   * The same registry is returned for the same prefix.
   */
  metricsRegistry(prefix = 'tql_'): Registry {
    let registry = this.registries.get(prefix);
    if (registry !== undefined) return registry;
    const fair = this.fair;
    registry = limiterMetrics(() => Object.fromEntries(this.limits.entries()), {
      prefix,
      extra: serverMetrics(
        {
          stats: () => this.stats_.snapshot(),
          methods: () => this.stats_.methods,
          wireCalls: () => this.wireCalls,
          lateReplies: () => this.dispatcher?.lateReplies ?? 0,
          workers: () => ({ configured: this.options.workers, ready: this.health().readyWorkers }),
          levels: fair === undefined ? undefined : () => fair.levels(),
          keyed: () => this.limits.keyedEntries().map(([name, k]) => [name, k.limiter] as const),
        },
        prefix,
      ),
    });
    collectDefaultMetrics({ register: registry, prefix });
    this.registries.set(prefix, registry);
    return registry;
  }

  /** Where the server is in its life and how many of its workers are ready, for health checks. */
  health(): ServerHealth {
    return { state: this.state, workers: this.options.workers, readyWorkers: this.dispatcher?.readyWorkers ?? 0 };
  }

  /**
   * The limits in force now, as JSON-ready data: every configured limit with its kind and
   * options, the limit each method of the service is under, and fair admission's settings. Read
   * from the limiters at each call.
   */
  describeLimits(): LimitsDescription {
    return describeLimits(this.limits, this.methods.keys(), this.options.fairness);
  }

  /** Queue-wait percentiles (ms) since the previous call. */
  takeWaitPercentiles(): { count: number; p50: number; p99: number; max: number } {
    return this.stats_.takeWaits();
  }

  /**
   * Stops accepting connections, lets queued and running calls finish until `timeoutMs`, answers
   * the rest with a TApplicationException, closes every connection, then stops the workers.
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.closing === undefined) {
      this.state = 'closing';
      // A start in progress sees `closing` at its next step and undoes itself; the shutdown runs
      // after it, so nothing the start opened outlives close().
      const started = this.starting?.then(noop, noop) ?? Promise.resolve();
      this.closing = started
        .then(() => this.doClose(options.timeoutMs ?? 5000))
        .finally(() => {
          this.state = 'closed';
        });
    }
    return this.closing;
  }

  private async doClose(timeoutMs: number): Promise<void> {
    clearInterval(this.sweeper);
    this.limitsChannel.close();
    this.server.close();
    if (this.active > 0) {
      const drained = new Promise<void>((resolve) => {
        this.drained = resolve;
      });
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      });
      await Promise.race([drained, deadline]);
      clearTimeout(timer);
    }
    // Past the deadline: queued calls leave their queues (answered below by refuse()), running
    // ones are answered now.
    this.shutdown.abort(new Error('server shutting down'));
    this.dispatcher?.failAll(new Error('server shut down before the call finished'));
    // The refusals of aborted calls are written from promise callbacks: let them run first.
    await new Promise((resolve) => setImmediate(resolve));
    for (const c of this.connections) c.end();
    await this.dispatcher?.destroy();
    for (const c of this.connections) c.destroy();
  }

  /** @internal ConnectionHost */
  onFrame(connection: Connection, frame: Buffer): void {
    let header: MessageHeader;
    try {
      header = readMessageHeader(frame, connection.protocol);
    } catch (error) {
      this.onProtocolError(connection, `malformed message header: ${(error as Error).message}`);
      connection.destroy();
      return;
    }
    if (header.type !== CALL && header.type !== ONEWAY) {
      this.onProtocolError(connection, `message type ${header.type} is not a call`);
      connection.destroy();
      return;
    }
    const method = this.methods.get(header.name);
    const oneway = method?.oneway;
    if (method === undefined || (oneway && header.type === CALL)) {
      // Answered here, before any limit: an unknown method would otherwise take a token, and a
      // CALL for a oneway method would run a processor that never writes the reply its client
      // waits for. A ONEWAY message for a method that returns runs, and its reply is dropped.
      this.stats_.invalidCalls++;
      if (header.type === CALL) {
        if (method === undefined) this.answerError(connection, header, ExceptionType.UNKNOWN_METHOD, `Unknown function ${header.name}`);
        else
          this.answerError(connection, header, ExceptionType.INVALID_MESSAGE_TYPE, `${header.name} is a oneway method, but was called with message type CALL`);
      }
      return;
    }
    if (this.closing !== undefined && this.shutdown.signal.aborted) {
      this.answerError(connection, header, ExceptionType.INTERNAL_ERROR, 'server shutting down');
      return;
    }
    this.active++;
    connection.callStarted(frame.length);
    const limit = method.limit;
    const arrived = performance.now();
    if (limit === undefined) {
      this.stats_.recordWait(0);
      this.dispatch(connection, header, frame, undefined);
    } else if (isKeyedLimit(limit)) this.admitKeyed(limit, connection, header, frame, arrived);
    else this.admit(limit, connection, header, frame, arrived);
  }

  /** The task an admitted call runs: record its wait, hand it to a worker, settle when answered. */
  private admittedTask(connection: Connection, header: MessageHeader, frame: Buffer, arrived: number): () => Promise<void> {
    return () => {
      this.stats_.recordWait(performance.now() - arrived);
      return new Promise<void>((done) => this.dispatch(connection, header, frame, done));
    };
  }

  private admit(limiter: AnyLimiter, connection: Connection, header: MessageHeader, frame: Buffer, arrived: number): void {
    const maxWaitMs = this.options.queue.maxWaitMs;
    const task = this.admittedTask(connection, header, frame, arrived);
    if (this.fair !== undefined) {
      // The call waits in its flow; the fair queue takes the limiter's token when its turn comes.
      this.fair.run(limiter, task, connection, header, frame, maxWaitMs).catch((error: unknown) => this.notAdmitted(connection, header, frame, arrived, error));
      return;
    }
    const options = maxWaitMs === undefined ? { signal: connection.signal } : { signal: connection.signal, maxWaitMs };
    limiter.run(task, 1, options).catch((error: unknown) => this.notAdmitted(connection, header, frame, arrived, error));
  }

  /** A call left its limit's queue without being admitted: refused, or moved to the current limit. */
  private notAdmitted(connection: Connection, header: MessageHeader, frame: Buffer, arrived: number, error: unknown): void {
    if (error !== LIMIT_REPLACED) {
      this.refuse(connection, header, frame.length, error);
      return;
    }
    const limit = this.methods.get(header.name)?.limit;
    if (limit === undefined) {
      this.stats_.recordWait(performance.now() - arrived);
      this.dispatch(connection, header, frame, undefined);
    } else if (isKeyedLimit(limit)) this.admitKeyed(limit, connection, header, frame, arrived);
    else this.admit(limit, connection, header, frame, arrived);
  }

  /**
   * A per-key limit: the call waits in its key's queue (the key computed as fair admission computes
   * flows, limits/call-key.ts). With `fairness` too, a per-key limit is still admitted per key, without a
   * fair queue: its keys already wait independently of each other.
   */
  private admitKeyed(limit: KeyedMethodLimit, connection: Connection, header: MessageHeader, frame: Buffer, arrived: number): void {
    const maxWaitMs = this.options.queue.maxWaitMs;
    const options = maxWaitMs === undefined ? { signal: connection.signal } : { signal: connection.signal, maxWaitMs };
    let admitted: Promise<void>;
    try {
      const key = callKey(limit.perKey as CallKeySpec, connection, header, frame, connection.protocol);
      admitted = limit.limiter.run(key, this.admittedTask(connection, header, frame, arrived), 1, options);
    } catch (error) {
      admitted = Promise.reject(error);
    }
    admitted.catch((error: unknown) => this.notAdmitted(connection, header, frame, arrived, error));
  }

  private dispatch(connection: Connection, header: MessageHeader, frame: Buffer, done: (() => void) | undefined): void {
    const dispatchedAt = performance.now();
    const counters = this.stats_.admit(header.name, dispatchedAt);
    const oneway = header.type === ONEWAY;
    this.dispatcher!.dispatch({
      frame,
      protocol: connection.protocol,
      signal: connection.signal,
      onReply: (reply) => {
        counters.handlerDuration.observeMs(performance.now() - dispatchedAt);
        if (reply !== null && !oneway) connection.write(reply);
        this.stats_.completed++;
        done?.();
        this.finished(connection, frame.length);
      },
      onFailure: (error) => {
        if (error instanceof ConnectionClosedError) this.stats_.refuse(header.name, 'disconnected');
        else if (connection.signal.aborted && error === connection.signal.reason) {
          // Shut down before its batch left: never run.
          this.stats_.refuse(header.name, 'shutdown');
          if (!oneway) this.answerError(connection, header, ExceptionType.INTERNAL_ERROR, 'server shutting down');
        } else {
          // It ran (or its worker died running it): its time counts, timeouts included.
          counters.handlerDuration.observeMs(performance.now() - dispatchedAt);
          if (error instanceof HandlerTimeoutError) this.stats_.handlerTimeouts++;
          else this.stats_.workerFailures++;
          if (!oneway) this.answerError(connection, header, ExceptionType.INTERNAL_ERROR, `${header.name} ${error.message}`);
        }
        done?.();
        this.finished(connection, frame.length);
      },
    });
  }

  private refuse(connection: Connection, header: MessageHeader, bytes: number, error: unknown): void {
    const oneway = header.type === ONEWAY;
    const message = overloadMessage(header.name, error);
    if (isOverloadError(error)) {
      this.stats_.refuse(header.name, error.reason);
    } else if (this.shutdown.signal.aborted) {
      this.stats_.refuse(header.name, 'shutdown');
      if (!oneway) this.answerError(connection, header, ExceptionType.INTERNAL_ERROR, 'server shutting down');
    } else if (connection.isClosed) {
      this.stats_.refuse(header.name, 'disconnected');
    } else {
      this.stats_.workerFailures++;
      if (!oneway) this.answerError(connection, header, ExceptionType.INTERNAL_ERROR, `${header.name}: ${(error as Error)?.message ?? String(error)}`);
    }
    if (message !== undefined) {
      if (oneway) this.stats_.onewayDropped++;
      else this.answerError(connection, header, OVERLOADED, message);
    }
    this.finished(connection, bytes);
  }

  private answerError(connection: Connection, header: MessageHeader, type: number, message: string): void {
    connection.write(applicationExceptionFrame({ name: header.name, seqid: header.seqid, type, message, protocol: connection.protocol }));
  }

  private finished(connection: Connection, bytes: number): void {
    connection.callEnded(bytes);
    this.active--;
    if (this.active === 0 && this.drained !== undefined) this.drained();
  }

  /** @internal ConnectionHost */
  onProtocolError(connection: Connection, reason: string): void {
    this.stats_.protocolErrors++;
    this.options.log(
      `thrift-queue-limiter: closing connection ${connection.id} from ${connection.socket.remoteAddress}:${connection.socket.remotePort}: ${reason}`,
    );
  }

  /** @internal ConnectionHost */
  onWire(_connection: Connection, wire: Wire): string | { calls: number } {
    if (!this.options.transports.has(wire.transport)) return `this server accepts ${[...this.options.transports].join(', ')} only`;
    if (wire.protocol === undefined) return { calls: 0 };
    if (!this.options.protocols.has(wire.protocol))
      return `this server accepts the ${[...this.options.protocols].join(', ')} protocol${this.options.protocols.size > 1 ? 's' : ''} only`;
    const name = `${wire.transport} ${wire.protocol}`;
    let counters = this.wireCalls.get(name);
    if (counters === undefined) this.wireCalls.set(name, (counters = { calls: 0 }));
    return counters;
  }

  /** @internal ConnectionHost */
  onRefused(connection: Connection, message: Buffer, reason: string): void {
    let header: MessageHeader;
    try {
      header = readMessageHeader(message, connection.protocol);
    } catch {
      return;
    }
    if (header.type === CALL) this.answerError(connection, header, ExceptionType.UNSUPPORTED_CLIENT_TYPE, reason);
  }

  /** @internal ConnectionHost */
  onReadPaused(): void {
    this.stats_.readPauses++;
  }

  /** @internal ConnectionHost */
  onClose(connection: Connection): void {
    this.connections.delete(connection);
    this.stats_.connections--;
  }

  private accept(socket: net.Socket): void {
    if (this.closing !== undefined) {
      socket.destroy();
      return;
    }
    this.stats_.connections++;
    this.connections.add(new Connection(socket, this));
  }
}

/**
 * Takes a retired limit's calls waiting in this thread out of its queue (they move to the current
 * limit, see `notAdmitted`), and opens it wide, so that calls handlers queued on it in the workers
 * are admitted rather than left under a limit nobody can change any more; then removes its hooks
 * on its store, which would otherwise keep it alive as long as the store (the workers do the same
 * with their instances).
 */
function retire(limit: MethodLimit): void {
  if (isKeyedLimit(limit)) {
    limit.limiter.clear(LIMIT_REPLACED);
    return;
  }
  limit.clear(LIMIT_REPLACED);
  if (limit instanceof TokenBucket) limit.setLimit({ rate: 1e9, periodMs: 1000, burst: 2 ** 22 });
  else if (limit instanceof FixedWindow) limit.setLimit({ maxCalls: 2 ** 24 - 1, periodMs: 1 });
  else if (limit instanceof ConcurrencyLimit) limit.setLimit({ max: 2 ** 31 - 1 });
  limit.dispose();
}

/**
 * How often workers bump their heartbeat: often enough that a worker blocked for
 * `handlerTimeoutMs` is seen within a quarter of that, never more than once per 10 ms.
 */
function heartbeatMs(handlerTimeoutMs: number): number {
  return Math.max(10, Math.min(1000, handlerTimeoutMs / 4));
}

/**
 * Imports the modules once on the I/O thread, so a bad path fails `listen` with one clear line,
 * and returns the service's methods.
 */
async function checkModules(serviceUrl: string, handlerUrl: string): Promise<ServiceMethods> {
  let service: ServiceModule;
  try {
    service = (await import(serviceUrl)) as ServiceModule;
  } catch (error) {
    throw new ModuleLoadError(`cannot load service module ${serviceUrl}: ${(error as Error).message}`);
  }
  const methods = serviceMethods(service);
  if (methods === undefined) throw new ModuleLoadError(`${serviceUrl} does not export a Thrift service (no Processor)`);
  let handler: Record<string, unknown>;
  try {
    handler = (await import(handlerUrl)) as Record<string, unknown>;
  } catch (error) {
    throw new ModuleLoadError(`cannot load handler module ${handlerUrl}: ${(error as Error).message}`);
  }
  const usable =
    typeof handler.createHandler === 'function' || typeof handler.handler === 'object' || (handler.default !== null && typeof handler.default === 'object');
  if (!usable) throw new ModuleLoadError(`${handlerUrl} does not export a handler (createHandler, handler or default)`);
  return methods;
}

/** Creates a {@link ThreadedServer}; call `listen()` to start it. */
export function createThreadedServer(options: ThreadedServerOptions): ThreadedServer {
  return new ThreadedServer(options);
}

function noop(): void {}
