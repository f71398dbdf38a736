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

/** Parameters of a concurrency limit as a store sees them. */
export interface RemoteConcurrencyLimit {
  kind: 'concurrency';
  /** Permits held at once over every holder. */
  max: number;
}

/** A rate limit held in a distributed store. */
export type RemoteLimitSpec = RemoteTokenBucket | RemoteFixedWindow;

/** What one holder of a concurrency limit (one thread) tells the store in a sync; see `remote-concurrency.ts`. */
export interface PermitSync {
  /** The holder's id, unique per thread and limit instance. */
  holder: string;
  /** The holder's epoch as it knows it (0 for none): a holder the store knows under another epoch starts anew. */
  epoch: number;
  /** Permits granted to it in that epoch, cumulative, as it knows them. */
  granted: number;
  /** Permits it has given back in that epoch, cumulative. */
  released: number;
  /** Permits its first waiting call needs, 0 when none waits. */
  need: number;
  /** `need` plus what the calls waiting behind it need (granted in turns with other holders). */
  want: number;
}

/** What the store answers to a {@link PermitSync}. */
export interface PermitState {
  epoch: number;
  /** Permits granted to the holder in `epoch`, cumulative. */
  granted: number;
  /** True when the store started a new epoch for the holder, holding what it said it holds (`granted − released` at the sync). */
  fresh: boolean;
  /** Permits held now over all holders. */
  held: number;
  /** True while the holder waits in the store's queue. */
  queued: boolean;
  /** ms until the next holder's lease runs out (a dead holder's permits come back then), or −1. */
  wakeInMs: number;
}

/** A grant to a waiting holder, published by the sync that freed the permits. */
export interface PermitNotice {
  holder: string;
  epoch: number;
  granted: number;
  /** What the holder still waits for in the store's queue. */
  left: number;
}

/** What a store answers to a lease request. */
export interface Grant {
  /** Tokens granted (0 when fewer than `min` were available). */
  granted: number;
  /**
   * Microseconds from the store's reading of its clock until the granted tokens may be used (a
   * token bucket books a batch ahead when the bucket is short); 0 for at once. Negative: usable
   * at once, and counted by the store as granted that long before its reading (a late request
   * given the wake-up credit, gcra.ts), which is when this process holds them from.
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
  /**
   * What this process now knows of the state, for its next {@link LeaseHint}: a token bucket's
   * TAT (µs, store clock), a fixed window's window number.
   */
  seen: number;
  /** A fixed window's count after this grant (0 for a token bucket). */
  seenCount: number;
  /** True when the store found the limit's state lost (missing, or older than `hint.seen`) and restarted it empty. */
  lost: boolean;
}

/**
 * What a process tells the store with each request, so that a lost state (FLUSHALL, a restart
 * without persistence, a failover to a replica that lacked the last writes) restarts empty rather
 * than full: see "When Redis loses the state" in the README.
 */
export interface LeaseHint {
  /** {@link Grant.seen} of this process's last answer, or −1 when it has none. */
  seen: number;
  /** {@link Grant.seenCount} of that answer. */
  seenCount: number;
  /** The connection was re-established, or the limit was down, since this process last asked: a token bucket restarts empty unless its state is fuller than that. */
  doubt: boolean;
  /** µs of the rate to leave, on top of an empty bucket, to processes still running on their local share (local-share). */
  reserveUs: number;
}

/** Plain data that rebuilds a store in another thread (each thread opens its own connection). */
export interface StoreDescriptor {
  /** The store's kind, which says whose attach function reopens it. */
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
  lease(key: string, spec: RemoteLimitSpec, want: number, min: number, hint: LeaseHint): Promise<Grant>;
  /**
   * One sync of a concurrency limit's holder: gives back what it released, renews its lease for
   * `leaseMs`, queues it for `need` permits (granted at once when it is first and they are free),
   * hands freed permits to the oldest waiting holders, and frees the permits of holders whose
   * lease ran out.
   */
  syncPermits(key: string, spec: RemoteConcurrencyLimit, sync: PermitSync): Promise<PermitState>;
  /**
   * Calls `listener` with every grant published for limit `key`, and with `undefined` when the
   * notices may have been missed (the subscription was re-established). Resolves once subscribed,
   * with a function that unsubscribes.
   */
  watchPermits(key: string, listener: (notice: PermitNotice | undefined) => void): Promise<() => void>;
  /** How long a concurrency limit's holder keeps its permits without renewing its lease, ms. */
  readonly permitLeaseMs: number;
  /**
   * Gives `n` unused tokens of the grant tagged `tag` back, if nothing has been granted since (a
   * token bucket) or its window is still open (a fixed window). Resolves true if given back.
   */
  giveBack(key: string, spec: RemoteLimitSpec, n: number, tag: string): Promise<boolean>;
  /** True once this thread's connection is open (a lease then costs one round trip, no set-up). */
  readonly connected: boolean;
  /** True while this thread's connection is up (false while it reconnects). */
  readonly up: boolean;
  /** When this thread's connection was last lost (`process.hrtime.bigint()`), 0 if never. */
  readonly droppedAt: bigint;
  /** Opens the connection now; rejects with a clear error if the store is unreachable or refuses us. */
  connect(): Promise<void>;
  /** Closes this thread's connection, once the hooks given to {@link beforeClose} are done. */
  close(): Promise<void>;
  /** Runs `hook` (and waits for it) when this thread's store is closed: a concurrency limit's last releases go out first. */
  beforeClose(hook: () => Promise<void>): void;
  /**
   * Times this thread's connection was re-established (a restart, a failover, a network cut):
   * the state behind it may be older than what the process saw.
   */
  readonly epoch: number;
  /** Calls `listener` each time the connection is back after a loss; returns a function that removes it. */
  onReconnect(listener: () => void): () => void;
  /** Round trips this store instance (this thread) has made. */
  readonly roundTrips: number;
  /** A structured-cloneable description, to open the same store in another thread. */
  describe(): StoreDescriptor;
}

/**
 * How far ahead a store books a token bucket (the look-ahead): a booking's `notBeforeUs` is at most
 * max(LOOKAHEAD_BURSTS, expectedProcesses) bursts' time, and never more than LOOKAHEAD_MAX_MS.
 * Every token granted before a failure is therefore admissible within that time of it, which is
 * what lets a lost state restart behind every token granted before, so that none is admitted
 * twice. A look-ahead that holds a burst's booking for each process keeps contending processes
 * served in the order they ask, in one round trip each (a shorter one made them race for the room
 * and split the rate unevenly); a longer one would only lengthen the wait after a loss.
 */
export const LOOKAHEAD_BURSTS = 4;
/** See {@link LOOKAHEAD_BURSTS}. */
export const LOOKAHEAD_MAX_MS = 250;

/** The look-ahead of token bucket `spec` shared by `processes` processes, µs (see {@link LOOKAHEAD_BURSTS}). */
export function lookaheadUs(spec: RemoteTokenBucket, processes: number): number {
  return Math.min(Math.max(LOOKAHEAD_BURSTS, processes) * spec.burst * spec.intervalUs, LOOKAHEAD_MAX_MS * 1000);
}

/**
 * Longest wait between two attempts to reconnect to a store that went away, ms: a store retries
 * at least this often, and every limit asks again as soon as its connection is back.
 */
export const RECONNECT_MAX_MS = 50;

/**
 * How far apart, ms, the processes sharing a limit are taken to see their store come back (two
 * reconnection periods: the last process reconnects within one, and its first answer takes far
 * less than another). Under local-share, a process back on the store leaves the others that much
 * of the rate (their local shares) before it takes more; see "When Redis loses the state".
 */
export const RECOVERY_STAGGER_MS = 2 * RECONNECT_MAX_MS;

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
