/**
 * One thread's view of a concurrency limit held in a distributed store: at most `max` permits held
 * over every process and host, each thread of each process being one *holder*.
 *
 * ## How permits flow
 * A call that finds no permit in this thread's pool waits in its thread's queue, which publishes
 * what its head needs (`headChanged`). A *sync* (one script call, `SYNC_PERMITS`) tells the store
 * what this holder has released and what it needs; the store queues the holder (FIFO over
 * holders), grants at once what fits in that order, and answers. Permits freed later, by any
 * holder's sync, go to the oldest waiting holder, which hears of it from a PUBLISH on the limit's
 * channel (`watchPermits`): waiting costs no polling. A release is one sync, carrying this
 * thread's next need too; several releases and needs of one turn share one sync. So under
 * contention an admitted call costs about two round trips (its need, its release), and a holder
 * that releases and needs again in the same turn, one.
 *
 * ## Exactly once, and what a dead holder leaves
 * The holder's granted and released counts are cumulative over an *epoch* (the store's count of
 * holders started), so a sync that timed out after the store ran it can be repeated (a release
 * counts once) and a notice or answer that was lost is made up by the next answer. Every sync
 * renews the holder's lease; while it holds permits or waits, a timer syncs every third of
 * `permitLeaseMs`. A process that dies stops renewing: its permits come back when the lease runs
 * out, freed by the next sync of any holder, and waiting holders sync at that moment (the answer
 * says when the next lease runs out). A holder the store no longer knows (its lease ran out while
 * it was stalled, or the store lost its state) starts a new epoch holding what it holds, so the
 * permits in use count again from its next sync on.
 *
 * ## Faults
 * A failed sync marks the limit DOWN in this process (logged once, counted), as for rate limits;
 * `onStoreError` then applies to new calls: fail-closed refuses, fail-open admits, local-share
 * admits up to `max / expectedProcesses` per holder. Permits admitted that way are not counted by
 * the store, and their release is not sent. Releases of counted permits made meanwhile are sent
 * with the first sync that succeeds.
 *
 * ## Layout of the shared memory (one SharedArrayBuffer per limit per process: counters)
 * Byte offsets, as {@link RemoteConcurrencyLayout} names the words (conventions in `layout.ts`):
 * ```
 *   0 i32 MAGIC          'TQC1'
 *   4 i32 DOWN           1 while the store is failing
 *   8 i64 × 11           round trips, errors, incidents, granted, released, admitted fail-open,
 *                        admitted local-share, refused, DOWN since (ns), re-registrations, held
 *  96 i64 ANSWERED_AT    when the store last answered a sync of this process (process.hrtime)
 * ```
 */
import { randomUUID } from 'node:crypto';
import type { Clock, Nanos, TimerHandle } from '../clock.js';
import type { Waiter } from '../queue/wait-queue.js';
import { defineLayout } from '../shared/layout.js';
import { downLine, upLine, type RemoteAdmission, type RemoteDescriptor, type RemoteSnapshot } from './remote-limit.js';
import { RECONNECT_MAX_MS, type LimiterStore, type PermitNotice, type RemoteConcurrencyLimit } from './store.js';

const MAGIC = 0x31435154; // 'TQC1'

/** A process's counters of one concurrency limit held in a store (fields described at the top of this module). */
export const RemoteConcurrencyLayout = defineLayout('remote concurrency counters', {
  BYTES: 104,
  I32: { MAGIC: 0, DOWN: 1 },
  I64: {
    ROUND_TRIPS: 1,
    ERRORS: 2,
    INCIDENTS: 3,
    GRANTED: 4,
    RELEASED: 5,
    FAIL_OPEN: 6,
    LOCAL_SHARE: 7,
    REFUSED: 8,
    DOWN_SINCE: 9,
    REREGISTERED: 10,
    HELD: 11,
    ANSWERED_AT: 12,
  },
});
/** A concurrency limit in a distributed store, as one thread holds permits of it. */
export class RemoteConcurrency implements RemoteAdmission {
  readonly store: LimiterStore;
  readonly key: string;
  private readonly spec: RemoteConcurrencyLimit;
  private readonly buffer: SharedArrayBuffer;
  private readonly i32: Int32Array;
  private readonly i64: BigInt64Array;
  private readonly holder = randomUUID();
  /** The holder's epoch, and its cumulative granted and released counts in it, as this thread knows them. */
  private epoch = 0;
  private granted = 0;
  private released = 0;
  /** Permits granted to this thread and not yet handed to a call. */
  private pool = 0;
  /** Counted permits handed to calls and not yet given back. */
  private inUse = 0;
  /** Permits admitted by the fault policy while the store was down (not counted by the store). */
  private uncounted = 0;
  /** What the head of this thread's queue needs (0 when nothing waits). */
  private need = 0;
  /** This holder waits in the store's queue (as the last answer or notice said). */
  private queuedInStore = false;
  /** Whether the last `take` was a counted permit, for the permit it makes. */
  private lastTakeCounted = true;
  /** A notice for an epoch this thread has not heard of yet (its sync's answer is on the way). */
  private early: PermitNotice | undefined;
  private syncing = false;
  /** Resolved when no sync is in flight or asked for any more. */
  private whenSynced: (() => void)[] = [];
  private syncAgain = false;
  private syncQueued = false;
  /** The last sync failed while this thread alone was reconnecting: try again after one reconnection period. */
  private retrySoon = false;
  private wake: (() => void) | undefined;
  private timer: TimerHandle | undefined;
  private watching: Promise<unknown> | undefined;
  /** Removes this thread's reconnection hook from the store. */
  private readonly offReconnect: () => void;
  /** Permits held over all holders at the last answer. */
  private heldEverywhere = 0;
  private readonly renewNs: bigint;
  private readonly retryNs: bigint;

  constructor(
    store: LimiterStore,
    key: string,
    spec: RemoteConcurrencyLimit,
    private readonly clock: Clock,
    /** Calls waiting in this thread (the head and those behind it). */
    private readonly backlog: () => number,
    /** The limit now (`setLimit` in any thread changes it): read at each sync. */
    private readonly limitNow: () => number,
    buffer?: SharedArrayBuffer,
  ) {
    this.store = store;
    this.key = key;
    this.spec = spec;
    if (buffer === undefined) {
      buffer = new SharedArrayBuffer(RemoteConcurrencyLayout.BYTES);
      new Int32Array(buffer)[RemoteConcurrencyLayout.I32.MAGIC] = MAGIC;
    } else if (
      !(buffer instanceof SharedArrayBuffer) ||
      buffer.byteLength < RemoteConcurrencyLayout.BYTES ||
      new Int32Array(buffer)[RemoteConcurrencyLayout.I32.MAGIC] !== MAGIC
    ) {
      throw new TypeError('descriptor.remote.buffer must come from share() of a concurrency limit with a store');
    }
    this.buffer = buffer;
    this.i32 = new Int32Array(buffer);
    this.i64 = new BigInt64Array(buffer);
    this.renewNs = BigInt(Math.floor((store.permitLeaseMs / 3) * 1e6));
    this.retryNs = BigInt(Math.ceil(Math.min(1000, Math.max(100, store.timeoutMs)) * 1e6));
    // Back on the store (perhaps a restarted one that lost its state): the permits in use count
    // again, and a waiting head asks again, at once rather than at the next renewal.
    // Releases still on their way go out before the store closes (else they would wait for the lease).
    store.beforeClose(() => this.giveBack());
    this.offReconnect = store.onReconnect(() => {
      if (Atomics.load(this.i32, RemoteConcurrencyLayout.I32.DOWN) !== 0 || this.need > 0 || this.granted > this.released) this.requestSync();
    });
  }

  /** Removes this thread's reconnection hook from the store (the limit still works). */
  dispose(): void {
    this.offReconnect();
  }

  /** The plain-data description a worker thread attaches from (it becomes a holder of its own). */
  describe(): RemoteDescriptor {
    return { store: this.store.describe(), key: this.key, spec: this.spec, buffer: this.buffer };
  }

  /** Permits held over every holder, as the store last said. */
  get heldByAll(): number {
    return this.heldEverywhere;
  }

  /** Permits this thread's calls hold (counted or admitted by the fault policy). */
  get heldHere(): number {
    return this.inUse + this.uncounted;
  }

  /** Hands `n` permits to a call: from this thread's pool, or by the fault policy while the store is down. */
  take(_now: Nanos, n: number): boolean {
    if (this.pool >= n) {
      this.pool -= n;
      this.inUse += n;
      Atomics.add(this.i64, RemoteConcurrencyLayout.I64.HELD, BigInt(n));
      this.lastTakeCounted = true;
      return true;
    }
    if (Atomics.load(this.i32, RemoteConcurrencyLayout.I32.DOWN) === 0) return false;
    if (this.store.onStoreError === 'fail-open') {
      Atomics.add(this.i64, RemoteConcurrencyLayout.I64.FAIL_OPEN, 1n);
    } else if (this.store.onStoreError === 'local-share' && this.uncounted + n <= Math.max(1, Math.floor(this.limitNow() / this.store.expectedProcesses))) {
      Atomics.add(this.i64, RemoteConcurrencyLayout.I64.LOCAL_SHARE, 1n);
    } else {
      return false;
    }
    this.uncounted += n;
    this.lastTakeCounted = false;
    return true;
  }

  /** The release of a permit made by the last `take` (to be called right after it). */
  releaserForLastTake(): (n: number) => void {
    return this.lastTakeCounted ? this.releaseCounted : this.releaseUncounted;
  }

  /** Gives back `n` permits this thread's calls hold (counted ones first). @returns false when they hold fewer. */
  release(n: number): boolean {
    if (n > this.inUse + this.uncounted) return false;
    const counted = Math.min(n, this.inUse);
    if (counted > 0) this.releaseCounted(counted);
    if (n > counted) this.releaseUncounted(n - counted);
    return true;
  }

  /** Only a grant (or a release, under local-share) makes room: nothing to compute. */
  wakeAt(): undefined {
    return undefined;
  }

  /** Unpredictable: it depends on when holders anywhere release. */
  estimateWaitAt(): Nanos {
    return 0n;
  }

  refusing(): boolean {
    return this.store.onStoreError === 'fail-closed' && Atomics.load(this.i32, RemoteConcurrencyLayout.I32.DOWN) !== 0;
  }

  /** Counts a call refused while the store is down (the retry timer probes it meanwhile). */
  refused(): void {
    Atomics.add(this.i64, RemoteConcurrencyLayout.I64.REFUSED, 1n);
  }

  /** Arms a one-shot wake-up for when permits arrive for this thread (or the store fails). */
  waitForRelease(wake: () => void): void {
    this.wake = wake;
    if (this.pool >= this.need && this.need > 0) this.wakeHead();
  }

  /** The wait's timers are unref'd and its connection belongs to the store: nothing to let go. */
  idle(): void {}

  /**
   * The head of this thread's queue changed: a pool too small for it is given back (two threads
   * each holding part of what their heads need could otherwise wait on each other for good), and
   * the new need goes to the store.
   */
  headChanged(head: Waiter | undefined): void {
    if (head === undefined) {
      if (this.pool > 0) this.givePoolBack();
      if (this.need !== 0 || this.queuedInStore) {
        this.need = 0;
        this.requestSync();
      }
      return;
    }
    this.need = head.n;
    if (this.pool >= head.n) {
      this.wakeHead();
      return;
    }
    if (this.pool > 0) this.givePoolBack();
    // Still queued in the store for more single permits: the next grant serves this head too.
    if (this.queuedInStore && head.n === 1) return;
    this.requestSync();
  }

  /** The limit changed (`setLimit` in this thread): a waiting call asks again under it at once. */
  limitChanged(): void {
    if (this.need > 0) this.requestSync();
  }

  /** Gives this thread's unused permits back to the store; resolves once the store was told (or failed). */
  async giveBack(): Promise<void> {
    if (this.pool > 0) this.givePoolBack();
    if (this.syncing || this.syncQueued) await new Promise<void>((resolve) => this.whenSynced.push(resolve));
  }

  snapshot(): RemoteSnapshot {
    const c = (i: number): number => Number(Atomics.load(this.i64, i));
    return {
      roundTrips: c(RemoteConcurrencyLayout.I64.ROUND_TRIPS),
      errors: c(RemoteConcurrencyLayout.I64.ERRORS),
      incidents: c(RemoteConcurrencyLayout.I64.INCIDENTS),
      down: Atomics.load(this.i32, RemoteConcurrencyLayout.I32.DOWN) !== 0,
      leased: c(RemoteConcurrencyLayout.I64.GRANTED),
      lapsed: 0,
      givenBack: c(RemoteConcurrencyLayout.I64.RELEASED),
      held: c(RemoteConcurrencyLayout.I64.HELD),
      admittedFailOpen: c(RemoteConcurrencyLayout.I64.FAIL_OPEN),
      admittedLocalShare: c(RemoteConcurrencyLayout.I64.LOCAL_SHARE),
      refused: c(RemoteConcurrencyLayout.I64.REFUSED),
      maxHoldMs: 0,
      stateLost: c(RemoteConcurrencyLayout.I64.REREGISTERED),
    };
  }

  private readonly releaseCounted = (n: number): void => {
    this.inUse -= n;
    this.released += n;
    Atomics.sub(this.i64, RemoteConcurrencyLayout.I64.HELD, BigInt(n));
    Atomics.add(this.i64, RemoteConcurrencyLayout.I64.RELEASED, BigInt(n));
    this.requestSync();
  };

  private readonly releaseUncounted = (n: number): void => {
    this.uncounted -= n;
    // local-share: the room is this holder's own, so its waiting head may take it now.
    if (this.need > 0) this.wakeHead();
  };

  private givePoolBack(): void {
    this.released += this.pool;
    Atomics.add(this.i64, RemoteConcurrencyLayout.I64.RELEASED, BigInt(this.pool));
    this.pool = 0;
    this.requestSync();
  }

  private wakeHead(): void {
    const wake = this.wake;
    if (wake === undefined) return;
    this.wake = undefined;
    queueMicrotask(wake);
  }

  /** Permits granted beyond what this thread knew: into the pool, and the head is woken. */
  private granted_(granted: number): void {
    if (granted <= this.granted) return;
    const more = granted - this.granted;
    this.granted = granted;
    this.pool += more;
    Atomics.add(this.i64, RemoteConcurrencyLayout.I64.GRANTED, BigInt(more));
    // Granted for a call that has stopped waiting meanwhile: the store gets them back.
    if (this.need === 0) this.givePoolBack();
    else if (this.pool >= this.need) this.wakeHead();
  }

  private readonly onNotice = (notice: PermitNotice | undefined): void => {
    if (notice === undefined) {
      this.requestSync();
    } else if (notice.holder === this.holder) {
      if (notice.epoch === this.epoch) {
        this.queuedInStore = notice.left > 0;
        this.granted_(notice.granted);
      } else if (notice.epoch > this.epoch) this.early = notice;
    }
  };

  /** One sync at a time per holder; requests made meanwhile are folded into the next. */
  private requestSync(): void {
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    if (this.syncQueued) return;
    this.syncQueued = true;
    queueMicrotask(() => {
      this.syncQueued = false;
      this.sync();
    });
  }

  private sync(): void {
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    this.syncing = true;
    this.syncAgain = false;
    this.timer?.cancel();
    this.timer = undefined;
    // Subscribed before the first wait, so no notice for this holder can be missed.
    const watching = this.need > 0 ? (this.watching ??= this.store.watchPermits(this.key, this.onNotice)) : undefined;
    const send = (): void => {
      const need = this.need;
      // The head's need, and one permit for each call behind it, up to the limit.
      const max = this.limitNow();
      const want = need === 0 ? 0 : Math.min(max, need + this.backlog() - 1);
      const sent = { holder: this.holder, epoch: this.epoch, granted: this.granted, released: this.released, need, want: Math.max(need, want) };
      this.store.syncPermits(this.key, { kind: 'concurrency', max }, sent).then(
        (answer) => {
          Atomics.add(this.i64, RemoteConcurrencyLayout.I64.ROUND_TRIPS, 1n);
          Atomics.store(this.i64, RemoteConcurrencyLayout.I64.ANSWERED_AT, process.hrtime.bigint());
          this.recovered();
          this.heldEverywhere = answer.held;
          if (answer.fresh) {
            const outstanding = sent.granted - sent.released;
            if (outstanding > 0 && this.epoch !== 0) {
              Atomics.add(this.i64, RemoteConcurrencyLayout.I64.REREGISTERED, 1n);
              this.store.log(
                `thrift-queue-limiter: limit store did not know this holder of "${this.key}" any more (its lease ran out, or the store lost its state); its ${outstanding} permits count again`,
              );
            }
            this.epoch = answer.epoch;
            this.released -= sent.released;
            this.granted = outstanding;
          }
          this.queuedInStore = answer.queued;
          if (answer.epoch === this.epoch) this.granted_(answer.granted);
          const early = this.early;
          this.early = undefined;
          if (early !== undefined && early.epoch === this.epoch) {
            this.queuedInStore = early.left > 0;
            this.granted_(early.granted);
          }
          this.settled(answer.queued ? answer.wakeInMs : -1);
        },
        (error: unknown) => {
          this.failed(error);
          this.settled(-1);
        },
      );
    };
    if (watching === undefined) send();
    else
      watching.then(send, (error: unknown) => {
        this.watching = undefined;
        this.failed(error);
        this.settled(-1);
      });
  }

  /** After a sync: the next one now (requested meanwhile), or the lease's renewal, or a retry. */
  private settled(wakeInMs: number): void {
    this.syncing = false;
    if (this.syncAgain || this.syncQueued) {
      this.sync();
      return;
    }
    for (const resolve of this.whenSynced.splice(0)) resolve();
    const down = Atomics.load(this.i32, RemoteConcurrencyLayout.I32.DOWN) !== 0;
    const holding = this.granted - this.released > 0 || this.need > 0;
    if (!down && !holding && !this.retrySoon) return;
    let delay = this.retrySoon ? BigInt(RECONNECT_MAX_MS * 1e6) : down ? this.retryNs : this.renewNs;
    this.retrySoon = false;
    // Waiting: sync again when the next lease runs out, whose permits may then be ours.
    if (!down && wakeInMs >= 0) {
      const ns = BigInt(Math.ceil(wakeInMs + 1)) * 1_000_000n;
      if (ns < delay) delay = ns;
    }
    const timer = this.clock.setTimer(this.clock.now() + delay, () => {
      if (this.timer === timer) this.timer = undefined;
      this.sync();
    });
    // Permits in use and waiting calls keep the process alive by themselves; a renewal must not.
    timer.unref?.();
    this.timer = timer;
  }

  private failed(error: unknown): void {
    const i64 = this.i64;
    Atomics.add(i64, RemoteConcurrencyLayout.I64.ERRORS, 1n);
    if (
      !this.store.up &&
      Atomics.load(this.i32, RemoteConcurrencyLayout.I32.DOWN) === 0 &&
      Atomics.load(i64, RemoteConcurrencyLayout.I64.ANSWERED_AT) > this.store.droppedAt
    ) {
      // This thread's connection is still coming back while another thread's answers: no
      // incident (it would be a second one, logged again), just another try soon.
      this.retrySoon = true;
      return;
    }
    if (Atomics.compareExchange(this.i32, RemoteConcurrencyLayout.I32.DOWN, 0, 1) === 0) {
      Atomics.add(i64, RemoteConcurrencyLayout.I64.INCIDENTS, 1n);
      Atomics.store(i64, RemoteConcurrencyLayout.I64.DOWN_SINCE, this.clock.now());
      this.store.log(downLine(this.key, error, this.store.onStoreError));
    }
    // The waiting head is refused (fail-closed) or admitted by the policy.
    if (this.need > 0) this.wakeHead();
  }

  private recovered(): void {
    if (Atomics.load(this.i32, RemoteConcurrencyLayout.I32.DOWN) === 0 || Atomics.compareExchange(this.i32, RemoteConcurrencyLayout.I32.DOWN, 1, 0) !== 1)
      return;
    this.store.log(upLine(this.key, Number(this.clock.now() - Atomics.load(this.i64, RemoteConcurrencyLayout.I64.DOWN_SINCE)) / 1e6));
  }
}
