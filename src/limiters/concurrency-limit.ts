/**
 * At most a limit of permits held at once, over every thread: the fixed {@link ConcurrencyLimit},
 * and the machinery it shares with the adaptive limit (`adaptive-concurrency-limit.ts`), whose
 * limit moves.
 *
 * The permits still free are one shared word (AVAILABLE: the limit minus the permits held),
 * changed by CAS; an admission of `n` needs AVAILABLE ≥ n. A change of the limit is one atomic add
 * of the difference to the same word ({@link PermitLimit.changeLimit}), so every admission is
 * judged, in one atomic step, against the limit in force at that instant: in-flight after an
 * admission never exceeds the limit at that instant. A lowered limit takes nothing back: AVAILABLE
 * goes negative and nobody is admitted until enough permits are released. Waiting is where
 * threads must cooperate: if every thread simply retried when it saw a release, the releasing
 * thread (already awake) would win every race and starve the others. So waiters are ordered
 * across threads by ticket, and capacity is handed to the oldest waiter wherever it waits:
 *
 * - Each thread publishes only the head of its own FIFO queue in its thread-table row:
 *   HEAD_TICKET (taken from the shared TICKET counter when the call became its thread's head, so
 *   threads take turns: a thread's next call queues behind the heads other threads published
 *   meanwhile) and HEAD_NEED.
 * - Whoever frees capacity (a release, a raised limit) or publishes a head runs
 *   {@link PermitLimit.dispatch}: it finds the oldest published ticket, reserves its permits in
 *   AVAILABLE by CAS, and claims the head by CAS of HEAD_TICKET to 0 (undoing the reservation if
 *   the claim loses). The permits are added to that row's GRANTS and its SIGNAL word is notified;
 *   the owning thread, waiting on SIGNAL with `Atomics.waitAsync` (no polling, no timer), takes
 *   them and admits its head.
 * - A call that arrives while nobody waits anywhere takes a permit directly (the fast path).
 *
 * No thread ever blocks another: every step is an atomic add or a CAS retry. Permits are counted
 * per row (HELD) so that the owner of a worker that dies can give them back with
 * `reclaimThread(threadId)`; until then a dead thread's permits stay taken.
 *
 * A ConcurrencyLimit with a `store` uses none of the above but LIMIT: the count lives in the store,
 * each thread is one holder of the limit there, and its queue waits for the store's grants
 * (`src/stores/remote-concurrency.ts`); a dead thread's or process's permits come back when its
 * lease in the store runs out.
 */
import type { Clock, Nanos } from '../clock.js';
import {
  checkCount,
  resolveConcurrencyLimitOptions,
  resolveConcurrencySetting,
  type ConcurrencyLimitOptions,
  type ConcurrencySetting,
  type ResolvedConcurrencyLimitOptions,
  type ResolvedQueueOptions,
} from '../options.js';
import type { Waiter } from '../queue/wait-queue.js';
import { LimiterLayout, LimiterRowLayout, SharedState, type LimiterKind } from '../shared/shared-state.js';
import { waitForSignal, type SignalWait } from '../shared/wait-signal.js';
import type { AttachContext, LimiterDescriptor } from './limiter.js';
import { Limiter, attachedInstance } from './limiter.js';
import { ReleasablePermit, type Permit } from './permit.js';
import { attachStore } from '../stores/store.js';
import { RemoteConcurrency } from '../stores/remote-concurrency.js';

/**
 * A limit on permits held at once, shared by every thread, kept in shared memory: the admission,
 * queueing and hand-off of {@link ConcurrencyLimit} and {@link AdaptiveConcurrencyLimit}. A
 * subclass says what the limit is and when it changes.
 */
export abstract class PermitLimit extends Limiter {
  /** @internal */
  protected readonly i32: Int32Array;
  private readonly row: number;
  /** Permits granted to this thread and not yet handed to a call. */
  private pool = 0;
  /** Permits handed to this thread's calls and not yet given back: the most `release(n)` may give back. */
  private heldByCalls = 0;
  private published = 0;
  /** The pending wait for a grant to this thread's row, if any. */
  private wait: SignalWait | undefined = undefined;
  /** @internal With a store (a ConcurrencyLimit's option): this thread's holding of the limit there. */
  protected held: RemoteConcurrency | undefined = undefined;
  /** @internal Gives back up to `n` permits of this thread's calls (a permit's release). */
  protected readonly releaseFn = (n: number): void => {
    // A permit whose slots `release(n)` already gave back has nothing left to give.
    const k = n < this.heldByCalls ? n : this.heldByCalls;
    this.heldByCalls -= k;
    if (k > 0) this.releasePermits(k);
  };

  /**
   * @internal
   * @param initialLimit the limit a new limiter starts with (ignored when attaching: the shared
   *   memory already holds it).
   */
  protected constructor(kind: LimiterKind, options: ResolvedQueueOptions, initialLimit: number, attach: AttachContext | undefined) {
    super(kind, options, attach);
    this.i32 = this.state.i32;
    this.row = this.state.row(this.slot(), 0);
    if (attach === undefined) {
      Atomics.store(this.i32, LimiterLayout.I32.LIMIT, initialLimit);
      Atomics.store(this.i32, LimiterLayout.I32.AVAILABLE, initialLimit);
    }
  }

  /**
   * Gives back `n` permits taken with `tryAcquire(n)` (which has no permit object to release).
   * Permits from `acquire`/`run` are released through their permit instead.
   *
   * Only permits this thread's calls hold can be given back: those taken here by `tryAcquire`,
   * `acquire` or `run` and not yet released (through `release` or a permit). Giving back more
   * would raise the limit for every thread, so it throws instead and changes nothing; a permit
   * whose slots were already given back this way gives back nothing when it is released.
   * @throws RangeError when `n` exceeds the permits this thread holds (naming both); TypeError or
   *   RangeError when `n` is not a whole number of at least 1.
   */
  release(n = 1): void {
    // Validated as a count only: the bound that matters is what this thread holds, not max.
    checkCount(n, Infinity, 'max');
    if (this.held !== undefined) {
      const here = this.held.heldHere;
      if (!this.held.release(n)) throw new RangeError(`release(${n}) exceeds the ${here} permit${here === 1 ? '' : 's'} held by this thread`);
      return;
    }
    const held = this.heldByCalls;
    if (n > held) {
      throw new RangeError(
        `release(${n}) exceeds the ${held} permit${held === 1 ? '' : 's'} held by this thread (taken here with tryAcquire, acquire or run, not yet released)`,
      );
    }
    this.heldByCalls = held - n;
    this.releasePermits(n);
  }

  /** The limit in force now, over all threads (an adaptive limit's is minLimit while it measures its no-load latency). */
  get limit(): number {
    return Atomics.load(this.i32, LimiterLayout.I32.LIMIT);
  }

  /**
   * Permits held now, over all threads (exact while the limit stays put; a reading taken while the
   * limit changes may be off by the change).
   */
  get inFlight(): number {
    if (this.held !== undefined) return this.held.heldByAll;
    return Atomics.load(this.i32, LimiterLayout.I32.LIMIT) - Atomics.load(this.i32, LimiterLayout.I32.AVAILABLE);
  }

  /**
   * {@inheritDoc Limiter.tryAcquireAt}
   * Time plays no part in a concurrency limit; `now` is accepted for symmetry.
   */
  tryAcquireAt(now: Nanos, n = 1): boolean {
    // With a store, only permits this thread already holds unused can be taken without waiting.
    if (this.held !== undefined) return this.held.take(now, n);
    const i32 = this.i32;
    for (;;) {
      const free = Atomics.load(i32, LimiterLayout.I32.AVAILABLE);
      if (free < n) return false;
      if (Atomics.compareExchange(i32, LimiterLayout.I32.AVAILABLE, free, free - n) === free) {
        Atomics.add(i32, this.row + LimiterRowLayout.I32.HELD, n);
        this.heldByCalls += n;
        return true;
      }
    }
  }

  /** Unpredictable: it depends on when holders release. */
  estimateWaitAt(): Nanos {
    return 0n;
  }

  /** A new call may take a permit directly only while no call waits anywhere (no barging). */
  protected override fastTake(n: number): boolean {
    if (this.held !== undefined) return this.held.take(0n, n);
    return Atomics.load(this.i32, LimiterLayout.I32.QUEUED_CALLS) === 0 && this.tryAcquireAt(0n, n);
  }

  /** Hands granted permits to the head of this thread's queue. */
  protected take(now: Nanos, n: number): boolean {
    if (this.held !== undefined) return this.held.take(now, n);
    this.pool += Atomics.exchange(this.i32, this.row + LimiterRowLayout.I32.GRANTS, 0);
    if (this.pool < n) return false;
    this.pool -= n;
    this.heldByCalls += n;
    return true;
  }

  /** Only a release can make room. */
  protected wakeAt(): undefined {
    return undefined;
  }

  /**
   * Waits for SIGNAL to move (a grant to this row) with no timer. A wait already pending
   * is kept (and holds the event loop again): grants from this thread's own releases reach the
   * queue without a notify, so a wait can outlive the call it was armed for.
   */
  protected override waitForRelease(wake: () => void): void {
    if (this.held !== undefined) {
      super.waitForRelease(wake);
      return;
    }
    if (this.wait !== undefined) {
      this.wait.ref();
      return;
    }
    const i32 = this.i32;
    const seen = Atomics.load(i32, this.row + LimiterRowLayout.I32.SIGNAL);
    if (Atomics.load(i32, this.row + LimiterRowLayout.I32.GRANTS) > 0) {
      queueMicrotask(wake);
      return;
    }
    this.wait = waitForSignal(i32, this.row + LimiterRowLayout.I32.SIGNAL, seen, Infinity, () => {
      this.wait = undefined;
      wake();
    });
  }

  /** Publishes the new head of this thread's queue (or withdraws it), then dispatches. */
  protected override headChanged(head: Waiter | undefined): void {
    if (this.held !== undefined) {
      this.held.headChanged(head);
      return;
    }
    const i32 = this.i32;
    if (this.published !== 0) {
      // Withdraw the old head. If the CAS loses, another thread claimed it and its permits are in
      // GRANTS already; they join the pool below.
      Atomics.compareExchange(i32, this.row + LimiterRowLayout.I32.HEAD_TICKET, this.published, 0);
      this.published = 0;
    }
    this.pool += Atomics.exchange(i32, this.row + LimiterRowLayout.I32.GRANTS, 0);
    if (head === undefined || this.pool < head.n) {
      // A partial pool is given back rather than kept: two threads each holding part of what
      // their heads need could otherwise wait on each other forever.
      if (this.pool > 0) {
        const n = this.pool;
        this.pool = 0;
        this.releasePermits(n);
      }
    }
    if (head === undefined) {
      // No call of this thread waits: the pending wait must not keep the process alive.
      this.wait?.unref();
      return;
    }
    if (this.pool >= head.n) {
      queueMicrotask(() => this.pumpQueue());
      return;
    }
    if (head.ticket === 0) head.ticket = nextTicket(i32);
    Atomics.store(i32, this.row + LimiterRowLayout.I32.HEAD_NEED, head.n);
    Atomics.store(i32, this.row + LimiterRowLayout.I32.HEAD_TICKET, head.ticket);
    this.published = head.ticket;
    this.dispatch();
  }

  protected makePermit(n: number): Permit {
    // Made right after the take that admitted the call: the store's holding knows which kind it was.
    return new ReleasablePermit(n, this.held === undefined ? this.releaseFn : this.held.releaserForLastTake());
  }

  protected override afterReclaim(): void {
    this.dispatch();
  }

  /**
   * @internal Moves the limit from `from` to `to` if it is still `from` (false, and nothing changed,
   * if another thread moved it first); a raised limit is handed to waiters at once.
   *
   * The LIMIT word is what readers see; AVAILABLE is what admissions obey. The order of the two
   * steps keeps the limit admissions obey at or below LIMIT at every instant: a raise publishes
   * LIMIT first, a cut takes the permits out of AVAILABLE first (and puts them back if the CAS on
   * LIMIT loses).
   */
  protected changeLimit(from: number, to: number): boolean {
    const i32 = this.i32;
    if (to > from) {
      if (Atomics.compareExchange(i32, LimiterLayout.I32.LIMIT, from, to) !== from) return false;
      Atomics.add(i32, LimiterLayout.I32.AVAILABLE, to - from);
      this.dispatch();
      return true;
    }
    if (to === from) return Atomics.load(i32, LimiterLayout.I32.LIMIT) === from;
    Atomics.sub(i32, LimiterLayout.I32.AVAILABLE, from - to);
    if (Atomics.compareExchange(i32, LimiterLayout.I32.LIMIT, from, to) === from) return true;
    Atomics.add(i32, LimiterLayout.I32.AVAILABLE, from - to);
    this.dispatch();
    return false;
  }

  /** Gives `n` permits back and hands the freed capacity to the oldest waiters. */
  private releasePermits(n: number): void {
    Atomics.sub(this.i32, this.row + LimiterRowLayout.I32.HELD, n);
    Atomics.add(this.i32, LimiterLayout.I32.AVAILABLE, n);
    if (Atomics.load(this.i32, LimiterLayout.I32.QUEUED_CALLS) > 0) this.dispatch();
  }

  /**
   * Grants free capacity to published heads, oldest ticket first, while it lasts. Any thread may
   * run it at any time; the CAS on AVAILABLE makes sure no permit is granted twice, the CAS on
   * HEAD_TICKET that no head is granted twice.
   */
  private dispatch(): void {
    const i32 = this.i32;
    const state = this.state;
    for (;;) {
      let best = -1;
      let bestTicket = 0;
      for (let slot = 0; slot < state.slotCount; slot++) {
        const t = Atomics.load(i32, state.row(slot, LimiterRowLayout.I32.HEAD_TICKET));
        // Tickets wrap: compare by signed difference.
        if (t !== 0 && (best < 0 || ((t - bestTicket) | 0) < 0)) {
          best = slot;
          bestTicket = t;
        }
      }
      if (best < 0) return;
      const need = Atomics.load(i32, state.row(best, LimiterRowLayout.I32.HEAD_NEED));
      const free = Atomics.load(i32, LimiterLayout.I32.AVAILABLE);
      if (free < need) return;
      if (Atomics.compareExchange(i32, LimiterLayout.I32.AVAILABLE, free, free - need) !== free) continue;
      if (Atomics.compareExchange(i32, state.row(best, LimiterRowLayout.I32.HEAD_TICKET), bestTicket, 0) !== bestTicket) {
        Atomics.add(i32, LimiterLayout.I32.AVAILABLE, need);
        continue;
      }
      Atomics.add(i32, state.row(best, LimiterRowLayout.I32.HELD), need);
      Atomics.add(i32, state.row(best, LimiterRowLayout.I32.GRANTS), need);
      if (state.row(best, 0) === this.row) {
        this.published = 0;
        queueMicrotask(() => this.pumpQueue());
      } else {
        Atomics.add(i32, state.row(best, LimiterRowLayout.I32.SIGNAL), 1);
        Atomics.notify(i32, state.row(best, LimiterRowLayout.I32.SIGNAL));
      }
    }
  }
}

/** A limit on calls in flight at once, shared by every thread; `setLimit` changes it for all. */
export class ConcurrencyLimit extends PermitLimit {
  protected readonly kind = 'concurrency' as const;

  /**
   * @param options max, queue bounds.
   * @throws TypeError | RangeError naming the invalid option.
   */
  constructor(options: ConcurrencyLimitOptions);
  /** @internal */
  constructor(options: ConcurrencyLimitOptions, attach: AttachContext);
  constructor(options: ConcurrencyLimitOptions, attach?: AttachContext) {
    const o: ResolvedConcurrencyLimitOptions = resolveConcurrencyLimitOptions(options);
    super('concurrency', o, o.max, attach);
    if (o.store !== undefined) {
      // The limit the store enforces is LIMIT, read at each sync: setLimit in any thread moves it.
      this.held = new RemoteConcurrency(
        o.store,
        o.key,
        { kind: 'concurrency', max: o.max },
        this.clock,
        () => this.size,
        () => this.limit,
        attach?.remoteBuffer,
      );
      this.remote = this.held;
    }
  }

  /** Most permits held at once (now: the latest `setLimit` in any thread). */
  get max(): number {
    return this.limit;
  }

  /** Same as {@link max}: the most one call may ask for. */
  get capacity(): number {
    return this.limit;
  }

  /**
   * Changes the limit for every thread sharing it, at once (see {@link PermitLimit.changeLimit}):
   * a raise grants the room to the oldest waiting calls of every thread at once; a lower max lets
   * the permits held finish and admits no one until fewer than the new max are held. A waiting
   * call asking for more permits than the new max waits until it is raised again (or its wait
   * bound refuses it).
   * @throws TypeError | RangeError naming the invalid option; nothing changes then.
   */
  setLimit(setting: ConcurrencySetting): void {
    const { max } = resolveConcurrencySetting(setting);
    // Another thread's change between the read and the CAS: move from its limit instead.
    let from = this.limit;
    while (!this.changeLimit(from, max)) from = this.limit;
    // With a store: this thread's waiting call asks again under the new limit now; the store
    // enforces it from each holder's next sync.
    this.held?.limitChanged();
  }

  /** Rebuilds, in this thread, the concurrency limit `descriptor` came from; see `TokenBucket.attach`. */
  static attach(descriptor: LimiterDescriptor, options: { clock?: Clock } = {}): ConcurrencyLimit {
    const existing = attachedInstance(descriptor.id);
    if (existing instanceof ConcurrencyLimit) return existing;
    const state = SharedState.from(descriptor.buffer, 'concurrency');
    const r = descriptor.remote;
    const store = r === undefined ? {} : { store: attachStore(r.store), key: r.key };
    return new ConcurrencyLimit(
      { ...(descriptor.options as unknown as ConcurrencyLimitOptions), ...store, ...options },
      { state, id: descriptor.id, remoteBuffer: r?.buffer },
    );
  }

  protected describe(): Record<string, unknown> {
    return { max: this.max, maxQueued: this.maxQueued, maxWaitMs: this.maxWaitMs, maxThreads: this.state.slotCount };
  }
}

/** The next waiting ticket; never 0, which marks "no head published". */
function nextTicket(i32: Int32Array): number {
  for (;;) {
    const t = Atomics.add(i32, LimiterLayout.I32.TICKET, 1) + 1;
    if (t !== 0) return t;
  }
}
