/**
 * Where a rate limit's state lives.
 *
 * The default is the embedded store: the limiter's own SharedArrayBuffer, shared by the threads of
 * one process. A distributed store (Redis, see `redis-store.ts`) holds the authoritative state of
 * a limit for every process and host that uses the same key; the process-local shared memory then
 * holds only tokens granted to this process and not yet used (see `remote-limit.ts`).
 *
 * The contract a distributed store fulfils is small on purpose: grant up to `want` tokens of a
 * limit, atomically and by the store's own clock, or say how long until `min` could be granted.
 *
 * A limiter attached in another thread gets its store back from the descriptor with
 * {@link attachStore}: each store kind registers how to reopen itself when its module loads, so the
 * limiters depend on this interface only, never on a store's implementation (or on ioredis).
 */

/** Parameters of a token bucket as a store sees them: GCRA with emission interval and tolerance. */
export interface RemoteTokenBucket {
  kind: 'token-bucket';
  /** Microseconds between two tokens (may be fractional). */
  intervalUs: number;
  /** Bucket size in tokens. */
  burst: number;
}

/** Parameters of a fixed window as a store sees them. */
export interface RemoteFixedWindow {
  kind: 'fixed-window';
  /** Window length, ms (windows are aligned to the store's clock). */
  periodMs: number;
  /** Calls per window. */
  maxCalls: number;
}

/** A limit held in a distributed store. */
export type RemoteLimitSpec = RemoteTokenBucket | RemoteFixedWindow;

/** What a store answers to a lease request. */
export interface Grant {
  /** Tokens granted (0 when fewer than `min` were available). */
  granted: number;
  /**
   * Microseconds from the store's reading of its clock until the granted tokens may be used (a
   * token bucket books a batch ahead when the bucket is short); 0 for at once.
   */
  notBeforeUs: number;
  /**
   * When nothing was granted, or what is left cannot serve another `min`: microseconds until
   * asking again could succeed (other processes may take it first); 0 otherwise.
   */
  retryAfterUs: number;
  /**
   * Microseconds the granted tokens stay valid by the store's clock, when the algorithm bounds it
   * (a fixed window's tokens die with their window); `Infinity` otherwise.
   */
  validUs: number;
  /** What a give-back of these tokens must quote (the state the grant left). */
  tag: string;
}

/** Plain data that rebuilds a store in another thread (each thread opens its own connection). */
export interface StoreDescriptor {
  kind: 'redis';
  /** Identity: attaching one descriptor twice in a thread yields one store instance. */
  id: string;
  /** The store's options, structured-cloneable. */
  options: Record<string, unknown>;
}

/** What to do while the distributed store cannot be reached (see `RedisStoreOptions.onStoreError`). */
export type StoreErrorPolicy = 'fail-open' | 'fail-closed' | 'local-share';

/** Lease sizing (see the README's "Leasing" section for the trade-off in numbers). */
export interface LeaseSettings {
  /** Lease batches sized to this many ms of the process's recent demand; 0 disables leasing. */
  horizonMs: number;
  /** Largest batch; also capped by the limit's burst (or maxCalls). */
  maxTokens: number;
  /** Leased tokens unused this long after the request that got them lapse. */
  ttlMs: number;
}

/** A distributed store as limiters use it. */
export interface LimiterStore {
  /** `'redis'`; the embedded store is the absence of a store. */
  readonly kind: 'redis';
  /** Fault policy. */
  readonly onStoreError: StoreErrorPolicy;
  /** local-share: how many processes share the limit, so each enforces rate / this while the store is down. */
  readonly expectedProcesses: number;
  /** Bound on one store round trip, ms; past it the call counts as a store error. */
  readonly timeoutMs: number;
  /** Lease sizing. */
  readonly leaseSettings: LeaseSettings;
  /** Where incident lines go (one when the store fails, one when it is back). */
  readonly log: (line: string) => void;
  /**
   * Atomically grants up to `want` tokens of limit `key` (at least `min`, or none), by the store's
   * clock. A token bucket grants all `want` (at most its burst), booked ahead if need be. Rejects when the store cannot be reached, errs, or does not answer within `timeoutMs`.
   */
  lease(key: string, spec: RemoteLimitSpec, want: number, min: number): Promise<Grant>;
  /**
   * Gives `n` unused tokens of the grant tagged `tag` back, if nothing has been granted since (a
   * token bucket) or its window is still open (a fixed window). Resolves true if given back.
   */
  giveBack(key: string, spec: RemoteLimitSpec, n: number, tag: string): Promise<boolean>;
  /** True once this thread's connection is open (a lease then costs one round trip, no set-up). */
  readonly connected: boolean;
  /** Opens the connection now; rejects with a clear error if the store is unreachable or refuses us. */
  connect(): Promise<void>;
  /** Closes this thread's connection. */
  close(): Promise<void>;
  /** Round trips this store instance (this thread) has made. */
  readonly roundTrips: number;
  /** A structured-cloneable description, to open the same store in another thread. */
  describe(): StoreDescriptor;
}

/** True for a distributed store object (as opposed to a descriptor or anything else). */
export function isLimiterStore(value: unknown): value is LimiterStore {
  return (
    value !== null && typeof value === 'object' && typeof (value as LimiterStore).lease === 'function' && typeof (value as LimiterStore).describe === 'function'
  );
}

/** Reopens, in the calling thread, a store of one kind from its descriptor. */
export type StoreAttacher = (descriptor: StoreDescriptor) => LimiterStore;

/** How each store kind loaded in this thread reopens itself. */
const attachers = new Map<string, StoreAttacher>();

/** Registers how stores of `kind` are reopened from their descriptors (done by the store's module when it loads). */
export function registerStoreKind(kind: StoreDescriptor['kind'], attach: StoreAttacher): void {
  attachers.set(kind, attach);
}

/**
 * The store `descriptor` (from a store's `describe()`) describes, in this thread: the instance
 * already open here, or a new one with its own connection.
 * @throws TypeError for something that is not a store descriptor, or of a kind whose module this
 *   thread has not loaded.
 */
export function attachStore(descriptor: StoreDescriptor): LimiterStore {
  if (descriptor === null || typeof descriptor !== 'object' || typeof descriptor.kind !== 'string') {
    throw new TypeError('store descriptor must come from a store (describe())');
  }
  const attach = attachers.get(descriptor.kind);
  if (attach === undefined) {
    throw new TypeError(
      `store descriptor of kind ${JSON.stringify(descriptor.kind)}: no such store is loaded in this thread (import thrift-queue-limiter here first)`,
    );
  }
  return attach(descriptor);
}
