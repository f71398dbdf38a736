/**
 * The re-entrancy guard of a queue's pump. A pass starts calls, and a started call may run user
 * code synchronously that pushes, aborts or releases, each of which asks for a pass again.
 * Nesting a pass inside the running one would admit out of order and arm the timer twice, so a
 * request made during a pass only marks it to run once more; the queue's timer is armed once,
 * after the last repeat.
 */

/** Runs a queue's pass, folding re-entrant requests into the pass in progress. */
export class PumpGuard {
  private active = false;
  private again = false;

  /**
   * @param pass one pass over the queue; repeated while requests arrive during it.
   * @param settle runs once after the last repeat (arming the queue's timer).
   */
  constructor(
    private readonly pass: () => void,
    private readonly settle: () => void,
  ) {}

  /** True while a pass (or its settle step) is in progress on this queue. */
  get running(): boolean {
    return this.active;
  }

  /** Runs the pass now, or, when called from inside one, once more after it. */
  run(): void {
    if (this.active) {
      this.again = true;
      return;
    }
    this.active = true;
    try {
      do {
        this.again = false;
        this.pass();
      } while (this.again);
      this.settle();
    } finally {
      this.active = false;
    }
  }
}
