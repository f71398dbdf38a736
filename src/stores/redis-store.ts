/**
 * The Redis store: the state of each limit lives in Redis, so every process and host using the
 * same key (under the same prefix) enforces one limit.
 *
 * The algorithms are Lua scripts (`redis-scripts.ts`), registered with ioredis's `defineCommand`:
 * the first call on a connection sends the script (EVAL, which loads it), later ones its SHA
 * (EVALSHA), and a NOSCRIPT answer (a restart, SCRIPT FLUSH, a failover, or on a cluster a master
 * that never ran it) sends it again. Every call is bounded by `timeoutMs`; with the offline queue
 * off, a call made while the connection is down fails at once instead of waiting to be replayed
 * later. Each thread opens its own connection: a socket cannot be shared between threads, and a
 * limiter attached in a worker reopens the store from its descriptor. ioredis is imported on the
 * first connection, so processes that never use Redis never load it.
 *
 * Three topologies: one server (`url`), a Redis Cluster (`cluster`: ioredis's Cluster client
 * follows MOVED and ASK; every key of a limit carries the limit's name as hash tag, so a script
 * never spans slots), and a master behind Sentinel (`sentinel`: ioredis asks the sentinels where
 * the master is, again after a failover).
 */
import type { Cluster, ClusterOptions, Redis as RedisClient, RedisOptions } from 'ioredis';
import { resolveRedisStoreOptions, type RedisStoreOptions, type ResolvedRedisStoreOptions } from './redis-store-options.js';
import { GIVE_BACK_FIXED_WINDOW, GIVE_BACK_TOKEN_BUCKET, LEASE_FIXED_WINDOW, LEASE_TOKEN_BUCKET, SYNC_PERMITS } from './redis-scripts.js';
import { gcraCreditUs } from '../limiters/gcra.js';
import {
  lookaheadUs,
  RECONNECT_MAX_MS,
  registerStoreKind,
  type Grant,
  type LeaseHint,
  type LeaseSettings,
  type LimiterStore,
  type PermitNotice,
  type PermitState,
  type PermitSync,
  type RemoteConcurrencyLimit,
  type RemoteLimitSpec,
  type StoreDescriptor,
  type StoreErrorPolicy,
} from './store.js';

/** The scripted commands, as defineCommand adds them to the client (one server or a cluster). */
interface Scripted {
  tqlLeaseTokenBucket(
    key: string,
    interval: number,
    burst: number,
    want: number,
    min: number,
    aheadUs: number,
    seen: number,
    doubt: number,
    reserveUs: number,
    creditUs: number,
  ): Promise<[number, number, number, string, number]>;
  tqlGiveBackTokenBucket(key: string, interval: number, n: number, tag: string): Promise<number>;
  tqlLeaseFixedWindow(
    key: string,
    periodMs: number,
    maxCalls: number,
    want: number,
    min: number,
    seenW: number,
    seenC: number,
  ): Promise<[number, number, number, number, number, number]>;
  tqlGiveBackFixedWindow(key: string, window: string, n: number): Promise<number>;
  tqlSyncPermits(
    hash: string,
    leases: string,
    queue: string,
    holder: string,
    max: number,
    leaseMs: number,
    epoch: number,
    knownGranted: number,
    released: number,
    need: number,
    want: number,
    channel: string,
  ): Promise<[number, number, number, number, number, number]>;
}
type ScriptedClient = (RedisClient | Cluster) & Scripted;

/** Thrown by {@link RedisStore.connect} (and the server's `listen`) when Redis cannot be used. */
export class StoreConnectionError extends Error {
  /** Stable machine-readable reason. */
  readonly code = 'STORE_CONNECTION' as const;
  /** @param options `cause`: the error of the failed connection. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StoreConnectionError';
  }
}

/** A limit store in Redis. Create with {@link createRedisStore}. */
export class RedisStore implements LimiterStore {
  readonly kind = 'redis' as const;
  readonly onStoreError: StoreErrorPolicy;
  readonly expectedProcesses: number;
  readonly timeoutMs: number;
  readonly leaseSettings: LeaseSettings;
  readonly permitLeaseMs: number;
  readonly log: (line: string) => void;
  /** Key prefix; a limit named `k` lives at `${prefix}{k}:tb` (or `:fw`, `:cl…`). */
  readonly prefix: string;
  /** Where the store points, without any password: for messages. */
  readonly address: string;
  private roundTrips_ = 0;
  private epoch_ = 0;
  private droppedAt_ = 0n;
  private readonly reconnectListeners = new Set<() => void>();
  private client: ScriptedClient | undefined;
  private connecting: Promise<ScriptedClient> | undefined;
  /** The connection in subscriber mode for concurrency limits' grant notices, opened on first use. */
  private subscriber: Promise<RedisClient | Cluster> | undefined;
  private readonly watchers = new Map<string, Set<(notice: PermitNotice | undefined) => void>>();
  private readonly subscriptions = new Map<string, Promise<void>>();
  private closed = false;
  private readonly closeHooks: (() => Promise<void>)[] = [];

  /** @internal Use {@link createRedisStore}. */
  constructor(
    private readonly options: ResolvedRedisStoreOptions,
    private readonly id: string,
  ) {
    this.onStoreError = options.onStoreError;
    this.expectedProcesses = options.expectedProcesses;
    this.timeoutMs = options.timeoutMs;
    this.leaseSettings = options.lease;
    this.permitLeaseMs = options.permitLeaseMs;
    this.log = options.log;
    this.prefix = options.prefix;
    this.address = options.address;
  }

  get connected(): boolean {
    return this.client !== undefined;
  }

  get up(): boolean {
    return this.client?.status === 'ready';
  }

  get droppedAt(): bigint {
    return this.droppedAt_;
  }

  get roundTrips(): number {
    return this.roundTrips_;
  }

  get epoch(): number {
    return this.epoch_;
  }

  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  /**
   * Connects now (otherwise the first call connects). Rejects with {@link StoreConnectionError}
   * naming the address and the cause: unreachable, wrong password, not Redis.
   */
  async connect(): Promise<void> {
    await this.ready();
  }

  async lease(key: string, spec: RemoteLimitSpec, want: number, min: number, hint: LeaseHint): Promise<Grant> {
    const client = await this.ready();
    this.roundTrips_++;
    const k = this.key(key, spec.kind === 'token-bucket' ? 'tb' : 'fw');
    if (spec.kind === 'token-bucket') {
      const [granted, notBeforeUs, retryAfterUs, tag, lost] = await this.bounded(
        client.tqlLeaseTokenBucket(
          k,
          spec.intervalUs,
          spec.burst,
          want,
          min,
          lookaheadUs(spec, this.expectedProcesses),
          hint.seen,
          hint.doubt ? 1 : 0,
          hint.reserveUs,
          gcraCreditUs(spec.intervalUs),
        ),
      );
      return { granted, notBeforeUs, retryAfterUs, validUs: Infinity, tag, seen: Math.floor(Number(tag)), seenCount: 0, lost: lost === 1 };
    }
    const [granted, retryAfterUs, validUs, window, lost, count] = await this.bounded(
      client.tqlLeaseFixedWindow(k, spec.periodMs, spec.maxCalls, want, min, hint.seen, hint.seenCount),
    );
    return { granted, notBeforeUs: 0, retryAfterUs, validUs, tag: String(window), seen: window, seenCount: count, lost: lost === 1 };
  }

  async giveBack(key: string, spec: RemoteLimitSpec, n: number, tag: string): Promise<boolean> {
    const client = await this.ready();
    this.roundTrips_++;
    const r =
      spec.kind === 'token-bucket'
        ? await this.bounded(client.tqlGiveBackTokenBucket(this.key(key, 'tb'), spec.intervalUs, n, tag))
        : await this.bounded(client.tqlGiveBackFixedWindow(this.key(key, 'fw'), tag, n));
    return r === 1;
  }

  async syncPermits(key: string, spec: RemoteConcurrencyLimit, sync: PermitSync): Promise<PermitState> {
    const client = await this.ready();
    this.roundTrips_++;
    const [epoch, granted, held, queued, wakeInMs, fresh] = await this.bounded(
      client.tqlSyncPermits(
        this.key(key, 'cl'),
        this.key(key, 'cl:leases'),
        this.key(key, 'cl:queue'),
        sync.holder,
        spec.max,
        this.permitLeaseMs,
        sync.epoch,
        sync.granted,
        sync.released,
        sync.need,
        sync.want,
        this.key(key, 'cl:grants'),
      ),
    );
    return { epoch, granted, held, queued: queued === 1, wakeInMs, fresh: fresh === 1 };
  }

  async watchPermits(key: string, listener: (notice: PermitNotice | undefined) => void): Promise<() => void> {
    const channel = this.key(key, 'cl:grants');
    let subscribed = this.subscriptions.get(channel);
    if (subscribed === undefined) {
      subscribed = this.subscriberConnection().then(async (subscriber) => {
        await this.bounded(subscriber.subscribe(channel));
      });
      this.subscriptions.set(channel, subscribed);
      // A failed subscription is tried again by the next watcher.
      subscribed.catch(() => this.subscriptions.delete(channel));
    }
    await subscribed;
    let set = this.watchers.get(channel);
    if (set === undefined) this.watchers.set(channel, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  beforeClose(hook: () => Promise<void>): void {
    this.closeHooks.push(hook);
  }

  /**
   * Closes this thread's connections, once releases of concurrency permits still on their way
   * have gone out; limiters using the store fail over to `onStoreError`.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.all(this.closeHooks.map((hook) => hook().catch(() => {})));
    this.closed = true;
    const client = this.client ?? (await this.connecting?.catch(() => undefined));
    const subscriber = await this.subscriber?.catch(() => undefined);
    this.client = undefined;
    for (const c of [client, subscriber]) if (c !== undefined) await c.quit().catch(() => c.disconnect());
  }

  /** The connection is back: limits that doubted or were down ask again now, not at their next retry. */
  private reconnected(): void {
    this.epoch_++;
    for (const listener of this.reconnectListeners) listener();
  }

  describe(): StoreDescriptor {
    return { kind: 'redis', id: this.id, options: this.options.cloneable };
  }

  /** A key of limit `name`: the name is the hash tag, so all keys of one limit share a cluster slot. */
  private key(name: string, suffix: string): string {
    return `${this.prefix}{${name}}:${suffix}`;
  }

  /**
   * `call`, rejected once `timeoutMs` has passed. One server's commandTimeout already bounds each
   * command; on a cluster, redirections and failover retries resend a command, so the bound of the
   * whole call is kept here.
   */
  private bounded<T>(call: Promise<T>): Promise<T> {
    if (this.options.topology.kind !== 'cluster') return call;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`Redis Cluster did not answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      call.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  private ready(): Promise<ScriptedClient> {
    if (this.client !== undefined) return Promise.resolve(this.client);
    if (this.closed) return Promise.reject(new StoreConnectionError('the Redis store was closed'));
    this.connecting ??= this.open().then(
      (client) => {
        this.client = client;
        return client;
      },
      (error: unknown) => {
        this.connecting = undefined;
        throw error;
      },
    );
    return this.connecting;
  }

  /** A second connection, in subscriber mode, for grant notices; resubscribed by ioredis after a reconnection. */
  private subscriberConnection(): Promise<RedisClient | Cluster> {
    if (this.subscriber !== undefined) return this.subscriber;
    const opening = this.ready().then(async (client) => {
      const subscriber = client.duplicate();
      subscriber.on('error', () => {});
      subscriber.on('message', (channel: string, message: string) => {
        const [holder, epoch, granted, left] = message.split(' ');
        const notice = { holder: holder!, epoch: Number(epoch), granted: Number(granted), left: Number(left) };
        for (const listener of this.watchers.get(channel) ?? []) listener(notice);
      });
      try {
        await subscriber.connect();
      } catch (error) {
        subscriber.disconnect();
        throw error;
      }
      // Notices published while the subscription was down are lost: every watcher syncs again.
      subscriber.on('ready', () => {
        for (const set of this.watchers.values()) for (const listener of set) listener(undefined);
      });
      return subscriber;
    });
    this.subscriber = opening;
    // A connection that could not open is tried again by the next watcher.
    opening.catch(() => {
      if (this.subscriber === opening) this.subscriber = undefined;
    });
    return opening;
  }

  private async open(): Promise<ScriptedClient> {
    const { Redis, Cluster } = await import('ioredis');
    const o = this.options;
    const t = o.topology;
    // Soon after Redis is back every process should see it: a process that has not yet goes on
    // under its fault policy (local-share: its share of the rate) while the others use Redis.
    const reconnect = (times: number): number => Math.min(times * 10, RECONNECT_MAX_MS);
    // A call in flight when the connection drops fails at once (not resent after the reconnection,
    // where it could come back timeoutMs later): the limit goes down, and its policy applies, now.
    const perConnection = {
      commandTimeout: o.timeoutMs,
      connectTimeout: Math.max(o.timeoutMs, 1000),
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
    };
    let connected = false;
    let client: ScriptedClient;
    if (t.kind === 'cluster') {
      const { redisOptions, ...clusterOptions } = o.redis as ClusterOptions;
      // No commandTimeout on the nodes' connections: ioredis sends ASKING without waiting for its
      // answer, and a timeout of that command would be an unhandled rejection. `bounded` times
      // every call of ours instead.
      const { commandTimeout: _perCommand, ...perNode } = perConnection;
      client = new Cluster(t.nodes, {
        clusterRetryStrategy: reconnect,
        ...clusterOptions,
        lazyConnect: true,
        enableOfflineQueue: false,
        redisOptions: { ...redisOptions, ...t.auth, ...perNode },
      }) as ScriptedClient;
    } else {
      const r = o.redis as RedisOptions;
      const settings: RedisOptions = {
        retryStrategy: reconnect,
        // ioredis asks the sentinels again and again, so connect() never settled when none of them
        // answered or knew the master: at start that is a configuration error, as a bad address
        // is; once connected, a pass that finds no master is a failover in progress.
        ...(t.kind === 'sentinel' ? { sentinelRetryStrategy: (times: number) => (connected || times < START_SENTINEL_PASSES ? reconnect(times) : null) } : {}),
        ...r,
        ...(t.kind === 'sentinel' ? { sentinels: t.sentinels, name: t.name } : {}),
        ...perConnection,
        lazyConnect: true,
        enableOfflineQueue: false,
      };
      client = (t.kind === 'single' && t.url !== undefined ? new Redis(t.url, settings) : new Redis(settings)) as ScriptedClient;
    }
    // Errors reach callers through the commands that fail; without a listener ioredis would print
    // every reconnection attempt. The last one explains a failed connect better than ioredis's
    // "Connection is closed".
    let lastError: unknown;
    client.on('error', (error: unknown) => {
      lastError = error;
    });
    client.defineCommand('tqlLeaseTokenBucket', { numberOfKeys: 1, lua: LEASE_TOKEN_BUCKET });
    client.defineCommand('tqlGiveBackTokenBucket', { numberOfKeys: 1, lua: GIVE_BACK_TOKEN_BUCKET });
    client.defineCommand('tqlLeaseFixedWindow', { numberOfKeys: 1, lua: LEASE_FIXED_WINDOW });
    client.defineCommand('tqlGiveBackFixedWindow', { numberOfKeys: 1, lua: GIVE_BACK_FIXED_WINDOW });
    client.defineCommand('tqlSyncPermits', { numberOfKeys: 3, lua: SYNC_PERMITS });
    try {
      await client.connect();
      connected = true;
    } catch (error) {
      client.disconnect();
      const cause = lastError ?? error;
      throw new StoreConnectionError(`cannot use Redis at ${o.address}: ${describeError(cause)}`, { cause });
    }
    client.on('ready', () => this.reconnected());
    client.on('close', () => {
      this.droppedAt_ = process.hrtime.bigint();
    });
    // A cluster stays ready while one of its masters fails over; its node connections tell.
    if (t.kind === 'cluster') for (const event of ['-node', 'node error']) client.on(event, () => this.reconnected());
    return client;
  }
}

/**
 * Passes over the sentinels a store makes at start before `connect()` fails: a sentinel restarting
 * just then is waited for a moment, while a wrong address or master name fails at once.
 */
const START_SENTINEL_PASSES = 3;

function describeError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  if (/WRONGPASS|NOAUTH|invalid password/i.test(message)) return `authentication failed (${message}); check the password and username`;
  if (/ECONNREFUSED/.test(message)) return `nothing listens there (${message})`;
  const sentinels = /^All sentinels are unreachable and retry is disabled\.(?: Last error: (.*))?$/.exec(message);
  if (sentinels)
    return `no sentinel gave the master's address${sentinels[1] ? ` (last error: ${sentinels[1]})` : ''}; check the sentinels and the master's name`;
  return message;
}

/**
 * A store that keeps limits in Redis: pass it as `store` to `TokenBucket`, `FixedWindow`,
 * `RateLimiter`, `createThreadedServer` or `MethodLimits`, with a `key` naming the limit, and every
 * process using the same Redis, prefix and key shares one limit.
 *
 * ```ts
 * const store = createRedisStore({ url: 'redis://127.0.0.1:6379', prefix: 'calc:' });
 * await store.connect(); // optional: fail early with a clear error
 * const bucket = new TokenBucket({ rate: 1000, burst: 50, store, key: 'add' });
 * ```
 * @throws TypeError | RangeError naming the invalid option.
 */
export function createRedisStore(options: RedisStoreOptions = {}): RedisStore {
  const store = new RedisStore(resolveRedisStoreOptions(options), crypto.randomUUID());
  opened.set(store.describe().id, store);
  return store;
}

/** Stores open in this thread, by id: a limiter attached twice shares one connection. */
const opened = new Map<string, RedisStore>();

/**
 * The Redis store `descriptor` (from `describe()`) describes, in this thread: the instance already
 * open here, or a new one with its own connection. Limiters reach it through `attachStore` in
 * `store.ts`, which this module registers it with when it loads.
 */
function attachRedisStore(descriptor: StoreDescriptor): LimiterStore {
  let store = opened.get(descriptor.id);
  if (store === undefined) {
    store = new RedisStore(resolveRedisStoreOptions(descriptor.options), descriptor.id);
    opened.set(descriptor.id, store);
  }
  return store;
}

registerStoreKind('redis', attachRedisStore);
