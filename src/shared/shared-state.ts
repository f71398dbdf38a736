/**
 * The shared memory behind one limiter, and the table of threads that use it.
 *
 * One SharedArrayBuffer per limiter; every thread that attaches maps the same bytes, so a limit is
 * one set of numbers for the whole process. All changes are single atomic operations or
 * compare-and-swap retry loops: no lock is ever held, so a thread that dies at any instruction
 * cannot leave the limiter wedged. What a dead thread can leave behind is its own bookkeeping
 * (calls it had queued, concurrency permits it held); that sits in its row of the thread table and
 * {@link SharedState.reclaimThread} gives it back.
 *
 * Layout (byte offsets; all words little-endian as the platform's typed arrays), as
 * {@link LimiterLayout} and {@link LimiterRowLayout} name it (conventions in `layout.ts`):
 *
 * ```
 *  0  i32 MAGIC          'TQL1', to reject a foreign buffer passed to attach()
 *  4  i32 KIND           1 token bucket, 2 fixed window, 3 concurrency, 4 adaptive concurrency
 *  8  i32 SLOT_COUNT     rows in the thread table
 * 12  i32 QUEUED_CALLS   calls waiting, summed over all threads
 * 16  i32 QUEUED_TOKENS  tokens those calls ask for, summed over all threads
 * 20  i32 AVAILABLE      concurrency permits free: LIMIT minus those held, negative while a lowered
 *                        limit is still exceeded by permits taken before (concurrency limits only)
 * 24  i32 TICKET         last waiting ticket handed out (concurrency limits only; wraps)
 * 28  i32 LIMIT          the concurrency limit now (concurrency limits only)
 * 32  i64 STATE          the algorithm's word: token bucket (tag, TAT), fixed window (window, tag, count)
 * 40  8 bytes unused
 * 48  i32 WRITER         threadId + 1 of the thread changing the limit's settings (setLimit), 0 when none
 * 52  i32 LIMIT_SIGNAL   bumped and notified after every change of the settings (setLimit)
 * 56  8 bytes unused
 * 64  i64 metrics, counted by every thread: ADMITTED, REFUSED_* by reason, WAITED (calls that
 *     waited), WAIT_NS_TOTAL, and WAIT_HISTOGRAM, WAIT_BUCKETS log2 buckets of milliseconds
 * 248 8 bytes unused
 * 256 PARAMS: two settings records of PARAMS_WORDS 64-bit words (rate limits: which one is current
 *     is told by the tag in STATE; token-bucket.ts and fixed-window.ts name their fields)
 * 352 32 bytes unused, so the thread table starts on a cache line
 * 384 thread table: SLOT_COUNT rows of 64 bytes (one cache line each), fields below
 * then, for kinds that have one, the algorithm's own region of ALGORITHM_REGION_BYTES (the adaptive
 *     concurrency limit's words: AdaptiveLayout, documented in adaptive-concurrency-limit.ts)
 * ```
 *
 * Thread table row (one per limiter instance that waits on or holds permits of the limiter, and
 * there is at most one instance per thread, see `attach`), byte offsets in the row:
 *
 * ```
 *  0 i32 OWNER         threadId + 1 of the owning thread, 0 when the row is free
 *  4 i32 QUEUED_CALLS  this row's share of the header's QUEUED_CALLS
 *  8 i32 QUEUED_TOKENS this row's share of the header's QUEUED_TOKENS
 * 12 i32 HELD          concurrency permits attributed to this row (handed to calls, or granted and not yet used)
 * 16 i32 GRANTS        permits granted to this row by another thread, not yet taken by the owner
 * 20 i32 HEAD_TICKET   ticket of the owner's oldest waiting call (0: none published)
 * 24 i32 HEAD_NEED     permits that call needs
 * 28 i32 SIGNAL        bumped and notified whenever GRANTS grows; the owner waits on it with waitAsync
 * 32 i64 ADMITTED      calls this thread admitted: a counter per thread, on the thread's own cache
 *                      line, so counting costs no cross-core traffic; snapshot() sums the rows
 *                      plus the header's ADMITTED (what freed rows had counted)
 * 40 padding to 64 bytes
 * ```
 */
import { threadId } from 'node:worker_threads';
import { defineLayout } from './layout.js';

/** Which algorithm a buffer holds. */
export type LimiterKind = 'token-bucket' | 'fixed-window' | 'concurrency' | 'adaptive-concurrency';

const KIND_CODES: Record<LimiterKind, number> = { 'token-bucket': 1, 'fixed-window': 2, concurrency: 3, 'adaptive-concurrency': 4 };

/** Bytes of the algorithm's own region after the thread table (one cache line per 64 bytes). */
export const ALGORITHM_REGION_BYTES = 256;
/** The kinds that have an algorithm region. */
const HAS_REGION: ReadonlySet<LimiterKind> = new Set(['adaptive-concurrency']);
const MAGIC = 0x314c5154; // 'TQL1'

/** Buckets of the wait histogram: ≤ 1, 2, 4, … 32 768 ms, then longer. */
export const WAIT_BUCKETS = 17;

/** 64-bit words of one settings record. */
export const PARAMS_WORDS = 6;

/**
 * The header of a limiter's buffer. The metrics are 64-bit counters: at millions of calls per
 * second a 32-bit one would wrap within the hour. WAIT_HISTOGRAM is WAIT_BUCKETS words: bucket k
 * counts waits ≤ 2^k ms (k = 0..WAIT_BUCKETS − 2), the last all longer.
 */
export const LimiterLayout = defineLayout('limiter header', {
  BYTES: 384,
  I32: { MAGIC: 0, KIND: 1, SLOT_COUNT: 2, QUEUED_CALLS: 3, QUEUED_TOKENS: 4, AVAILABLE: 5, TICKET: 6, LIMIT: 7, WRITER: 12, LIMIT_SIGNAL: 13 },
  I64: {
    STATE: 4,
    ADMITTED: 8,
    REFUSED_QUEUE_FULL: 9,
    REFUSED_TIMEOUT: 10,
    REFUSED_ABORTED: 11,
    WAITED: 12,
    WAIT_NS_TOTAL: 13,
    WAIT_HISTOGRAM: 14,
    PARAMS: 32,
  },
  SPANS: { WAIT_HISTOGRAM: WAIT_BUCKETS, PARAMS: 2 * PARAMS_WORDS },
});

/** BigInt64 (and Float64) index of field `field` of settings record `record` (0 or 1). */
export function paramsIndex(record: number, field: number): number {
  return LimiterLayout.I64.PARAMS + record * PARAMS_WORDS + field;
}

/** One row of a limiter's thread table (fields described at the top of this module). */
export const LimiterRowLayout = defineLayout('limiter thread-table row', {
  BYTES: 64,
  I32: { OWNER: 0, QUEUED_CALLS: 1, QUEUED_TOKENS: 2, HELD: 3, GRANTS: 4, HEAD_TICKET: 5, HEAD_NEED: 6, SIGNAL: 7 },
  I64: { ADMITTED: 4 },
});

/** Where the thread table starts and a row's stride, in each view's words. */
const TABLE_I32 = LimiterLayout.BYTES / 4;
const TABLE_I64 = LimiterLayout.BYTES / 8;
const ROW_I32 = LimiterRowLayout.BYTES / 4;
const ROW_I64 = LimiterRowLayout.BYTES / 8;

/** Bytes of a limiter's buffer: the header, the thread table, and the algorithm's region if it has one. */
function bufferBytes(kind: LimiterKind, slotCount: number): number {
  return LimiterLayout.BYTES + slotCount * LimiterRowLayout.BYTES + (HAS_REGION.has(kind) ? ALGORITHM_REGION_BYTES : 0);
}

/** What a thread's row held when it was reclaimed. */
export interface Reclaimed {
  /** Rows that belonged to the thread. */
  rows: number;
  /** Concurrency permits given back. */
  permits: number;
  /** Waiting calls removed from the queued counts. */
  queuedCalls: number;
}

/** Typed views over one limiter's SharedArrayBuffer, plus the thread-table operations. */
export class SharedState {
  /** The shared bytes; pass them to other threads through a descriptor. */
  readonly buffer: SharedArrayBuffer;
  /** Int32 view: header counters and the thread table. */
  readonly i32: Int32Array;
  /** BigInt64 view: the algorithm's 64-bit state words. */
  readonly i64: BigInt64Array;
  /** Float64 view: the fractional settings of the settings records (rate, periodMs). */
  readonly f64: Float64Array;
  /** Rows in the thread table. */
  readonly slotCount: number;
  /** Byte offset of the algorithm's own region (after the thread table; 64-byte aligned). */
  readonly regionByte: number;

  private constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.i32 = new Int32Array(buffer);
    this.i64 = new BigInt64Array(buffer);
    this.f64 = new Float64Array(buffer);
    this.slotCount = this.i32[LimiterLayout.I32.SLOT_COUNT]!;
    this.regionByte = LimiterLayout.BYTES + this.slotCount * LimiterRowLayout.BYTES;
  }

  /** Allocates zeroed state for a new limiter. */
  static create(kind: LimiterKind, slotCount: number): SharedState {
    const buffer = new SharedArrayBuffer(bufferBytes(kind, slotCount));
    const i32 = new Int32Array(buffer);
    i32[LimiterLayout.I32.MAGIC] = MAGIC;
    i32[LimiterLayout.I32.KIND] = KIND_CODES[kind];
    i32[LimiterLayout.I32.SLOT_COUNT] = slotCount;
    return new SharedState(buffer);
  }

  /** Wraps a buffer received from another thread, checking it holds a limiter of `kind`. */
  static from(buffer: unknown, kind: LimiterKind): SharedState {
    if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength < LimiterLayout.BYTES) {
      throw new TypeError('descriptor.buffer must be the SharedArrayBuffer of a limiter (from share())');
    }
    const i32 = new Int32Array(buffer);
    if (i32[LimiterLayout.I32.MAGIC] !== MAGIC || i32[LimiterLayout.I32.KIND] !== KIND_CODES[kind]) {
      throw new TypeError(`descriptor.buffer does not hold a ${kind} limiter`);
    }
    const expected = bufferBytes(kind, i32[LimiterLayout.I32.SLOT_COUNT]!);
    if (buffer.byteLength !== expected)
      throw new TypeError(`descriptor.buffer does not hold a ${kind} limiter (${buffer.byteLength} bytes, expected ${expected})`);
    return new SharedState(buffer);
  }

  /** BigInt64 index of the row's admitted counter. */
  admittedIndex(slot: number): number {
    return TABLE_I64 + slot * ROW_I64 + LimiterRowLayout.I64.ADMITTED;
  }

  /** Calls admitted over all threads, now and in rows since freed. */
  admitted(): bigint {
    let total = Atomics.load(this.i64, LimiterLayout.I64.ADMITTED);
    for (let slot = 0; slot < this.slotCount; slot++) total += Atomics.load(this.i64, this.admittedIndex(slot));
    return total;
  }

  /** Int32 index of field `field` (one of {@link LimiterRowLayout}'s I32) in row `slot`. */
  row(slot: number, field: number): number {
    return TABLE_I32 + slot * ROW_I32 + field;
  }

  /**
   * Claims a free row of the thread table for the calling thread (CAS from 0, so two threads can
   * never claim the same row).
   * @throws RangeError when every row is taken (raise `maxThreads`).
   */
  claimSlot(): number {
    for (let slot = 0; slot < this.slotCount; slot++) {
      if (Atomics.compareExchange(this.i32, this.row(slot, LimiterRowLayout.I32.OWNER), 0, threadId + 1) === 0) return slot;
    }
    throw new RangeError(`maxThreads (${this.slotCount}) exhausted: more threads use this limiter than its thread table holds`);
  }

  /** Frees a row whose owner holds and queues nothing (the owner's limiter instance was collected). */
  freeSlot(slot: number): void {
    this.drainRow(slot);
    Atomics.store(this.i32, this.row(slot, LimiterRowLayout.I32.OWNER), 0);
  }

  /**
   * Gives back everything the rows of a dead thread hold: its queued calls leave the queued counts
   * and its concurrency permits return to the pool. Call it when a worker exits (the threaded
   * server does); calling it for a live thread would free permits its calls still use.
   */
  reclaimThread(deadThreadId: number): Reclaimed {
    const result: Reclaimed = { rows: 0, permits: 0, queuedCalls: 0 };
    for (let slot = 0; slot < this.slotCount; slot++) {
      if (Atomics.load(this.i32, this.row(slot, LimiterRowLayout.I32.OWNER)) !== deadThreadId + 1) continue;
      const drained = this.drainRow(slot);
      result.rows++;
      result.permits += drained.permits;
      result.queuedCalls += drained.queuedCalls;
      Atomics.store(this.i32, this.row(slot, LimiterRowLayout.I32.OWNER), 0);
    }
    // A thread that died while changing the limit must not keep every later change waiting.
    const writer = LimiterLayout.I32.WRITER;
    if (Atomics.compareExchange(this.i32, writer, deadThreadId + 1, 0) === deadThreadId + 1) Atomics.notify(this.i32, writer);
    return result;
  }

  /** Moves a row's counts out of the shared totals and zeroes the row (its OWNER stays). */
  private drainRow(slot: number): { permits: number; queuedCalls: number } {
    const i32 = this.i32;
    // Withdraw the published head first, so no other thread starts granting to this row.
    Atomics.store(i32, this.row(slot, LimiterRowLayout.I32.HEAD_TICKET), 0);
    const permits = Atomics.exchange(i32, this.row(slot, LimiterRowLayout.I32.HELD), 0);
    Atomics.store(i32, this.row(slot, LimiterRowLayout.I32.GRANTS), 0);
    const queuedCalls = Atomics.exchange(i32, this.row(slot, LimiterRowLayout.I32.QUEUED_CALLS), 0);
    const queuedTokens = Atomics.exchange(i32, this.row(slot, LimiterRowLayout.I32.QUEUED_TOKENS), 0);
    const admitted = Atomics.exchange(this.i64, this.admittedIndex(slot), 0n);
    if (admitted) Atomics.add(this.i64, LimiterLayout.I64.ADMITTED, admitted);
    if (permits) Atomics.add(i32, LimiterLayout.I32.AVAILABLE, permits);
    if (queuedCalls) Atomics.sub(i32, LimiterLayout.I32.QUEUED_CALLS, queuedCalls);
    if (queuedTokens) Atomics.sub(i32, LimiterLayout.I32.QUEUED_TOKENS, queuedTokens);
    return { permits, queuedCalls };
  }

  /** Adds a waiting call of `tokens` to the shared and the row's counts. */
  addQueued(slot: number, tokens: number): void {
    Atomics.add(this.i32, LimiterLayout.I32.QUEUED_CALLS, 1);
    Atomics.add(this.i32, LimiterLayout.I32.QUEUED_TOKENS, tokens);
    Atomics.add(this.i32, this.row(slot, LimiterRowLayout.I32.QUEUED_CALLS), 1);
    Atomics.add(this.i32, this.row(slot, LimiterRowLayout.I32.QUEUED_TOKENS), tokens);
  }

  /** Removes a waiting call of `tokens` from the shared and the row's counts. */
  removeQueued(slot: number, tokens: number): void {
    Atomics.sub(this.i32, this.row(slot, LimiterRowLayout.I32.QUEUED_CALLS), 1);
    Atomics.sub(this.i32, this.row(slot, LimiterRowLayout.I32.QUEUED_TOKENS), tokens);
    Atomics.sub(this.i32, LimiterLayout.I32.QUEUED_CALLS, 1);
    Atomics.sub(this.i32, LimiterLayout.I32.QUEUED_TOKENS, tokens);
  }

  /** Calls waiting over all threads. */
  queuedCalls(): number {
    return Atomics.load(this.i32, LimiterLayout.I32.QUEUED_CALLS);
  }

  /** Tokens asked for by the calls waiting over all threads. */
  queuedTokens(): number {
    return Atomics.load(this.i32, LimiterLayout.I32.QUEUED_TOKENS);
  }
}
