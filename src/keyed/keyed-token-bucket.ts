/**
 * A token bucket per key (client address, tenant, method…), every key with the same `rate`,
 * `periodMs` and `burst`, all kept in one fixed-size lock-free hash table in shared memory, so
 * every thread enforces each key's limit. Calls over a key's limit wait in a FIFO of that key.
 *
 * Guarantees:
 * - For a key that holds a slot: over any interval of length L, calls admitted for it ≤
 *   `burst + rate × L`, counted over every thread (GCRA on the slot, keyed-table.ts).
 * - A key whose bucket is not full (it was used within the last burst × period / rate) is never
 *   evicted; a key whose bucket is full may lose its slot to another key, which changes nothing
 *   for it (a full bucket is what a new key gets).
 * - Keys that find no slot (every slot of their probe window holds an active key) share the
 *   overflow bucket: together at most `overflowBurst + overflowRate × L`. While a key is in
 *   overflow its own bound does not apply; the overflow bucket's does.
 * - Memory is fixed at construction: 16 bytes per slot in shared memory; in each thread, one
 *   queue per key that has calls waiting there, dropped when they are gone.
 *
 * Within a thread, calls of one key are served FIFO; calls of different keys never wait for each
 * other. `maxQueued` bounds the calls waiting over all keys and all threads (one shared count),
 * which bounds the memory of the queues; a bound per key is left to the caller (the fair queueing
 * work covers sharing between keys).
 */
import { threadId } from 'node:worker_threads';
import type { Clock, Nanos } from '../clock.js';
import { QueueFullError, QueueTimeoutError } from '../errors.js';
import { RATE_PERMIT, RATE_PERMIT_PROMISE, type Permit } from '../limiters/permit.js';
import { checkCount, resolveAcquireOptions, type AcquireOptions } from '../options.js';
import { SignalWatch } from '../queue/signal-watch.js';
import { NO_DEADLINE, type Waiter } from '../queue/wait-queue.js';
import { KeyHasher } from './key-hash.js';
import { KeyQueue } from './key-queue.js';
import { KeyWaiter } from './key-waiter.js';
import { checkKey, resolveKeyedTokenBucketOptions, type KeyedTokenBucketOptions, type ResolvedKeyedTokenBucketOptions } from './keyed-options.js';
import { KeyedTable, KeyedTableLayout } from './keyed-table.js';

/** What `share()` returns: plain data and the shared buffer, structured-cloneable. */
export interface KeyedTokenBucketDescriptor {
  /** Always `'keyed-token-bucket'`. */
  readonly kind: 'keyed-token-bucket';
  /** Identity; attaching twice in one thread returns the same instance. */
  readonly id: string;
  /** The validated options (without the clock, which is per thread). */
  readonly options: Record<string, unknown>;
  /** The shared table. */
  readonly buffer: SharedArrayBuffer;
}

/** Passed to `'limited'` listeners when a call has to wait. */
export interface KeyedLimitedEvent {
  /** The call's key. */
  key: string;
  /** Tokens asked for. */
  n: number;
  /** Estimated wait in ms (from the key's bucket and the calls of this key waiting in this thread). */
  waitMs: number;
  /** Calls waiting over all keys and threads, this one included. */
  queued: number;
}

/** Passed to `'refused'` listeners when a call is refused or aborted. */
export interface KeyedRefusedEvent {
  /** The call's key. */
  key: string;
  /** Over `maxQueued`, over `maxWaitMs`, or its signal aborted. */
  reason: 'queue-full' | 'timeout' | 'aborted';
  /** Tokens asked for. */
  n: number;
}

/** Event names and their payloads. */
export interface KeyedTokenBucketEvents {
  limited: KeyedLimitedEvent;
  refused: KeyedRefusedEvent;
}

/** What {@link KeyedTokenBucket.snapshot} returns: counts since creation, over all threads. */
export interface KeyedSnapshot {
  kind: 'keyed-token-bucket';
  /** Calls admitted, by a key's slot or by the overflow bucket. */
  admitted: number;
  /** Of those, admitted by the overflow bucket. */
  overflowAdmitted: number;
  /** Attempts that found neither the key nor a usable slot in its window (went to the overflow bucket). */
  tableFull: number;
  /** Keys given a slot (new, or back after losing theirs). */
  inserted: number;
  /** Of those, slots taken over from an idle key. */
  reclaimed: number;
  /** Calls refused, by reason. */
  refused: { queueFull: number; timeout: number; aborted: number };
  /** Calls waiting now, over all keys and threads. */
  queued: number;
  /** Admitted calls that had to wait, and their total wait in ms. */
  waited: number;
  waitMsTotal: number;
  /** Slots in the table. */
  slots: number;
  /** Slots holding a key now. */
  keysInUse: number;
  /** Of those, keys whose bucket is not full now: the ones that cannot be evicted. */
  keysActive: number;
}

type Listener<E extends keyof KeyedTokenBucketEvents> = (event: KeyedTokenBucketEvents[E]) => void;

/** Per-thread registry: one instance per table per thread (one set of queues and timers). */
const attached = new Map<string, WeakRef<KeyedTokenBucket>>();
const unregister = new FinalizationRegistry<{ id: string; table: KeyedTable; row: number }>((held) => {
  const ref = attached.get(held.id);
  if (ref !== undefined && ref.deref() === undefined) attached.delete(held.id);
  held.table.freeRow(held.row);
});

/**
 * A token bucket per key in bounded shared memory, shared by every thread; calls over a key's limit queue.
 *
 * The owner of its key queues and waiters (`new KeyQueue(this)`, `new KeyWaiter(this)` check that)
 * without saying `implements`: those members are internal, left out of the published types,
 * where the clause would no longer hold.
 */
export class KeyedTokenBucket {
  /** Identity shared by every thread's instance. */
  readonly id: string;
  /** Tokens per period, per key. */
  readonly rate: number;
  /** Period of `rate`, ms. */
  readonly periodMs: number;
  /** Bucket size of each key. */
  readonly burst: number;
  /** Slots in the table: the most keys holding a bucket at once. */
  readonly slots: number;
  /** Slots searched per key. */
  readonly probeWindow: number;
  /** Tokens per period of the overflow bucket. */
  readonly overflowRate: number;
  /** Size of the overflow bucket. */
  readonly overflowBurst: number;
  /** Most calls waiting over all keys and threads. */
  readonly maxQueued: number;
  /** Default bound on waiting, ms. */
  readonly maxWaitMs: number;

  private readonly table: KeyedTable;
  private readonly clock: Clock;
  private readonly hasher: KeyHasher;
  private readonly maxThreads: number;
  /** Largest n one call may ask for, and the option that sets it. */
  private readonly maxN: number;
  private readonly maxNName: string;
  /** The queue of every key with calls waiting in this thread, and nothing else. */
  private readonly queues = new Map<string, KeyQueue>();
  private waiting = 0;
  private readonly createdAt: Nanos;
  private limitedListeners: Listener<'limited'>[] | undefined;
  private refusedListeners: Listener<'refused'>[] | undefined;
  /** The abort signals waiting calls listen to (one listener per signal). */
  private readonly signals = new SignalWatch<KeyWaiter<unknown>>((calls, reason) => {
    for (const c of calls) c.aborted(reason);
  });

  /**
   * @param options rate, periodMs (default 1000), burst (default ceil(rate)), slots (default
   *   4096), probeWindow (default 16), overflowRate and overflowBurst (default rate and burst),
   *   queue bounds, clock.
   * @throws TypeError | RangeError naming the invalid option.
   */
  constructor(options: KeyedTokenBucketOptions);
  /** @internal */
  constructor(options: KeyedTokenBucketOptions, attach: { buffer: unknown; id: string });
  constructor(options: KeyedTokenBucketOptions, attach?: { buffer: unknown; id: string }) {
    const o: ResolvedKeyedTokenBucketOptions = resolveKeyedTokenBucketOptions(options);
    this.clock = o.clock;
    this.createdAt = this.clock.now();
    const params = { intervalUs: o.intervalUs, burst: o.burst, overflowIntervalNs: o.overflowIntervalNs, overflowBurst: o.overflowBurst };
    const buffer = attach?.buffer ?? KeyedTable.allocate(o.slots, o.probeWindow, o.maxThreads, this.createdAt);
    this.table = new KeyedTable(buffer, params);
    this.id = attach?.id ?? crypto.randomUUID();
    this.rate = o.rate;
    this.periodMs = o.periodMs;
    this.burst = o.burst;
    this.slots = this.table.slots;
    this.probeWindow = this.table.probeWindow;
    this.maxThreads = this.table.rows;
    this.overflowRate = o.overflowRate;
    this.overflowBurst = o.overflowBurst;
    this.maxQueued = o.maxQueued;
    this.maxWaitMs = o.maxWaitMs;
    this.maxN = Math.min(o.burst, o.overflowBurst);
    this.maxNName = o.burst <= o.overflowBurst ? 'burst' : 'overflowBurst';
    this.hasher = new KeyHasher(this.table.seedHi, this.table.seedLo, this.table.slots);
    const row = this.table.claimRow(threadId);
    attached.set(this.id, new WeakRef(this));
    unregister.register(this, { id: this.id, table: this.table, row });
  }

  /**
   * Rebuilds, in this thread, the keyed bucket `descriptor` came from (its `share()`); both then
   * enforce every key's limit together. Attaching twice in one thread returns the same instance.
   * @throws TypeError for a descriptor that is not one.
   */
  static attach(descriptor: KeyedTokenBucketDescriptor, options: { clock?: Clock } = {}): KeyedTokenBucket {
    if (descriptor === null || typeof descriptor !== 'object' || descriptor.kind !== 'keyed-token-bucket') {
      throw new TypeError('descriptor must come from KeyedTokenBucket.share()');
    }
    const existing = attached.get(descriptor.id)?.deref();
    if (existing !== undefined) return existing;
    return new KeyedTokenBucket(
      { ...(descriptor.options as unknown as KeyedTokenBucketOptions), ...options },
      { buffer: descriptor.buffer, id: descriptor.id },
    );
  }

  /** Admits `n` tokens of `key` at once if its limit allows and none of its calls wait in this thread. */
  tryAcquire(key: string, n = 1): boolean {
    checkKey(key);
    if (n !== 1) checkCount(n, this.maxN, this.maxNName);
    if (this.queues.has(key)) return false;
    const h = this.hasher;
    h.hash(key);
    return this.table.take(h.hi, h.lo, h.home, this.clock.now(), n);
  }

  /**
   * Explicit-time twin of {@link tryAcquire}: admits `n` tokens of `key` at time `now`
   * (nanoseconds on the limiter's clock, not before its creation) if the limit allows,
   * atomically; ignores this thread's waiting calls. Deterministic tests drive this directly.
   */
  tryAcquireAt(key: string, now: Nanos, n = 1): boolean {
    checkKey(key);
    if (typeof now !== 'bigint') throw new TypeError(`now must be a bigint of nanoseconds, got ${String(now)}`);
    if (n !== 1) checkCount(n, this.maxN, this.maxNName);
    const h = this.hasher;
    h.hash(key);
    return this.table.take(h.hi, h.lo, h.home, now, n);
  }

  /**
   * Waits until `n` tokens of `key` are available to this call, then takes them.
   *
   * Resolves at once when the key's limit allows and no call of this key waits ahead in this
   * thread; otherwise the call joins the key's FIFO and takes its tokens when released. Rejects
   * with {@link QueueFullError}, {@link QueueTimeoutError} or the abort reason of
   * `options.signal`; a rejected call has consumed nothing.
   */
  acquire(key: string, n = 1, options?: AcquireOptions): Promise<Permit> {
    const maxWaitMs = resolveAcquireOptions(options, this.maxWaitMs);
    checkKey(key);
    if (n !== 1) checkCount(n, this.maxN, this.maxNName);
    const queue = this.queues.get(key);
    if (queue === undefined) {
      const h = this.hasher;
      h.hash(key);
      if (this.table.take(h.hi, h.lo, h.home, this.clock.now(), n)) return RATE_PERMIT_PROMISE;
    }
    return this.enqueue<Permit>(key, queue, n, maxWaitMs, options?.signal, undefined);
  }

  /**
   * Runs `task` once `n` tokens of `key` are admitted and resolves with its result. The task
   * starts synchronously at the moment of admission.
   */
  run<T>(key: string, task: () => T | PromiseLike<T>, n = 1, options?: AcquireOptions): Promise<T> {
    const maxWaitMs = resolveAcquireOptions(options, this.maxWaitMs);
    checkKey(key);
    if (typeof task !== 'function') throw new TypeError('task must be a function');
    if (n !== 1) checkCount(n, this.maxN, this.maxNName);
    const queue = this.queues.get(key);
    if (queue === undefined) {
      const h = this.hasher;
      h.hash(key);
      if (this.table.take(h.hi, h.lo, h.home, this.clock.now(), n)) return runAdmitted(task);
    }
    return this.enqueue<T>(key, queue, n, maxWaitMs, options?.signal, task);
  }

  /**
   * Estimated ms a call of `n` tokens of `key` arriving now would wait, behind the calls of that
   * key waiting in this thread (calls of the key waiting in other threads are not counted).
   */
  estimateWaitMs(key: string, n = 1): number {
    checkKey(key);
    const now = this.clock.now();
    const q = this.queues.get(key);
    const h = this.hasher;
    h.hash(key);
    return Number(this.table.readyAt(h.hi, h.lo, h.home, now, n, q?.tokens ?? 0) - now) / 1e6;
  }

  /** Refuses every call waiting in this thread, whatever its key, with `reason`; nothing was taken. */
  clear(reason: unknown = new Error('limiter cleared: the call was waiting')): void {
    for (const q of [...this.queues.values()]) q.waiters.clear(reason);
  }

  /** Calls waiting in this thread, all keys. */
  get size(): number {
    return this.waiting;
  }

  /** Keys with calls waiting in this thread: the per-key queues this thread holds. */
  get waitingKeys(): number {
    return this.queues.size;
  }

  /** Calls waiting over all keys and threads. */
  get queuedTotal(): number {
    return this.table.queuedCalls();
  }

  /** A structured-cloneable description holding the shared table, for {@link attach} in another thread. */
  share(): KeyedTokenBucketDescriptor {
    return {
      kind: 'keyed-token-bucket',
      id: this.id,
      options: {
        rate: this.rate,
        periodMs: this.periodMs,
        burst: this.burst,
        slots: this.slots,
        probeWindow: this.probeWindow,
        overflowRate: this.overflowRate,
        overflowBurst: this.overflowBurst,
        maxQueued: this.maxQueued,
        maxWaitMs: this.maxWaitMs,
        maxThreads: this.maxThreads,
      },
      buffer: this.table.buffer,
    };
  }

  /**
   * Gives back what a dead thread held: its waiting calls leave the shared queued count. Call
   * from the thread that owns the worker, on its `'exit'` event.
   */
  reclaimThread(deadThreadId: number): { queuedCalls: number } {
    return { queuedCalls: this.table.reclaimThread(deadThreadId) };
  }

  /** Subscribes to `'limited'` (a call has to wait) or `'refused'` events. */
  on<E extends keyof KeyedTokenBucketEvents>(event: E, listener: Listener<E>): this {
    if (event === 'limited') (this.limitedListeners ??= []).push(listener as Listener<'limited'>);
    else if (event === 'refused') (this.refusedListeners ??= []).push(listener as Listener<'refused'>);
    else throw new TypeError(`unknown event ${String(event)}`);
    return this;
  }

  /** Removes a listener added with {@link on}. */
  off<E extends keyof KeyedTokenBucketEvents>(event: E, listener: Listener<E>): this {
    const list = event === 'limited' ? this.limitedListeners : this.refusedListeners;
    const i = list?.indexOf(listener as never) ?? -1;
    if (i >= 0) list!.splice(i, 1);
    return this;
  }

  /**
   * The counters over every thread, and the keys in the table now (a scan of every slot:
   * O(slots), meant for metrics, not for every call).
   */
  snapshot(): KeyedSnapshot {
    const t = this.table;
    const keys = t.countKeys(this.clock.now());
    return {
      kind: 'keyed-token-bucket',
      admitted: t.total(KeyedTableLayout.I64.ADMITTED),
      overflowAdmitted: t.total(KeyedTableLayout.I64.OVERFLOW_ADMITTED),
      tableFull: t.total(KeyedTableLayout.I64.TABLE_FULL),
      inserted: t.total(KeyedTableLayout.I64.INSERTED),
      reclaimed: t.total(KeyedTableLayout.I64.RECLAIMED),
      refused: {
        queueFull: t.total(KeyedTableLayout.I64.REFUSED_QUEUE_FULL),
        timeout: t.total(KeyedTableLayout.I64.REFUSED_TIMEOUT),
        aborted: t.total(KeyedTableLayout.I64.REFUSED_ABORTED),
      },
      queued: t.queuedCalls(),
      waited: t.total(KeyedTableLayout.I64.WAITED),
      waitMsTotal: t.total(KeyedTableLayout.I64.WAIT_NS_TOTAL) / 1e6,
      slots: this.slots,
      keysInUse: keys.inUse,
      keysActive: keys.active,
    };
  }

  /** @internal */
  takeFor(queue: KeyQueue, now: Nanos, n: number): boolean {
    return this.table.take(queue.hi, queue.lo, queue.home, now, n);
  }

  /** @internal */
  readyFor(queue: KeyQueue, now: Nanos, n: number): Nanos {
    return this.table.readyAt(queue.hi, queue.lo, queue.home, now, n, 0);
  }

  /** @internal */
  dequeuedFrom(queue: KeyQueue, waiter: Waiter): void {
    this.table.removeQueued();
    this.waiting--;
    queue.tokens -= waiter.n;
    (waiter as KeyWaiter<unknown>).detachSignal();
    if (queue.waiters.size === 0 && this.queues.get(queue.key) === queue) this.queues.delete(queue.key);
  }

  /** @internal */
  completeAdmitted(waiter: KeyWaiter<unknown>): void {
    if (waiter.task === undefined) waiter.resolve(RATE_PERMIT);
    else waiter.resolve(runAdmitted(waiter.task));
    const waitNs = Math.max(0, (this.msSinceCreated(this.clock.now()) - waiter.enqueuedAtMs) * 1e6);
    this.table.count(KeyedTableLayout.I64.WAITED, 1n);
    this.table.count(KeyedTableLayout.I64.WAIT_NS_TOTAL, BigInt(waitNs));
  }

  /** @internal */
  refused(waiter: KeyWaiter<unknown>, reason: 'timeout' | 'aborted'): void {
    this.emitRefused(reason, waiter.queue.key, waiter.n);
  }

  /** @internal */
  unwatch(signal: AbortSignal, waiter: KeyWaiter<unknown>): void {
    this.signals.unwatch(signal, waiter);
  }

  private enqueue<T>(
    key: string,
    existing: KeyQueue | undefined,
    n: number,
    maxWaitMs: number,
    signal: AbortSignal | undefined,
    task: (() => T | PromiseLike<T>) | undefined,
  ): Promise<T> {
    if (signal?.aborted) return this.refuse(signal.reason, 'aborted', key, n);
    const queued = this.table.queuedCalls();
    if (queued >= this.maxQueued) return this.refuse(new QueueFullError(this.maxQueued), 'queue-full', key, n);
    // Without a queue of its key the fast path has just hashed the key into the hasher.
    const h = this.hasher;
    const queue = existing ?? new KeyQueue(this, key, h.hi, h.lo, h.home, this.clock);
    const now = this.clock.now();
    let estimate = -1n;
    if (maxWaitMs !== Infinity || this.limitedListeners?.length) {
      estimate = this.table.readyAt(queue.hi, queue.lo, queue.home, now, n, queue.tokens) - now;
      if (Number(estimate) > maxWaitMs * 1e6) {
        return this.refuse(new QueueTimeoutError(maxWaitMs, Number(estimate) / 1e6, false), 'timeout', key, n);
      }
    }
    if (this.limitedListeners?.length) {
      const event: KeyedLimitedEvent = { key, n, waitMs: Number(estimate) / 1e6, queued: queued + 1 };
      for (const l of this.limitedListeners) l(event);
    }
    const deadline = maxWaitMs === Infinity ? NO_DEADLINE : now + BigInt(Math.ceil(maxWaitMs * 1e6));
    return new Promise<T>((resolve, reject) => {
      const waiter = new KeyWaiter<T>(this, queue, n, this.msSinceCreated(now), deadline, resolve, reject, task);
      if (deadline !== NO_DEADLINE) waiter.setMaxWait(maxWaitMs);
      this.table.addQueued();
      this.waiting++;
      queue.tokens += n;
      if (existing === undefined) this.queues.set(key, queue);
      if (signal !== undefined) {
        waiter.attachSignal(signal);
        this.signals.watch(signal, waiter as KeyWaiter<unknown>);
      }
      queue.waiters.push(waiter);
    });
  }

  private refuse<T>(error: unknown, reason: KeyedRefusedEvent['reason'], key: string, n: number): Promise<T> {
    this.emitRefused(reason, key, n);
    return Promise.reject(error);
  }

  private emitRefused(reason: KeyedRefusedEvent['reason'], key: string, n: number): void {
    this.table.count(
      reason === 'queue-full'
        ? KeyedTableLayout.I64.REFUSED_QUEUE_FULL
        : reason === 'timeout'
          ? KeyedTableLayout.I64.REFUSED_TIMEOUT
          : KeyedTableLayout.I64.REFUSED_ABORTED,
      1n,
    );
    if (this.refusedListeners?.length) {
      const event: KeyedRefusedEvent = { key, reason, n };
      for (const l of this.refusedListeners) l(event);
    }
  }

  /** Whole ms since this instance was created: a small integer kept in each waiter (see Limiter). */
  private msSinceCreated(now: Nanos): number {
    return Math.round(Number(now - this.createdAt) / 1e6);
  }
}

/** Runs an admitted task at once; a synchronous throw becomes a rejection. */
function runAdmitted<T>(task: () => T | PromiseLike<T>): Promise<T> {
  try {
    return Promise.resolve(task());
  } catch (error) {
    return Promise.reject(error);
  }
}
