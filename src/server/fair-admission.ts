/**
 * Fair admission on the threaded server's I/O thread: one {@link FairQueue} in front of each
 * distinct limiter of the server, and the flow key of each call (its connection's address, the
 * connection, the method, an argument field, or a function: limits/call-key.ts).
 */
import { LIMIT_REFUSAL_REASONS, refusalCounts } from '../errors.js';
import { FairQueue } from '../fair/fair-queue.js';
import type { ResolvedFairnessOptions } from '../fair/fair-options.js';
import type { LevelStats } from '../fair/priority-level.js';
import type { AnyLimiter } from '../limiters/attach.js';
import type { MessageHeader } from '../thrift/message-header.js';
import { callKey, type CallKeySpec } from '../limits/call-key.js';
import type { Connection } from './connection.js';
import type { MethodLimits, QueueBounds } from '../limits/method-limits.js';

/** The fair queues of a server, by limiter. */
export class FairAdmission {
  private readonly queues = new Map<AnyLimiter, FairQueue>();
  private readonly flow: CallKeySpec;

  /** @throws RangeError naming `fairness.levels.<name>` for a level a limit cannot serve. */
  constructor(
    limits: MethodLimits,
    private readonly fairness: ResolvedFairnessOptions,
    private readonly queue: QueueBounds,
  ) {
    this.flow = fairness.flow;
    this.sync(limits);
  }

  /**
   * Gives every limiter of `limits` a fair queue (after a change of the limits, the new ones) and
   * refuses the calls of the queues whose limiter is no longer used with `reason`.
   * @throws RangeError naming `fairness.levels.<name>` for a level a limit cannot serve.
   */
  sync(limits: MethodLimits, reason?: unknown): void {
    const used = new Set(limits.entries().map(([, limiter]) => limiter));
    for (const limiter of used) {
      if (this.queues.has(limiter)) continue;
      try {
        this.queues.set(
          limiter,
          new FairQueue(limiter, {
            ...(this.fairness.levels !== undefined ? { levels: this.fairness.levels } : {}),
            quantum: this.fairness.quantum,
            maxQueuedPerFlow: this.fairness.maxQueuedPerFlow,
            ...(this.queue.maxQueued !== undefined ? { maxQueued: this.queue.maxQueued } : {}),
            ...(this.queue.maxWaitMs !== undefined ? { maxWaitMs: this.queue.maxWaitMs } : {}),
          }),
        );
      } catch (error) {
        if (error instanceof RangeError) throw new RangeError(`fairness.${error.message}`, { cause: error });
        throw error;
      }
    }
    for (const [limiter, queue] of this.queues) {
      if (used.has(limiter)) continue;
      this.queues.delete(limiter);
      queue.clear(reason);
    }
  }

  /**
   * Runs `task` when the call's turn comes and `limiter` admits it (see FairQueue.run), in the
   * level of its method and the flow of its key. A key function that throws rejects the call.
   */
  run<T>(
    limiter: AnyLimiter,
    task: () => T | PromiseLike<T>,
    connection: Connection,
    header: MessageHeader,
    frame: Buffer,
    maxWaitMs: number | undefined,
  ): Promise<T> {
    const queue = this.queues.get(limiter)!;
    let flow: string;
    try {
      flow = callKey(this.flow, connection, header, frame, connection.protocol);
    } catch (error) {
      return Promise.reject(error);
    }
    const options = { flow, level: queue.levelOf(header.name), signal: connection.signal };
    return queue.run(task, maxWaitMs === undefined ? options : { ...options, maxWaitMs });
  }

  /** Calls waiting in the fair queues that the limiters do not count (each counts one per queue). */
  uncounted(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.size - q.onLimiter;
    return n;
  }

  /** Counters by level, summed over the server's limits. */
  levels(): Record<string, LevelStats> {
    const sum: Record<string, LevelStats> = {};
    for (const q of this.queues.values()) {
      for (const [name, s] of Object.entries(q.stats())) {
        const t = (sum[name] ??= { share: s.share, admitted: 0, refused: refusalCounts(LIMIT_REFUSAL_REASONS), queued: 0, flows: 0 });
        t.admitted += s.admitted;
        for (const reason of LIMIT_REFUSAL_REASONS) t.refused[reason] += s.refused[reason];
        t.queued += s.queued;
        t.flows += s.flows;
      }
    }
    return sum;
  }
}
