/**
 * One process's view of a limit held in a distributed store: a pool of tokens the store granted to
 * this process, in shared memory, drawn by every thread with one compare-and-swap, and refilled by
 * one fetch at a time from whichever thread needs tokens.
 *
 * ## How tokens flow
 * A call that finds the pool short waits in its thread's queue; the queue asks for a fetch
 * (`waitForRelease`). One thread wins the FETCHING word and asks the store for tokens; the others
 * wait on SIGNAL. A token bucket's answer is a booking: the tokens, and when they may be used
 * (PENDING until PENDING_AT, then moved into POOL by the first thread that looks). A fixed
 * window's answer is the tokens its window has left, or when the next window opens
 * (NEXT_FETCH_AT). Those times become the waiting queues' timers; SIGNAL moves after every answer
 * and every waiting thread draws again. Nothing polls, and a process holds one booking at a time.
 *
 * Without leasing, a fetch asks for the tokens the calls waiting in this process need (at least
 * one, at most the burst), so tokens are held only between the store's answer and the waiting
 * calls taking them; under load that is already a batch. With leasing, a fetch asks for
 * `horizonMs` of this process's recent consumption (up to `maxTokens` and the burst), so a process
 * whose calls arrive one at a time still makes one round trip per batch.
 *
 * ## The bound
 * The store admits tokens by its own clock: over any interval of length L it grants at most
 * burst + rate × L (token bucket) or maxCalls per window (fixed window). A call starts after the
 * grant of its token, so calls starting in [a, a + L] used tokens granted in [a − d, a + L], where
 * d is the longest a token is held: one store answer's delivery time, and with leasing up to the
 * lease's life. Hence starts ≤ burst + rate × (L + d), and also ≤ burst + rate × (L + λ) + the
 * tokens the processes held at a, which leasing caps at `maxTokens` (or burst) per process (λ: the
 * wake-up credit below; a token asked for after a has its slot no earlier than a − λ). A fixed
 * window's leased tokens lapse when their window ends, measured from the moment the fetch was sent
 * (no later than the store's reading of its clock), so a window's bound holds exactly.
 *
 * Pacing at burst 1 makes one round trip per token, and the next request reaches the store after
 * the previous token was used: a timer's lateness plus a round trip after its slot. So the token
 * bucket script gives a request the waiters' wake-up credit (gcra.ts): a slot that fell due before
 * the store's reading is granted as of that slot, but no earlier than λ = max(T, 2 ms) before the
 * reading, and the answer says so (a negative notBefore). Those slots are the grants' instants in
 * the bound above (the GCRA proof holds on them: each grant leaves a TAT from its slot + n·T to its
 * slot + b·T), and the pool holds such tokens from their slot, so the credit used shows in d
 * (MAX_HOLD) and burst + rate × (L + d) stays exact.
 *
 * ## Faults
 * A store call that fails or times out marks the limit DOWN (logged once per incident, counted)
 * and sets when to try again; while DOWN, calls follow `onStoreError`, and calls waiting for a
 * booking made before keep waiting for it. The first successful answer clears DOWN (logged once);
 * the store's reconnection triggers that probe at once rather than at the next retry. A fetching
 * thread that dies leaves FETCHING set: it is taken over once the fetch is older than twice the
 * store timeout.
 *
 * ## A lost state
 * Each answer says what the process now knows of the state (SEEN), and each request carries it
 * back with a doubt flag (DOWN, or this thread's connection re-established since its last
 * answer), so the store restarts a lost state empty and behind every booking it made before
 * (`LeaseHint`, redis-scripts.ts). local-share's own bucket starts empty too, behind the store's
 * look-ahead, since the processes still use what the store booked before it failed; and a process
 * back on the store leaves the processes not yet back their shares for RECOVERY_STAGGER_MS.
 *
 * ## Layout of the shared memory (one SharedArrayBuffer per limit per process)
 * Byte offsets, as {@link RemotePoolLayout} names the words (conventions in `layout.ts`):
 * ```
 *   0 i32 MAGIC          'TQR1'
 *   4 i32 POOL           tokens granted to this process and not yet taken
 *   8 i32 FETCHING       threadId + 1 of the thread with a fetch in flight, 0 when none
 *  12 i32 SIGNAL         bumped and notified after every fetch, granted or not
 *  16 i32 DOWN           1 while the store is failing
 *  20 i32 PENDING        tokens booked ahead by the store, usable from PENDING_AT (one booking at a time)
 *  24 i64 EXPIRY         clock ns after which POOL's tokens lapse
 *  32 i64 NEXT_FETCH_AT  no fetch before this (the store said when, or the retry after an error)
 *  40 i64 FETCH_STARTED  when the fetch in flight was sent
 *  48 i64 FALLBACK_TAT   local-share: this process's own GCRA word while the store is down
 *  56 i64 LAST_FETCH_AT  when the last granted fetch was sent (lease sizing)
 *  64 i64 SEEN           what the last answer said of the store's state (LeaseHint.seen); −1 for none
 *  72 i64 CONSUMED_AT    tokens consumed by the last granted fetch (lease sizing; see consumed())
 *  80 i64 × 10           counters: round trips, errors, incidents, leased, lapsed, given back,
 *                        admitted fail-open, admitted local-share, refused, DOWN since (ns)
 * 160 i64 WINDOW         fixed window: the store's window number POOL's tokens belong to
 * 168 i64 POOL_SINCE     when the fetch that brought POOL's oldest tokens was sent
 * 176 i64 MAX_HOLD       the longest ns from a fetch's sending to the taking of one of its tokens
 * 184 i64 PENDING_AT     when PENDING's tokens may be used: the answer's arrival + the store's notBefore
 * 192 i64 PENDING_SINCE  the fetch's sending + notBefore: no later than the booking's admission time
 * 200 i64 SEEN_COUNT     fixed window: the count the last answer left (LeaseHint.seenCount)
 * 208 i64 LOST           times the store answered that it had lost the limit's state
 * 216 i64 ANSWERED_AT    when the store last answered a fetch of this process (process.hrtime)
 * ```
 *
 * MAX_HOLD measures the d of the bound above (an upper estimate: the store granted after the fetch
 * was sent), so what the bound really was in a run can be read from `snapshot().store.maxHoldMs`.
 */
import { threadId } from 'node:worker_threads';
import type { Clock, Nanos } from '../clock.js';
import { gcraCredit, gcraReadyAt, gcraTake } from '../limiters/gcra.js';
import { waitForSignal, type SignalWait } from '../shared/wait-signal.js';
import {
  lookaheadUs,
  RECONNECT_MAX_MS,
  RECOVERY_STAGGER_MS,
  type LeaseHint,
  type LimiterStore,
  type RemoteConcurrencyLimit,
  type RemoteLimitSpec,
  type StoreDescriptor,
  type StoreErrorPolicy,
} from './store.js';
import { defineLayout } from '../shared/layout.js';

const MAGIC = 0x31525154; // 'TQR1'

/** A process's pool of one limit held in a store (fields described at the top of this module). */
export const RemotePoolLayout = defineLayout('remote limit pool', {
  BYTES: 224,
  I32: { MAGIC: 0, POOL: 1, FETCHING: 2, SIGNAL: 3, DOWN: 4, PENDING: 5 },
  I64: {
    EXPIRY: 3,
    NEXT_FETCH_AT: 4,
    FETCH_STARTED: 5,
    FALLBACK_TAT: 6,
    LAST_FETCH_AT: 7,
    SEEN: 8,
    CONSUMED_AT: 9,
    ROUND_TRIPS: 10,
    ERRORS: 11,
    INCIDENTS: 12,
    LEASED: 13,
    LAPSED: 14,
    GIVEN_BACK: 15,
    FAIL_OPEN: 16,
    LOCAL_SHARE: 17,
    REFUSED: 18,
    DOWN_SINCE: 19,
    WINDOW: 20,
    POOL_SINCE: 21,
    MAX_HOLD: 22,
    PENDING_AT: 23,
    PENDING_SINCE: 24,
    SEEN_COUNT: 25,
    LOST: 26,
    ANSWERED_AT: 27,
  },
});

/** Everything to rebuild a {@link RemoteLimit} (or a `RemoteConcurrency`) in another thread of the same process. */
export interface RemoteDescriptor {
  store: StoreDescriptor;
  key: string;
  spec: RemoteLimitSpec | RemoteConcurrencyLimit;
  buffer: SharedArrayBuffer;
}

/**
 * What a limiter holds of a limit kept in a distributed store: the atomic step and the waiting of
 * its queue, the fault policy, the counters. {@link RemoteLimit} for rate limits,
 * `RemoteConcurrency` for the concurrency limit.
 */
export interface RemoteAdmission {
  /** The store (this thread's instance). */
  readonly store: LimiterStore;
  /** The limit's name in the store. */
  readonly key: string;
  /**
   * Takes `n` at `now` if this process holds them (or the fault policy admits). `queued`: for a
   * waiter, which gets the wake-up credit where the admission runs in the process (gcra.ts).
   */
  take(now: Nanos, n: number, queued?: boolean): boolean;
  /** When `n` could be taken, or undefined when only the store's answer can tell. */
  wakeAt(now: Nanos, n: number): Nanos | undefined;
  /** Estimated ns until a call of `n` behind `queued` is admitted (0 when unpredictable). */
  estimateWaitAt(n: number, queued: number): Nanos;
  /** True while the store fails and the policy is to refuse. */
  refusing(): boolean;
  /** Counts a call refused because the store is down. */
  refused(): void;
  /** Arms a one-shot wake-up for the store's next answer. */
  waitForRelease(wake: () => void): void;
  /** No call of this thread waits any more. */
  idle(): void;
  /** Gives back what this process holds unused, where the store can still take it. */
  giveBack(): Promise<void>;
  /** This process's counters. */
  snapshot(): RemoteSnapshot;
  /** The plain-data description another thread attaches from. */
  describe(): RemoteDescriptor;
  /**
   * Removes what this thread's instance registered on its store (its reconnection hook), so a
   * limit dropped while the store stays open can be collected. The limit still works: a store that
   * went down is then probed at the retry interval instead of as soon as its connection is back.
   */
  dispose(): void;
}

/** Store counters of one limit in this process (see `LimiterSnapshot.store`). */
export interface RemoteSnapshot {
  /** Round trips to the store that answered. */
  roundTrips: number;
  /** Store calls that failed or timed out. */
  errors: number;
  /** Times the store went from answering to failing. */
  incidents: number;
  /** True while the store is failing. */
  down: boolean;
  /** Tokens granted by the store. */
  leased: number;
  /** Granted tokens that lapsed unused. */
  lapsed: number;
  /** Granted tokens given back unused. */
  givenBack: number;
  /** Tokens held now. */
  held: number;
  /** Calls admitted without the store under 'fail-open'. */
  admittedFailOpen: number;
  /** Calls admitted by the local share under 'local-share'. */
  admittedLocalShare: number;
  /** Calls refused under 'fail-closed'. */
  refused: number;
  /** Longest time from sending a fetch to taking one of its tokens, ms: the d of the bound. */
  maxHoldMs: number;
  /** Times the store answered that it had lost the limit's state (and restarted it empty). */
  stateLost: number;
}

/** A limit held in a distributed store, as the threads of this process draw on it. */
export class RemoteLimit implements RemoteAdmission {
  /** The store (this thread's instance). */
  readonly store: LimiterStore;
  readonly key: string;
  private spec: RemoteLimitSpec;
  private readonly buffer: SharedArrayBuffer;
  private readonly i32: Int32Array;
  private readonly i64: BigInt64Array;
  /** local-share: this process's interval between tokens, ns, and its bucket size. */
  private fallbackInterval = 0n;
  private fallbackBurst = 0;
  private readonly staleNs: bigint;
  private readonly retryNs: bigint;
  /** local-share: µs of the rate a process back on the store leaves to the others not yet back. */
  private readonly localShareReserveUs: number;
  /** How far ahead of now the store may have booked this limit's tokens, ns. */
  private lookaheadNs = 0n;
  private waiting = false;
  /** The pending wait for another thread's fetch, if this thread waits on SIGNAL. */
  private signalWait: SignalWait | undefined = undefined;
  /** This thread's fetch is in flight: its answer wakes this thread directly, not through SIGNAL. */
  private fetchingHere = false;
  private localWake: (() => void) | undefined;
  /** The last grant this thread fetched, for a give-back. */
  private lastGrant: { tag: string; n: number } | undefined;
  /** The store's {@link LimiterStore.epoch} at this thread's last answer: a later one means a reconnection since. */
  private seenEpoch = 0;
  /** Removes this thread's reconnection hook from the store. */
  private readonly offReconnect: () => void;

  /**
   * @param demand tokens wanted by the calls waiting in this process, over all threads.
   * @param capacity the most one grant can hold (the limit's burst or maxCalls).
   */
  constructor(
    store: LimiterStore,
    key: string,
    spec: RemoteLimitSpec,
    private readonly clock: Clock,
    private readonly demand: () => number,
    private capacity: number,
    buffer?: SharedArrayBuffer,
  ) {
    this.store = store;
    this.key = key;
    this.spec = spec;
    if (buffer === undefined) {
      buffer = new SharedArrayBuffer(RemotePoolLayout.BYTES);
      new Int32Array(buffer)[RemotePoolLayout.I32.MAGIC] = MAGIC;
      new BigInt64Array(buffer)[RemotePoolLayout.I64.SEEN] = -1n;
    } else if (
      !(buffer instanceof SharedArrayBuffer) ||
      buffer.byteLength < RemotePoolLayout.BYTES ||
      new Int32Array(buffer)[RemotePoolLayout.I32.MAGIC] !== MAGIC
    ) {
      throw new TypeError('descriptor.remote.buffer must come from share() of a limiter with a store');
    }
    this.buffer = buffer;
    this.i32 = new Int32Array(buffer);
    this.i64 = new BigInt64Array(buffer);
    this.setSpec(spec, capacity);
    this.staleNs = BigInt(Math.ceil(store.timeoutMs * 2e6));
    this.retryNs = BigInt(Math.ceil(Math.min(1000, Math.max(100, store.timeoutMs)) * 1e6));
    const processes = store.expectedProcesses;
    this.localShareReserveUs = ((processes - 1) / processes) * RECOVERY_STAGGER_MS * 1000;
    // Probed as soon as the connection is back rather than at the next retry: while this process
    // has not seen Redis return, it runs on its fault policy and the others on Redis.
    this.offReconnect = store.onReconnect(() => {
      if (Atomics.load(this.i32, RemotePoolLayout.I32.DOWN) === 0) return;
      Atomics.store(this.i64, RemotePoolLayout.I64.NEXT_FETCH_AT, 0n);
      this.startFetch(this.clock.now());
    });
  }

  /**
   * The limit changed (`setLimit`): this thread's fetches ask under `spec` from now on, and the
   * local share and the look-ahead follow it. The store judges each fetch by the spec it comes with.
   */
  setSpec(spec: RemoteLimitSpec, capacity: number): void {
    this.spec = spec;
    this.capacity = capacity;
    const processes = this.store.expectedProcesses;
    const intervalNs = spec.kind === 'token-bucket' ? spec.intervalUs * 1000 : (spec.periodMs * 1e6) / spec.maxCalls;
    this.fallbackInterval = BigInt(Math.max(1, Math.ceil(intervalNs * processes)));
    this.fallbackBurst = Math.max(1, Math.floor(capacity / processes));
    this.lookaheadNs = spec.kind === 'token-bucket' ? BigInt(Math.ceil(lookaheadUs(spec, processes) * 1000)) : 0n;
  }

  /** Removes this thread's reconnection hook from the store (the limit still works). */
  dispose(): void {
    this.offReconnect();
  }

  /** The plain-data description a worker thread attaches from. */
  describe(): RemoteDescriptor {
    return { store: this.store.describe(), key: this.key, spec: this.spec, buffer: this.buffer };
  }

  /**
   * Takes `n` tokens at `now` if this process holds them (or the fault policy admits). `queued`:
   * for a waiter, whose local-share take gets the wake-up credit (gcra.ts).
   */
  take(now: Nanos, n: number, queued = false): boolean {
    const i32 = this.i32;
    for (;;) {
      const pool = Atomics.load(i32, RemotePoolLayout.I32.POOL);
      if (pool < n) {
        if (this.promote(now)) continue;
        break;
      }
      if (Atomics.load(this.i64, RemotePoolLayout.I64.EXPIRY) < now) {
        this.lapse(pool);
        break;
      }
      if (Atomics.compareExchange(i32, RemotePoolLayout.I32.POOL, pool, pool - n) === pool) {
        this.recordHold(now);
        return true;
      }
    }
    if (Atomics.load(i32, RemotePoolLayout.I32.DOWN) === 0) return false;
    this.startFetch(now);
    switch (this.store.onStoreError) {
      case 'fail-open':
        Atomics.add(this.i64, RemotePoolLayout.I64.FAIL_OPEN, 1n);
        return true;
      case 'local-share':
        return this.takeLocalShare(now, n, queued);
      default:
        return false;
    }
  }

  /** When `n` tokens could be taken, or undefined when only a fetch's answer can tell. */
  wakeAt(now: Nanos, n: number): Nanos | undefined {
    if (Atomics.load(this.i32, RemotePoolLayout.I32.POOL) >= n && Atomics.load(this.i64, RemotePoolLayout.I64.EXPIRY) >= now) return now;
    if (Atomics.load(this.i32, RemotePoolLayout.I32.PENDING) > 0) {
      const at = Atomics.load(this.i64, RemotePoolLayout.I64.PENDING_AT);
      return at > now ? at : now;
    }
    if (Atomics.load(this.i32, RemotePoolLayout.I32.DOWN) !== 0) {
      if (this.store.onStoreError === 'fail-open') return now;
      if (this.store.onStoreError === 'local-share') {
        const ready = gcraReadyAt(
          Atomics.load(this.i64, RemotePoolLayout.I64.FALLBACK_TAT),
          n,
          this.fallbackInterval,
          this.fallbackInterval * BigInt(this.fallbackBurst),
        );
        const probe = Atomics.load(this.i64, RemotePoolLayout.I64.NEXT_FETCH_AT);
        const at = ready < probe ? ready : probe;
        return at > now ? at : now;
      }
    }
    const next = Atomics.load(this.i64, RemotePoolLayout.I64.NEXT_FETCH_AT);
    return next > now ? next : undefined;
  }

  /** Estimated ns until a call of `n` behind `queued` tokens is admitted, if this process got the whole rate. */
  estimateWaitAt(n: number, queued: number): Nanos {
    if (this.spec.kind !== 'token-bucket') return 0n;
    const short = queued + n - Atomics.load(this.i32, RemotePoolLayout.I32.POOL);
    return short > 0 ? BigInt(Math.ceil(short * this.spec.intervalUs * 1000)) : 0n;
  }

  /** True while the store fails and the policy is to refuse (calls wait for a booking made before, if any). */
  refusing(): boolean {
    return (
      this.store.onStoreError === 'fail-closed' &&
      Atomics.load(this.i32, RemotePoolLayout.I32.DOWN) !== 0 &&
      Atomics.load(this.i32, RemotePoolLayout.I32.PENDING) === 0
    );
  }

  /** Counts a call refused because the store is down; asks for a probe if one is due. */
  refused(): void {
    Atomics.add(this.i64, RemotePoolLayout.I64.REFUSED, 1n);
    this.startFetch(this.clock.now());
  }

  /**
   * Arms a one-shot wake-up for the next fetch answer, starting a fetch unless one is in flight.
   * The wait is bounded (twice the store timeout), so a fetch lost with a dead thread is retried.
   */
  waitForRelease(wake: () => void): void {
    const i32 = this.i32;
    const seen = Atomics.load(i32, RemotePoolLayout.I32.SIGNAL);
    // Asked even when this thread already waits: the fetch it waits for may have come back with
    // nothing and a time to ask again that has now passed.
    this.startFetch(this.clock.now());
    if (this.waiting) {
      this.signalWait?.ref();
      return;
    }
    if (this.fetchingHere) {
      // The answer comes to this thread anyway (and its socket keeps the process alive): a
      // direct call saves waitAsync's promise and timer on the one-call-one-round-trip path.
      this.waiting = true;
      this.localWake = wake;
      return;
    }
    this.waiting = true;
    this.signalWait = waitForSignal(i32, RemotePoolLayout.I32.SIGNAL, seen, Number(this.staleNs) / 1e6, () => {
      this.waiting = false;
      this.signalWait = undefined;
      wake();
    });
  }

  /**
   * No call of this thread waits any more. A wait on SIGNAL may still be pending (up to twice the
   * store timeout); it must not keep the process alive. A fetch of this thread's own holds
   * nothing beyond the store's connection, which the store's `close()` ends.
   */
  idle(): void {
    this.signalWait?.unref();
  }

  /** Gives the tokens this process holds back to the store where it still can (see the scripts). */
  async giveBack(): Promise<void> {
    const last = this.lastGrant;
    const held = Atomics.exchange(this.i32, RemotePoolLayout.I32.POOL, 0) + Atomics.exchange(this.i32, RemotePoolLayout.I32.PENDING, 0);
    if (held === 0) return;
    const n = last === undefined ? 0 : Math.min(held, last.n);
    let back = 0;
    if (n > 0) back = (await this.store.giveBack(this.key, this.spec, n, last!.tag).catch(() => false)) ? n : 0;
    if (back > 0) {
      // The state moved back by what was returned: what this process saw must not look newer.
      if (this.spec.kind === 'token-bucket') Atomics.sub(this.i64, RemotePoolLayout.I64.SEEN, BigInt(Math.ceil(back * this.spec.intervalUs)));
      else Atomics.sub(this.i64, RemotePoolLayout.I64.SEEN_COUNT, BigInt(back));
    }
    Atomics.add(this.i64, RemotePoolLayout.I64.GIVEN_BACK, BigInt(back));
    Atomics.add(this.i64, RemotePoolLayout.I64.LAPSED, BigInt(held - back));
  }

  /** The counters. */
  snapshot(): RemoteSnapshot {
    const c = (i: number): number => Number(Atomics.load(this.i64, i));
    return {
      roundTrips: c(RemotePoolLayout.I64.ROUND_TRIPS),
      errors: c(RemotePoolLayout.I64.ERRORS),
      incidents: c(RemotePoolLayout.I64.INCIDENTS),
      down: Atomics.load(this.i32, RemotePoolLayout.I32.DOWN) !== 0,
      leased: c(RemotePoolLayout.I64.LEASED),
      lapsed: c(RemotePoolLayout.I64.LAPSED),
      givenBack: c(RemotePoolLayout.I64.GIVEN_BACK),
      held: Atomics.load(this.i32, RemotePoolLayout.I32.POOL),
      admittedFailOpen: c(RemotePoolLayout.I64.FAIL_OPEN),
      admittedLocalShare: c(RemotePoolLayout.I64.LOCAL_SHARE),
      refused: c(RemotePoolLayout.I64.REFUSED),
      maxHoldMs: c(RemotePoolLayout.I64.MAX_HOLD) / 1e6,
      stateLost: c(RemotePoolLayout.I64.LOST),
    };
  }

  /**
   * Tokens taken from the pool, ever: what was granted less what is still held, pending, lapsed
   * or given back. Derived from counters kept anyway, so a take costs no extra shared write; read
   * word by word while other threads take, it is an estimate, which lease sizing is.
   */
  private consumed(): bigint {
    const i64 = this.i64;
    const held = Atomics.load(this.i32, RemotePoolLayout.I32.POOL) + Atomics.load(this.i32, RemotePoolLayout.I32.PENDING);
    return (
      Atomics.load(i64, RemotePoolLayout.I64.LEASED) -
      Atomics.load(i64, RemotePoolLayout.I64.LAPSED) -
      Atomics.load(i64, RemotePoolLayout.I64.GIVEN_BACK) -
      BigInt(held)
    );
  }

  /** Moves a booking whose time has come into the pool; true if it did. */
  private promote(now: Nanos): boolean {
    const i32 = this.i32;
    const i64 = this.i64;
    if (Atomics.load(i32, RemotePoolLayout.I32.PENDING) === 0 || now < Atomics.load(i64, RemotePoolLayout.I64.PENDING_AT)) return false;
    const booked = Atomics.exchange(i32, RemotePoolLayout.I32.PENDING, 0);
    if (booked === 0) return false;
    const at = Atomics.load(i64, RemotePoolLayout.I64.PENDING_AT);
    Atomics.store(i64, RemotePoolLayout.I64.EXPIRY, at + BigInt(Math.floor(this.store.leaseSettings.ttlMs * 1e6)));
    if (Atomics.load(i32, RemotePoolLayout.I32.POOL) === 0)
      Atomics.store(i64, RemotePoolLayout.I64.POOL_SINCE, Atomics.load(i64, RemotePoolLayout.I64.PENDING_SINCE));
    Atomics.add(i32, RemotePoolLayout.I32.POOL, booked);
    return true;
  }

  private recordHold(now: Nanos): void {
    const i64 = this.i64;
    const hold = now - Atomics.load(i64, RemotePoolLayout.I64.POOL_SINCE);
    for (let max = Atomics.load(i64, RemotePoolLayout.I64.MAX_HOLD); hold > max; max = Atomics.load(i64, RemotePoolLayout.I64.MAX_HOLD)) {
      if (Atomics.compareExchange(i64, RemotePoolLayout.I64.MAX_HOLD, max, hold) === max) return;
    }
  }

  /** Drops `pool` lapsed tokens (`taken`: already removed from POOL by the caller). */
  private lapse(pool: number, taken = false): void {
    if (taken || Atomics.compareExchange(this.i32, RemotePoolLayout.I32.POOL, pool, 0) === pool)
      Atomics.add(this.i64, RemotePoolLayout.I64.LAPSED, BigInt(pool));
  }

  /** GCRA on this process's own word: rate / expectedProcesses, burst / expectedProcesses. */
  private takeLocalShare(now: Nanos, n: number, queued: boolean): boolean {
    const cost = this.fallbackInterval * BigInt(n);
    const tolerance = this.fallbackInterval * BigInt(Math.max(this.fallbackBurst, n));
    if (!gcraTake(this.i64, RemotePoolLayout.I64.FALLBACK_TAT, now, cost, tolerance, queued ? gcraCredit(this.fallbackInterval) : 0n)) return false;
    Atomics.add(this.i64, RemotePoolLayout.I64.LOCAL_SHARE, 1n);
    return true;
  }

  /** Starts a fetch from this thread, unless one is in flight or the next is not due yet. */
  private startFetch(now: Nanos): void {
    const i32 = this.i32;
    const i64 = this.i64;
    // A booking whose time has come moves to the pool first: under fail-closed no call takes it
    // while the store is down, and it must not keep the store from being probed.
    this.promote(now);
    if (now < Atomics.load(i64, RemotePoolLayout.I64.NEXT_FETCH_AT) || Atomics.load(i32, RemotePoolLayout.I32.PENDING) !== 0) return;
    const me = threadId + 1;
    const owner = Atomics.compareExchange(i32, RemotePoolLayout.I32.FETCHING, 0, me);
    if (owner !== 0) {
      if (now - Atomics.load(i64, RemotePoolLayout.I64.FETCH_STARTED) < this.staleNs) return;
      if (Atomics.compareExchange(i32, RemotePoolLayout.I32.FETCHING, owner, me) !== owner) return;
    }
    Atomics.store(i64, RemotePoolLayout.I64.FETCH_STARTED, now);
    this.fetchingHere = true;
    if (this.store.connected) this.fetch(now);
    // Time to connect is not time a token is held: the fetch is timed from the sending.
    else
      this.store.connect().then(
        () => this.fetch(this.clock.now()),
        (error: unknown) => this.failed(error),
      );
  }

  /** Sends one lease request (this thread holds FETCHING) and files its answer. */
  private fetch(now: Nanos): void {
    const i32 = this.i32;
    const i64 = this.i64;
    const { want, min } = this.batch(now);
    const epoch = this.store.epoch;
    const down = Atomics.load(i32, RemotePoolLayout.I32.DOWN) !== 0;
    const hint: LeaseHint = {
      seen: Number(Atomics.load(i64, RemotePoolLayout.I64.SEEN)),
      seenCount: Number(Atomics.load(i64, RemotePoolLayout.I64.SEEN_COUNT)),
      doubt: down || epoch !== this.seenEpoch,
      reserveUs: down && this.store.onStoreError === 'local-share' ? this.localShareReserveUs : 0,
    };
    this.store.lease(this.key, this.spec, want, min, hint).then(
      (grant) => {
        const at = this.clock.now();
        Atomics.add(i64, RemotePoolLayout.I64.ROUND_TRIPS, 1n);
        Atomics.store(i64, RemotePoolLayout.I64.ANSWERED_AT, process.hrtime.bigint());
        this.seenEpoch = epoch;
        Atomics.store(i64, RemotePoolLayout.I64.SEEN, BigInt(grant.seen));
        Atomics.store(i64, RemotePoolLayout.I64.SEEN_COUNT, BigInt(grant.seenCount));
        if (grant.lost) {
          Atomics.add(i64, RemotePoolLayout.I64.LOST, 1n);
          this.store.log(`thrift-queue-limiter: limit store had lost the state of "${this.key}"; it restarts empty (see "When Redis loses the state")`);
        }
        this.recovered(at);
        if (grant.granted > 0) {
          // A fixed window's leftover tokens die with their window, before the next one's arrive.
          if (this.spec.kind === 'fixed-window') {
            const window = BigInt(grant.tag);
            if (Atomics.exchange(i64, RemotePoolLayout.I64.WINDOW, window) !== window) this.lapse(Atomics.exchange(i32, RemotePoolLayout.I32.POOL, 0), true);
          }
          Atomics.store(i64, RemotePoolLayout.I64.LAST_FETCH_AT, now);
          Atomics.store(i64, RemotePoolLayout.I64.CONSUMED_AT, this.consumed());
          Atomics.add(i64, RemotePoolLayout.I64.LEASED, BigInt(grant.granted));
          if (grant.notBeforeUs > 0) {
            // Booked ahead. Usable from the answer's arrival + notBefore, which is no earlier
            // than the store's admission time; held (for the bound) from sending + notBefore,
            // which is no later.
            const ahead = BigInt(Math.ceil(grant.notBeforeUs * 1000));
            Atomics.store(i64, RemotePoolLayout.I64.PENDING_AT, at + ahead);
            Atomics.store(i64, RemotePoolLayout.I64.PENDING_SINCE, now + ahead);
            Atomics.add(i32, RemotePoolLayout.I32.PENDING, grant.granted);
          } else {
            const ttlNs = Math.min(this.store.leaseSettings.ttlMs * 1e6, grant.validUs * 1e3);
            Atomics.store(i64, RemotePoolLayout.I64.EXPIRY, now + BigInt(Math.floor(ttlNs)));
            // If the pool is not empty its older tokens keep POOL_SINCE; if takers empty it
            // before the add, the estimate stays on the older side. A late request the store
            // counted at the instant it was due (a negative notBefore: the wake-up credit) holds
            // its tokens from that instant, which is no earlier than the sending + notBefore.
            if (Atomics.load(i32, RemotePoolLayout.I32.POOL) === 0) {
              Atomics.store(i64, RemotePoolLayout.I64.POOL_SINCE, now + BigInt(Math.min(0, grant.notBeforeUs) * 1000));
            }
            Atomics.add(i32, RemotePoolLayout.I32.POOL, grant.granted);
          }
          this.lastGrant = { tag: grant.tag, n: grant.granted };
        }
        if (grant.retryAfterUs > 0) Atomics.store(i64, RemotePoolLayout.I64.NEXT_FETCH_AT, at + BigInt(Math.ceil(grant.retryAfterUs * 1000)));
        this.fetchDone();
      },
      (error: unknown) => this.failed(error),
    );
  }

  /**
   * How many tokens to ask for. Without leasing: what the calls waiting in this process need, at
   * least one. With leasing: at least `horizonMs` of the consumption seen since the last grant,
   * capped by `maxTokens` and the capacity. `min` matters to a fixed window only (a token bucket
   * books the whole batch): with leasing, not less than half the batch, else a busy window would
   * answer every fetch with the one token another process left.
   */
  private batch(now: Nanos): { want: number; min: number } {
    const need = Math.max(1, this.demand() - Atomics.load(this.i32, RemotePoolLayout.I32.POOL) - Atomics.load(this.i32, RemotePoolLayout.I32.PENDING));
    const lease = this.store.leaseSettings;
    if (lease.horizonMs === 0) return { want: Math.min(need, this.capacity), min: 1 };
    const since = Number(now - Atomics.load(this.i64, RemotePoolLayout.I64.LAST_FETCH_AT));
    const consumed = Number(this.consumed() - Atomics.load(this.i64, RemotePoolLayout.I64.CONSUMED_AT));
    const recent = since > 0 ? Math.ceil((consumed / since) * lease.horizonMs * 1e6) : 0;
    const want = Math.min(Math.max(need, recent), lease.maxTokens, this.capacity);
    return { want, min: Math.max(1, Math.floor(want / 2)) };
  }

  private fetchDone(): void {
    this.fetchingHere = false;
    Atomics.store(this.i32, RemotePoolLayout.I32.FETCHING, 0);
    Atomics.add(this.i32, RemotePoolLayout.I32.SIGNAL, 1);
    Atomics.notify(this.i32, RemotePoolLayout.I32.SIGNAL);
    const wake = this.localWake;
    if (wake !== undefined) {
      this.localWake = undefined;
      this.waiting = false;
      wake();
    }
  }

  private failed(error: unknown): void {
    const i64 = this.i64;
    const now = this.clock.now();
    Atomics.add(i64, RemotePoolLayout.I64.ERRORS, 1n);
    if (this.reconnectingAlone()) {
      // This thread's connection is still coming back while another thread's answers: no
      // incident (it would be a second one, logged again), just another try soon.
      const soon = now + BigInt(RECONNECT_MAX_MS * 1e6);
      Atomics.store(i64, RemotePoolLayout.I64.NEXT_FETCH_AT, soon);
      this.fetchDone();
      this.clock.setTimer(soon, () => this.startFetch(this.clock.now())).unref?.();
      return;
    }
    Atomics.store(i64, RemotePoolLayout.I64.NEXT_FETCH_AT, now + this.retryNs);
    if (Atomics.compareExchange(this.i32, RemotePoolLayout.I32.DOWN, 0, 1) === 0) {
      Atomics.add(i64, RemotePoolLayout.I64.INCIDENTS, 1n);
      Atomics.store(i64, RemotePoolLayout.I64.DOWN_SINCE, now);
      // local-share starts with an empty bucket, behind every token the store booked before the
      // failure (all admissible within the look-ahead), which the processes still use.
      const empty = now + this.fallbackInterval * BigInt(this.fallbackBurst) + this.lookaheadNs;
      if (Atomics.load(i64, RemotePoolLayout.I64.FALLBACK_TAT) < empty) Atomics.store(i64, RemotePoolLayout.I64.FALLBACK_TAT, empty);
      this.store.log(downLine(this.key, error, this.store.onStoreError));
    }
    this.fetchDone();
    // Keep probing while down even if no call arrives to ask (fail-closed refuses them at once).
    // Unref'd: a probe serves no waiting call, so it must not hold the process open.
    this.clock.setTimer(now + this.retryNs, () => this.startFetch(this.clock.now())).unref?.();
  }

  /** True when this thread's connection is down but the store answered another thread of this process since it dropped. */
  private reconnectingAlone(): boolean {
    return (
      !this.store.up &&
      Atomics.load(this.i32, RemotePoolLayout.I32.DOWN) === 0 &&
      Atomics.load(this.i64, RemotePoolLayout.I64.ANSWERED_AT) > this.store.droppedAt
    );
  }

  private recovered(now: Nanos): void {
    if (Atomics.load(this.i32, RemotePoolLayout.I32.DOWN) === 0 || Atomics.compareExchange(this.i32, RemotePoolLayout.I32.DOWN, 1, 0) !== 1) return;
    this.store.log(upLine(this.key, Number(now - Atomics.load(this.i64, RemotePoolLayout.I64.DOWN_SINCE)) / 1e6));
  }
}

const POLICY_TEXT = {
  'fail-open': 'admitting every call (onStoreError fail-open)',
  'fail-closed': 'refusing calls (onStoreError fail-closed)',
  'local-share': "enforcing this process's share of the limit locally (onStoreError local-share)",
} as const;

/** The one log line of an incident's start. */
export function downLine(key: string, error: unknown, policy: StoreErrorPolicy): string {
  const message = error instanceof Error ? error.message : String(error);
  return `thrift-queue-limiter: limit store unavailable for "${key}" (${message}); ${POLICY_TEXT[policy]} until it answers`;
}

/** The one log line of an incident's end. */
export function upLine(key: string, downMs: number): string {
  return `thrift-queue-limiter: limit store answers again for "${key}" after ${Math.round(downMs)} ms`;
}
