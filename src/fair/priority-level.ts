/**
 * A priority level of a {@link FairQueue}: its share, its flows, and the round robin that serves
 * them.
 *
 * Within a level, flows are served by deficit round robin with unit cost: the flow at the cursor
 * takes up to `quantum` calls, then the cursor moves on. A flow that becomes backlogged joins the
 * ring just behind the cursor (the end of the current round), and leaves it when its last call
 * does. Guarantee: while flows f and g both stay backlogged, their admissions differ by at most
 * `quantum`; a call arriving at an empty flow waits for at most `(flows − 1) × quantum`
 * admissions of its level before its own.
 */
import { LIMIT_REFUSAL_REASONS, refusalCounts, type LimitRefusalReason, type RefusalCounts } from '../errors.js';
import type { TokenBucket } from '../limiters/token-bucket.js';
import { Flow, type FlowMember } from './flow.js';

/** Counters of one level since the queue was created. */
export interface LevelStats {
  /** The level's share. */
  share: number;
  /** Calls started. */
  admitted: number;
  /** Calls refused, by reason: the fair queue's own refusals and the limit's (its store down, fail-closed). */
  refused: RefusalCounts<LimitRefusalReason>;
  /** Calls waiting now. */
  queued: number;
  /** Flows with waiting calls now. */
  flows: number;
}

/** One level: flows by key, the ring of backlogged flows, and the level's virtual time (generic in its calls, as {@link Flow}). */
export class PriorityLevel<C extends FlowMember> {
  /** Calls waiting over all flows of the level. */
  live = 0;
  /**
   * Virtual finishing time of the level's next admission (stride scheduling): the queue serves
   * the backlogged level with the smallest pass, then adds `stride = 1 / share`.
   */
  pass = 0;
  /** 1 / share. */
  readonly stride: number;
  admitted = 0;
  readonly refused = refusalCounts(LIMIT_REFUSAL_REASONS);
  private readonly flows = new Map<string, Flow<C>>();
  private cursor: Flow<C> | undefined;
  private turnLeft: number;

  constructor(
    /** The level's name. */
    readonly name: string,
    /** Its relative weight. */
    readonly share: number,
    private readonly quantum: number,
    /** With `borrow: false`, the bucket capping the level at its share of the rate. */
    readonly cap: TokenBucket | undefined,
  ) {
    this.stride = 1 / share;
    this.turnLeft = quantum;
  }

  /** The waiting calls of `key`, if any. */
  flow(key: string): Flow<C> | undefined {
    return this.flows.get(key);
  }

  /** Creates the flow of `key` and puts it at the end of the current round. */
  addFlow(key: string): Flow<C> {
    const flow = new Flow<C>(key);
    this.flows.set(key, flow);
    const cursor = this.cursor;
    if (cursor === undefined) {
      this.cursor = flow;
      this.turnLeft = this.quantum;
    } else {
      flow.prev = cursor.prev;
      flow.next = cursor;
      cursor.prev.next = flow;
      cursor.prev = flow;
    }
    return flow;
  }

  /** True if the level has a waiting call it may start now (its cap, if any, has a token). */
  ready(): boolean {
    return this.live > 0 && (this.cap === undefined || this.cap.estimateWaitMs() === 0);
  }

  /** Takes the next call by deficit round robin; the level must be backlogged. */
  take(): C {
    const flow = this.cursor!;
    const call = flow.shift();
    this.live--;
    this.turnLeft--;
    if (flow.live === 0) this.removeFlow(flow);
    else if (this.turnLeft === 0) {
      this.cursor = flow.next;
      this.turnLeft = this.quantum;
    }
    return call;
  }

  /** A waiting call of `flow` left without being served (aborted, expired, cleared). */
  dropped(flow: Flow<C>): void {
    flow.dropped();
    this.live--;
    if (flow.live === 0) this.removeFlow(flow);
  }

  /** The level's counters. */
  stats(): LevelStats {
    return { share: this.share, admitted: this.admitted, refused: { ...this.refused }, queued: this.live, flows: this.flows.size };
  }

  private removeFlow(flow: Flow<C>): void {
    this.flows.delete(flow.key);
    if (flow.next === flow) {
      this.cursor = undefined;
      return;
    }
    flow.prev.next = flow.next;
    flow.next.prev = flow.prev;
    if (this.cursor === flow) {
      this.cursor = flow.next;
      this.turnLeft = this.quantum;
    }
  }
}
