/**
 * Hands admitted requests to the worker pool in batches and routes the replies back.
 *
 * Frames dispatched during one event-loop turn are packed into one transferred buffer and sent as
 * one piscina task (flushed on setImmediate, or at once when a batch is full), so the cost of
 * crossing threads is paid once per batch instead of once per call. Replies of calls that finish
 * in the worker's first turn come back as the task's result; later ones come back on their own,
 * per turn, as soon as they are ready. If a worker dies, piscina rejects its tasks; the calls of those
 * batches that had not been answered yet are failed (the server answers them with a
 * TApplicationException), and their limits' permits held by the dead thread are reclaimed.
 */
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { packFrames, type WorkerBatch, type WorkerReplies } from './batch.js';

/** One dispatched call, as the dispatcher sees it. */
export interface DispatchedCall {
  /** The request frame (without its length prefix). */
  readonly frame: Buffer;
  /** Called once with the reply frame (length prefix included), or null for a oneway call. */
  onReply(frame: Buffer | null): void;
  /** Called once if the call cannot be answered by a worker (the worker died). */
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
  /** Told when a worker thread is gone, to reclaim what it held. */
  onWorkerExit(threadId: number): void;
}

const MAX_BATCH = 256;
// Batches outstanding per worker before piscina queues more; far above any useful batch count,
// it only stops a wedged worker from swallowing the whole backlog.
const TASKS_PER_WORKER = 64;

/** The worker pool and the batching in front of it. */
export class Dispatcher {
  private readonly pool: Piscina;
  private readonly inFlight = new Map<number, DispatchedCall>();
  private nextId = 1;
  private batch: number[] = [];
  private flushScheduled = false;
  private readonly flushNow = (): void => this.flush();

  constructor(options: DispatcherOptions) {
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
    this.pool.on('message', (m: WorkerReplies) => {
      if (m?.replies === true) this.onReplies(m);
    });
    this.pool.on('workerDestroy', (worker: { id: number }) => options.onWorkerExit(worker.id));
    this.pool.on('error', () => {
      // A worker's uncaught error: piscina replaces the worker and fails its tasks, which is
      // handled per batch; the pool itself must not take the process down.
    });
  }

  /** Calls handed to workers and not yet answered. */
  get outstanding(): number {
    return this.inFlight.size;
  }

  /** Worker threads running now. */
  get threads(): number {
    return this.pool.threads.length;
  }

  /** Queues a call for the next batch. */
  dispatch(call: DispatchedCall): void {
    const id = this.nextId++;
    this.inFlight.set(id, call);
    this.batch.push(id);
    if (this.batch.length >= MAX_BATCH) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushNow);
    }
  }

  /** Fails every call not answered yet (shutdown past its deadline). */
  failAll(error: Error): void {
    for (const [id, call] of this.inFlight) {
      this.inFlight.delete(id);
      call.onFailure(error);
    }
  }

  /** Stops the workers. */
  async destroy(): Promise<void> {
    await this.pool.destroy();
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.batch.length === 0) return;
    const ids = this.batch;
    this.batch = [];
    const frames: Buffer[] = [];
    const sent: number[] = [];
    for (const id of ids) {
      const call = this.inFlight.get(id);
      if (call === undefined) continue;
      frames.push(call.frame);
      sent.push(id);
    }
    const packed = packFrames(frames);
    const task: WorkerBatch = { ids: sent, lengths: packed.lengths, buffer: packed.buffer };
    this.pool.run(task, { transferList: [packed.buffer] }).then((replies: WorkerReplies | null) => {
      if (replies !== null) this.onReplies(replies);
    }, (error: unknown) => {
      const reason = new Error(`worker failed: ${error instanceof Error ? error.message : String(error)}`);
      for (const id of sent) {
        const call = this.inFlight.get(id);
        if (call === undefined) continue;
        this.inFlight.delete(id);
        call.onFailure(reason);
      }
    });
  }

  private onReplies(m: WorkerReplies): void {
    let offset = 0;
    for (let i = 0; i < m.ids.length; i++) {
      const length = m.lengths[i]!;
      const frame = length < 0 ? null : Buffer.from(m.buffer, offset, length);
      if (length > 0) offset += length;
      const call = this.inFlight.get(m.ids[i]!);
      if (call === undefined) continue; // already failed (worker death raced its last replies)
      this.inFlight.delete(m.ids[i]!);
      call.onReply(frame);
    }
  }
}

/** Default worker count: the machine's available parallelism. */
export function defaultWorkers(): number {
  return availableParallelism();
}
