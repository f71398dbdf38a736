/**
 * One process of the Redis benchmark (bench/redis.ts): opens one limiter on the shared Redis
 * (ours with or without leasing, bottleneck clustering, or rate-limiter-flexible's
 * RateLimiterRedis behind its RateLimiterQueue), warms it up, says `ready`, waits for `go` (a
 * CLOCK_MONOTONIC instant every process starts at), does its share, and sends back what it
 * counted. Every loop is bounded by a count and a deadline.
 *
 * Commands sent to Redis are counted here, in the client, for every library alike: every
 * library in this benchmark talks to Redis through ioredis, and ioredis turns each command into
 * bytes with `Command.prototype.toWritable`, exactly once per command written to a socket.
 */
import { createRequire } from 'node:module';
import Bottleneck from 'bottleneck';
import { RateLimiterQueue, RateLimiterRedis } from 'rate-limiter-flexible';
import { TokenBucket } from '../src/limiters/token-bucket.js';
import { createRedisStore } from '../src/stores/redis-store.js';
import type { RemoteSnapshot } from '../src/stores/remote-limit.js';

export type SubjectKind = 'ours' | 'bottleneck' | 'rlf';

/** What the parent passes (JSON in argv[2]). */
export interface ChildConfig {
  mode: 'throughput' | 'bound';
  subject: SubjectKind;
  /** ours: the store's `lease` option. */
  lease: boolean | { horizonMs: number; maxTokens: number };
  url: string;
  /** ours: the nodes of a Redis Cluster to use instead of `url`. */
  cluster?: string[];
  host: string;
  port: number;
  password?: string;
  /** Unique per run: our store prefix, rate-limiter-flexible's keyPrefix, bottleneck's id. */
  prefix: string;
  rate: number;
  burst: number;
  /** throughput: acquires this process does at most. */
  count: number;
  /** Calls outstanding at once in this process. */
  inFlight: number;
  /** throughput: time bound of the run; bound: how long calls are offered. */
  durationMs: number;
  /** Acquires before `ready` (not counted). */
  warmup: number;
}

/** What a process sends back. */
export interface ChildResult {
  done: number;
  failed: number;
  /** Calls neither resolved nor rejected 5 s after the deadline (counted as not done). */
  unsettled: number;
  /** The common start instant and this process's last completion, monotonic ns (strings). */
  startNs: string;
  endNs: string;
  /** Commands this process's Redis clients wrote between `go` and the end of its share. */
  commands: number;
  commandsByName: Record<string, number>;
  /** ours: the store counters of this process at the end, and at `go` (after the warm-up). */
  store?: RemoteSnapshot;
  storeAtGo?: RemoteSnapshot;
  /** bound: every call's start instant, monotonic ns (strings). */
  starts?: string[];
  firstError?: string;
}

// --- count commands written by ioredis (ours, bottleneck's ioredis datastore, rate-limiter-flexible's client)
const require = createRequire(import.meta.url);
const ioredis = require('ioredis') as {
  Command: { prototype: { toWritable: (...a: unknown[]) => unknown; name: string } };
  Redis: new (o: object) => { quit(): Promise<unknown>; disconnect(): void; on(e: string, f: (e: unknown) => void): void };
};
let counting = false;
let commands = 0;
const byName: Record<string, number> = {};
{
  const proto = ioredis.Command.prototype;
  const original = proto.toWritable;
  proto.toWritable = function (this: { name: string }, ...args: unknown[]): unknown {
    if (counting) {
      commands++;
      byName[this.name] = (byName[this.name] ?? 0) + 1;
    }
    return original.apply(this, args);
  };
}

interface Subject {
  /** One acquire; `fn` (bound mode) runs once admitted. */
  acquire(fn?: () => void): Promise<unknown>;
  close(): Promise<void>;
  store?(): RemoteSnapshot;
}

const noop = (): void => {};
/** How long past its deadline a run waits for calls still outstanding. */
const GRACE_MS = 5000;

async function open(c: ChildConfig): Promise<Subject> {
  switch (c.subject) {
    case 'ours': {
      const store = createRedisStore({ ...(c.cluster === undefined ? { url: c.url } : { cluster: c.cluster }), prefix: c.prefix, lease: c.lease });
      await store.connect();
      const tb = new TokenBucket({ rate: c.rate, burst: c.burst, store, key: 'k' });
      return {
        acquire: (fn) => (fn === undefined ? tb.acquire() : tb.run(fn)),
        close: () => store.close(),
        store: () => tb.snapshot().store!,
      };
    }
    case 'bottleneck': {
      // Bottleneck's token bucket: a reservoir of `burst`, topped up by burst every
      // burst / rate ms, up to `burst` (Redis computes the top-up lazily from elapsed time, in
      // its Lua scripts; a job waiting for the reservoir is woken by the 5 s heartbeat, which
      // these runs never need). minTime must be an integer number of ms in clustering mode
      // (0.001 fails in its scripts: "value is not an integer"), so it stays 0.
      const b = new Bottleneck({
        id: c.prefix,
        datastore: 'ioredis',
        clientOptions: { host: c.host, port: c.port, password: c.password },
        reservoir: c.burst,
        reservoirIncreaseAmount: c.burst,
        reservoirIncreaseInterval: Math.max(1, Math.round((1000 * c.burst) / c.rate)),
        reservoirIncreaseMaximum: c.burst,
        maxConcurrent: null,
        timeout: 120_000,
      });
      b.on('error', (e: unknown) => console.error(`bottleneck: ${String(e)}`));
      await b.ready();
      return {
        acquire: (fn) =>
          b.schedule(() => {
            fn?.();
            return Promise.resolve();
          }),
        close: async () => {
          await b.disconnect(true);
        },
      };
    }
    case 'rlf': {
      const client = new ioredis.Redis({ host: c.host, port: c.port, password: c.password, enableOfflineQueue: false });
      client.on('error', (e) => console.error(`rate-limiter-flexible's ioredis: ${String(e)}`));
      await new Promise((r) => setTimeout(r, 0));
      // A fixed window of `rate` points per second (RateLimiterRedis has no burst setting);
      // RateLimiterQueue queues removeTokens() until the window has points again.
      const rl = new RateLimiterRedis({ storeClient: client, keyPrefix: c.prefix, points: c.rate, duration: 1 });
      const q = new RateLimiterQueue(rl, { maxQueueSize: 10_000_000 });
      // Wait until connected: a command before that fails with the offline queue off.
      for (let i = 0; i < 250; i++) {
        if ((client as unknown as { status: string }).status === 'ready') break;
        await new Promise((r) => setTimeout(r, 20));
      }
      return {
        acquire: async (fn) => {
          await q.removeTokens(1);
          fn?.();
        },
        close: async () => {
          await client.quit().catch(() => client.disconnect());
        },
      };
    }
  }
}

/**
 * Runs up to `count` acquires, `inFlight` at a time, until `deadline` (performance.now() ms).
 * Resolves when all settled, or GRACE_MS after the deadline with what is still unsettled.
 */
function drive(
  s: Subject,
  count: number,
  inFlight: number,
  deadline: number,
  onStart?: () => void,
): Promise<{ done: number; failed: number; unsettled: number; firstError?: string }> {
  let issued = 0;
  let outstanding = 0;
  let done = 0;
  let failed = 0;
  let firstError: string | undefined;
  return new Promise((resolve) => {
    let over = false;
    const finish = (): void => {
      if (over) return;
      over = true;
      clearTimeout(timer);
      resolve({ done, failed, unsettled: outstanding, firstError });
    };
    const timer = setTimeout(finish, Math.max(0, deadline - performance.now()) + GRACE_MS);
    const pump = (): void => {
      if (over) return;
      while (outstanding < inFlight && issued < count && performance.now() < deadline) {
        issued++;
        outstanding++;
        s.acquire(onStart).then(ok, bad);
      }
      if (outstanding === 0) finish();
    };
    const ok = (): void => {
      outstanding--;
      done++;
      pump();
    };
    const bad = (e: unknown): void => {
      outstanding--;
      failed++;
      firstError ??= e instanceof Error ? e.message : String(e);
      pump();
    };
    pump();
  });
}

function message<T>(key: string): Promise<T> {
  return new Promise((resolve) => {
    const on = (m: Record<string, unknown>): void => {
      if (m !== null && typeof m === 'object' && key in m) {
        process.off('message', on);
        resolve(m as T);
      }
    };
    process.on('message', on);
  });
}

const config = JSON.parse(process.argv[2]!) as ChildConfig;
// The parent may die; never outlive it by much.
process.on('disconnect', () => process.exit(3));
setTimeout(() => {
  console.error('redis-child: watchdog expired');
  process.exit(2);
}, config.durationMs + 90_000).unref();

const subject = await open(config);
if (config.warmup > 0) await drive(subject, config.warmup, Math.min(config.inFlight, 32), performance.now() + 2000);
process.send!({ ready: true });
const { go } = await message<{ go: string }>('go');
const startNs = BigInt(go);
// Every process starts at the same monotonic instant (sleep most of the way, then spin < 2 ms).
for (let i = 0; i < 10_000 && process.hrtime.bigint() < startNs - 2_000_000n; i++) await new Promise((r) => setTimeout(r, 1));
while (process.hrtime.bigint() < startNs);
const storeAtGo = subject.store?.();
counting = true;
let result: ChildResult;
if (config.mode === 'throughput') {
  const r = await drive(subject, config.count, config.inFlight, performance.now() + config.durationMs);
  const endNs = process.hrtime.bigint();
  counting = false;
  result = { ...r, startNs: String(startNs), endNs: String(endNs), commands, commandsByName: byName };
} else {
  const starts: bigint[] = [];
  const record = (): void => {
    starts.push(process.hrtime.bigint());
  };
  // Offer `inFlight` waiting calls at all times for durationMs; then let what waits drain.
  const r = await drive(subject, Number.MAX_SAFE_INTEGER, config.inFlight, performance.now() + config.durationMs, record);
  const endNs = process.hrtime.bigint();
  counting = false;
  result = { ...r, startNs: String(startNs), endNs: String(endNs), commands, commandsByName: byName, starts: starts.map(String) };
}
if (subject.store) {
  result.store = subject.store();
  result.storeAtGo = storeAtGo;
}
process.send!({ result });
// The parent reads Redis's counters, then lets us go.
await message('exit');
await Promise.race([subject.close().catch(noop), new Promise((r) => setTimeout(r, 2000))]);
process.exit(0);
