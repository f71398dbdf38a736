/**
 * The shared memory of a {@link KeyedTokenBucket}: a fixed-size, lock-free open-addressing hash
 * table of GCRA buckets, one per key, plus one overflow bucket for keys that find no slot.
 *
 * Layout (byte offsets; words little-endian as the platform's typed arrays, which is what lets
 * the 32-bit view read the halves of a 64-bit word), as {@link KeyedTableLayout},
 * {@link KeyedRowLayout} and {@link KeyedSlotLayout} name it (conventions in `layout.ts`):
 *
 * ```
 *   0  i32 MAGIC          'TQK1', to reject a foreign buffer passed to attach()
 *   4  i32 SLOTS          slots in the table
 *   8  i32 PROBE          probe window: slots searched for a key, from its home slot on
 *  12  i32 ROWS           rows in the thread table
 *  16  i32 QUEUED_CALLS   calls waiting, over all keys and threads
 *  20  i32 SEED_HI, 24 i32 SEED_LO   the key hash's seed (see key-hash.ts)
 *  32  i64 EPOCH          clock reading (ns) the slots' times are counted from
 *  64  i64 OVERFLOW_TAT   the overflow bucket's GCRA word, ns on the clock (own cache line: under
 *                         a key flood every call touches it)
 * 128  i64 WATERMARK      µs since EPOCH, ≥ the TAT of every key whose slot was reclaimed (own line)
 * 192  i64 counters: admitted, overflow admissions, inserts, reclaims and table-full events
 *      of freed thread rows; refusals by reason; calls that waited and their total wait
 * 320  thread table: ROWS rows of 64 bytes (one cache line each)
 *      +0 i32 OWNER threadId + 1 (0: free)   +4 i32 QUEUED_CALLS this row's share
 *      +8 i64 ADMITTED  +16 OVERFLOW_ADMITTED  +24 INSERTED  +32 RECLAIMED  +40 TABLE_FULL
 *      (counted per thread on its own line, so admissions by different threads never contend
 *      on a counter; a snapshot sums the rows)
 * 320 + 64·ROWS  slots: SLOTS × 16 bytes
 *      +0 i32 HASH_LO, +4 i32 HASH_HI   the key's 64-bit hash; 0 until the slot is first claimed
 *      +8 i64 STATE     [16-bit version | 48-bit TAT in µs since EPOCH]
 * ```
 *
 * So a table of `slots` keys takes 16·slots + 64·maxThreads + 320 bytes, fixed at
 * construction (4096 keys, 64 threads: 69.9 KiB), however many distinct keys are ever seen.
 *
 * **Admission** is the token bucket's GCRA (gcra.ts has the proof) on the slot's TAT:
 * read STATE, then the hash (must be the key's), decide, CAS STATE. STATE is read *before* the
 * hash: the hash only changes while a reclaim holds the slot, and every reclaim bumps the version,
 * so if the CAS succeeds (version unchanged) the hash was the key's all along and the admission
 * was charged to the right key. A refusal re-reads STATE the same way before it counts.
 *
 * **Time** is kept in whole µs (48 bits of µs = 8.9 years from the epoch, less one bucket span;
 * past that, calls throw a RangeError asking for a new table). The interval T is rounded up to whole µs, which can only
 * admit fewer; so a rate above 10⁶ per second per key is held to 10⁶ per second. The check itself
 * is exact in nanoseconds: a call at t (ns) is admitted iff max(TAT, t) + n·T − t ≤ b·T, and the
 * TAT stored is that value rounded UP to a whole µs. A stored TAT at least the exact one keeps
 * the bound's proof intact: every admission still moves TAT forward by ≥ n·T, and the admitted
 * call passed the check against the real t. (Rounding `now` to µs instead would let two calls a
 * few ns apart across a µs boundary be judged a whole µs apart: one token too many.)
 *
 * **Reclaiming idle keys, lossless.** A slot whose TAT ≤ now holds a full bucket: nothing a fresh
 * key would not have. Another key may take it: CAS STATE (v, tat) → (v+1, CLAIMING), store the new
 * hash, check the window for a duplicate (below), then CAS (v+1, CLAIMING) → (v+1, fresh TAT)
 * with the new key's first admission in it. A concurrent admitter of the old key fails its CAS
 * (version changed), finds its key gone and inserts it afresh: no admission is lost or charged to
 * the wrong key. ABA would need 65 536 reclaims of one slot between an admitter's read and its CAS.
 *
 * Clocks of different threads are read at slightly different moments, so a call may be judged at
 * a `now` earlier than a reclaim that already happened. A fresh bucket therefore starts at
 * WATERMARK (raised to the reclaimed TAT *before* the reclaim's CAS), not at 0: a key's TAT never
 * moves back across a reclaim, and the GCRA bound holds on the instants the calls were judged at,
 * as for the single bucket. Whenever now ≥ WATERMARK (always, with one clock read per call and
 * no stall) a fresh key is simply full.
 *
 * **No key in two slots.** Two threads inserting one key at once could claim two slots and give
 * the key two buckets. After storing its hash, an inserter scans the whole window for another
 * slot with the same hash: a live one → it abandons its claim and uses that one; a claim in
 * progress at a lower slot index → it abandons its own; at a higher index → it abandons that one
 * by CAS (its owner's final CAS then fails and it retries). Atomics are sequentially consistent,
 * so of two overlapping claims at least one sees the other's hash, and either way exactly one
 * survives. Abandoned slots (ABANDONED) are free for anyone.
 *
 * **Table full.** Active keys (TAT > now) are never taken over. A key that finds neither its own
 * slot nor a free, abandoned or idle one in its window is admitted by the overflow bucket, one
 * GCRA word all such keys share (rate `overflowRate`, size `overflowBurst`): a flood of new keys
 * cannot push an active key out, and all flood keys that find no slot together get at most the
 * overflow rate. Memory never grows and nothing throws.
 *
 * No step holds a lock. A thread that dies between claiming a slot and its final CAS leaves that
 * one slot CLAIMING for good (the table has one slot less); it never blocks another key.
 */
import type { Nanos } from '../clock.js';
import { gcraReadyAt, gcraTake } from '../limiters/gcra.js';
import { defineLayout } from '../shared/layout.js';

const MAGIC = 0x314b5154; // 'TQK1'

/** The table's header: its shape, the overflow bucket, the watermark and the counters. */
export const KeyedTableLayout = defineLayout('keyed table header', {
  BYTES: 320,
  I32: { MAGIC: 0, SLOTS: 1, PROBE: 2, ROWS: 3, QUEUED_CALLS: 4, SEED_HI: 5, SEED_LO: 6 },
  I64: {
    EPOCH: 4,
    OVERFLOW_TAT: 8,
    WATERMARK: 16,
    ADMITTED: 24,
    OVERFLOW_ADMITTED: 25,
    INSERTED: 26,
    RECLAIMED: 27,
    TABLE_FULL: 28,
    REFUSED_QUEUE_FULL: 29,
    REFUSED_TIMEOUT: 30,
    REFUSED_ABORTED: 31,
    WAITED: 32,
    WAIT_NS_TOTAL: 33,
  },
});

/** One row of the thread table: its owner, its queued calls and its own counters. */
export const KeyedRowLayout = defineLayout('keyed table row', {
  BYTES: 64,
  I32: { OWNER: 0, QUEUED_CALLS: 1 },
  I64: { ADMITTED: 1, OVERFLOW_ADMITTED: 2, INSERTED: 3, RECLAIMED: 4, TABLE_FULL: 5 },
});

/** One slot: a key's hash and its bucket. */
export const KeyedSlotLayout = defineLayout('keyed table slot', {
  BYTES: 16,
  I32: { HASH_LO: 0, HASH_HI: 1 },
  I64: { STATE: 1 },
});

/** Where the thread table starts, and the strides of rows and slots, in each view's words. */
const TABLE_I32 = KeyedTableLayout.BYTES / 4;
const TABLE_I64 = KeyedTableLayout.BYTES / 8;
const ROW_I32 = KeyedRowLayout.BYTES / 4;
const ROW_I64 = KeyedRowLayout.BYTES / 8;
const SLOT_I32 = KeyedSlotLayout.BYTES / 4;
const SLOT_I64 = KeyedSlotLayout.BYTES / 8;

/** The row counters folded into the header when a row is freed: [row field, header word]. */
const FOLD: readonly (readonly [number, number])[] = [
  [KeyedRowLayout.I64.ADMITTED, KeyedTableLayout.I64.ADMITTED],
  [KeyedRowLayout.I64.OVERFLOW_ADMITTED, KeyedTableLayout.I64.OVERFLOW_ADMITTED],
  [KeyedRowLayout.I64.INSERTED, KeyedTableLayout.I64.INSERTED],
  [KeyedRowLayout.I64.RECLAIMED, KeyedTableLayout.I64.RECLAIMED],
  [KeyedRowLayout.I64.TABLE_FULL, KeyedTableLayout.I64.TABLE_FULL],
];

const TAT_MASK = (1n << 48n) - 1n;
const VERSION_ONE = 1n << 48n;
/** TAT field of a slot being claimed: its hash may be half written; nobody admits in it. */
const CLAIMING = 2 ** 48 - 1;
/** TAT field of a claim given up: free for any key, never a key's bucket. */
const ABANDONED = 2 ** 48 - 2;
const CLAIMING_BIG = BigInt(CLAIMING);
const ABANDONED_BIG = BigInt(ABANDONED);

/** Outcomes of one pass over a key's window. */
const ADMIT = 0;
const REFUSE = 1;
const FULL = 2;
const RETRY = 3;
const MOVED = 4;

/** Per-key GCRA parameters and the overflow bucket's, identical in every thread. */
export interface TableParams {
  /** µs between two tokens of a key. */
  intervalUs: number;
  /** Bucket size of a key. */
  burst: number;
  /** ns between two overflow tokens. */
  overflowIntervalNs: bigint;
  /** Size of the overflow bucket. */
  overflowBurst: number;
}

/** What {@link KeyedTable.countKeys} finds. */
export interface KeyCounts {
  /** Slots holding a key (active or idle). */
  inUse: number;
  /** Of those, keys whose bucket is not full at the time asked (never reclaimed while so). */
  active: number;
}

/** One thread's view of a keyed table: the typed arrays, the parameters and its own row. */
export class KeyedTable {
  /** The shared bytes. */
  readonly buffer: SharedArrayBuffer;
  /** Slots. */
  readonly slots: number;
  /** Slots searched per key. */
  readonly probeWindow: number;
  /** Rows of the thread table. */
  readonly rows: number;
  /** Clock reading slot times count from. */
  readonly epoch: Nanos;
  /** The hash seed, high half. */
  readonly seedHi: number;
  /** The hash seed, low half. */
  readonly seedLo: number;

  private readonly i32: Int32Array;
  private readonly i64: BigInt64Array;
  private readonly slotI32: number;
  private readonly slotI64: number;
  private readonly interval: number;
  private readonly tolerance: number;
  private readonly overflowInterval: bigint;
  private readonly overflowTolerance: bigint;
  /** Latest `now` (µs) whose admissions keep every TAT below the sentinels. */
  private readonly maxNowUs: number;
  private row = -1;
  private rowI64 = 0;
  /** The time of the call in progress: whole µs since the epoch, and the ns beyond them. */
  private us = 0;
  private frac = 0;

  /** Allocates a zeroed table. */
  static allocate(slots: number, probeWindow: number, rows: number, epoch: Nanos): SharedArrayBuffer {
    const buffer = new SharedArrayBuffer(KeyedTableLayout.BYTES + rows * KeyedRowLayout.BYTES + slots * KeyedSlotLayout.BYTES);
    const i32 = new Int32Array(buffer);
    const seed = crypto.getRandomValues(new Int32Array(2));
    i32[KeyedTableLayout.I32.MAGIC] = MAGIC;
    i32[KeyedTableLayout.I32.SLOTS] = slots;
    i32[KeyedTableLayout.I32.PROBE] = probeWindow;
    i32[KeyedTableLayout.I32.ROWS] = rows;
    i32[KeyedTableLayout.I32.SEED_HI] = seed[0]!;
    i32[KeyedTableLayout.I32.SEED_LO] = seed[1]!;
    new BigInt64Array(buffer)[KeyedTableLayout.I64.EPOCH] = epoch;
    return buffer;
  }

  /**
   * Maps `buffer` (from {@link allocate}, possibly in another thread).
   * @throws TypeError when it is not a keyed table.
   */
  constructor(buffer: unknown, params: TableParams) {
    if (
      !(buffer instanceof SharedArrayBuffer) ||
      buffer.byteLength < KeyedTableLayout.BYTES ||
      new Int32Array(buffer, 0, 1)[KeyedTableLayout.I32.MAGIC] !== MAGIC
    ) {
      throw new TypeError('descriptor.buffer must be the SharedArrayBuffer of a KeyedTokenBucket (from share())');
    }
    this.buffer = buffer;
    this.i32 = new Int32Array(buffer);
    this.i64 = new BigInt64Array(buffer);
    this.slots = this.i32[KeyedTableLayout.I32.SLOTS]!;
    this.probeWindow = this.i32[KeyedTableLayout.I32.PROBE]!;
    this.rows = this.i32[KeyedTableLayout.I32.ROWS]!;
    this.seedHi = this.i32[KeyedTableLayout.I32.SEED_HI]!;
    this.seedLo = this.i32[KeyedTableLayout.I32.SEED_LO]!;
    this.epoch = this.i64[KeyedTableLayout.I64.EPOCH]!;
    const slotBytes = KeyedTableLayout.BYTES + this.rows * KeyedRowLayout.BYTES;
    if (buffer.byteLength !== slotBytes + this.slots * KeyedSlotLayout.BYTES) throw new TypeError('descriptor.buffer has the wrong size for its table');
    this.slotI32 = slotBytes / 4;
    this.slotI64 = slotBytes / 8;
    this.interval = params.intervalUs;
    this.tolerance = params.intervalUs * params.burst;
    this.overflowInterval = params.overflowIntervalNs;
    this.overflowTolerance = params.overflowIntervalNs * BigInt(params.overflowBurst);
    this.maxNowUs = ABANDONED - 2 - this.tolerance;
  }

  /**
   * Takes `n` tokens of the key hashed to (`hi`, `lo`) with home slot `home` at `now`, from its
   * slot (inserting the key if it has none) or, when its window is full of active keys, from the
   * overflow bucket. The one atomic step that admits a call.
   */
  take(hi: number, lo: number, home: number, now: Nanos, n: number): boolean {
    this.setNow(now);
    const cost = n * this.interval;
    for (;;) {
      const r = this.attempt(hi, lo, home, cost);
      if (r === ADMIT) {
        Atomics.add(this.i64, this.rowI64 + KeyedRowLayout.I64.ADMITTED, 1n);
        return true;
      }
      if (r === REFUSE) return false;
      if (r === FULL) {
        Atomics.add(this.i64, this.rowI64 + KeyedRowLayout.I64.TABLE_FULL, 1n);
        return this.takeOverflow(now, n);
      }
    }
  }

  /**
   * Earliest time (ns, never before `now`) a call of `n` for the key could be admitted behind
   * `ahead` tokens queued before it, judging by the shared state now: from its slot, from a full
   * bucket if it would get a free or idle slot, else from the overflow bucket. A bucket whose TAT
   * has passed is full now, so the tokens count from now, not from that TAT: calls still waiting
   * after a late wake-up take tokens from now on, and the estimate must wait behind them.
   */
  readyAt(hi: number, lo: number, home: number, now: Nanos, n: number, ahead: number): Nanos {
    this.setNow(now);
    const i32 = this.i32;
    const debtUs = (ahead + n) * this.interval - this.tolerance;
    let free = false;
    let s = home;
    for (let k = 0; k < this.probeWindow; k++) {
      const st = Atomics.load(this.i64, this.stateIndex(s));
      if (st === 0n) {
        free = true;
        break;
      }
      const tat = Number(st & TAT_MASK);
      const b = this.hashIndex(s);
      if (tat < ABANDONED && Atomics.load(i32, b + KeyedSlotLayout.I32.HASH_LO) === lo && Atomics.load(i32, b + KeyedSlotLayout.I32.HASH_HI) === hi) {
        if (tat > this.us) {
          const readyUs = tat + debtUs;
          return readyUs <= this.us ? now : this.epoch + BigInt(readyUs) * 1000n;
        }
        free = true; // its bucket is idle: full now
        break;
      }
      if (tat === ABANDONED || tat <= this.us) free = true;
      s = s + 1 === this.slots ? 0 : s + 1;
    }
    // The key's bucket is idle, or it would get a fresh one: full now.
    if (free) return debtUs <= 0 ? now : now + BigInt(debtUs) * 1000n;
    const overflowTat = Atomics.load(this.i64, KeyedTableLayout.I64.OVERFLOW_TAT);
    const ready = gcraReadyAt(overflowTat > now ? overflowTat : now, ahead + n, this.overflowInterval, this.overflowTolerance);
    return ready > now ? ready : now;
  }

  /** Keys holding a slot, and those of them whose bucket is not full at `now`. */
  countKeys(now: Nanos): KeyCounts {
    this.setNow(now);
    let inUse = 0;
    let active = 0;
    for (let s = 0; s < this.slots; s++) {
      const st = Atomics.load(this.i64, this.stateIndex(s));
      const tat = Number(st & TAT_MASK);
      if (st === 0n || tat >= ABANDONED) continue;
      inUse++;
      if (tat > this.us) active++;
    }
    return { inUse, active };
  }

  /** One pass over the window: admit in the key's slot, or insert it, or report the window full. */
  private attempt(hi: number, lo: number, home: number, cost: number): number {
    const i32 = this.i32;
    let candidate = -1;
    let candidateState = 0n;
    let s = home;
    for (let k = 0; k < this.probeWindow; k++) {
      const b = this.hashIndex(s);
      if (Atomics.load(i32, b + KeyedSlotLayout.I32.HASH_LO) === lo && Atomics.load(i32, b + KeyedSlotLayout.I32.HASH_HI) === hi) {
        const r = this.admitInSlot(s, hi, lo, cost);
        if (r !== MOVED) return r;
      }
      if (candidate < 0) {
        const st = Atomics.load(this.i64, this.stateIndex(s));
        if (st === 0n) {
          // Never claimed: no key was ever placed after it in this window (keys go to the first
          // usable slot, and a claimed slot is never empty again), so the search ends here.
          candidate = s;
          break;
        }
        const tat = Number(st & TAT_MASK);
        if (tat === ABANDONED || tat <= this.us) {
          candidate = s;
          candidateState = st;
        }
      } else if (
        Atomics.load(i32, b + KeyedSlotLayout.I32.HASH_LO) === 0 &&
        Atomics.load(i32, b + KeyedSlotLayout.I32.HASH_HI) === 0 &&
        Atomics.load(this.i64, this.stateIndex(s)) === 0n
      ) {
        break;
      }
      s = s + 1 === this.slots ? 0 : s + 1;
    }
    return candidate < 0 ? FULL : this.claim(candidate, candidateState, hi, lo, home, cost);
  }

  /** GCRA on slot `s` if it holds the key: ADMIT, REFUSE, or MOVED when it does not (any more). */
  private admitInSlot(s: number, hi: number, lo: number, cost: number): number {
    const i64 = this.i64;
    const index = this.stateIndex(s);
    const b = this.hashIndex(s);
    let st = Atomics.load(i64, index);
    for (;;) {
      const tat = Number(st & TAT_MASK);
      if (tat >= ABANDONED || Atomics.load(this.i32, b + KeyedSlotLayout.I32.HASH_LO) !== lo || Atomics.load(this.i32, b + KeyedSlotLayout.I32.HASH_HI) !== hi)
        return MOVED;
      let next: number;
      if (tat > this.us) {
        // TAT in the future: admit iff TAT·1000 + cost·1000 − (us·1000 + frac) ≤ tolerance·1000,
        // computed on the (small) differences so every number stays an exact integer.
        if ((tat - this.us + cost - this.tolerance) * 1000 > this.frac) {
          const again = Atomics.load(i64, index);
          if (again === st) return REFUSE;
          st = again;
          continue;
        }
        next = tat + cost;
      } else {
        // Full bucket: the first token counts from now, rounded up to the next whole µs.
        next = this.us + (this.frac > 0 ? 1 : 0) + cost;
      }
      const seen = Atomics.compareExchange(i64, index, st, st + BigInt(next - tat));
      if (seen === st) return ADMIT;
      st = seen;
    }
  }

  /**
   * Claims slot `s` (read as `state`: empty, abandoned or idle) for the key, removes duplicates,
   * then publishes the key's fresh bucket with its first admission in it.
   */
  private claim(s: number, state: bigint, hi: number, lo: number, home: number, cost: number): number {
    const i64 = this.i64;
    const index = this.stateIndex(s);
    const oldTat = Number(state & TAT_MASK);
    const reclaiming = state !== 0n && oldTat !== ABANDONED;
    if (reclaiming) this.raiseWatermark(oldTat);
    const claimed = BigInt.asIntN(64, (state & ~TAT_MASK) + VERSION_ONE) + CLAIMING_BIG;
    if (Atomics.compareExchange(i64, index, state, claimed) !== state) return RETRY;
    const b = this.hashIndex(s);
    Atomics.store(this.i32, b + KeyedSlotLayout.I32.HASH_LO, lo);
    Atomics.store(this.i32, b + KeyedSlotLayout.I32.HASH_HI, hi);
    if (!this.soleClaim(s, hi, lo, home)) {
      Atomics.compareExchange(i64, index, claimed, claimed - CLAIMING_BIG + ABANDONED_BIG);
      return RETRY;
    }
    const fresh = Number(Atomics.load(i64, KeyedTableLayout.I64.WATERMARK));
    let next: number;
    let admitted = true;
    if (fresh > this.us) {
      admitted = (fresh - this.us + cost - this.tolerance) * 1000 <= this.frac;
      next = admitted ? fresh + cost : fresh;
    } else {
      next = this.us + (this.frac > 0 ? 1 : 0) + cost;
    }
    // Fails only if a competing inserter of the same key abandoned this claim: retry, and find its slot.
    if (Atomics.compareExchange(i64, index, claimed, claimed - CLAIMING_BIG + BigInt(next)) !== claimed) return RETRY;
    Atomics.add(i64, this.rowI64 + KeyedRowLayout.I64.INSERTED, 1n);
    if (reclaiming) Atomics.add(i64, this.rowI64 + KeyedRowLayout.I64.RECLAIMED, 1n);
    return admitted ? ADMIT : REFUSE;
  }

  /**
   * After claiming slot `mine` and storing the key's hash: false if another slot of the window
   * holds the key or an earlier claim of it (this claim must go), true once every later claim of
   * it has been abandoned.
   */
  private soleClaim(mine: number, hi: number, lo: number, home: number): boolean {
    const i64 = this.i64;
    const i32 = this.i32;
    let s = home;
    for (let k = 0; k < this.probeWindow; k++, s = s + 1 === this.slots ? 0 : s + 1) {
      if (s === mine) continue;
      const index = this.stateIndex(s);
      const b = this.hashIndex(s);
      for (;;) {
        const st = Atomics.load(i64, index);
        const tat = Number(st & TAT_MASK);
        if (
          st === 0n ||
          tat === ABANDONED ||
          Atomics.load(i32, b + KeyedSlotLayout.I32.HASH_LO) !== lo ||
          Atomics.load(i32, b + KeyedSlotLayout.I32.HASH_HI) !== hi
        )
          break;
        if (tat !== CLAIMING || s < mine) return false;
        if (Atomics.compareExchange(i64, index, st, st - CLAIMING_BIG + ABANDONED_BIG) === st) break;
      }
    }
    return true;
  }

  /** WATERMARK ← max(WATERMARK, tat). */
  private raiseWatermark(tat: number): void {
    const target = BigInt(tat);
    for (let w = Atomics.load(this.i64, KeyedTableLayout.I64.WATERMARK); w < target;) {
      const seen = Atomics.compareExchange(this.i64, KeyedTableLayout.I64.WATERMARK, w, target);
      if (seen === w) return;
      w = seen;
    }
  }

  /** The overflow bucket: GCRA on one word, in ns. */
  private takeOverflow(now: Nanos, n: number): boolean {
    const i64 = this.i64;
    const cost = n === 1 ? this.overflowInterval : this.overflowInterval * BigInt(n);
    if (!gcraTake(i64, KeyedTableLayout.I64.OVERFLOW_TAT, now, cost, this.overflowTolerance)) return false;
    Atomics.add(i64, this.rowI64 + KeyedRowLayout.I64.ADMITTED, 1n);
    Atomics.add(i64, this.rowI64 + KeyedRowLayout.I64.OVERFLOW_ADMITTED, 1n);
    return true;
  }

  /**
   * Splits `now` into whole µs since the epoch and the ns beyond.
   * @throws RangeError for a time before the table existed or past its 48-bit clock (8.9 years).
   */
  private setNow(now: Nanos): void {
    const rel = now - this.epoch;
    const ns = Number(rel);
    let us: number;
    let frac: number;
    if (ns >= 0 && ns <= Number.MAX_SAFE_INTEGER) {
      us = Math.floor(ns / 1000);
      frac = ns - us * 1000;
      if (frac < 0) {
        us--;
        frac += 1000;
      }
    } else {
      if (rel < 0n) throw new RangeError(`now (${now} ns) is before the table was created (${this.epoch} ns)`);
      us = Number(rel / 1000n);
      frac = Number(rel % 1000n);
    }
    if (us > this.maxNowUs) throw new RangeError('the keyed table has outlived its 48-bit µs clock (8.9 years less one bucket span): create a new one');
    this.us = us;
    this.frac = frac;
  }

  /**
   * Claims a free row of the thread table for this instance (CAS from 0).
   * @throws RangeError when every row is taken (raise `maxThreads`).
   */
  claimRow(threadId: number): number {
    for (let r = 0; r < this.rows; r++) {
      if (Atomics.compareExchange(this.i32, this.rowI32(r) + KeyedRowLayout.I32.OWNER, 0, threadId + 1) === 0) {
        this.row = r;
        this.rowI64 = TABLE_I64 + r * ROW_I64;
        return r;
      }
    }
    throw new RangeError(`maxThreads (${this.rows}) exhausted: more threads use this KeyedTokenBucket than its thread table holds`);
  }

  /** Frees row `r`: its counters move to the header, its queued calls leave the total. */
  freeRow(r: number): number {
    const base64 = TABLE_I64 + r * ROW_I64;
    for (const [field, word] of FOLD) {
      const v = Atomics.exchange(this.i64, base64 + field, 0n);
      if (v) Atomics.add(this.i64, word, v);
    }
    const queued = Atomics.exchange(this.i32, this.rowI32(r) + KeyedRowLayout.I32.QUEUED_CALLS, 0);
    if (queued) Atomics.sub(this.i32, KeyedTableLayout.I32.QUEUED_CALLS, queued);
    Atomics.store(this.i32, this.rowI32(r) + KeyedRowLayout.I32.OWNER, 0);
    return queued;
  }

  /** Frees every row of a dead thread; returns the calls it had waiting. */
  reclaimThread(deadThreadId: number): number {
    let queued = 0;
    for (let r = 0; r < this.rows; r++) {
      if (Atomics.load(this.i32, this.rowI32(r) + KeyedRowLayout.I32.OWNER) === deadThreadId + 1) queued += this.freeRow(r);
    }
    return queued;
  }

  /** A call of this thread starts waiting. */
  addQueued(): void {
    Atomics.add(this.i32, KeyedTableLayout.I32.QUEUED_CALLS, 1);
    Atomics.add(this.i32, this.rowI32(this.row) + KeyedRowLayout.I32.QUEUED_CALLS, 1);
  }

  /** A call of this thread stops waiting. */
  removeQueued(): void {
    Atomics.sub(this.i32, this.rowI32(this.row) + KeyedRowLayout.I32.QUEUED_CALLS, 1);
    Atomics.sub(this.i32, KeyedTableLayout.I32.QUEUED_CALLS, 1);
  }

  /** Calls waiting over all threads. */
  queuedCalls(): number {
    return Atomics.load(this.i32, KeyedTableLayout.I32.QUEUED_CALLS);
  }

  /** Adds `v` to header counter `word` (one of {@link KeyedTableLayout}'s I64 counters). */
  count(word: number, v: bigint): void {
    Atomics.add(this.i64, word, v);
  }

  /** Header counter `word` plus, for the per-thread ones, every row's share. */
  total(word: number): number {
    let sum = Atomics.load(this.i64, word);
    const fold = FOLD.find(([, w]) => w === word);
    if (fold !== undefined) {
      for (let r = 0; r < this.rows; r++) sum += Atomics.load(this.i64, TABLE_I64 + r * ROW_I64 + fold[0]);
    }
    return Number(sum);
  }

  private rowI32(r: number): number {
    return TABLE_I32 + r * ROW_I32;
  }

  /** Int32 index of slot `s`'s first word (its hash: {@link KeyedSlotLayout}'s I32 fields follow). */
  private hashIndex(s: number): number {
    return this.slotI32 + SLOT_I32 * s;
  }

  /** BigInt64 index of slot `s`'s STATE word. */
  private stateIndex(s: number): number {
    return this.slotI64 + SLOT_I64 * s + KeyedSlotLayout.I64.STATE;
  }
}
