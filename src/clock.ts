/**
 * Time for the limiters.
 *
 * Every thread of a process must read the same clock, or a thread whose clock runs ahead would take
 * tokens that have not been earned yet. `process.hrtime.bigint()` is one monotonic counter for the
 * whole process (measured offset between threads well under 1 µs), so the system clock uses it.
 * Tests inject a {@link ManualClock} instead, which also owns the timers, so a test decides exactly
 * when time passes and when waiting calls wake up.
 */

/** Nanoseconds on a monotonic clock shared by every thread of the process. */
export type Nanos = bigint;

/** A handle returned by {@link Clock.setTimer}. */
export interface TimerHandle {
  /** Cancels the timer; calling it after the timer fired does nothing. */
  cancel(): void;
  /**
   * Lets the process exit while this timer is the only thing pending (Node's `timer.unref()`),
   * for timers that serve no waiting call. A clock without process timers may leave it out.
   */
  unref?(): void;
}

/**
 * The time source and timer service a limiter runs on.
 *
 * `now()` must be the same in every thread that shares a limiter. `setTimer` calls `callback` once,
 * at or after `at`; it may fire early only if the limiter can tolerate it (the limiters re-check the
 * time and re-arm, so an early timer costs a wake-up, never a wrong admission).
 */
export interface Clock {
  /** Current time in nanoseconds. */
  now(): Nanos;
  /** Calls `callback` once the clock has reached `at` (nanoseconds). */
  setTimer(at: Nanos, callback: () => void): TimerHandle;
}

const NS_PER_MS = 1_000_000n;

/** The process-wide monotonic clock with Node's timers; the default for every limiter. */
export const systemClock: Clock = {
  now: () => process.hrtime.bigint(),
  setTimer(at, callback) {
    const remaining = at - process.hrtime.bigint();
    // Node's timers count whole milliseconds: round up so a timer never fires before `at` by
    // more than the event loop's own millisecond truncation.
    const ms = remaining <= 0n ? 0 : Number((remaining + NS_PER_MS - 1n) / NS_PER_MS);
    const timer = setTimeout(callback, ms);
    return { cancel: () => clearTimeout(timer), unref: () => timer.unref() };
  },
};

interface ManualTimer {
  /** When it fires: its due time plus the clock's lateness when it was set. */
  at: Nanos;
  seq: number;
  callback: () => void;
  cancelled: boolean;
}

/**
 * A clock that only moves when told to, for deterministic tests of the algorithms.
 *
 * Timers fire in order of their due time (ties in the order they were set) while {@link advance}
 * walks the clock forward, so a test sees exactly the admissions an ideal scheduler would make.
 */
export class ManualClock implements Clock {
  /**
   * Milliseconds after its due time that each timer set from now on fires (0: on time), as a busy
   * event loop's timers do: for tests of how the limiters take late wake-ups.
   */
  timerLatenessMs = 0;
  private current: Nanos;
  private seq = 0;
  private timers: ManualTimer[] = [];

  /** @param startMs the initial reading, in milliseconds. */
  constructor(startMs = 0) {
    this.current = BigInt(Math.round(startMs * 1e6));
  }

  /** Current time in nanoseconds. */
  now(): Nanos {
    return this.current;
  }

  /** Current time in milliseconds (a convenience for assertions). */
  nowMs(): number {
    return Number(this.current) / 1e6;
  }

  /** Registers a timer due at `at`; fires during a later {@link advance}, {@link timerLatenessMs} late. */
  setTimer(at: Nanos, callback: () => void): TimerHandle {
    const timer: ManualTimer = { at: at + BigInt(Math.round(this.timerLatenessMs * 1e6)), seq: this.seq++, callback, cancelled: false };
    this.timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  /** Number of timers not yet fired or cancelled. */
  pendingTimers(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /**
   * Moves the clock forward by `ms`, firing every timer that falls due on the way at its own due
   * time, in due-time order, and letting promise callbacks run after each one.
   */
  async advance(ms: number): Promise<void> {
    const target = this.current + BigInt(Math.round(ms * 1e6));
    await flushMicrotasks();
    for (;;) {
      this.timers = this.timers.filter((t) => !t.cancelled);
      let next: ManualTimer | undefined;
      for (const t of this.timers) {
        if (t.at <= target && (next === undefined || t.at < next.at || (t.at === next.at && t.seq < next.seq))) next = t;
      }
      if (next === undefined) break;
      next.cancelled = true;
      if (next.at > this.current) this.current = next.at;
      next.callback();
      await flushMicrotasks();
    }
    this.current = target;
    await flushMicrotasks();
  }
}

/** Lets every promise callback queued so far run to completion (one turn of the event loop). */
function flushMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
