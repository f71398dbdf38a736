/**
 * A simulated downstream for the adaptive-limit benchmark and tests: `slots` calls are served at
 * once, each for `serviceMs` (a real timer), and the others wait in FIFO order. A call's latency is
 * therefore serviceMs (plus timer lateness) while at most `slots` are inside, and grows with the
 * backlog beyond: with L calls kept inside, about serviceMs × L / slots. Its capacity is
 * slots / serviceMs calls per ms whatever is offered; `slots` may change at any time.
 */

/** One completed call: when it ended and how long it spent inside, ms (performance.now()). */
export interface DownstreamCall {
  endMs: number;
  latencyMs: number;
}

export class SimulatedDownstream {
  /** Every completed call, in completion order. */
  readonly calls: DownstreamCall[] = [];
  private busy = 0;
  private readonly waiting: { arrivedMs: number; done: () => void }[] = [];
  private head = 0;
  private insideNow = 0;
  private most = 0;

  constructor(
    private slotCount: number,
    /** Service time of one call, ms. */
    readonly serviceMs: number,
  ) {}

  /** Calls served at once. */
  get slots(): number {
    return this.slotCount;
  }

  /** More slots start waiting calls at once; fewer let the calls being served finish. */
  set slots(n: number) {
    this.slotCount = n;
    this.serve();
  }

  /** Calls inside now (served or waiting). */
  get inside(): number {
    return this.insideNow;
  }

  /** Most calls inside at once since the last {@link takeMostInside}; resets it. */
  takeMostInside(): number {
    const most = this.most;
    this.most = this.insideNow;
    return most;
  }

  /** One call: resolves when it has been served. */
  call(): Promise<void> {
    this.insideNow++;
    if (this.insideNow > this.most) this.most = this.insideNow;
    return new Promise((done) => {
      this.waiting.push({ arrivedMs: performance.now(), done });
      this.serve();
    });
  }

  private serve(): void {
    while (this.busy < this.slotCount && this.head < this.waiting.length) {
      const w = this.waiting[this.head]!;
      this.waiting[this.head++] = undefined as never;
      if (this.head > 1024 && this.head * 2 > this.waiting.length) {
        this.waiting.splice(0, this.head);
        this.head = 0;
      }
      this.busy++;
      setTimeout(() => {
        this.busy--;
        this.insideNow--;
        const endMs = performance.now();
        this.calls.push({ endMs, latencyMs: endMs - w.arrivedMs });
        w.done();
        this.serve();
      }, this.serviceMs);
    }
  }
}
