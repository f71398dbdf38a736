// Spawning the table-worker fixture and talking to it, for the thread-table tests.
import { Worker } from 'node:worker_threads';
import type { TableCommand, TableReply, TableWorkerData } from './fixtures/table-worker.js';
import { fixture } from './helpers.js';

/** A worker running test/fixtures/table-worker, with its replies in arrival order. */
export class TableWorker {
  readonly worker: Worker;
  private readonly replies: TableReply[] = [];
  private waiters: { op: TableReply['op']; resolve: (r: TableReply) => void; reject: (e: Error) => void }[] = [];
  private exited: number | undefined;
  readonly exit: Promise<number>;

  constructor(data: TableWorkerData) {
    this.worker = new Worker(fixture('table-worker'), { workerData: data });
    this.threadId = this.worker.threadId;
    this.worker.on('message', (m: TableReply) => {
      const i = this.waiters.findIndex((w) => w.op === m.op);
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(m);
      else this.replies.push(m);
    });
    this.exit = new Promise((resolve) => {
      this.worker.on('exit', (code) => {
        this.exited = code;
        for (const w of this.waiters.splice(0)) w.reject(new Error(`worker exited (${code}) before replying ${w.op}`));
        resolve(code);
      });
    });
    this.worker.on('error', (e) => {
      for (const w of this.waiters.splice(0)) w.reject(e);
    });
  }

  /** The thread's id, kept: `worker.threadId` reads -1 once the thread has exited. */
  readonly threadId: number;

  /** The next reply `op` (already received or still to come), within `timeoutMs`. */
  next<O extends TableReply['op']>(op: O, timeoutMs = 10_000): Promise<Extract<TableReply, { op: O }>> {
    const i = this.replies.findIndex((r) => r.op === op);
    if (i >= 0) return Promise.resolve(this.replies.splice(i, 1)[0] as Extract<TableReply, { op: O }>);
    if (this.exited !== undefined) return Promise.reject(new Error(`worker exited (${this.exited}) before replying ${op}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${op} reply within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        op,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r as Extract<TableReply, { op: O }>);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  send(command: TableCommand): void {
    this.worker.postMessage(command);
  }

  /** Terminates the thread (as a crash would end it) and waits until it is gone. */
  async kill(): Promise<void> {
    await this.worker.terminate();
    await this.exit;
  }
}

/** Workers a test file spawned, to terminate after each test. */
export const spawned: TableWorker[] = [];

export function spawnTableWorker(data: TableWorkerData): TableWorker {
  const w = new TableWorker(data);
  spawned.push(w);
  return w;
}

export async function killAll(): Promise<void> {
  await Promise.all(spawned.splice(0).map((w) => w.kill()));
}
