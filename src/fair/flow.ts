/**
 * A flow: the calls of one flow key (a client address, a connection, a tenant) waiting in one
 * priority level, in arrival order, plus its links in the level's round-robin ring.
 *
 * A flow exists only while it has waiting calls: the level deletes it when the last one leaves,
 * so memory follows the waiting calls, not the number of clients ever seen.
 */
/** What a flow reads of the calls it holds (the fair queue's calls). */
export interface FlowMember {
  /** True once the call left the queue: started, refused, expired or aborted. */
  readonly settled: boolean;
}

/**
 * The FIFO of one flow. Calls that left early (aborted, expired) are skipped lazily. Generic in its
 * calls so that the call, which names its flow, is the only one of the two to import the other.
 */
export class Flow<C extends FlowMember> {
  /** Calls still waiting (not settled). */
  live = 0;
  /** Next and previous flow in the level's ring of backlogged flows. */
  next: Flow<C> = this;
  prev: Flow<C> = this;
  private items: (C | undefined)[] = [];
  private first = 0;

  constructor(
    /** The flow key. */
    readonly key: string,
  ) {}

  /** Appends a waiting call. */
  push(call: C): void {
    this.items.push(call);
    this.live++;
  }

  /** Removes and returns the oldest waiting call; the flow must have one (`live > 0`). */
  shift(): C {
    const items = this.items;
    for (;;) {
      const call = items[this.first]!;
      items[this.first++] = undefined;
      if (call.settled) continue;
      this.live--;
      // Compact once the consumed prefix dominates, so a long-lived flow does not keep it.
      if (this.first > 64 && this.first * 2 > items.length) {
        this.items = items.slice(this.first);
        this.first = 0;
      }
      return call;
    }
  }

  /** Counts a call that left without being served (it stays in the array, marked settled). */
  dropped(): void {
    this.live--;
  }
}
