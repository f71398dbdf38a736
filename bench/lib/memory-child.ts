/**
 * Bytes per queued call, one library per process; run as
 *   node --expose-gc dist/bench/lib/memory-child.js <library> <count>
 *
 * Heap used after full GCs, before and after `count` calls are queued on a limiter that admits
 * none of them (one admission is used up first where needed), divided by `count`. The limiter and
 * the callers' promises are kept reachable from module scope for the whole measurement: without
 * that, a queue nobody references (no timer armed) would be collected and read as free. The array
 * holding the promises is allocated at full size before the first reading, so it is not counted.
 * Prints one JSON line: { name, count, queued, bytesPerCall }.
 */
import Bottleneck from 'bottleneck';
import { RateLimiter as LimiterRateLimiter } from 'limiter';
import PQueue from 'p-queue';
import { RateLimiterMemory, RateLimiterQueue } from 'rate-limiter-flexible';
import { TokenBucket } from '../../src/limiters/token-bucket.js';

const name = process.argv[2] ?? '';
const count = Number(process.argv[3] ?? 100_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

function heapUsed(): number {
  for (let i = 0; i < 4; i++) gc!();
  return process.memoryUsage().heapUsed;
}

const DAY_MS = 86_400_000;
const noop = (): void => {};
const noopAsync = async (): Promise<void> => {};
const never = (): Promise<never> => new Promise<never>(noop);

interface Setup {
  /** Builds the limiter and uses up what it would admit at once. */
  create(): unknown;
  /** Queues one call. */
  enqueue(limiter: unknown): Promise<unknown>;
  /** Calls waiting now, or NaN if the library does not tell. */
  queued(limiter: unknown): number;
}

const setups: Record<string, Setup> = {
  'ours: TokenBucket acquire()': {
    create: () => {
      const tb = new TokenBucket({ rate: 1, periodMs: DAY_MS, burst: 1 });
      tb.tryAcquire();
      return tb;
    },
    enqueue: (l) => (l as TokenBucket).acquire(),
    queued: (l) => (l as TokenBucket).size,
  },
  'ours: TokenBucket run(noop)': {
    create: () => {
      const tb = new TokenBucket({ rate: 1, periodMs: DAY_MS, burst: 1 });
      tb.tryAcquire();
      return tb;
    },
    enqueue: (l) => (l as TokenBucket).run(noop),
    queued: (l) => (l as TokenBucket).size,
  },
  'bottleneck schedule(fn), maxConcurrent 1': {
    create: () => {
      const b = new Bottleneck({ maxConcurrent: 1 });
      void b.schedule(never);
      return b;
    },
    enqueue: (l) => (l as Bottleneck).schedule(noopAsync),
    queued: (l) => {
      const c = (l as Bottleneck).counts();
      return (c.RECEIVED ?? 0) + (c.QUEUED ?? 0);
    },
  },
  'p-queue add(fn), interval mode': {
    create: () => {
      const q = new PQueue({ intervalCap: 1, interval: DAY_MS });
      void q.add(never);
      return q;
    },
    enqueue: (l) => (l as PQueue).add(noop),
    queued: (l) => (l as PQueue).size,
  },
  'limiter removeTokens(1)': {
    create: () => {
      const l = new LimiterRateLimiter({ tokensPerInterval: 1, interval: 'day' });
      l.tryRemoveTokens(1);
      return l;
    },
    enqueue: (l) => (l as LimiterRateLimiter).removeTokens(1),
    queued: () => NaN,
  },
  'rate-limiter-flexible RateLimiterQueue': {
    create: () => {
      const q = new RateLimiterQueue(new RateLimiterMemory({ points: 1, duration: DAY_MS / 1000 }), { maxQueueSize: count + 10 });
      void q.removeTokens(1);
      return q;
    },
    enqueue: (l) => (l as RateLimiterQueue).removeTokens(1),
    queued: () => NaN,
  },
};

const setup = setups[name];
if (setup === undefined) throw new Error(`unknown library ${JSON.stringify(name)}; one of ${Object.keys(setups).join(', ')}`);

// Warm up the code paths (bytecode and feedback are heap too) on a throwaway instance.
{
  const warm = setup.create();
  for (let i = 0; i < 100; i++) setup.enqueue(warm).catch(noop);
}
await new Promise((r) => setTimeout(r, 20));

const held: { limiter: unknown; promises: unknown[] } = { limiter: undefined, promises: new Array<unknown>(count).fill(0) };
(globalThis as { held?: unknown }).held = held;
const before = heapUsed();
held.limiter = setup.create();
for (let i = 0; i < count; i++) {
  // No .catch() here: it would add a promise per call to every library's figure. Nothing is
  // refused before the process exits.
  held.promises[i] = setup.enqueue(held.limiter);
}
await new Promise((r) => setTimeout(r, 50));
const after = heapUsed();
const queued = setup.queued(held.limiter);
process.stdout.write(JSON.stringify({ name, count, queued, bytesPerCall: (after - before) / count }) + '\n');
process.exit(0);
