/**
 * Redis failing under load, for each `onStoreError` policy: killed and restarted, and hung
 * (SIGSTOP) past the store timeout. Checked: the policy's behaviour while down, one log line per
 * incident and one at recovery, recovery by itself after the restart, and no call left hanging.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { limiterMetrics, StoreUnavailableError, TokenBucket } from '../../src/index.js';
import type { StoreErrorPolicy } from '../../src/stores/store.js';
import { createRedisStore, type RedisStore } from '../../src/stores/redis-store.js';
import { stalledMs, watchStalls, type Stall } from '../helpers.js';
import { startRedis, type TestRedis } from './redis-server.js';

const RATE = 100;
const BURST = 10;
const IN_FLIGHT = 8;

interface Outcome {
  at: number;
  admitted: boolean;
  error?: unknown;
}

/**
 * A closed loop keeping IN_FLIGHT calls waiting, each resubmitted on the next turn (refused ones
 * after 5 ms). Once stopped, `stalledMs(from, to)` gives how long this process's event loop was
 * stalled between two of its times: the load could not run meanwhile.
 */
function startLoad(tb: TokenBucket): { outcomes: Outcome[]; now(): number; stop(): Promise<void>; stalledMs: (from: number, to: number) => number } {
  const watch = watchStalls();
  let stalls: Stall[] = [];
  const t0ns = process.hrtime.bigint();
  const t0 = performance.now();
  const outcomes: Outcome[] = [];
  let stopped = false;
  let inFlight = 0;
  let drained: (() => void) | undefined;
  const submit = (): void => {
    if (stopped) return;
    inFlight++;
    tb.run(
      () => {
        outcomes.push({ at: performance.now() - t0, admitted: true });
      },
      1,
      { maxWaitMs: 3000 },
    ).then(
      () => settled(0),
      (error: unknown) => {
        outcomes.push({ at: performance.now() - t0, admitted: false, error });
        settled(5);
      },
    );
  };
  const settled = (delay: number): void => {
    inFlight--;
    if (stopped) {
      if (inFlight === 0) drained?.();
    } else if (delay === 0) {
      // Through the event loop, so a policy that admits everything (fail-open) cannot starve timers.
      setImmediate(submit);
    } else setTimeout(submit, delay);
  };
  for (let i = 0; i < IN_FLIGHT; i++) submit();
  return {
    outcomes,
    now: () => performance.now() - t0,
    stop: () => {
      stopped = true;
      stalls = watch.stop();
      return inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => (drained = resolve));
    },
    stalledMs: (from, to) => stalledMs(stalls, t0ns + BigInt(Math.round(from * 1e6)), t0ns + BigInt(Math.round(to * 1e6))),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const admittedIn = (o: Outcome[], from: number, to: number): number => o.filter((x) => x.admitted && x.at >= from && x.at < to).length;
const refusedIn = (o: Outcome[], from: number, to: number): Outcome[] => o.filter((x) => !x.admitted && x.at >= from && x.at < to);

let redis: TestRedis | undefined;
let store: RedisStore | undefined;
afterEach(async () => {
  await store?.close();
  await redis?.stop();
  store = undefined;
  redis = undefined;
});

/** Runs the load 1 s up, kills Redis for 1.5 s, restarts it, waits for recovery, runs 1.5 s more. */
async function killAndRestart(policy: StoreErrorPolicy) {
  redis = await startRedis();
  const logs: string[] = [];
  store = createRedisStore({ url: redis.url, onStoreError: policy, expectedProcesses: 2, timeoutMs: 200, log: (l) => logs.push(l) });
  const tb = new TokenBucket({ rate: RATE, burst: BURST, store, key: `faults-${policy}` });
  const load = startLoad(tb);
  await sleep(1000);
  const killedAt = load.now();
  await redis.kill();
  await sleep(1500);
  const restartedAt = load.now();
  await redis.restart();
  const deadline = Date.now() + 6000;
  while (tb.snapshot().store!.down && Date.now() < deadline) await sleep(20);
  const recoveredAt = load.now();
  // 1.5 s: the restart lost the limit's state, which restarts empty and behind what was booked
  // before (400 ms here: a burst's 100 ms, the 250 ms look-ahead, local-share's 50 ms reserve);
  // the last second is judged.
  await sleep(1500);
  const endAt = load.now();
  // Every call settles: none is left waiting on a store that went away.
  const hung = await Promise.race([load.stop().then(() => false), sleep(5000).then(() => true)]);
  const metrics = await limiterMetrics({ faults: tb }).metrics();
  return { o: load.outcomes, logs, killedAt, restartedAt, recoveredAt, endAt, hung, snap: tb.snapshot().store!, metrics, stalledMs: load.stalledMs };
}

describe('Redis killed and restarted mid-run', () => {
  it('fail-closed: refuses calls with StoreUnavailableError while down (at most a booked burst admitted), logs once, recovers by itself, no hung call', async () => {
    const r = await killAndRestart('fail-closed');
    expect(r.hung).toBe(false);
    expect(admittedIn(r.o, 0, r.killedAt)).toBeGreaterThan(50 - (RATE * r.stalledMs(0, r.killedAt)) / 1000);
    expect(refusedIn(r.o, 0, r.killedAt)).toHaveLength(0);
    // Tokens Redis booked before it died may still be used; nothing beyond them.
    expect(admittedIn(r.o, r.killedAt, r.restartedAt)).toBeLessThanOrEqual(BURST);
    const refused = refusedIn(r.o, r.killedAt, r.recoveredAt + 50);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((x) => x.error instanceof StoreUnavailableError)).toBe(true);
    expect(r.recoveredAt - r.restartedAt).toBeLessThan(5000 + r.stalledMs(r.restartedAt, r.recoveredAt));
    // About 100 in the second after recovery, less what the rate gives while the process is stalled.
    expect(admittedIn(r.o, r.recoveredAt, r.endAt)).toBeGreaterThan(50 - (RATE * r.stalledMs(r.recoveredAt, r.endAt)) / 1000);
    expect(r.logs.filter((l) => /unavailable/.test(l))).toHaveLength(1);
    expect(r.logs.filter((l) => /answers again/.test(l))).toHaveLength(1);
    expect(r.snap.incidents).toBe(1);
    expect(r.snap.errors).toBeGreaterThan(0);
    // The same counters on the Prometheus endpoint.
    expect(r.metrics).toContain('tql_store_incidents_total{limit="faults"} 1');
    expect(r.metrics).toContain('tql_store_down{limit="faults"} 0');
    expect(r.metrics).toContain(`tql_refused_total{limit="faults",reason="store_unavailable"} ${r.snap.refused}`);
    expect(Number(/tql_store_errors_total\{limit="faults"\} (\d+)/.exec(r.metrics)![1])).toBe(r.snap.errors);
  }, 30_000);

  it('fail-open: admits every call while down (far over the rate), nothing refused, rate-limited again after recovery', async () => {
    const r = await killAndRestart('fail-open');
    expect(r.hung).toBe(false);
    expect(r.o.filter((x) => !x.admitted)).toHaveLength(0);
    const downS = (r.restartedAt - r.killedAt) / 1000;
    const stalledS = r.stalledMs(r.killedAt, r.restartedAt) / 1000;
    expect(admittedIn(r.o, r.killedAt, r.restartedAt)).toBeGreaterThan(3 * RATE * (downS - stalledS));
    expect(r.snap.admittedFailOpen).toBeGreaterThan(0);
    // After recovery the limit holds again: the last second admits at most burst + rate × 1 s
    // (plus one booked burst left from before).
    expect(admittedIn(r.o, r.endAt - 1000, r.endAt)).toBeLessThanOrEqual(2 * BURST + RATE);
    expect(r.logs.filter((l) => /unavailable/.test(l))).toHaveLength(1);
    expect(r.logs.filter((l) => /answers again/.test(l))).toHaveLength(1);
  }, 30_000);

  it('local-share: each process enforces rate / expectedProcesses while down, nothing refused, full rate after recovery', async () => {
    const r = await killAndRestart('local-share');
    expect(r.hung).toBe(false);
    expect(r.o.filter((x) => !x.admitted)).toHaveLength(0);
    const downS = (r.restartedAt - r.killedAt) / 1000;
    const share = RATE / 2;
    const whileDown = admittedIn(r.o, r.killedAt, r.restartedAt);
    // Its share, plus its share's burst, plus a burst booked before the kill.
    expect(whileDown).toBeLessThanOrEqual(Math.ceil(share * downS) + BURST / 2 + BURST);
    // At least most of its share over the time the process could run (the first 0.3 s go to
    // noticing that Redis is gone).
    const stalledS = r.stalledMs(r.killedAt, r.restartedAt) / 1000;
    expect(whileDown).toBeGreaterThanOrEqual(0.8 * share * (downS - 0.3 - stalledS));
    expect(r.snap.admittedLocalShare).toBeGreaterThan(0);
    expect(admittedIn(r.o, r.endAt - 1000, r.endAt)).toBeGreaterThan(0.9 * RATE * (1 - r.stalledMs(r.endAt - 1000, r.endAt) / 1000));
    expect(r.logs.filter((l) => /unavailable/.test(l))).toHaveLength(1);
  }, 30_000);
});

describe('Redis hung (SIGSTOP) past the store timeout', () => {
  it('every store call is bounded by timeoutMs: calls are refused (fail-closed) within the timeout, and served again after SIGCONT', async () => {
    redis = await startRedis();
    const logs: string[] = [];
    store = createRedisStore({ url: redis.url, onStoreError: 'fail-closed', timeoutMs: 200, log: (l) => logs.push(l) });
    const tb = new TokenBucket({ rate: RATE, burst: BURST, store, key: 'hang' });
    const load = startLoad(tb);
    await sleep(700);
    const pausedAt = load.now();
    redis.pause();
    await sleep(1500);
    const resumedAt = load.now();
    redis.resume();
    await sleep(1500);
    const endAt = load.now();
    const hung = await Promise.race([load.stop().then(() => false), sleep(5000).then(() => true)]);
    expect(hung).toBe(false);
    const refused = refusedIn(load.outcomes, pausedAt, resumedAt + 100);
    const back = load.outcomes.find((x) => x.admitted && x.at > resumedAt);
    console.log(
      `hung 1.5 s: first refusal ${(refused[0]?.at ?? NaN) - pausedAt} ms after SIGSTOP; ${refused.length} calls refused; admitting again ${(back?.at ?? NaN) - resumedAt} ms after SIGCONT`,
    );
    expect(refused.length).toBeGreaterThan(0);
    // The first refusal comes no later than one booked burst (100 ms at this rate), one timeout
    // and a margin for the machine after the pause, plus the time this process was stalled.
    expect(refused[0]!.at - pausedAt).toBeLessThan(100 + 200 + 300 + load.stalledMs(pausedAt, refused[0]!.at));
    expect(refused.every((x) => x.error instanceof StoreUnavailableError)).toBe(true);
    expect(admittedIn(load.outcomes, resumedAt + 500, endAt)).toBeGreaterThan(50 - (RATE * load.stalledMs(resumedAt + 500, endAt)) / 1000);
    expect(logs.some((l) => /timed out/i.test(l))).toBe(true);
  }, 30_000);
});

describe("'refused' events for the store (fail-closed)", () => {
  it("a call refused while it waits for the store's answer emits 'refused' with store_unavailable, as one refused before queueing does", async () => {
    redis = await startRedis();
    store = createRedisStore({ url: redis.url, onStoreError: 'fail-closed', timeoutMs: 200, log: () => {} });
    const tb = new TokenBucket({ rate: RATE, burst: 1, store, key: 'refused-events' });
    const events: string[] = [];
    tb.on('refused', (e) => events.push(e.reason));
    await tb.acquire();
    redis.pause();
    try {
      // These wait in the queue for the fetch Redis never answers; its timeout refuses them.
      const waiting = Array.from({ length: 5 }, () =>
        tb.acquire(1, { maxWaitMs: 10_000 }).then(
          () => 'admitted',
          (e: unknown) => e,
        ),
      );
      const outcomes = await Promise.all(waiting);
      expect(outcomes.every((e) => e instanceof StoreUnavailableError)).toBe(true);
      // The store is down now: this one is refused before it queues.
      await expect(tb.acquire(1, { maxWaitMs: 10_000 })).rejects.toBeInstanceOf(StoreUnavailableError);
      expect(events).toEqual(Array(6).fill('store_unavailable'));
      expect(tb.snapshot().store!.refused).toBe(6);
    } finally {
      redis.resume();
    }
  }, 30_000);
});
