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
 * - `setLimit` changes every key's rate and burst at runtime, keeping each key's bucket (converted
 *   as a token bucket's is, gcra.ts): around a change, any interval of a key admits at most the
 *   larger of the two bounds. Waiting calls in every thread are timed again under the new limit.
 *
 * Within a thread, calls of one key are served FIFO; calls of different keys never wait for each
 * other. `maxQueued` bounds the calls waiting over all keys and all threads (one shared count),
 * which bounds the memory of the queues; a bound per key is left to the caller (the fair queueing
 * work covers sharing between keys).
 */
import { threadId } from 'node:worker_threads';
import type { Clock, Nanos } from '../clock.js';
import type { QueueRefusalReason, RefusalCounts } from '../errors.js';
import { LimitWatch } from '../limiters/limit-change.js';
import { RATE_PERMIT, RATE_PERMIT_PROMISE, type Permit } from '../limiters/permit.js';
import { checkCount, resolveAcquireOptions, type AcquireOptions } from '../options.js';
import { AdmissionFront, FRONT_EVENTS, runAdmitted } from '../queue/admission-front.js';
import { EventSource } from '../queue/listeners.js';
import { ThreadInstances } from '../shared/thread-instances.js';
import { KeyHasher } from './key-hash.js';
import { KeyQueue } from './key-queue.js';
import {
  checkKey,
  resolveKeyedTokenBucketOptions,
  resolveKeyedTokenBucketSetting,
  type KeyedTokenBucketOptions,
  type KeyedTokenBucketSetting,
  type ResolvedKeyedTokenBucketOptions,
} from './keyed-options.js';
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
  reason: QueueRefusalReason;
  /** Tokens asked for. */
  n: number;
}

/** Event names and their payloads. */
export interface KeyedTokenBucketEvents {
  /** A call has to wait for its key's bucket: emitted as it joins the queue. */
  limited: KeyedLimitedEvent;
  /** A call was refused (`queue_full`, `queue_timeout`) or aborted. */
  refused: KeyedRefusedEvent;
}

/** What {@link KeyedTokenBucket.snapshot} returns: counts since creation, over all threads. */
export interface KeyedSnapshot {
  /** Always `'keyed-token-bucket'`. */
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
  refused: RefusalCounts;
  /** Calls waiting now, over all keys and threads. */
  queued: number;
  /** Admitted calls that had to wait. */
  waited: number;
  /** Their total wait, in ms. */
  waitMsTotal: number;
  /** Slots in the table. */
  slots: number;
  /** Slots holding a key now. */
  keysInUse: number;
  /** Of those, keys whose bucket is not full now: the ones that cannot be evicted. */
  keysActive: number;
}

/** The shared counter of each refusal reason. */
const REFUSED_COUNTER: Record<QueueRefusalReason, number> = {
  queue_full: KeyedTableLayout.I64.REFUSED_QUEUE_FULL,
  queue_timeout: KeyedTableLayout.I64.REFUSED_TIMEOUT,
  aborted: KeyedTableLayout.I64.REFUSED_ABORTED,
};

/** This thread's instances: one per table per thread (one set of queues and timers). */
const attached = new ThreadInstances<KeyedTokenBucket, { table: KeyedTable; row: number }>((held) => held.table.freeRow(held.row));

/** A token bucket per key in bounded shared memory, shared by every thread; calls over a key's limit queue. */
export class KeyedTokenBucket extends EventSource<KeyedTokenBucketEvents> {
  /** Identity shared by every thread's instance. */
  readonly id: string;
  /** Slots in the table: the most keys holding a bucket at once. */
  readonly slots: number;
  /** Slots searched per key. */
  readonly probeWindow: number;
  /** Tokens of the overflow bucket per the `periodMs` the bucket was built with (setLimit keeps it). */
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
  /** The options it was built with, for share(): an attaching thread derives the overflow bucket from them. */
  private readonly built: Record<string, unknown>;
  /** The queue of every key with calls waiting in this thread, and nothing else. */
  private readonly queues = new Map<string, KeyQueue>();
  private readonly front: AdmissionFront<KeyedTokenBucketEvents>;
  private readonly watch: LimitWatch;

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
    super(FRONT_EVENTS);
    const o: ResolvedKeyedTokenBucketOptions = resolveKeyedTokenBucketOptions(options);
    this.clock = o.clock;
    // A private object, so the front end's hooks are not public methods.
    this.front = new AdmissionFront<KeyedTokenBucketEvents>(
      {
        queuedCalls: () => this.table.queuedCalls(),
        // The fast path found no queue of the key and has just hashed it into the hasher.
        line: (key) => new KeyQueue(this.front, this.table, this.queues, this.watch, key!, this.hasher.hi, this.hasher.lo, this.hasher.home),
        storeRefusal: () => undefined,
        countRefused: (reason) => this.table.count(REFUSED_COUNTER[reason], 1n),
        permit: () => RATE_PERMIT,
        recordWait: (waitNs) => {
          this.table.count(KeyedTableLayout.I64.WAITED, 1n);
          this.table.count(KeyedTableLayout.I64.WAIT_NS_TOTAL, BigInt(Math.max(0, waitNs)));
        },
      },
      this.clock,
      o.maxQueued,
      this.events,
    );
    const params = { clock: this.clock, overflowIntervalNs: o.overflowIntervalNs, overflowBurst: o.overflowBurst };
    const buffer = attach?.buffer ?? KeyedTable.allocate(o.slots, o.probeWindow, o.maxThreads, this.front.createdAt, o);
    this.table = new KeyedTable(buffer, params);
    this.id = attach?.id ?? crypto.randomUUID();
    this.slots = this.table.slots;
    this.probeWindow = this.table.probeWindow;
    this.maxThreads = this.table.rows;
    this.overflowRate = o.overflowRate;
    this.overflowBurst = o.overflowBurst;
    this.maxQueued = o.maxQueued;
    this.maxWaitMs = o.maxWaitMs;
    this.built = {
      rate: o.rate,
      periodMs: o.periodMs,
      burst: o.burst,
      slots: this.slots,
      probeWindow: this.probeWindow,
      overflowRate: o.overflowRate,
      overflowBurst: o.overflowBurst,
      maxQueued: o.maxQueued,
      maxWaitMs: o.maxWaitMs,
      maxThreads: this.maxThreads,
    };
    // A change in any thread times this thread's waiting calls again, whatever their key.
    this.watch = new LimitWatch(
      this.table.words,
      () => this.queues.size > 0,
      () => {
        for (const q of [...this.queues.values()]) q.waiters.pump();
      },
      this.table.changeSignal,
    );
    this.hasher = new KeyHasher(this.table.seedHi, this.table.seedLo, this.table.slots);
    const row = this.table.claimRow(threadId);
    attached.add(this.id, this, { table: this.table, row });
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
    const existing = attached.get(descriptor.id);
    if (existing !== undefined) return existing;
    return new KeyedTokenBucket(
      { ...(descriptor.options as unknown as KeyedTokenBucketOptions), ...options },
      { buffer: descriptor.buffer, id: descriptor.id },
    );
  }

  /** Tokens per period, per key (now: the latest `setLimit` in any thread). */
  get rate(): number {
    return this.table.setting().rate;
  }

  /** Period of `rate`, ms. */
  get periodMs(): number {
    return this.table.setting().periodMs;
  }

  /** Bucket size of each key. */
  get burst(): number {
    return this.table.setting().burst;
  }

  /**
   * Changes every key's limit, for every thread sharing the table, without emptying it: each key's
   * bucket is converted to the new limit as a {@link TokenBucket}'s is (a raised rate keeps the
   * tokens a bucket is missing, a lowered one the tokens it holds), so around the change no
   * interval admits more calls of a key than the larger of the old and the new bound. No waiting
   * call is refused or dropped: in every thread they are timed again under the new limit. Takes
   * `rate`, `periodMs` and `burst` with the constructor's defaults (an omitted `burst` is
   * `ceil(rate)` again). `slots`, `probeWindow` and the overflow bucket's settings are fixed when
   * the table is built and are refused here. A change visits every slot once: O(slots).
   * @throws TypeError | RangeError naming the invalid or unchangeable option; nothing changes then.
   */
  setLimit(setting: KeyedTokenBucketSetting): void {
    this.table.change(resolveKeyedTokenBucketSetting(setting), this.clock);
  }

  /** Admits `n` tokens of `key` at once if its limit allows and none of its calls wait in this thread. */
  tryAcquire(key: string, n = 1): boolean {
    checkKey(key);
    if (n !== 1) this.checkN(n);
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
    if (n !== 1) this.checkN(n);
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
    if (n !== 1) this.checkN(n);
    const queue = this.queues.get(key);
    if (queue === undefined) {
      const h = this.hasher;
      h.hash(key);
      if (this.table.take(h.hi, h.lo, h.home, this.clock.now(), n)) return RATE_PERMIT_PROMISE;
    }
    return this.front.enqueue<Permit>(key, queue, n, maxWaitMs, options?.signal, undefined);
  }

  /**
   * Runs `task` once `n` tokens of `key` are admitted and resolves with its result. The task
   * starts synchronously at the moment of admission.
   */
  run<T>(key: string, task: () => T | PromiseLike<T>, n = 1, options?: AcquireOptions): Promise<T> {
    const maxWaitMs = resolveAcquireOptions(options, this.maxWaitMs);
    checkKey(key);
    if (typeof task !== 'function') throw new TypeError('task must be a function');
    if (n !== 1) this.checkN(n);
    const queue = this.queues.get(key);
    if (queue === undefined) {
      const h = this.hasher;
      h.hash(key);
      if (this.table.take(h.hi, h.lo, h.home, this.clock.now(), n)) return runAdmitted(task, RATE_PERMIT);
    }
    return this.front.enqueue<T>(key, queue, n, maxWaitMs, options?.signal, task);
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

  /** Rejects every call waiting in this thread, whatever its key, with `reason` (the rejection value, not a refusal reason: no `'refused'` event, not counted); nothing was taken. */
  clear(reason: unknown = new Error('limiter cleared: the call was waiting')): void {
    for (const q of [...this.queues.values()]) q.waiters.clear(reason);
  }

  /** Calls waiting in this thread, all keys. */
  get size(): number {
    return this.front.waiting;
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
    return { kind: 'keyed-token-bucket', id: this.id, options: { ...this.built }, buffer: this.table.buffer };
  }

  /** Checks `n` against the most one call may ask for: a key's burst now, and the overflow bucket's. */
  private checkN(n: number): void {
    const burst = this.table.setting().burst;
    checkCount(n, Math.min(burst, this.overflowBurst), burst <= this.overflowBurst ? 'burst' : 'overflowBurst');
  }

  /**
   * Gives back what a dead thread held: its waiting calls leave the shared queued count. Call
   * from the thread that owns the worker, on its `'exit'` event.
   */
  reclaimThread(deadThreadId: number): { queuedCalls: number } {
    return { queuedCalls: this.table.reclaimThread(deadThreadId) };
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
        queue_full: t.total(REFUSED_COUNTER.queue_full),
        queue_timeout: t.total(REFUSED_COUNTER.queue_timeout),
        aborted: t.total(REFUSED_COUNTER.aborted),
      },
      queued: t.queuedCalls(),
      waited: t.total(KeyedTableLayout.I64.WAITED),
      waitMsTotal: t.total(KeyedTableLayout.I64.WAIT_NS_TOTAL) / 1e6,
      slots: this.slots,
      keysInUse: keys.inUse,
      keysActive: keys.active,
    };
  }
}
