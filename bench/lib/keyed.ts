/**
 * Cost per tryAcquire of the keyed table against a single TokenBucket, measured in the same run
 * (tinybench, see micro.ts). Writes bench/results/keyed.md.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/lib/keyed.js [--quick]
 *
 * Cases: one key over and over (a hit in its home slot); 1 000 keys in turn (hits, some a few
 * slots from home); 100 000 keys in turn against 4 096 slots, either idle after one call (every
 * call reclaims a slot: the insert path) or active for much longer than the run (the table is
 * full: every call scans its window and takes the overflow bucket). Every bucket is sized so
 * it never refuses during the run: the figures are the cost of admitting.
 */
import { KeyHasher } from '../../src/keyed/key-hash.js';
import { KeyedTokenBucket } from '../../src/keyed/keyed-token-bucket.js';
import { TokenBucket } from '../../src/limiters/token-bucket.js';
import { nsPerCall, type MicroOptions, type Op } from './micro.js';
import { fmt, machine, quick, table, writeResult } from './report.js';

const MICRO: MicroOptions = quick ? { runs: 1, timeMs: 60, warmupMs: 20 } : { runs: 5, timeMs: 300, warmupMs: 100 };
const SLOTS = 4096;

function cycle(count: number, prefix: string): () => string {
  const keys = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
  let i = 0;
  return () => {
    const key = keys[i]!;
    i = i + 1 === count ? 0 : i + 1;
    return key;
  };
}

async function main(): Promise<void> {
  const single = new TokenBucket({ rate: 1e9 });
  // 10⁶/s per key is the table's most; a burst of 10⁹ keeps a key from ever running dry here.
  const plenty = { rate: 1e6, burst: 1e9, slots: SLOTS };
  const hit = new KeyedTokenBucket(plenty);
  const thousand = new KeyedTokenBucket(plenty);
  const reclaim = new KeyedTokenBucket({ rate: 1e6, burst: 1, slots: SLOTS });
  const full = new KeyedTokenBucket({ rate: 1, periodMs: 1e9, burst: 1, slots: SLOTS, overflowRate: 1e9, overflowBurst: 1 });
  const hasher = new KeyHasher(0, 0, SLOTS);
  const k1000 = cycle(1000, 'client');
  const kReclaim = cycle(100_000, 'flood');
  const kFull = cycle(100_000, 'flood');
  const tasks: Record<string, Op> = {
    'TokenBucket `tryAcquire()` (one bucket)': () => single.tryAcquire(),
    'KeyedTokenBucket `tryAcquire(key)`: one key (hit)': () => hit.tryAcquire('client-1'),
    'KeyedTokenBucket `tryAcquire(key)`: 1 000 keys in turn (hits)': () => thousand.tryAcquire(k1000()),
    'KeyedTokenBucket `tryAcquire(key)`: 100 000-key flood, idle slots (each call reclaims one)': () => reclaim.tryAcquire(kReclaim()),
    'KeyedTokenBucket `tryAcquire(key)`: 100 000-key flood, table full (each call: window scan + overflow bucket)': () => full.tryAcquire(kFull()),
    '(reference) key hash alone, 1 000 keys in turn': () => hasher.hash(k1000()),
    '(reference) `process.hrtime.bigint()`': () => process.hrtime.bigint(),
  };
  const ns = await nsPerCall(tasks, { kind: 'sync' }, MICRO);
  const base = ns['TokenBucket `tryAcquire()` (one bucket)']!;
  const snapReclaim = reclaim.snapshot();
  const snapFull = full.snapshot();
  const text = [
    '# Keyed token bucket: cost per tryAcquire',
    `- Machine: ${machine()}. Command: \`npx tsc -p tsconfig.json && node dist/bench/lib/keyed.js${quick ? ' --quick' : ''}\`.`,
    `- Method: tinybench, ${MICRO.runs} run(s) of ${MICRO.timeMs} ms per task, each iteration as many calls as fit in ~2 ms; figure = median over runs of each run's mean; task order rotated between runs; all tasks in one process, same run. Table: ${SLOTS} slots, probe window 16. Noisy shared cores: compare rows within one run.`,
    '',
    table(
      ['call', 'ns per call', '× TokenBucket'],
      Object.entries(ns).map(([name, v]) => [name, fmt(v, 0), fmt(v / base, 2)]),
    ),
    '',
    `After the run: idle-slot flood ${snapReclaim.reclaimed.toLocaleString('en-US')} reclaims, ${snapReclaim.tableFull} table-full; full-table flood ${snapFull.tableFull.toLocaleString('en-US')} table-full events, ${snapFull.overflowAdmitted.toLocaleString('en-US')} overflow admissions, ${snapFull.keysActive} active keys.`,
    '',
  ].join('\n');
  const path = writeResult('keyed.md', text);
  console.log(text);
  console.log(`written to ${path}`);
}

await main();
