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
 * 320  i32 TAG            version of the per-key settings (setLimit); its record is TAG & 1
 * 324  i32 WRITER         threadId + 1 of the thread changing the settings (limit-change.ts)
 * 328  i32 LIMIT_SIGNAL   bumped and notified after every change of the settings
 * 336  SETTINGS: two records of 40 bytes ({@link KeyedSettingsLayout}): INTERVAL_US, BURST, RATE
 *      (f64), PERIOD_MS (f64), FRESH_US (µs since EPOCH a new key's bucket starts at, at least)
 *      (own lines, written only by a change: every admission reads TAG)
 * 448  thread table: ROWS rows of 64 bytes (one cache line each)
 *      +0 i32 OWNER threadId + 1 (0: free)   +4 i32 QUEUED_CALLS this row's share
 *      +8 i64 ADMITTED  +16 OVERFLOW_ADMITTED  +24 INSERTED  +32 RECLAIMED  +40 TABLE_FULL
 *      (counted per thread on its own line, so admissions by different threads never contend
 *      on a counter; a snapshot sums the rows)
 * 448 + 64·ROWS  slots: SLOTS × 16 bytes
 *      +0 i32 HASH_LO, +4 i32 HASH_HI   the key's 64-bit hash; 0 until the slot is first claimed
 *      +8 i64 STATE     [15-bit version | 1-bit settings parity | 48-bit TAT in µs since EPOCH]
 * ```
 *
 * So a table of `slots` keys takes 16·slots + 64·maxThreads + 448 bytes, fixed at
 * construction (4096 keys, 64 threads: 70.0 KiB), however many distinct keys are ever seen.
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
 * the wrong key. ABA would need 32 768 reclaims of one slot between an admitter's read and its CAS.
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
 * one slot CLAIMING until the next change of the settings abandons it (below); it never blocks
 * another key.
 *
 * **Changing the per-key limit** (`setLimit`) keeps every key's bucket: each slot's TAT is
 * converted to the new settings by the token bucket's rule (gcraConvertDebt in gcra.ts: a raised
 * rate keeps the tokens a bucket is missing, a lowered one the tokens it holds), so around the
 * change every interval of a key admits at most the larger of its two bounds. The settings live in
 * two records in the header; STATE's parity bit says which one its TAT was computed under. A change
 * (holding WRITER, limit-change.ts) writes the record that is not current, bumps TAG, then walks
 * every slot and converts, by CAS at the walker's clock, each one still of the old parity (bumping
 * its version; a claim in progress is abandoned instead, its owner retries under the new settings).
 * An admitter that meets an old-parity slot converts it itself, with the same CAS, before its
 * step, so every slot switches settings exactly once, at its own instant of conversion: before it,
 * its admissions are the old GCRA, after it the new, which is what the proof in gcra.ts takes.
 * That instant is a clock reading taken after STATE was read (by the walker and by an admitter
 * alike), so no admission the old state holds is later than it: a call's own `now`, read before
 * its thread may have been descheduled, could be, and a raise converted at an earlier instant
 * would forget some of the tokens missing.
 * WRITER is released only when the walk is done, so at most two settings (TAG's and the one
 * before) are ever in slots, and a parity bit names them.
 *
 * An admitter reads STATE, then TAG (re-reading the two records when TAG moved), so the parity it
 * sees is TAG's or the previous one, never one two changes old; its CAS succeeds only if STATE did
 * not move meanwhile, and a record is rewritten only after every slot has left its parity, so the
 * settings it used were those of the word it replaced. A key without a slot (never seen, or
 * reclaimed while full) counts as a full bucket at the change: FRESH_US is that bucket converted,
 * where a new key's bucket starts (0 unless the change lowered the rate and raised the burst).
 * Slots of the previous parity are not reclaimed before their conversion.
 */
import type { Clock, Nanos } from '../clock.js';
import { gcraConvertDebt, gcraReadyAt, gcraTake } from '../limiters/gcra.js';
import { changeLimit, releaseDeadWriter, type ChangeWords } from '../limiters/limit-change.js';
import { defineLayout } from '../shared/layout.js';
import type { ResolvedKeyedTokenBucketSetting } from './keyed-options.js';

const MAGIC = 0x314b5154; // 'TQK1'

/** The table's header: its shape, the overflow bucket, the watermark, the counters and the per-key settings. */
export const KeyedTableLayout = defineLayout('keyed table header', {
  BYTES: 448,
  I32: { MAGIC: 0, SLOTS: 1, PROBE: 2, ROWS: 3, QUEUED_CALLS: 4, SEED_HI: 5, SEED_LO: 6, TAG: 80, WRITER: 81, LIMIT_SIGNAL: 82 },
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
    SETTINGS: 42,
  },
  SPANS: { SETTINGS: 10 },
});

/** One of the two per-key settings records at {@link KeyedTableLayout}'s SETTINGS; RATE and PERIOD_MS are Float64. */
export const KeyedSettingsLayout = defineLayout('keyed table settings record', {
  BYTES: 40,
  I32: {},
  I64: { INTERVAL_US: 0, BURST: 1, RATE: 2, PERIOD_MS: 3, FRESH_US: 4 },
});
const SETTINGS_WORDS = KeyedSettingsLayout.BYTES / 8;
const R = KeyedSettingsLayout.I64;

/** Where the table's change words are (limit-change.ts). */
const CHANGE_WORDS: ChangeWords = { writer: KeyedTableLayout.I32.WRITER, signal: KeyedTableLayout.I32.LIMIT_SIGNAL };

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
/** The settings parity bit of STATE, and the TAT below it. */
const PARITY = 2 ** 48;
const PARITY_TAT_MASK = (1n << 49n) - 1n;
const VERSION_ONE = 1n << 49n;
/** STATE's version bits, as a signed 64-bit mask. */
const VERSION_MASK = -(1n << 49n);
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

/**
 * The overflow bucket's parameters, identical in every thread (a key's are in the shared records),
 * and the thread's clock.
 */
export interface TableParams {
  /** Read when this thread converts a key's bucket (see {@link KeyedTable}'s top comment). */
  clock: Clock;
  /** ns between two overflow tokens. */
  overflowIntervalNs: bigint;
  /** Size of the overflow bucket. */
  overflowBurst: number;
}

/** Writes settings record `record` of the table in `buffer`. */
function writeSettings(buffer: SharedArrayBuffer, record: number, s: ResolvedKeyedTokenBucketSetting, freshUs: number): void {
  const i64 = new BigInt64Array(buffer);
  const f64 = new Float64Array(buffer);
  const at = KeyedTableLayout.I64.SETTINGS + record * SETTINGS_WORDS;
  Atomics.store(i64, at + R.INTERVAL_US, BigInt(s.intervalUs));
  Atomics.store(i64, at + R.BURST, BigInt(s.burst));
  f64[at + R.RATE] = s.rate;
  f64[at + R.PERIOD_MS] = s.periodMs;
  Atomics.store(i64, at + R.FRESH_US, BigInt(freshUs));
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
  private readonly f64: Float64Array;
  private readonly clock: Clock;
  private readonly overflowInterval: bigint;
  private readonly overflowTolerance: bigint;
  /** The settings this thread last read: of TAG, and of the TAG before (see the top of this file). */
  private tag = -1;
  /** STATE's parity bit of TAG's settings: 0 or {@link PARITY}. */
  private parity = 0;
  private interval = 0;
  private burst = 0;
  private tolerance = 0;
  private fresh = 0;
  private prevInterval = 0;
  private prevBurst = 0;
  /** Latest `now` (µs) whose admissions keep every TAT below the sentinels. */
  private maxNowUs = 0;
  private row = -1;
  private rowI64 = 0;
  /** The time of the call in progress: whole µs since the epoch, and the ns beyond them. */
  private us = 0;
  private frac = 0;
  private now: Nanos = 0n;

  /** Allocates a zeroed table whose keys have the limit `setting`. */
  static allocate(slots: number, probeWindow: number, rows: number, epoch: Nanos, setting: ResolvedKeyedTokenBucketSetting): SharedArrayBuffer {
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
    writeSettings(buffer, 0, setting, 0);
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
    this.f64 = new Float64Array(buffer);
    this.clock = params.clock;
    this.overflowInterval = params.overflowIntervalNs;
    this.overflowTolerance = params.overflowIntervalNs * BigInt(params.overflowBurst);
    this.sync();
  }

  /** The per-key limit now (the latest change in any thread). */
  setting(): ResolvedKeyedTokenBucketSetting {
    this.sync();
    const record = this.recordIndex(this.tag);
    return {
      intervalUs: this.interval,
      burst: this.burst,
      rate: this.f64[record + R.RATE]!,
      periodMs: this.f64[record + R.PERIOD_MS]!,
    };
  }

  /**
   * Changes every key's limit to `setting` (top of this file), converting each key's bucket; a
   * change in progress in another thread is waited for. Wakes the {@link watchChanges} of every
   * thread once done.
   */
  change(setting: ResolvedKeyedTokenBucketSetting, clock: Clock): void {
    changeLimit(
      { i32: this.i32 },
      () => {
        this.sync();
        this.setNow(clock.now());
        const fresh = this.convertTat(this.fresh, this.interval, this.burst, setting.intervalUs, setting.burst);
        const tag = (this.tag + 1) | 0;
        writeSettings(this.buffer, tag & 1, setting, fresh);
        Atomics.store(this.i32, KeyedTableLayout.I32.TAG, tag);
        this.sync();
        for (let s = 0; s < this.slots; s++) this.convertForChange(s, clock);
      },
      CHANGE_WORDS,
    );
  }

  /** Int32 index of the word bumped after every change, for a {@link LimitWatch}. */
  get changeSignal(): number {
    return CHANGE_WORDS.signal;
  }

  /** The Int32 view of the table (for a {@link LimitWatch}). */
  get words(): Int32Array {
    return this.i32;
  }

  /** Reads the settings of TAG and of the TAG before it if TAG moved since this thread last did. */
  private sync(): void {
    const tag = Atomics.load(this.i32, KeyedTableLayout.I32.TAG);
    if (tag === this.tag) return;
    const i64 = this.i64;
    const cur = this.recordIndex(tag);
    const prev = this.recordIndex(tag - 1);
    this.interval = Number(Atomics.load(i64, cur + R.INTERVAL_US));
    this.burst = Number(Atomics.load(i64, cur + R.BURST));
    this.tolerance = this.interval * this.burst;
    this.fresh = Number(Atomics.load(i64, cur + R.FRESH_US));
    // Before the first change there is no previous record: no slot has its parity.
    this.prevInterval = Number(Atomics.load(i64, prev + R.INTERVAL_US));
    this.prevBurst = Number(Atomics.load(i64, prev + R.BURST));
    this.maxNowUs = ABANDONED - 2 - Math.max(this.tolerance, this.prevInterval * this.prevBurst);
    this.parity = (tag & 1) === 0 ? 0 : PARITY;
    this.tag = tag;
  }

  /** BigInt64 index of the settings record of `tag`. */
  private recordIndex(tag: number): number {
    return KeyedTableLayout.I64.SETTINGS + (tag & 1) * SETTINGS_WORDS;
  }

  /**
   * A TAT (µs since the epoch) of settings (`fromUs`, `fromBurst`) converted, at the time of the
   * call in progress ({@link setNow}), to settings (`toUs`, `toBurst`): the debt TAT − now goes
   * through gcraConvertDebt (gcra.ts), rounded up to a whole µs; a bucket left full keeps its TAT
   * (or now, if that is earlier), so a full bucket stays as reclaimable as it was.
   */
  private convertTat(tat: number, fromUs: number, fromBurst: number, toUs: number, toBurst: number): number {
    const nowNs = BigInt(this.us) * 1000n + BigInt(this.frac);
    const tatNs = BigInt(tat) * 1000n;
    const debt = gcraConvertDebt(tatNs > nowNs ? tatNs - nowNs : 0n, BigInt(fromUs) * 1000n, fromBurst, BigInt(toUs) * 1000n, toBurst);
    if (debt === 0n) return Math.min(tat, this.us);
    return Number((nowNs + debt + 999n) / 1000n);
  }

  /**
   * The STATE replacing `st` (TAT `tat`, of the previous settings) once converted to TAG's, with
   * its version bumped.
   */
  private converted(st: bigint, tat: number): bigint {
    const next = this.convertTat(tat, this.prevInterval, this.prevBurst, this.interval, this.burst);
    return BigInt.asIntN(64, (st & VERSION_MASK) + VERSION_ONE) + BigInt(this.parity + next);
  }

  /**
   * An admitter's conversion of slot STATE `st` (TAT `tat`, of the previous settings): at a clock
   * reading taken now, after `st` was read, so not before the instant of any admission `st` holds
   * (the call's own `now` may be older: its thread may have been descheduled since). Returns STATE
   * as it is after the CAS.
   */
  private convertSlot(index: number, st: bigint, tat: number): bigint {
    this.refreshNow();
    const next = this.converted(st, tat);
    const seen = Atomics.compareExchange(this.i64, index, st, next);
    return seen === st ? next : seen;
  }

  /**
   * Judges the call in progress at a clock reading taken now, if later than its `now`: once its
   * key's bucket has been converted, so that no admission under the new settings is judged at an
   * instant before the conversion.
   */
  private refreshNow(): void {
    const t = this.clock.now();
    if (t > this.now) this.setNow(t);
  }

  /**
   * The change's walk over slot `s` (holding WRITER, TAG already moved): converts its bucket if it
   * still has the previous parity, or abandons the claim in progress in it.
   */
  private convertForChange(s: number, clock: Clock): void {
    const index = this.stateIndex(s);
    let st = Atomics.load(this.i64, index);
    for (;;) {
      if (st === 0n) return;
      const low = Number(st & PARITY_TAT_MASK);
      const parity = low >= PARITY ? PARITY : 0;
      const tat = low - parity;
      if (parity === this.parity || tat === ABANDONED) return;
      let next: bigint;
      if (tat === CLAIMING) {
        next = st - CLAIMING_BIG + ABANDONED_BIG;
      } else {
        this.setNow(clock.now());
        next = this.converted(st, tat);
      }
      const seen = Atomics.compareExchange(this.i64, index, st, next);
      if (seen === st) return;
      st = seen;
    }
  }

  /**
   * Takes `n` tokens of the key hashed to (`hi`, `lo`) with home slot `home` at `now`, from its
   * slot (inserting the key if it has none) or, when its window is full of active keys, from the
   * overflow bucket. The one atomic step that admits a call.
   */
  take(hi: number, lo: number, home: number, now: Nanos, n: number): boolean {
    this.setNow(now);
    for (;;) {
      const r = this.attempt(hi, lo, home, n);
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
    this.sync();
    this.setNow(now);
    const i32 = this.i32;
    let free = false;
    let s = home;
    for (let k = 0; k < this.probeWindow; k++) {
      const st = Atomics.load(this.i64, this.stateIndex(s));
      if (st === 0n) {
        free = true;
        break;
      }
      const low = Number(st & PARITY_TAT_MASK);
      const parity = low >= PARITY ? PARITY : 0;
      let tat = low - parity;
      const b = this.hashIndex(s);
      if (tat < ABANDONED && Atomics.load(i32, b + KeyedSlotLayout.I32.HASH_LO) === lo && Atomics.load(i32, b + KeyedSlotLayout.I32.HASH_HI) === hi) {
        // A bucket not converted yet: as it will be once converted.
        if (parity !== this.parity) tat = this.convertTat(tat, this.prevInterval, this.prevBurst, this.interval, this.burst);
        return this.readyFrom(tat, now, n + ahead);
      }
      if (tat === ABANDONED || (tat <= this.us && parity === this.parity)) free = true;
      s = s + 1 === this.slots ? 0 : s + 1;
    }
    // The key would get a fresh bucket: full now, or as a change left it (FRESH_US).
    if (free) return this.readyFrom(this.fresh, now, n + ahead);
    const overflowTat = Atomics.load(this.i64, KeyedTableLayout.I64.OVERFLOW_TAT);
    const ready = gcraReadyAt(overflowTat > now ? overflowTat : now, ahead + n, this.overflowInterval, this.overflowTolerance);
    return ready > now ? ready : now;
  }

  /** When `tokens` pass the test against a key's TAT (µs since the epoch): `now` if at once. */
  private readyFrom(tat: number, now: Nanos, tokens: number): Nanos {
    const debtUs = tokens * this.interval - this.tolerance;
    if (tat > this.us) {
      const readyUs = tat + debtUs;
      return readyUs <= this.us ? now : this.epoch + BigInt(readyUs) * 1000n;
    }
    // A bucket whose TAT has passed is full now: the tokens count from now, not from that TAT.
    return debtUs <= 0 ? now : now + BigInt(debtUs) * 1000n;
  }

  /** Keys holding a slot, and those of them whose bucket is not full at `now`. */
  countKeys(now: Nanos): KeyCounts {
    this.sync();
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
  private attempt(hi: number, lo: number, home: number, n: number): number {
    const i32 = this.i32;
    let candidate = -1;
    let candidateState = 0n;
    let s = home;
    for (let k = 0; k < this.probeWindow; k++) {
      const b = this.hashIndex(s);
      if (Atomics.load(i32, b + KeyedSlotLayout.I32.HASH_LO) === lo && Atomics.load(i32, b + KeyedSlotLayout.I32.HASH_HI) === hi) {
        const r = this.admitInSlot(s, hi, lo, n);
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
        const low = Number(st & PARITY_TAT_MASK);
        const parity = low >= PARITY ? PARITY : 0;
        const tat = low - parity;
        // A full bucket of the previous settings is converted (by its key or the change's walk) before it can go.
        if (tat === ABANDONED || (tat <= this.us && parity === this.parity)) {
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
    return candidate < 0 ? FULL : this.claim(candidate, candidateState, hi, lo, home, n);
  }

  /**
   * GCRA on slot `s` if it holds the key: ADMIT, REFUSE, or MOVED when it does not (any more). A
   * bucket of the previous settings is converted first.
   */
  private admitInSlot(s: number, hi: number, lo: number, n: number): number {
    const i64 = this.i64;
    const index = this.stateIndex(s);
    const b = this.hashIndex(s);
    let st = Atomics.load(i64, index);
    let judged = -1; // the parity of the bucket the call is judged against
    for (;;) {
      const low = Number(st & PARITY_TAT_MASK);
      const parity = low >= PARITY ? PARITY : 0;
      const tat = low - parity;
      if (tat >= ABANDONED || Atomics.load(this.i32, b + KeyedSlotLayout.I32.HASH_LO) !== lo || Atomics.load(this.i32, b + KeyedSlotLayout.I32.HASH_HI) !== hi)
        return MOVED;
      // TAG read after STATE: the word's parity is TAG's or the one before (top of this file).
      this.sync();
      if (parity !== this.parity) {
        st = this.convertSlot(index, st, tat);
        judged = this.parity;
        continue;
      }
      // Converted by another thread while this call was judged against the old bucket.
      if (parity !== judged) {
        if (judged >= 0) this.refreshNow();
        judged = parity;
      }
      const cost = n === 1 ? this.interval : n * this.interval;
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
  private claim(s: number, state: bigint, hi: number, lo: number, home: number, n: number): number {
    const i64 = this.i64;
    const index = this.stateIndex(s);
    const oldTat = Number(state & TAT_MASK);
    const reclaiming = state !== 0n && oldTat !== ABANDONED;
    // The candidate was judged by this thread's settings: they must be TAG's (a full bucket of the
    // previous settings is not reclaimed before its conversion).
    const tag = this.tag;
    if (Atomics.load(this.i32, KeyedTableLayout.I32.TAG) !== tag) {
      this.sync();
      return RETRY;
    }
    if (reclaiming) this.raiseWatermark(oldTat);
    const claimed = BigInt.asIntN(64, (state & VERSION_MASK) + VERSION_ONE) + BigInt(this.parity) + CLAIMING_BIG;
    if (Atomics.compareExchange(i64, index, state, claimed) !== state) return RETRY;
    // The claim carries TAG's parity: if TAG has moved, the change's walk may have passed this
    // slot already, and a bucket of older settings must not be left behind it.
    if (Atomics.load(this.i32, KeyedTableLayout.I32.TAG) !== tag) {
      Atomics.compareExchange(i64, index, claimed, claimed - CLAIMING_BIG + ABANDONED_BIG);
      this.sync();
      return RETRY;
    }
    const b = this.hashIndex(s);
    Atomics.store(this.i32, b + KeyedSlotLayout.I32.HASH_LO, lo);
    Atomics.store(this.i32, b + KeyedSlotLayout.I32.HASH_HI, hi);
    if (!this.soleClaim(s, hi, lo, home)) {
      Atomics.compareExchange(i64, index, claimed, claimed - CLAIMING_BIG + ABANDONED_BIG);
      return RETRY;
    }
    const watermark = Number(Atomics.load(i64, KeyedTableLayout.I64.WATERMARK));
    const fresh = watermark > this.fresh ? watermark : this.fresh;
    const cost = n * this.interval;
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
    this.now = now;
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
    releaseDeadWriter(this.i32, deadThreadId, CHANGE_WORDS);
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
