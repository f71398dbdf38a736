/** Runs memory-child.js once per library, each in its own `node --expose-gc` process. */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { median } from './report.js';

export interface MemoryResult {
  name: string;
  count: number;
  /** Calls the library reports waiting (NaN when it does not tell). */
  queued: number;
  bytesPerCall: number;
}

export const MEMORY_LIBRARIES = [
  'ours: TokenBucket acquire()',
  'ours: TokenBucket run(noop)',
  'bottleneck schedule(fn), maxConcurrent 1',
  'p-queue add(fn), interval mode',
  'limiter removeTokens(1)',
  'rate-limiter-flexible RateLimiterQueue',
];

/**
 * Bytes per queued call of every library: the median over `repeats` fresh processes each (heap
 * layout and GC timing move a single reading by a few percent). Libraries alternate within a round.
 */
export async function memoryRun(count: number, repeats: number): Promise<MemoryResult[]> {
  const run = promisify(execFile);
  const script = fileURLToPath(new URL('./memory-child.js', import.meta.url));
  const readings = new Map<string, MemoryResult[]>(MEMORY_LIBRARIES.map((n) => [n, []]));
  for (let round = 0; round < repeats; round++) {
    for (const name of MEMORY_LIBRARIES) {
      const { stdout } = await run(process.execPath, ['--expose-gc', script, name, String(count)], { timeout: 60_000 });
      const r = JSON.parse(stdout) as { name: string; count: number; queued: number | null; bytesPerCall: number };
      readings.get(name)!.push({ ...r, queued: r.queued ?? NaN });
    }
  }
  return MEMORY_LIBRARIES.map((name) => {
    const rs = readings.get(name)!;
    return { ...rs[0]!, queued: Math.min(...rs.map((r) => r.queued)), bytesPerCall: median(rs.map((r) => r.bytesPerCall)) };
  });
}
