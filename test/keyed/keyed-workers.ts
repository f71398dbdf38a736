// Running the keyed-worker fixture in several threads at once, and reading what they recorded.
import { Worker } from 'node:worker_threads';
import type { ChangingJob, PhasesJob, RaceJob, RealTimeJob } from '../fixtures/keyed-worker.js';
import { fixture, nextMessage } from '../helpers.js';

const workers: Worker[] = [];

/** Terminates the workers of the test that just ran (an afterEach hook). */
export async function stopKeyedWorkers(): Promise<void> {
  await Promise.all(workers.splice(0).map((w) => w.terminate()));
}

/**
 * Starts one worker per job, waits until each is ready, sets `go` (then calls `onGo`), and waits
 * for all to finish.
 */
export async function runWorkers(
  jobs: (PhasesJob | RaceJob | RealTimeJob | ChangingJob)[],
  go: SharedArrayBuffer | undefined,
  timeoutMs: number,
  onGo?: () => void,
): Promise<number[]> {
  const spawned = jobs.map((job) => {
    const w = new Worker(fixture('keyed-worker'), { workerData: job });
    workers.push(w);
    return w;
  });
  await Promise.all(spawned.map((w) => nextMessage(w)));
  const finished = spawned.map((w) => nextMessage<{ done: boolean; calls: number }>(w));
  if (go !== undefined) {
    Atomics.store(new Int32Array(go), 0, 1);
    Atomics.notify(new Int32Array(go), 0);
  }
  onGo?.();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('workers did not finish in time')), timeoutMs);
  });
  try {
    return (await Promise.race([Promise.all(finished), deadline])).map((m) => m.calls);
  } finally {
    clearTimeout(timer);
  }
}

/** Admission instants per key, sorted, from the workers' records. */
export function byKey(keys: SharedArrayBuffer, instants: SharedArrayBuffer): Map<number, bigint[]> {
  const k = new Int32Array(keys);
  const t = new BigInt64Array(instants);
  const map = new Map<number, bigint[]>();
  for (let i = 0; i < k.length; i++) {
    if (t[i] === 0n) continue;
    let list = map.get(k[i]!);
    if (list === undefined) map.set(k[i]!, (list = []));
    list.push(t[i]!);
  }
  for (const list of map.values()) list.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return map;
}
