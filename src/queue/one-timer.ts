/**
 * The one timer a waiting queue keeps, however many calls wait: armed for the next moment
 * anything can happen (a head admissible, a deadline), and kept when already due no later than
 * that. An early wake-up costs one pass of the queue, which re-arms; replacing the timer on every
 * pass would cost more than that wake-up.
 */
import type { Clock, Nanos, TimerHandle } from '../clock.js';

/** No time: {@link OneTimer.arm} with it cancels. */
export const NEVER = -1n;

/** One re-armable timer on a {@link Clock}. */
export class OneTimer {
  private timer: TimerHandle | undefined;
  private at: Nanos = NEVER;
  private readonly fired = (): void => {
    this.timer = undefined;
    this.at = NEVER;
    this.onFire();
  };

  constructor(
    private readonly clock: Clock,
    private readonly onFire: () => void,
  ) {}

  /** Makes sure the timer fires no later than `at` (NEVER: not at all). */
  arm(at: Nanos): void {
    if (at === NEVER) {
      this.cancel();
      return;
    }
    if (this.timer !== undefined && this.at <= at) return;
    this.cancel();
    this.at = at;
    this.timer = this.clock.setTimer(at, this.fired);
  }

  /** Disarms the timer. */
  cancel(): void {
    if (this.timer !== undefined) {
      this.timer.cancel();
      this.timer = undefined;
      this.at = NEVER;
    }
  }
}
