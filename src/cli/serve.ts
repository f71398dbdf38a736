/**
 * `thrift-queue-limiter serve`: runs a generated service and a handler module on the threaded
 * server, prints a stats line every few seconds, reloads the limits of its `--config` file on
 * SIGHUP, and shuts down cleanly on SIGINT/SIGTERM.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createThreadedServer } from '../server/threaded-server.js';
import { createRedisStore, type RedisStore } from '../stores/redis-store.js';
import type { StoreErrorPolicy } from '../stores/store.js';
import type { FairnessOptions } from '../fair/fair-options.js';
import { describeLimit, type LimitsConfig, type QueueBounds } from '../limits/method-limits.js';
import { parseDuration, parseDurationOrOff, parseFlags, parsePositive } from './args.js';
import { readConfig, withFlags, type ServeConfig } from './config-file.js';
import { parseLimit } from './limit-spec.js';
import { parseFairnessFlags } from './fairness-spec.js';
import { metricsRequestListener } from '../metrics/http-endpoint.js';

const HELP = `usage: thrift-queue-limiter serve --service FILE --handler FILE [options]
       thrift-queue-limiter serve --service NAME=FILE --handler NAME=FILE [--service NAME=FILE --handler NAME=FILE …] [options]

  --service FILE        generated service module (thrift --gen js:node,es6), e.g. ./gen-nodejs/Calculator.js
  --handler FILE        module exporting createHandler(context), handler, or a default handler object
  --service NAME=FILE, --handler NAME=FILE
                        a multiplexed service (repeatable): clients call NAME:method (TMultiplexedProtocol);
                          limits name its methods NAME:method, NAME:* is its default
  --port N              TCP port (default 9090; 0 picks a free one)
  --host ADDR           address to bind (default 127.0.0.1)
  --workers N           handler threads (default: available parallelism)
  --protocol P          accept only these protocols: binary, compact, json, comma-separated (default all)
  --transport T         accept only these transports: framed, buffered, header (THeader), http, comma-separated
                          (default all: each connection is answered in the wire its first bytes show)
  --config FILE         JSON file with the limits, queue and fairness options (same shapes as the library's:
                          {"limits": {"add": {"rate": 100}}, "queue": {"maxWaitMs": 5000}}); flags override it.
                          kill -HUP reloads its limits: one log line lists what changed, or says why the file
                          was refused (the limits then stay as they were)
  --limit M=SPEC        limit for method M ('*' = default, @NAME = a limit for handler code only), repeatable:
                          work=100/s  'work=100/s,burst=10'  'report=600/min,window'  export=concurrency=4
                          adaptive concurrency: work=adaptive  'work=adaptive,min=2,max=200' (initial=N)
                          per key: 'add=10/s,per=address' (per=connection | method | field:N; slots=N keys,
                          probeWindow=N slots searched per key)
  --max-wait DURATION   longest a call may wait for its token, e.g. 5s (default: unbounded)
  --max-queued N        most calls waiting per limit (default: unbounded)
  --fair-flow KEY       fair admission: flows take turns for each limit instead of one FIFO;
                          KEY = address (default) | connection | method | field:N (argument N of the call)
  --level NAME=SHARE[:METHODS]  priority level, repeatable: 'interactive=3:add,echo' --level batch=1
                          (the level without methods is the default; idle levels lend their share)
  --no-borrow NAME      level NAME never takes more than its share of the rate (repeatable)
  --max-queued-per-flow N  most calls one flow may have waiting (default: unbounded)
  --fair-quantum N      calls a flow takes per turn (default 1)
  --redis URL           keep the limits in Redis (redis://[:password@]host:port[/db], rediss:// for TLS),
                          shared by every server using the same Redis and prefix (default: in-process;
                          per-key limits stay in-process)
  --redis-cluster URL,URL,…  the same on a Redis Cluster: some of its nodes (redis://[:password@]host:port)
  --redis-sentinel HOST:PORT,…  the same on the master Redis Sentinel names --redis-master
  --redis-master NAME   the master's name at the sentinels (with --redis-sentinel)
  --redis-prefix P      key prefix in Redis (default tql:)
  --store-error POLICY  while Redis is down: fail-closed (default: refuse) | fail-open | local-share
  --expected-processes N  servers sharing the limits, for local-share (default 1)
  --lease               reserve batches of tokens per process (fewer round trips, documented slack)
  --permit-lease DUR    concurrency limits in Redis: how long a dead server's permits stay taken (default 10s)
  --max-frame-bytes N   largest frame accepted (default 16777216)
  --frame-timeout DUR   close a connection whose frame is not complete this long after its first byte
                          (default 30s; 0 disables)
  --idle-timeout DUR    close a connection idle this long, between frames too: nothing read, no reply
                          flushed, no call in flight (default 5m; 0 disables)
  --handler-timeout DUR answer a call whose handler has not finished after DUR with INTERNAL_ERROR (type 6),
                          and replace a worker whose event loop is blocked that long (default 60s; 0 disables)
  --max-connections N   most open connections; more are refused (default 1024)
  --max-in-flight-per-connection N  calls one connection may have admitted and unanswered before the server
                          stops reading it until one finishes (default 1000)
  --max-pending-reply-bytes N  bytes of one connection's calls in flight (their requests) and unsent replies
                          before the server stops reading it until they drain (default 4194304)
  --start-timeout DUR   longest the workers may take to load the handler before serve fails (default 30s)
  --stats-interval DUR  how often to print the stats line (default 5s)
  --metrics-port N      serve Prometheus metrics at http://ADDR:N/metrics, and /healthz, /readyz (503 while
                          starting, shutting down or without a ready worker), /limits (JSON) (off by default)
  --metrics-host ADDR   address the metrics port binds (default 127.0.0.1)
  --help                this text

Over a bound a call is answered with TApplicationException type 11 (overloaded); a oneway call is dropped and counted.
If the Thrift port, the metrics port or the handler cannot be opened, serve prints one line saying which and why
and exits with status 1.`;

/** Runs `serve`; resolves with the exit code once the server has shut down. */
export async function serve(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, {
    service: { type: 'string', multiple: true, default: [] },
    handler: { type: 'string', multiple: true, default: [] },
    port: { type: 'string', default: '9090' },
    host: { type: 'string', default: '127.0.0.1' },
    workers: { type: 'string' },
    protocol: { type: 'string', default: 'all' },
    transport: { type: 'string', default: 'all' },
    config: { type: 'string' },
    limit: { type: 'string', multiple: true, default: [] },
    'max-wait': { type: 'string' },
    'max-queued': { type: 'string' },
    'fair-flow': { type: 'string' },
    level: { type: 'string', multiple: true, default: [] },
    'no-borrow': { type: 'string', multiple: true, default: [] },
    'max-queued-per-flow': { type: 'string' },
    'fair-quantum': { type: 'string' },
    redis: { type: 'string' },
    'redis-cluster': { type: 'string' },
    'redis-sentinel': { type: 'string' },
    'redis-master': { type: 'string' },
    'permit-lease': { type: 'string' },
    'redis-prefix': { type: 'string' },
    'store-error': { type: 'string' },
    'expected-processes': { type: 'string' },
    lease: { type: 'boolean', default: false },
    'max-frame-bytes': { type: 'string' },
    'idle-timeout': { type: 'string' },
    'frame-timeout': { type: 'string' },
    'handler-timeout': { type: 'string' },
    'max-connections': { type: 'string' },
    'max-in-flight-per-connection': { type: 'string' },
    'max-pending-reply-bytes': { type: 'string' },
    'start-timeout': { type: 'string' },
    'stats-interval': { type: 'string', default: '5s' },
    'metrics-port': { type: 'string' },
    'metrics-host': { type: 'string' },
    help: { type: 'boolean', default: false },
  });
  if (flags.help) {
    console.log(HELP);
    return 0;
  }
  const services = parseServices(flags.service as string[], flags.handler as string[]);
  const port = Number(flags.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`--port must be 0..65535, got ${JSON.stringify(flags.port)}`);
  const protocol = parseList('--protocol', flags.protocol as string, ['binary', 'compact', 'json'] as const);
  const transport = parseList('--transport', flags.transport as string, ['framed', 'buffered', 'header', 'http'] as const);
  const flagLimits: LimitsConfig = {};
  for (const text of flags.limit as string[]) {
    const [name, spec] = parseLimit(text);
    flagLimits[name] = spec;
  }
  const flagQueue: QueueBounds = {
    ...(flags['max-wait'] ? { maxWaitMs: parseDuration('--max-wait', flags['max-wait'] as string) } : {}),
    ...(flags['max-queued'] ? { maxQueued: parsePositive('--max-queued', flags['max-queued'] as string, true) } : {}),
  };
  const flagFairness = parseFairnessFlags({
    fairFlow: flags['fair-flow'] as string | undefined,
    levels: flags.level as string[],
    noBorrow: flags['no-borrow'] as string[],
    maxQueuedPerFlow: flags['max-queued-per-flow'] as string | undefined,
    quantum: flags['fair-quantum'] as string | undefined,
  });
  const configFile = flags.config as string | undefined;
  const fromFlags = { limits: flagLimits, queue: flagQueue, fairness: flagFairness };
  const settings: ServeConfig = configFile === undefined ? fromFlags : withFlags(readConfig(configFile), fromFlags);
  const { limits, fairness } = settings;
  const connectionLimits = connectionOptions(flags);
  const statsEvery = parseDuration('--stats-interval', flags['stats-interval'] as string);
  let metricsPort: number | undefined;
  if (flags['metrics-port'] !== undefined) {
    metricsPort = Number(flags['metrics-port']);
    if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535)
      throw new RangeError(`--metrics-port must be 0..65535, got ${JSON.stringify(flags['metrics-port'])}`);
  }
  const metricsHost = (flags['metrics-host'] as string | undefined) ?? '127.0.0.1';
  if (metricsHost === '') throw new RangeError('--metrics-host must be an address, got ""');
  if (metricsPort === undefined && flags['metrics-host'] !== undefined) throw new RangeError('--metrics-host needs --metrics-port N');
  const host = flags.host as string;
  const store = redisStore(flags);
  let server: ReturnType<typeof createThreadedServer>;
  try {
    server = createThreadedServer({
      ...services,
      protocol,
      transport,
      limits,
      ...(store ? { store } : {}),
      queue: settings.queue,
      ...(fairness ? { fairness } : {}),
      ...(flags.workers ? { workers: parsePositive('--workers', flags.workers as string, true) } : {}),
      ...(flags['max-frame-bytes'] ? { maxFrameBytes: parsePositive('--max-frame-bytes', flags['max-frame-bytes'] as string, true) } : {}),
      ...connectionLimits,
    });
  } catch (error) {
    await store?.close();
    throw error;
  }
  let metrics: http.Server | undefined;
  // From here on a failure must not leave the process running with a half-opened server: close
  // what was opened, say in one line which listener failed and why, and exit non-zero.
  const fail = async (what: string | undefined, error: unknown): Promise<never> => {
    metrics?.close();
    await closeQuietly(server, store);
    // A limit for a method the service lacks is a usage error (exit 2), as a bad flag is.
    if (what === undefined && (error instanceof RangeError || error instanceof TypeError)) throw error;
    throw new Error(what === undefined ? oneLine(error) : `${what}: ${oneLine(error)}`);
  };
  // The metrics port opens first, so /readyz answers 503 while the workers load the handler.
  if (metricsPort !== undefined) {
    metrics = http.createServer(metricsRequestListener(server));
    metrics.listen(metricsPort, metricsHost);
    try {
      await once(metrics, 'listening');
    } catch (error) {
      await fail(`cannot serve metrics on ${hostPort(metricsHost, metricsPort)}`, error);
    }
    const bound = metrics.address() as AddressInfo;
    console.log(`metrics on http://${hostPort(bound.address, bound.port)}/metrics (health: /healthz /readyz, limits: /limits)`);
  }
  // A module or handler that cannot be loaded already says so (naming the module); a port that
  // cannot be bound is named here.
  const address = await server
    .listen(port, host)
    .catch((error: unknown) => fail(isListenError(error) ? `cannot listen for Thrift on ${host}:${port}` : undefined, error));
  const served = (flags.service as string[]).join(' ');
  const wires = `${[...server.options.transports].join('/')} × ${[...server.options.protocols].join('/')}`;
  console.log(
    `serving ${served} on ${address.address}:${address.port} (${server.options.workers} worker${server.options.workers === 1 ? '' : 's'}, ${wires}); limits: ${limitsLine(server)}${store ? ` in Redis at ${store.address} (${store.onStoreError}${store.leaseSettings.horizonMs > 0 ? ', leasing' : ''})` : ''}${fairness ? `; fair admission, flows by ${describeFlow(fairness.flow)}` : ''}`,
  );

  // The limits that move by themselves: their value now is part of the stats line.
  const adaptive = Object.entries(limits).flatMap(([name, spec]) => ('adaptive' in spec ? [name] : []));
  let last = { at: performance.now(), admitted: 0 };
  const timer = setInterval(() => {
    const s = server.stats();
    const w = server.takeWaitPercentiles();
    const now = performance.now();
    const perSec = ((s.admitted - last.admitted) * 1000) / (now - last.at);
    last = { at: now, admitted: s.admitted };
    console.log(
      `admitted ${perSec.toFixed(0)}/s  queued ${s.queued}  running ${s.running}  wait p50 ${w.p50.toFixed(1)} ms p99 ${w.p99.toFixed(1)} ms  ` +
        `refused queue_full ${s.refused.queue_full} queue_timeout ${s.refused.queue_timeout}${store ? ` store_unavailable ${s.refused.store_unavailable}` : ''} disconnected ${s.refused.disconnected}  connections ${s.connections}` +
        (s.handlerTimeouts > 0 ? `  timeouts ${s.handlerTimeouts}` : '') +
        (adaptive.length > 0 ? `  limit ${adaptive.map((n) => `${n}=${s.concurrencyLimits[n]}`).join(' ')}` : ''),
    );
  }, statsEvery);

  // SIGHUP reloads the config file's limits. The file is not watched: editors write files in several
  // steps (truncate, then write), so a watcher would reload half-written files and log errors for
  // edits in progress; a signal says "the file is ready now", and works the same under a process
  // manager (systemctl reload, kill -HUP).
  const reload = (): void => {
    if (configFile === undefined) {
      console.warn('thrift-queue-limiter: SIGHUP: nothing to reload (serve was started without --config)');
      return;
    }
    try {
      const next = withFlags(readConfig(configFile), fromFlags);
      const changes = server.setLimits(next.limits);
      const later = (['queue', 'fairness'] as const).filter((k) => JSON.stringify(next[k]) !== JSON.stringify(settings[k]));
      console.log(
        `thrift-queue-limiter: reloaded ${configFile}: ${changes.length > 0 ? changes.join('; ') : 'no limit changed'}${later.length > 0 ? ` (${later.join(' and ')} changed in the file: read at start only, kept as they were)` : ''}`,
      );
    } catch (error) {
      console.warn(`thrift-queue-limiter: ${configFile} not reloaded, the limits stay as they were: ${oneLine(error)}`);
    }
  };
  process.on('SIGHUP', reload);
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  process.off('SIGHUP', reload);
  clearInterval(timer);
  console.log(`${signal}: shutting down (queued and running calls get 5 s to finish)`);
  // The metrics port stays open meanwhile: /readyz says 503 while the calls finish.
  await server.close({ timeoutMs: 5000 });
  metrics?.close();
  metrics?.closeAllConnections();
  await store?.close();
  const s = server.stats();
  console.log(`stopped: admitted ${s.admitted}, completed ${s.completed}, refused ${Object.values(s.refused).reduce((a, b) => a + b, 0)}`);
  return 0;
}

/**
 * The services the repeatable --service/--handler flags name: a plain FILE pair is the service
 * called with unprefixed method names, NAME=FILE pairs are multiplexed services.
 */
function parseServices(
  serviceFlags: string[],
  handlerFlags: string[],
): { service?: string; handler?: string; services?: Record<string, { service: string; handler: string }> } {
  const split = (flag: string, values: string[]): { plain: string[]; named: Map<string, string> } => {
    const plain: string[] = [];
    const named = new Map<string, string>();
    for (const value of values) {
      const m = /^([A-Za-z_][\w.]*)=(.+)$/.exec(value);
      if (m === null) plain.push(value);
      else if (named.has(m[1]!)) throw new RangeError(`${flag} ${m[1]}= is given twice`);
      else named.set(m[1]!, m[2]!);
    }
    if (plain.length > 1) throw new RangeError(`${flag} FILE is given ${plain.length} times: name the services (${flag} NAME=FILE) to serve several`);
    return { plain, named };
  };
  const s = split('--service', serviceFlags);
  const h = split('--handler', handlerFlags);
  if (s.plain.length + s.named.size === 0) throw new RangeError('--service is required (the generated service module)');
  if (s.plain.length !== h.plain.length)
    throw new RangeError(s.plain.length === 0 ? '--handler FILE needs a --service FILE' : '--handler is required (the handler module)');
  for (const name of new Set([...s.named.keys(), ...h.named.keys()])) {
    if (!s.named.has(name)) throw new RangeError(`--handler ${name}= needs a --service ${name}=FILE`);
    if (!h.named.has(name)) throw new RangeError(`--service ${name}= needs a --handler ${name}=FILE`);
  }
  return {
    ...(s.plain.length > 0 ? { service: s.plain[0]!, handler: h.plain[0]! } : {}),
    ...(s.named.size > 0 ? { services: Object.fromEntries([...s.named].map(([name, file]) => [name, { service: file, handler: h.named.get(name)! }])) } : {}),
  };
}

/** A comma-separated subset of `names`, or 'all'. */
function parseList<T extends string>(flag: string, text: string, names: readonly T[]): T[] | 'all' {
  if (text === 'all') return 'all';
  const list = text.split(',').map((t) => t.trim());
  for (const item of list)
    if (!names.includes(item as T)) throw new RangeError(`${flag} must be all or a comma-separated list of ${names.join(', ')}, got ${JSON.stringify(text)}`);
  return list as T[];
}

/** The server's connection and call bounds the flags ask for (only those given). */
function connectionOptions(flags: Record<string, unknown>): Record<string, number> {
  const out: Record<string, number> = {};
  const text = (name: string): string | undefined => flags[name] as string | undefined;
  const idle = text('idle-timeout');
  if (idle !== undefined) out.idleTimeoutMs = parseDurationOrOff('--idle-timeout', idle);
  const frame = text('frame-timeout');
  if (frame !== undefined) out.frameTimeoutMs = parseDurationOrOff('--frame-timeout', frame);
  const handler = text('handler-timeout');
  if (handler !== undefined) out.handlerTimeoutMs = parseDurationOrOff('--handler-timeout', handler);
  const start = text('start-timeout');
  if (start !== undefined) out.startTimeoutMs = parseDuration('--start-timeout', start);
  const counts = [
    ['max-connections', 'maxConnections'],
    ['max-in-flight-per-connection', 'maxInFlightPerConnection'],
    ['max-pending-reply-bytes', 'maxPendingReplyBytes'],
  ] as const;
  for (const [flag, option] of counts) {
    const value = text(flag);
    if (value !== undefined) out[option] = parsePositive(`--${flag}`, value, true);
  }
  return out;
}

/** `host:port`, with an IPv6 address in brackets as URLs write it. */
function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The server's limits in one line, e.g. `add 200/s, burst 5; * concurrency 4`. */
function limitsLine(server: ReturnType<typeof createThreadedServer>): string {
  const names = server.limits.names();
  return names.length === 0 ? 'none' : names.map((name) => `${name} ${describeLimit(server.limits.limitFor(name)!)}`).join('; ');
}

/** Whether `error` is a socket server's failure to listen (port taken, no permission, bad address). */
function isListenError(error: unknown): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).syscall === 'listen';
}

/** An error's message as one line. */
function oneLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join(' ');
}

/** Closes what a failed start opened, without letting a second failure hide the first. */
async function closeQuietly(server: { close(options: { timeoutMs: number }): Promise<void> }, store: RedisStore | undefined): Promise<void> {
  await server.close({ timeoutMs: 0 }).catch(() => {});
  await store?.close().catch(() => {});
}

/** The Redis store the flags ask for, if any: one server, a cluster, or a master behind sentinels. */
function redisStore(flags: Record<string, unknown>): RedisStore | undefined {
  const list = (flag: string): string[] => (flags[flag] as string).split(',').map((x) => x.trim());
  const given = ['redis', 'redis-cluster', 'redis-sentinel'].filter((f) => flags[f] !== undefined);
  if (given.length > 1) throw new RangeError(`--${given[0]} and --${given[1]} name two stores: give one`);
  if ((flags['redis-sentinel'] === undefined) !== (flags['redis-master'] === undefined)) {
    throw new RangeError(
      flags['redis-master'] === undefined ? '--redis-sentinel needs --redis-master NAME' : '--redis-master needs --redis-sentinel HOST:PORT,…',
    );
  }
  const others = ['redis-prefix', 'store-error', 'expected-processes', 'permit-lease'].filter((f) => flags[f] !== undefined);
  if (given.length === 0) {
    if (others.length > 0 || flags.lease === true) throw new RangeError(`--${others[0] ?? 'lease'} needs --redis URL (or --redis-cluster, --redis-sentinel)`);
    return undefined;
  }
  const policy = flags['store-error'] as string | undefined;
  if (policy !== undefined && !['fail-closed', 'fail-open', 'local-share'].includes(policy)) {
    throw new RangeError(`--store-error must be fail-closed, fail-open or local-share, got ${JSON.stringify(policy)}`);
  }
  const where =
    given[0] === 'redis'
      ? { url: flags.redis as string }
      : given[0] === 'redis-cluster'
        ? { cluster: list('redis-cluster') }
        : { sentinel: { sentinels: list('redis-sentinel'), name: flags['redis-master'] as string } };
  const options = {
    ...where,
    ...(flags['redis-prefix'] !== undefined ? { prefix: flags['redis-prefix'] as string } : {}),
    ...(policy !== undefined ? { onStoreError: policy as StoreErrorPolicy } : {}),
    ...(flags['expected-processes'] !== undefined
      ? { expectedProcesses: parsePositive('--expected-processes', flags['expected-processes'] as string, true) }
      : {}),
    ...(flags['permit-lease'] !== undefined ? { permitLeaseMs: parseDuration('--permit-lease', flags['permit-lease'] as string) } : {}),
    lease: flags.lease === true,
    log: (line: string) => console.warn(line),
  };
  try {
    return createRedisStore(options);
  } catch (error) {
    // The store's options are named as the flags that gave them.
    const message = error instanceof Error ? error.message : String(error);
    const flag = /^cluster/.test(message)
      ? '--redis-cluster'
      : /^sentinel/.test(message)
        ? '--redis-sentinel'
        : /^permitLeaseMs/.test(message)
          ? '--permit-lease'
          : undefined;
    if (flag === undefined) throw error;
    throw new RangeError(`${flag}: ${message}`, { cause: error });
  }
}

function describeFlow(flow: FairnessOptions['flow']): string {
  return flow === undefined ? 'address' : typeof flow === 'object' ? `field ${flow.field}` : String(flow);
}
