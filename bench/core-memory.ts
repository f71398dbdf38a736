// Bytes per queued call, one library per process (run with --expose-gc): heap after 100 000 calls
// wait on a limiter that admits none of them, minus the heap before, after full GCs.
import Bottleneck from 'bottleneck';
import { RateLimiter as LimiterRateLimiter } from 'limiter';
import PQueue from 'p-queue';
import { RateLimiterMemory, RateLimiterQueue } from 'rate-limiter-flexible';
import { TokenBucket } from '../src/limiters/token-bucket.js';

const COUNT = Number(process.argv[3] ?? 100_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

function heap(): number {
  for (let i = 0; i < 4; i++) gc!();
  return process.memoryUsage().heapUsed;
}

const noop = (): void => {};
const keep: unknown[] = [];
const setups: Record<string, () => void> = {
  'thrift-queue-limiter': () => {
    const tb = new TokenBucket({ rate: 1, periodMs: 86_400_000, burst: 1 });
    tb.tryAcquire();
    for (let i = 0; i < COUNT; i++) keep.push(tb.acquire());
  },
  bottleneck: () => {
    const b = new Bottleneck({ maxConcurrent: 1 });
    keep.push(b.schedule(() => new Promise(noop)));
    for (let i = 0; i < COUNT; i++) keep.push(b.schedule(async () => {}));
  },
  'p-queue': () => {
    const q = new PQueue({ concurrency: 1 });
    keep.push(q.add(() => new Promise(noop)));
    for (let i = 0; i < COUNT; i++) keep.push(q.add(async () => {}));
  },
  limiter: () => {
    const l = new LimiterRateLimiter({ tokensPerInterval: 1, interval: 'day' });
    for (let i = 0; i < COUNT + 1; i++) keep.push(l.removeTokens(1));
  },
  'rate-limiter-flexible': () => {
    const q = new RateLimiterQueue(new RateLimiterMemory({ points: 1, duration: 86_400 }), { maxQueueSize: COUNT + 10 });
    for (let i = 0; i < COUNT + 1; i++) keep.push(q.removeTokens(1));
  },
};

const name = process.argv[2]!;
const before = heap();
setups[name]!();
await new Promise((r) => setTimeout(r, 50));
const after = heap();
process.stdout.write(JSON.stringify({ name, bytesPerCall: (after - before) / COUNT }) + '\n');
process.exit(0);
