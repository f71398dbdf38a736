/**
 * Fair admission in front of one limiter.
 *
 * A FIFO queue is exact but unfair: a client sending ten times its share fills the queue and every
 * other client waits behind it. A `FairQueue` keeps waiting calls per flow (a client key) inside
 * priority levels, and decides which call gets the limiter's next token:
 *
 * 1. **Level**, by stride scheduling over the levels that have a call they may start: the level
 *    with the smallest `pass` is served and its pass grows by `1 / share`. A level that becomes
 *    backlogged starts at `max(pass, V)`, V being the pass of the last level served, so an idle
 *    level banks no credit and its share goes to the busy ones (borrowing; work conserving).
 *    Guarantee: while levels i and j both stay backlogged, `admitted_i / share_i` and
 *    `admitted_j / share_j` differ by at most `1/share_i + 1/share_j`, so under overload each gets
 *    its share of the admissions up to about one call. A level with `borrow: false` also needs a
 *    token of its own bucket (its share of the rate), so it never gets more than that share.
 * 2. **Flow**, by deficit round robin within the level (see {@link PriorityLevel}).
 *
 * **The limit is untouched.** The queue keeps at most one call of its own waiting on the limiter
 * (`limiter.run`, with no wait bound), and only while it has a call to start. When the limiter
 * admits that call (its one atomic step, in any thread's accounting), the queue picks the next
 * call at that instant and starts it synchronously. Every started call is therefore exactly one
 * admission of the limiter, at the moment of that admission, and the limiter's guarantee (e.g.
 * `burst + rate × L` starts over any interval L, counted over every thread) holds unchanged.
 * Tokens are taken when a call is released, never reserved. If the queue runs out of calls it
 * may start (they aborted or expired) while its call waits on the limiter, it withdraws it (an
 * abort, which the limiter counts as a refused call), so no token is taken for nothing.
 *
 * Bounds: `maxQueuedPerFlow` and `maxQueued` refuse at arrival with `QueueFullError`; a call
 * still waiting after `maxWaitMs` is refused with `QueueTimeoutError` (at its deadline: the fair
 * queue does not refuse up front on an estimate, since a call's wait depends on the other flows'
 * arrivals); an aborted signal removes the call. One timer per queue, armed for the earliest
 * deadline (or for when a capped level's bucket refills), like the limiters' own queues.
 */
import type { Clock } from '../clock.js';
import { isOverloadError, QueueFullError } from '../errors.js';
import type { AnyLimiter } from '../limiters/attach.js';
import { PermitLimit } from '../limiters/concurrency-limit.js';
import { FixedWindow } from '../limiters/fixed-window.js';
import { TokenBucket } from '../limiters/token-bucket.js';
import { DeadlineHeap } from '../queue/deadline-heap.js';
import { OneTimer } from '../queue/one-timer.js';
import { PumpGuard } from '../queue/pump-guard.js';
import { SignalWatch } from '../queue/signal-watch.js';
import { NO_DEADLINE } from '../queue/wait-queue.js';
import { FairCall } from './fair-call.js';
import { checkFairRunOptions, resolveFairQueueOptions, type FairQueueOptions, type FairRunOptions, type ResolvedLevel } from './fair-options.js';
import { PriorityLevel, type LevelStats } from './priority-level.js';

/** The one call the queue has waiting on the limiter. */
interface TokenRequest {
  /** The limiter admitted it and a call was started. */
  used: boolean;
  /** The queue withdrew it. */
  withdrawn: boolean;
  readonly controller: AbortController;
}

/** Waiting calls per flow and priority level in front of one limiter, served fairly. */
export class FairQueue {
  /** The limiter every call is admitted by. */
  readonly limiter: AnyLimiter;
  /** Most calls one flow may have waiting. */
  readonly maxQueuedPerFlow: number;
  /** Most calls waiting in the queue. */
  readonly maxQueued: number;
  /** Default wait bound, ms. */
  readonly maxWaitMs: number;
  private readonly clock: Clock;
  private readonly levels: PriorityLevel<FairCall>[];
  private readonly byName = new Map<string, PriorityLevel<FairCall>>();
  private readonly byMethod = new Map<string, PriorityLevel<FairCall>>();
  private readonly defaultLevel: PriorityLevel<FairCall>;
  /** Concurrency permits are held until the started call's promise settles. */
  private readonly holdsPermits: boolean;
  private live = 0;
  /** Pass of the level served last: where a level that wakes up starts (no banked credit). */
  private virtualTime = 0;
  private request: TokenRequest | undefined;
  private readonly deadlines = new DeadlineHeap<FairCall>();
  private readonly timer: OneTimer;
  private readonly guard = new PumpGuard(
    () => this.pass(),
    () => this.schedule(),
  );
  /** The abort signals waiting calls listen to (one listener per signal). */
  private readonly signals = new SignalWatch<FairCall>((calls, reason) => {
    for (const c of calls) {
      if (c.settled) continue;
      this.drop(c);
      c.level.refused.aborted++;
      c.refuse(reason);
    }
    this.pump();
  });
  private readonly pumpLater = (): void => this.pump();

  /**
   * @param limiter the limit every call must pass (shared with other threads or not).
   * @param options levels, quantum, bounds, clock.
   * @throws TypeError | RangeError naming the invalid option; RangeError for `borrow: false` on a
   *   concurrency limit (a cap needs a rate).
   */
  constructor(limiter: AnyLimiter, options: FairQueueOptions = {}) {
    if (!(limiter instanceof TokenBucket) && !(limiter instanceof PermitLimit) && !(limiter instanceof FixedWindow)) {
      throw new TypeError('FairQueue needs a limiter (TokenBucket, FixedWindow, ConcurrencyLimit or AdaptiveConcurrencyLimit)');
    }
    const o = resolveFairQueueOptions(options);
    this.limiter = limiter;
    this.clock = o.clock;
    this.timer = new OneTimer(o.clock, () => this.pump());
    this.maxQueuedPerFlow = o.maxQueuedPerFlow;
    this.maxQueued = o.maxQueued;
    this.maxWaitMs = o.maxWaitMs;
    this.holdsPermits = limiter instanceof PermitLimit;
    const totalShare = o.levels.reduce((sum, l) => sum + l.share, 0);
    this.levels = o.levels.map(
      (l) => new PriorityLevel<FairCall>(l.name, l.share, o.quantum, l.borrow ? undefined : capBucket(limiter, l, l.share / totalShare, o.clock)),
    );
    for (const level of this.levels) this.byName.set(level.name, level);
    for (const l of o.levels) for (const m of l.methods) this.byMethod.set(m, this.byName.get(l.name)!);
    this.defaultLevel = this.byName.get(o.defaultLevel)!;
  }

  /** The name of the level calls of `method` belong to. */
  levelOf(method: string): string {
    return (this.byMethod.get(method) ?? this.defaultLevel).name;
  }

  /** Calls waiting now. */
  get size(): number {
    return this.live;
  }

  /** 1 while the queue has a call of its own waiting on the limiter (counted in the limiter's queue), else 0. */
  get onLimiter(): number {
    return this.request === undefined ? 0 : 1;
  }

  /**
   * Runs `task` once it is this call's turn and the limiter admits it; resolves with the task's
   * result. The task starts synchronously at the instant of admission.
   *
   * Rejects with `QueueFullError` (over `maxQueuedPerFlow` or `maxQueued`), `QueueTimeoutError`
   * (still waiting after `maxWaitMs`) or the signal's abort reason; a refused call took nothing.
   * @throws TypeError | RangeError for invalid options or an unknown level.
   */
  run<T>(task: () => T | PromiseLike<T>, options: FairRunOptions): Promise<T> {
    const o = checkFairRunOptions(options);
    if (typeof task !== 'function') throw new TypeError('task must be a function');
    const level = o.level === undefined ? this.defaultLevel : this.byName.get(o.level);
    if (level === undefined) throw new RangeError(`level ${JSON.stringify(o.level)} is not one of ${[...this.byName.keys()].join(', ')}`);
    if (o.signal?.aborted) {
      level.refused.aborted++;
      return Promise.reject(o.signal.reason as unknown);
    }
    let flow = level.flow(o.flow);
    if (this.live >= this.maxQueued || (flow?.live ?? 0) >= this.maxQueuedPerFlow) {
      level.refused.queue_full++;
      return Promise.reject(new QueueFullError(this.live >= this.maxQueued ? this.maxQueued : this.maxQueuedPerFlow));
    }
    const maxWaitMs = o.maxWaitMs ?? this.maxWaitMs;
    const deadline = maxWaitMs === Infinity ? NO_DEADLINE : this.clock.now() + BigInt(Math.ceil(maxWaitMs * 1e6));
    return new Promise<T>((resolve, reject) => {
      if (level.live === 0 && level.pass < this.virtualTime) level.pass = this.virtualTime;
      flow ??= level.addFlow(o.flow);
      const call = new FairCall<T>(level, flow, task, resolve, reject, deadline, maxWaitMs, o.signal) as FairCall;
      flow.push(call);
      level.live++;
      this.live++;
      if (deadline !== NO_DEADLINE) this.deadlines.push(call);
      if (o.signal !== undefined) this.signals.watch(o.signal, call);
      this.pump();
    });
  }

  /** Counters of each level, by name. */
  stats(): Record<string, LevelStats> {
    return Object.fromEntries(this.levels.map((l) => [l.name, l.stats()]));
  }

  /**
   * Refuses every waiting call with `reason` (a shutdown that should not wait for the queue) and
   * withdraws the queue's call from the limiter. Nothing was taken for them.
   */
  clear(reason: unknown = new Error('fair queue cleared: the call was waiting')): void {
    for (const level of this.levels) {
      while (level.live > 0) {
        const call = level.take();
        this.settle(call);
        call.refuse(reason);
      }
    }
    this.pump();
  }

  /**
   * Starts what can start, expires overdue calls, withdraws the token request if nothing is left
   * to start, then arms the one timer. Re-entrant calls (a started task that queues another call)
   * are folded into the running pass.
   */
  private pump(): void {
    this.guard.run();
  }

  private pass(): void {
    // Ask the limiter for a token while there is a call to give it to; an admission at once
    // starts that call synchronously inside `requestToken` and the loop asks again.
    while (this.request === undefined && this.nextLevel() !== undefined) this.requestToken();
    const now = this.clock.now();
    for (let call = this.deadlines.peek(); call !== undefined && call.deadline <= now; call = this.deadlines.peek()) {
      this.drop(call);
      call.level.refused.queue_timeout++;
      call.expire(now);
    }
    if (this.request !== undefined && this.nextLevel() === undefined) this.withdraw();
  }

  /** Puts the queue's one call on the limiter; it starts the fair choice of call when admitted. */
  private requestToken(): void {
    const request: TokenRequest = { used: false, withdrawn: false, controller: new AbortController() };
    this.request = request;
    this.limiter
      .run(() => this.onToken(request), 1, { signal: request.controller.signal, maxWaitMs: Infinity })
      .catch((error: unknown) => this.onRequestFailed(request, error));
  }

  /** The limiter admitted the queue's call: start the next call in fair order, now. */
  private onToken(request: TokenRequest): Promise<unknown> | undefined {
    request.used = true;
    this.request = undefined;
    // Never undefined: the request is withdrawn as soon as no level has a call it may start, and
    // a level's readiness cannot fall while the request waits (only this queue takes from caps).
    const level = this.nextLevel()!;
    const call = this.serve(level);
    let started: Promise<unknown> | undefined;
    if (this.holdsPermits) started = call.start();
    else call.admit();
    level.admitted++;
    // Inside our own pass (an admission at once) the pass asks again by itself. Inside the
    // limiter's admission pass, the admitted request still counts in the limiter's queue until
    // that pass settles it: ask again a microtask later, so the queue only ever holds one place
    // there (a limiter with maxQueued 1 must not refuse the next request).
    if (!this.guard.running) queueMicrotask(this.pumpLater);
    return started;
  }

  /**
   * The queue's call on the limiter was refused (its queue full over all threads, its store down
   * under fail-closed): the call that would have been next is refused with the same error, counted
   * under its reason, and the queue asks again.
   */
  private onRequestFailed(request: TokenRequest, error: unknown): void {
    // A started call's own failure reached its caller already; a withdrawal is expected.
    if (request.used || request.withdrawn) return;
    this.request = undefined;
    const level = this.nextLevel();
    if (level !== undefined) {
      const call = this.serve(level);
      // Anything else took the call off the limiter from outside (its queue cleared): an abort.
      level.refused[isOverloadError(error) ? error.reason : 'aborted']++;
      call.refuse(error);
    }
    this.pump();
  }

  private withdraw(): void {
    const request = this.request!;
    this.request = undefined;
    request.withdrawn = true;
    request.controller.abort(new Error('fair queue: no call left to start'));
  }

  /** Takes the next call of `level` (deficit round robin) and advances the level's pass. */
  private serve(level: PriorityLevel<FairCall>): FairCall {
    level.cap?.tryAcquire();
    this.virtualTime = level.pass;
    level.pass += level.stride;
    const call = level.take();
    this.settle(call);
    return call;
  }

  /** The backlogged level with a call it may start and the smallest pass (declaration order breaks ties). */
  private nextLevel(): PriorityLevel<FairCall> | undefined {
    let best: PriorityLevel<FairCall> | undefined;
    for (const level of this.levels) {
      if ((best === undefined || level.pass < best.pass) && level.ready()) best = level;
    }
    return best;
  }

  /** Marks a call as no longer waiting (its flow is updated by the level: `take` or `dropped`). */
  private settle(call: FairCall): void {
    call.settled = true;
    this.live--;
    if (call.heapIndex >= 0) this.deadlines.delete(call);
    if (call.signal !== undefined) this.signals.unwatch(call.signal, call);
  }

  /** Takes a call that leaves unserved (expired, aborted) out of the queue and its flow. */
  private drop(call: FairCall): void {
    this.settle(call);
    call.level.dropped(call.flow);
  }

  private schedule(): void {
    let at = this.deadlines.peek()?.deadline ?? NO_DEADLINE;
    if (this.request === undefined) {
      // Calls wait but none may start: only capped levels are backlogged. Wake when the first
      // of their buckets has a token.
      for (const level of this.levels) {
        if (level.live === 0 || level.cap === undefined) continue;
        const ready = this.clock.now() + BigInt(Math.ceil(level.cap.estimateWaitMs() * 1e6));
        if (at === NO_DEADLINE || ready < at) at = ready;
      }
    }
    this.timer.arm(at);
  }
}

/**
 * The bucket of a level that may not borrow: `fraction` of the limiter's rate, with the same
 * fraction of its burst (at least 1). Private to this queue and this thread.
 */
function capBucket(limiter: AnyLimiter, level: ResolvedLevel, fraction: number, clock: Clock): TokenBucket {
  if (limiter instanceof PermitLimit) {
    throw new RangeError(`levels.${level.name}.borrow: false needs a rate limit to take a share of; this limit is a concurrency limit`);
  }
  const rate = limiter instanceof TokenBucket ? limiter.rate : limiter.maxCalls;
  const burst = limiter instanceof TokenBucket ? limiter.burst : rate;
  return new TokenBucket({ rate: rate * fraction, periodMs: limiter.periodMs, burst: Math.max(1, Math.floor(burst * fraction)), clock });
}
