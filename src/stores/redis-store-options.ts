/**
 * The options of the Redis store (`createRedisStore`): their types, defaults and validation, with
 * the checks of `validate.ts`. A worker thread that attaches the store validates its descriptor's
 * options here again.
 */
import type { RedisOptions } from 'ioredis';
import type { LeaseSettings, StoreErrorPolicy } from './store.js';
import { describe, func, object, oneOf, options as knownOptions, positive, string, wholeNumber } from '../validate.js';

/** Options of {@link createRedisStore}. */
export interface RedisStoreOptions {
  /** `redis://[[user]:password@]host[:port][/db]`, or `rediss://…` for TLS. Default: ioredis's default, 127.0.0.1:6379. */
  url?: string;
  /**
   * Passed to ioredis as they are: `host`, `port`, `password`, `username`, `db`, `tls`,
   * `sentinels` + `name` for Sentinel, and the rest. Function-valued options (e.g. `retryStrategy`)
   * stay in the thread that created the store; a worker that attaches it reopens it without them.
   */
  redis?: RedisOptions;
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
  /** Where incident lines go. Default `console.warn`. */
  log?: (line: string) => void;
}

/** Redis store options after defaults and validation. */
export interface ResolvedRedisStoreOptions {
  url: string | undefined;
  redis: RedisOptions;
  prefix: string;
  timeoutMs: number;
  onStoreError: StoreErrorPolicy;
  expectedProcesses: number;
  lease: LeaseSettings;
  log: (line: string) => void;
  /** Where the store points, for messages (no password). */
  address: string;
  /** The options again, without functions: what a worker thread reopens the store from. */
  cloneable: Record<string, unknown>;
}

/** Lease defaults: batches of 100 ms of demand, at most 1000 tokens, lapsing after 1 s. */
const DEFAULT_LEASE: LeaseSettings = { horizonMs: 100, maxTokens: 1000, ttlMs: 1000 };
const NO_LEASE: LeaseSettings = { horizonMs: 0, maxTokens: 0, ttlMs: 1000 };

const REDIS_STORE_KEYS = ['url', 'redis', 'prefix', 'timeoutMs', 'onStoreError', 'expectedProcesses', 'lease', 'log'];
const LEASE_KEYS = ['horizonMs', 'maxTokens', 'ttlMs'];

/** Validates and completes {@link RedisStoreOptions}. */
export function resolveRedisStoreOptions(options: unknown): ResolvedRedisStoreOptions {
  const o = knownOptions('createRedisStore options', options, REDIS_STORE_KEYS);
  if (o.url !== undefined && (typeof o.url !== 'string' || !/^rediss?:\/\//.test(o.url))) {
    throw new TypeError(`url must be a redis:// or rediss:// URL, got ${describe(o.url)}`);
  }
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
  const url = o.url;
  const r = redis as RedisOptions;
  const address = url !== undefined ? url.replace(/\/\/[^@/]*@/, '//') : `${r.host ?? '127.0.0.1'}:${r.port ?? 6379}`;
  const cloneable = Object.fromEntries(
    Object.entries({ ...o, redis: Object.fromEntries(Object.entries(redis).filter(([, v]) => typeof v !== 'function')) }).filter(
      ([, v]) => typeof v !== 'function',
    ),
  );
  return {
    url,
    redis: r,
    prefix: (o.prefix as string | undefined) ?? 'tql:',
    timeoutMs: o.timeoutMs === undefined ? 500 : positive('timeoutMs', o.timeoutMs),
    onStoreError: policy,
    expectedProcesses: o.expectedProcesses === undefined ? 1 : wholeNumber('expectedProcesses', o.expectedProcesses, 1),
    lease,
    log: (o.log as ((line: string) => void) | undefined) ?? ((line) => console.warn(line)),
    address,
    cloneable,
  };
}
