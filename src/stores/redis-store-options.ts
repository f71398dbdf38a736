/**
 * The options of the Redis store (`createRedisStore`): their types, defaults and validation, with
 * the checks of `validate.ts`. A worker thread that attaches the store validates its descriptor's
 * options here again.
 */
import type { ClusterOptions, RedisOptions } from 'ioredis';
import type { LeaseSettings, StoreErrorPolicy } from './store.js';
import { describe, func, object, oneOf, options as knownOptions, positive, string, wholeNumber } from '../validate.js';

/** Options of {@link createRedisStore}. */
export interface RedisStoreOptions {
  /** `redis://[[user]:password@]host[:port][/db]`, or `rediss://…` for TLS. Default: ioredis's default, 127.0.0.1:6379. */
  url?: string;
  /**
   * A Redis Cluster instead of one server: some of its nodes, as URLs (`redis://[[user]:password@]host:port`,
   * `rediss://` for TLS; the others are found from these). Every limit's keys share one hash slot,
   * so each limit lives on one master; MOVED and ASK redirections are followed.
   */
  cluster?: string[];
  /** A master found through Redis Sentinel instead of one server: the sentinels (`host:port`) and the master's name. */
  sentinel?: { sentinels: string[]; name: string };
  /**
   * Passed to ioredis as they are: `host`, `port`, `password`, `username`, `db`, `tls`, and the
   * rest (with `cluster`: ioredis's cluster options, `redisOptions` among them; with `sentinel`:
   * `sentinelPassword` and the like). Function-valued options (e.g. `retryStrategy`) stay in the
   * thread that created the store; a worker that attaches it reopens it without them.
   */
  redis?: RedisOptions | ClusterOptions;
  /** Prefix of every key this store writes. Default `'tql:'`. */
  prefix?: string;
  /** Bound on every Redis round trip, ms; a slower answer counts as a store error. Default 500. */
  timeoutMs?: number;
  /**
   * While Redis cannot be reached: `'fail-closed'` (default) refuses calls with
   * `StoreUnavailableError` (the limit is never exceeded); `'fail-open'` admits every call;
   * `'local-share'` has each process enforce rate / `expectedProcesses` by itself. Each incident is
   * logged once and counted; the store is retried and the limit recovers by itself.
   */
  onStoreError?: StoreErrorPolicy;
  /** Processes sharing each limit, for `'local-share'`. Default 1. */
  expectedProcesses?: number;
  /**
   * Leasing: each process reserves a batch of tokens at a time and its threads draw them from
   * shared memory, trading a documented slack on the bound for far fewer round trips. `true` for
   * the defaults, an object to tune, `false` (default) for one round trip per admission batch.
   */
  lease?: boolean | Partial<LeaseSettings>;
  /**
   * Concurrency limits: how long the permits of a process that stops renewing them (it died, or
   * was cut off from Redis) stay taken, ms. Each holder renews every third of it. Default 10000.
   */
  permitLeaseMs?: number;
  /** Where incident lines go. Default `console.warn`. */
  log?: (line: string) => void;
}

/** Where a Redis store connects. */
export type RedisTopology =
  | { kind: 'single'; url: string | undefined }
  | { kind: 'cluster'; nodes: { host: string; port: number }[]; auth: { username?: string; password?: string; tls?: object } }
  | { kind: 'sentinel'; sentinels: { host: string; port: number }[]; name: string };

/** Redis store options after defaults and validation. */
export interface ResolvedRedisStoreOptions {
  topology: RedisTopology;
  redis: RedisOptions | ClusterOptions;
  prefix: string;
  timeoutMs: number;
  onStoreError: StoreErrorPolicy;
  expectedProcesses: number;
  lease: LeaseSettings;
  permitLeaseMs: number;
  log: (line: string) => void;
  /** Where the store points, for messages (no password). */
  address: string;
  /** The options again, without functions: what a worker thread reopens the store from. */
  cloneable: Record<string, unknown>;
}

/** Lease defaults: batches of 100 ms of demand, at most 1000 tokens, lapsing after 1 s. */
const DEFAULT_LEASE: LeaseSettings = { horizonMs: 100, maxTokens: 1000, ttlMs: 1000 };
const NO_LEASE: LeaseSettings = { horizonMs: 0, maxTokens: 0, ttlMs: 1000 };

const REDIS_STORE_KEYS = ['url', 'cluster', 'sentinel', 'redis', 'prefix', 'timeoutMs', 'onStoreError', 'expectedProcesses', 'lease', 'permitLeaseMs', 'log'];
const LEASE_KEYS = ['horizonMs', 'maxTokens', 'ttlMs'];
const REDIS_URL = /^rediss?:\/\//;

/** `host:port`, as sentinels and cluster nodes are given. */
function hostPort(name: string, value: unknown): { host: string; port: number } {
  const m = typeof value === 'string' ? /^(\[[^\]]+\]|[^:/\s]+):(\d+)$/.exec(value) : null;
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || port < 1 || port > 65535) throw new TypeError(`${name} must be "host:port", got ${describe(value)}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/** The topology the options name: one server (url), a cluster, or a master behind sentinels. */
function topology(o: Record<string, unknown>): RedisTopology {
  const given = (['url', 'cluster', 'sentinel'] as const).filter((k) => o[k] !== undefined);
  if (given.length > 1) throw new TypeError(`createRedisStore options: give one of url, cluster or sentinel, not ${given.join(' and ')}`);
  if (o.cluster !== undefined) {
    if (!Array.isArray(o.cluster) || o.cluster.length === 0)
      throw new TypeError(`cluster must be a non-empty array of redis:// URLs, got ${describe(o.cluster)}`);
    const urls = o.cluster.map((u: unknown, i) => {
      if (typeof u !== 'string' || !REDIS_URL.test(u)) throw new TypeError(`cluster[${i}] must be a redis:// or rediss:// URL, got ${describe(u)}`);
      return new URL(u);
    });
    const first = urls[0]!;
    const auth = {
      ...(first.username ? { username: decodeURIComponent(first.username) } : {}),
      ...(first.password ? { password: decodeURIComponent(first.password) } : {}),
      ...(first.protocol === 'rediss:' ? { tls: {} } : {}),
    };
    return { kind: 'cluster', nodes: urls.map((u, i) => hostPort(`cluster[${i}]`, `${u.hostname}:${u.port || 6379}`)), auth };
  }
  if (o.sentinel !== undefined) {
    const s = knownOptions('sentinel', o.sentinel, ['sentinels', 'name']);
    if (!Array.isArray(s.sentinels) || s.sentinels.length === 0)
      throw new TypeError(`sentinel.sentinels must be a non-empty array of "host:port", got ${describe(s.sentinels)}`);
    return { kind: 'sentinel', sentinels: s.sentinels.map((v: unknown, i) => hostPort(`sentinel.sentinels[${i}]`, v)), name: string('sentinel.name', s.name) };
  }
  if (o.url !== undefined && (typeof o.url !== 'string' || !REDIS_URL.test(o.url))) {
    throw new TypeError(`url must be a redis:// or rediss:// URL, got ${describe(o.url)}`);
  }
  return { kind: 'single', url: o.url };
}

/** Where `t` points, without passwords: for messages. */
function addressOf(t: RedisTopology, redis: RedisOptions): string {
  const list = (nodes: { host: string; port: number }[]): string => nodes.map((n) => `${n.host}:${n.port}`).join(',');
  if (t.kind === 'cluster') return `cluster ${list(t.nodes)}`;
  if (t.kind === 'sentinel') return `master "${t.name}" of sentinels ${list(t.sentinels)}`;
  return t.url !== undefined ? t.url.replace(/\/\/[^@/]*@/, '//') : `${redis.host ?? '127.0.0.1'}:${redis.port ?? 6379}`;
}

/** Validates and completes {@link RedisStoreOptions}. */
export function resolveRedisStoreOptions(options: unknown): ResolvedRedisStoreOptions {
  const o = knownOptions('createRedisStore options', options, REDIS_STORE_KEYS);
  const where = topology(o);
  // ioredis's own options: ioredis knows them, and new versions add more.
  const redis = o.redis === undefined ? {} : object('redis', o.redis);
  if (o.prefix !== undefined) string('prefix', o.prefix);
  const policy = oneOf('onStoreError', o.onStoreError ?? 'fail-closed', ['fail-open', 'fail-closed', 'local-share'] as const);
  if (o.log !== undefined) func('log', o.log);
  let lease = NO_LEASE;
  if (o.lease === true) lease = DEFAULT_LEASE;
  else if (o.lease !== undefined && o.lease !== false) {
    const l = knownOptions('lease', o.lease, LEASE_KEYS);
    lease = {
      horizonMs: l.horizonMs === undefined ? DEFAULT_LEASE.horizonMs : positive('lease.horizonMs', l.horizonMs),
      maxTokens: l.maxTokens === undefined ? DEFAULT_LEASE.maxTokens : wholeNumber('lease.maxTokens', l.maxTokens, 1),
      ttlMs: l.ttlMs === undefined ? DEFAULT_LEASE.ttlMs : positive('lease.ttlMs', l.ttlMs),
    };
  }
  const timeoutMs = o.timeoutMs === undefined ? 500 : positive('timeoutMs', o.timeoutMs);
  const permitLeaseMs = o.permitLeaseMs === undefined ? 10_000 : wholeNumber('permitLeaseMs', o.permitLeaseMs, 100);
  // A holder renews every third of the lease; a renewal may take up to the timeout.
  if (permitLeaseMs < 3 * timeoutMs) throw new RangeError(`permitLeaseMs (${permitLeaseMs}) must be at least 3 × timeoutMs (${timeoutMs})`);
  const r = redis as RedisOptions;
  const withoutFunctions = (v: Record<string, unknown>): Record<string, unknown> =>
    Object.fromEntries(Object.entries(v).filter(([, x]) => typeof x !== 'function'));
  const cloneable = withoutFunctions({ ...o, redis: withoutFunctions(redis) });
  return {
    topology: where,
    redis: r,
    prefix: (o.prefix as string | undefined) ?? 'tql:',
    timeoutMs,
    onStoreError: policy,
    expectedProcesses: o.expectedProcesses === undefined ? 1 : wholeNumber('expectedProcesses', o.expectedProcesses, 1),
    lease,
    permitLeaseMs,
    log: (o.log as ((line: string) => void) | undefined) ?? ((line) => console.warn(line)),
    address: addressOf(where, r),
    cloneable,
  };
}
