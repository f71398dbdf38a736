// Running test/fixtures/limiter-worker in several threads at once, for the thread tests of the limiters.
import { Worker } from 'node:worker_threads';
import type { WorkerJob } from './fixtures/limiter-worker.js';
import { fixture, nextMessage, type Stall } from './helpers.js';

const workers: Worker[] = [];

/** Terminates every worker started here (call it in afterEach). */
export async function stopLimiterWorkers(): Promise<void> {
  await Promise.all(workers.splice(0).map((w) => w.terminate()));
}

/** Starts one limiter-worker thread running `job` (terminated by {@link stopLimiterWorkers}). */
export function spawn(job: WorkerJob): Worker {
  const worker = new Worker(fixture('limiter-worker'), { workerData: job });
  workers.push(worker);
  return worker;
}

/**
 * Starts `jobs` in as many workers, releases them together, waits for all to finish. Returns the
 * workers' extra messages (a deliberate stall's end) and each worker's event-loop stalls, in job order.
 */
export async function runTogether(jobs: WorkerJob[], timeoutMs: number, onGo?: () => void): Promise<{ extra: { stallEnd?: bigint }[]; stalls: Stall[][] }> {
  const go = new Int32Array(jobs[0]!.go!);
  const spawned = jobs.map((job) => spawn(job));
  await Promise.all(spawned.map((w) => nextMessage(w)));
  const extra: { stallEnd?: bigint }[] = [];
  const stalls: Stall[][] = jobs.map(() => []);
  const finished = spawned.map(
    (w, i) =>
      new Promise<void>((resolve, reject) => {
        w.on('message', (m: { done?: boolean; stallEnd?: bigint; stalls?: Stall[] }) => {
          if (m.stallEnd) extra.push(m);
          if (m.done) {
            stalls[i] = m.stalls!;
            resolve();
          }
        });
        w.on('error', reject);
      }),
  );
  Atomics.store(go, 0, 1);
  Atomics.notify(go, 0);
  onGo?.();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('workers did not finish in time')), timeoutMs);
  });
  try {
    await Promise.race([Promise.all(finished), deadline]);
  } finally {
    clearTimeout(timer);
  }
  return { extra, stalls };
}

/** The instants of a BigInt64Array over `buffer`, sorted. */
export function sortedStarts(buffer: SharedArrayBuffer): bigint[] {
  return Array.from(new BigInt64Array(buffer)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}
