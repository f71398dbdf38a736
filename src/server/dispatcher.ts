/**
 * Hands admitted requests to the worker pool in batches, routes the replies back, and makes sure
 * every dispatched call ends.
 *
 * Frames dispatched during one event-loop turn are packed into one transferred buffer and sent as
 * one piscina task (flushed on setImmediate, or at once when a batch is full), so the cost of
 * crossing threads is paid once per batch instead of once per call. Replies of calls that finish
 * in the worker's first turn come back as the task's result; later ones come back on their own,
 * per turn, as soon as they are ready.
 *
 * Every call ends in bounded time, whatever its handler does:
 * - **Deadline.** A call not answered `handlerTimeoutMs` after dispatch is failed with
 *   {@link HandlerTimeoutError}; a reply that comes later is dropped and counted. Calls are
 *   dispatched in deadline order, so the oldest entry of `inFlight` (a Map keeps insertion order)
 *   is always the next to expire, and one timer serves them all.
 * - **Blocked worker.** Each worker bumps a heartbeat word in shared memory from a timer. A
 *   heartbeat older than `handlerTimeoutMs` means the worker's event loop has been stuck that
 *   long (a synchronous loop in a handler): the worker is terminated, piscina starts a new one in
 *   its place, and the calls it held are failed. The owner is told (`onWorkerReplaced`) and
 *   reclaims the thread's permits when piscina reports it gone (`onWorkerExit`).
 * - **Worker death.** piscina rejects the tasks of a dead worker; their unanswered calls are failed.
 * - **Pool slots.** A task never caps what a worker may take: a stuck call costs its own memory,
 *   never a slot other calls need (piscina's least-busy balancer already steers new batches away
 *   from a worker whose calls do not finish). Calls in flight are bounded per connection instead.
 */
import { Piscina } from 'piscina';
import type { Protocol } from '../thrift/message-header.js';
import { HeartbeatLayout, packFrames, protocolCode, type WorkerBatch, type WorkerEvent, type WorkerReplies } from './batch.js';

/** One dispatched call, as the dispatcher sees it. */
export interface DispatchedCall {
  /** The request message (a frame without its length prefix). */
  readonly frame: Buffer;
  /** The protocol it is encoded in; the reply comes back in the same one. */
  readonly protocol: Protocol;
  /** Aborted once nobody is left to read the reply: a call not yet handed to a worker is then dropped. */
  readonly signal: AbortSignal;
  /** Called once with the reply frame (length prefix included), or null for a oneway call. */
  onReply(frame: Buffer | null): void;
  /**
   * Called once, instead of `onReply`, if the call cannot be answered by a worker: the worker died
   * or was replaced, the deadline passed ({@link HandlerTimeoutError}), or `signal` aborted before
   * the call was handed over (with the signal's reason).
   */
  onFailure(error: Error): void;
}

/** Options of the {@link Dispatcher}. */
export interface DispatcherOptions {
  /** The worker entry module. */
  filename: string;
  /** Worker threads. */
  workers: number;
  /** Passed to every worker. */
  workerData: unknown;
  /** Longest a call may take from dispatch to reply; also how long a worker's loop may be stuck. Infinity disables. */
  handlerTimeoutMs: number;
  /** How often workers bump their heartbeat (and the dispatcher looks at them). */
  heartbeatMs: number;
  /** Told when a worker thread is gone, to reclaim what it held. */
  onWorkerExit(threadId: number): void;
  /** Told when a worker has loaded the handler (at start, and each replacement later). */
  onWorkerReady?(threadId: number): void;
  /** Told when a worker is terminated because its event loop was blocked for `blockedMs`. */
  onWorkerReplaced(threadId: number, blockedMs: number): void;
  /** Told when a worker started after `ready()` could not load the handler (it is replaced after a pause). */
  onWorkerStartFailed(threadId: number, reason: string): void;
  /** Told of the handler failures workers report (`method: message`). */
  onHandlerErrors(lines: readonly string[]): void;
}

/** The reason a call is failed when its handler did not answer in time. */
export class HandlerTimeoutError extends Error {
  /** Stable machine-readable reason. */
  readonly code = 'HANDLER_TIMEOUT' as const;
  constructor(readonly timeoutMs: number) {
    super(`did not finish within ${timeoutMs} ms (handlerTimeoutMs)`);
    this.name = 'HandlerTimeoutError';
  }
}

const MAX_BATCH = 256;
// piscina counts tasks per worker against this; a stuck call must never be what fills it.
const TASKS_PER_WORKER = 1 << 30;
// A worker that failed to load is replaced after this pause, so a handler that always fails at
// start does not spin the pool.
const RESTART_PAUSE_MS = 1000;

interface InFlight {
  readonly call: DispatchedCall;
  readonly deadline: number;
}

/** The worker pool and the batching in front of it. */
export class Dispatcher {
  private readonly pool: Piscina;
  private readonly inFlight = new Map<number, InFlight>();
  private readonly timeoutMs: number;
  private nextId = 1;
  private batch: number[] = [];
  private flushScheduled = false;
  private readonly flushNow = (): void => this.flush();
  private deadlineTimer: NodeJS.Timeout | undefined;
  private readonly expireNow = (): void => this.expire();
  /** Heartbeat words of the workers that started, by thread id. */
  private readonly heartbeats = new Map<number, BigInt64Array>();
  private readonly replacing = new Set<number>();
  private readonly watchdog: NodeJS.Timeout | undefined;
  private readonly started: Promise<void>;
  private startWaiter: { ready: (threadId: number) => void; failed: (reason: string) => void } | undefined;
  /** Replies that came after their call had already been answered, and were dropped. */
  lateReplies = 0;

  constructor(private readonly options: DispatcherOptions) {
    this.timeoutMs = options.handlerTimeoutMs;
    this.started = new Promise<void>((resolve, reject) => {
      const ready = new Set<number>();
      this.startWaiter = {
        ready: (threadId) => {
          ready.add(threadId);
          if (ready.size >= options.workers) resolve();
        },
        failed: (reason) => reject(new Error(reason)),
      };
    });
    this.started.then(
      () => {
        this.startWaiter = undefined;
      },
      () => {},
    );
    this.pool = new Piscina({
      filename: options.filename,
      minThreads: options.workers,
      maxThreads: options.workers,
      idleTimeout: Infinity,
      concurrentTasksPerWorker: TASKS_PER_WORKER,
      // Idle workers must keep their event loop running: handlers may wait on a shared limiter's
      // timer, which a worker parked in a blocking Atomics.wait would never see fire.
      atomics: 'disabled',
      workerData: options.workerData,
    });
    this.pool.on('message', (m: WorkerEvent) => this.onEvent(m));
    this.pool.on('workerDestroy', (worker: { id: number }) => {
      this.heartbeats.delete(worker.id);
      this.replacing.delete(worker.id);
      options.onWorkerExit(worker.id);
    });
    this.pool.on('error', () => {
      // A worker's uncaught error: piscina replaces the worker and fails its tasks, which is
      // handled per batch; the pool itself must not take the process down.
    });
    if (this.timeoutMs !== Infinity) {
      this.watchdog = setInterval(() => this.checkHeartbeats(), options.heartbeatMs);
      this.watchdog.unref();
    }
  }

  /**
   * Resolves once every worker has loaded the handler; rejects with the first worker's reason if
   * one could not, or after `timeoutMs`.
   */
  ready(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`the workers did not start within ${timeoutMs} ms (startTimeoutMs): does createHandler ever resolve?`)),
        timeoutMs,
      );
    });
    return Promise.race([this.started, timeout]).finally(() => clearTimeout(timer));
  }

  /** Calls handed to workers and not yet answered. */
  get outstanding(): number {
    return this.inFlight.size;
  }

  /** Worker threads running now. */
  get threads(): number {
    return this.pool.threads.length;
  }

  /**
   * Worker threads that have loaded the handler and are not being replaced: a replacement counts
   * once it is ready, a terminated or dead worker no longer does.
   */
  get readyWorkers(): number {
    return this.heartbeats.size - this.replacing.size;
  }

  /** Queues a call for the next batch. */
  dispatch(call: DispatchedCall): void {
    const id = this.nextId++;
    const deadline = performance.now() + this.timeoutMs;
    this.inFlight.set(id, { call, deadline });
    if (this.deadlineTimer === undefined && this.timeoutMs !== Infinity) this.armDeadline(deadline);
    this.batch.push(id);
    if (this.batch.length >= MAX_BATCH) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushNow);
    }
  }

  /** Fails every call not answered yet (shutdown past its deadline). */
  failAll(error: Error): void {
    for (const [id, entry] of this.inFlight) {
      this.inFlight.delete(id);
      entry.call.onFailure(error);
    }
  }

  /** Stops the workers. */
  async destroy(): Promise<void> {
    clearInterval(this.watchdog);
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
    await this.pool.destroy();
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.batch.length === 0) return;
    const ids = this.batch;
    this.batch = [];
    const frames: Buffer[] = [];
    const protocols: number[] = [];
    const sent: number[] = [];
    for (const id of ids) {
      const entry = this.inFlight.get(id);
      if (entry === undefined) continue;
      if (entry.call.signal.aborted) {
        // Its client is gone: nobody would read the reply, so the handler does not run.
        this.inFlight.delete(id);
        entry.call.onFailure(entry.call.signal.reason as Error);
        continue;
      }
      frames.push(entry.call.frame);
      protocols.push(protocolCode(entry.call.protocol));
      sent.push(id);
    }
    if (sent.length === 0) return;
    const packed = packFrames(frames);
    const task: WorkerBatch = { ids: sent, protocols, lengths: packed.lengths, buffer: packed.buffer };
    this.pool.run(task, { transferList: [packed.buffer] }).then(
      (replies: WorkerReplies | null) => {
        if (replies !== null) this.onReplies(replies);
      },
      (error: unknown) => {
        const reason = new Error(`worker stopped before answering (${error instanceof Error ? error.message : String(error)})`);
        for (const id of sent) {
          const entry = this.inFlight.get(id);
          if (entry === undefined) continue;
          this.inFlight.delete(id);
          entry.call.onFailure(reason);
        }
      },
    );
  }

  private onEvent(m: WorkerEvent): void {
    if ('replies' in m) this.onReplies(m);
    else if ('ready' in m) {
      this.heartbeats.set(m.threadId, m.heartbeat);
      this.startWaiter?.ready(m.threadId);
      this.options.onWorkerReady?.(m.threadId);
    } else if (this.startWaiter !== undefined) this.startWaiter.failed(m.startFailed);
    else {
      this.options.onWorkerStartFailed(m.threadId, m.startFailed);
      setTimeout(() => this.terminate(m.threadId), RESTART_PAUSE_MS).unref();
    }
  }

  private onReplies(m: WorkerReplies): void {
    if (m.errors !== undefined) this.options.onHandlerErrors(m.errors);
    let offset = 0;
    for (let i = 0; i < m.ids.length; i++) {
      const length = m.lengths[i]!;
      const frame = length < 0 ? null : Buffer.from(m.buffer, offset, length);
      if (length > 0) offset += length;
      const entry = this.inFlight.get(m.ids[i]!);
      if (entry === undefined) {
        // Answered already: its deadline passed, or its worker was written off.
        this.lateReplies++;
        continue;
      }
      this.inFlight.delete(m.ids[i]!);
      entry.call.onReply(frame);
    }
  }

  private armDeadline(deadline: number): void {
    this.deadlineTimer = setTimeout(this.expireNow, Math.max(0, deadline - performance.now()));
  }

  /** Fails the calls past their deadline (the oldest first), then re-arms for the next one. */
  private expire(): void {
    this.deadlineTimer = undefined;
    const now = performance.now();
    for (const [id, entry] of this.inFlight) {
      if (entry.deadline > now) {
        this.armDeadline(entry.deadline);
        return;
      }
      this.inFlight.delete(id);
      entry.call.onFailure(new HandlerTimeoutError(this.timeoutMs));
    }
  }

  private checkHeartbeats(): void {
    const now = process.hrtime.bigint();
    for (const [threadId, heartbeat] of this.heartbeats) {
      const silentMs = Number(now - Atomics.load(heartbeat, HeartbeatLayout.I64.BEAT)) / 1e6;
      if (silentMs <= this.timeoutMs || this.replacing.has(threadId)) continue;
      this.replacing.add(threadId);
      this.options.onWorkerReplaced(threadId, Math.round(silentMs));
      this.terminate(threadId);
    }
  }

  /** Terminates one worker; piscina fails its tasks and starts another in its place. */
  private terminate(threadId: number): void {
    void this.pool.threads.find((w) => w.threadId === threadId)?.terminate();
  }
}
