/**
 * The Redis store: the state of each limit lives in Redis, so every process and host using the
 * same key (under the same prefix) enforces one limit.
 *
 * The algorithms are Lua scripts (`redis-scripts.ts`), registered with ioredis's `defineCommand`:
 * it calls them by EVALSHA and, when the server answers NOSCRIPT (after a restart or SCRIPT
 * FLUSH), sends the script again with EVAL, which loads it. Every call is bounded by `timeoutMs`
 * (ioredis's commandTimeout); with the offline queue off, a call made while the connection is down
 * fails at once instead of waiting to be replayed later. Each thread opens its own connection:
 * a socket cannot be shared between threads, and a limiter attached in a worker reopens the store
 * from its descriptor. ioredis is imported on the first connection, so processes that never use
 * Redis never load it.
 */
import type { Redis as RedisClient, RedisOptions } from 'ioredis';
import { resolveRedisStoreOptions, type RedisStoreOptions, type ResolvedRedisStoreOptions } from './redis-store-options.js';
import { GIVE_BACK_FIXED_WINDOW, GIVE_BACK_TOKEN_BUCKET, LEASE_FIXED_WINDOW, LEASE_TOKEN_BUCKET } from './redis-scripts.js';
import {
  registerStoreKind,
  type Grant,
  type LeaseSettings,
  type LimiterStore,
  type RemoteLimitSpec,
  type StoreDescriptor,
  type StoreErrorPolicy,
} from './store.js';

/** The scripted commands, as defineCommand adds them to the client. */
interface ScriptedClient extends RedisClient {
  tqlLeaseTokenBucket(key: string, interval: number, burst: number, want: number): Promise<[number, number, string]>;
  tqlGiveBackTokenBucket(key: string, interval: number, n: number, tag: string): Promise<number>;
  tqlLeaseFixedWindow(key: string, periodMs: number, maxCalls: number, want: number, min: number): Promise<[number, number, number, number]>;
  tqlGiveBackFixedWindow(key: string, window: string, n: number): Promise<number>;
}

/** Thrown by {@link RedisStore.connect} (and the server's `listen`) when Redis cannot be used. */
export class StoreConnectionError extends Error {
  /** Stable machine-readable reason. */
  readonly code = 'STORE_CONNECTION' as const;
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
  readonly log: (line: string) => void;
  /** Key prefix; a limit named `k` lives at `${prefix}{k}:tb` (or `:fw`). */
  readonly prefix: string;
  /** Where the store points, without any password: for messages. */
  readonly address: string;
  private roundTrips_ = 0;
  private client: ScriptedClient | undefined;
  private connecting: Promise<ScriptedClient> | undefined;
  private closed = false;

  /** @internal Use {@link createRedisStore}. */
  constructor(
    private readonly options: ResolvedRedisStoreOptions,
    private readonly id: string,
  ) {
    this.onStoreError = options.onStoreError;
    this.expectedProcesses = options.expectedProcesses;
    this.timeoutMs = options.timeoutMs;
    this.leaseSettings = options.lease;
    this.log = options.log;
    this.prefix = options.prefix;
    this.address = options.address;
  }

  get connected(): boolean {
    return this.client !== undefined;
  }

  get roundTrips(): number {
    return this.roundTrips_;
  }

  /**
   * Connects now (otherwise the first call connects). Rejects with {@link StoreConnectionError}
   * naming the address and the cause: unreachable, wrong password, not Redis.
   */
  async connect(): Promise<void> {
    await this.ready();
  }

  async lease(key: string, spec: RemoteLimitSpec, want: number, min: number): Promise<Grant> {
    const client = await this.ready();
    this.roundTrips_++;
    const k = this.key(key, spec.kind);
    if (spec.kind === 'token-bucket') {
      const [granted, notBeforeUs, tag] = await client.tqlLeaseTokenBucket(k, spec.intervalUs, spec.burst, want);
      return { granted, notBeforeUs, retryAfterUs: 0, validUs: Infinity, tag };
    }
    const [granted, retryAfterUs, validUs, window] = await client.tqlLeaseFixedWindow(k, spec.periodMs, spec.maxCalls, want, min);
    return { granted, notBeforeUs: 0, retryAfterUs, validUs, tag: String(window) };
  }

  async giveBack(key: string, spec: RemoteLimitSpec, n: number, tag: string): Promise<boolean> {
    const client = await this.ready();
    this.roundTrips_++;
    const k = this.key(key, spec.kind);
    const r = spec.kind === 'token-bucket' ? await client.tqlGiveBackTokenBucket(k, spec.intervalUs, n, tag) : await client.tqlGiveBackFixedWindow(k, tag, n);
    return r === 1;
  }

  /** Closes this thread's connection; limiters using the store fail over to `onStoreError`. */
  async close(): Promise<void> {
    this.closed = true;
    const client = this.client ?? (await this.connecting?.catch(() => undefined));
    this.client = undefined;
    if (client !== undefined) await client.quit().catch(() => client.disconnect());
  }

  describe(): StoreDescriptor {
    return { kind: 'redis', id: this.id, options: this.options.cloneable };
  }

  private key(name: string, kind: RemoteLimitSpec['kind']): string {
    return `${this.prefix}{${name}}:${kind === 'token-bucket' ? 'tb' : 'fw'}`;
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

  private async open(): Promise<ScriptedClient> {
    const { Redis } = await import('ioredis');
    const o = this.options;
    const settings: RedisOptions = {
      ...o.redis,
      lazyConnect: true,
      commandTimeout: o.timeoutMs,
      connectTimeout: Math.max(o.timeoutMs, 1000),
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
    };
    const client = (o.url === undefined ? new Redis(settings) : new Redis(o.url, settings)) as ScriptedClient;
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
    try {
      await client.connect();
    } catch (error) {
      client.disconnect();
      const cause = lastError ?? error;
      throw new StoreConnectionError(`cannot use Redis at ${o.address}: ${describeError(cause)}`, { cause });
    }
    return client;
  }
}

function describeError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  if (/WRONGPASS|NOAUTH|invalid password/i.test(message)) return `authentication failed (${message}); check the password and username`;
  if (/ECONNREFUSED/.test(message)) return `nothing listens there (${message})`;
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
