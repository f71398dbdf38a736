/**
 * Redis losing a limit's state while 3 processes × 2 threads keep it overloaded: FLUSHALL, and a
 * restart without persistence (under fail-closed and local-share). Judged on the instants calls
 * started (CLOCK_MONOTONIC, one clock for every process): the excess over the documented bound
 * burst + rate × (L + d), worst over every closed interval (where GCRA itself allows one more), d
 * being the longest a token was held (the processes' `maxHoldMs`).
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { LoadConfig } from '../fixtures/redis-load.js';
import { worstExcess } from '../helpers.js';
import type { StoreErrorPolicy } from '../../src/stores/store.js';
import { startLoad } from './redis-load-run.js';
import { startRedis, type TestRedis } from './redis-server.js';

const RATE = 400;
const BURST = 20;
const PROCESSES = 3;

const servers: TestRedis[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

const sleepUntil = async (ns: bigint): Promise<void> => {
  for (let left = ns - process.hrtime.bigint(); left > 0n; left = ns - process.hrtime.bigint()) {
    await new Promise((r) => setTimeout(r, Math.max(1, Number(left / 1_000_000n) - 2)));
  }
};

interface LossRun {
  /** Worst excess over burst + rate × (L + d), in calls. */
  excess: number;
  /** The worst interval. */
  worst: { count: number; lengthMs: number };
  holdMs: number;
  starts: number;
  refused: number;
  /** ms from the event (or the restart) to the first start after it. */
  recoveryMs: number;
  logs: string[];
  /** Answers that found the state lost, over all processes. */
  lost: number;
}

async function lossRun(event: 'flushall' | 'restart', onStoreError: StoreErrorPolicy): Promise<LossRun> {
  const redis = await startRedis();
  servers.push(redis);
  const config: Omit<LoadConfig, 'startAt'> = {
    url: redis.url,
    prefix: 'loss:',
    lease: false,
    rate: RATE,
    burst: BURST,
    threads: 2,
    inFlight: 32,
    durationMs: 3000,
    store: { onStoreError, expectedProcesses: PROCESSES, timeoutMs: 200 },
  };
  const load = await startLoad(Array.from({ length: PROCESSES }, () => config));
  const startAt = load.startAt;
  let back: bigint;
  if (event === 'flushall') {
    await sleepUntil(startAt + 1_200_000_000n);
    back = process.hrtime.bigint();
    expect(redis.cli('FLUSHALL')).toBe('OK');
  } else {
    await sleepUntil(startAt + 1_000_000_000n);
    await redis.kill();
    await sleepUntil(startAt + 1_500_000_000n);
    await redis.restart();
    back = process.hrtime.bigint();
  }
  const results = await load.results;
  const starts = results.flatMap((r) => r.starts.map(BigInt)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const holdMs = Math.max(...results.map((r) => r.store.maxHoldMs));
  const worst = worstExcess(starts, BURST, RATE);
  const excess = worst.excess - (RATE * holdMs) / 1000;
  const firstAfter = starts.find((t) => t >= back);
  // The longest time without any start from the event on (from the restart, for a restart).
  let gapMs = 0;
  for (let i = 1, prev = back; i <= starts.length; i++) {
    const t = starts[i - 1]!;
    if (t < back) continue;
    gapMs = Math.max(gapMs, Number(t - prev) / 1e6);
    prev = t;
  }
  const run: LossRun = {
    excess,
    worst: { count: worst.count, lengthMs: worst.lengthMs },
    holdMs,
    starts: starts.length,
    refused: results.reduce((a, r) => a + r.refusals.length, 0),
    recoveryMs: firstAfter === undefined ? Infinity : Number(firstAfter - back) / 1e6,
    logs: results.flatMap((r) => r.logs),
    lost: results.reduce((a, r) => a + r.store.stateLost, 0),
  };
  console.log(
    `${event} (${onStoreError}): ${run.starts} starts, ${run.refused} refused; worst interval ${worst.count} starts in ${worst.lengthMs.toFixed(1)} ms; excess over burst + rate × (L + d) = ${excess.toFixed(1)} (d = ${holdMs.toFixed(1)} ms); first start ${run.recoveryMs.toFixed(0)} ms after, longest time without a start after it ${gapMs.toFixed(0)} ms`,
  );
  return run;
}

describe('Redis losing a limit under load (3 processes × 2 threads, 400/s burst 20)', () => {
  it('FLUSHALL: the state restarts empty and behind every booking, so starts stay within burst + rate × (L + d) (+1 for a closed interval) in every interval', async () => {
    const r = await lossRun('flushall', 'fail-closed');
    expect(r.lost).toBeGreaterThanOrEqual(1);
    expect(r.excess).toBeLessThanOrEqual(1);
    expect(r.recoveryMs).toBeLessThan(1000);
  }, 30_000);

  it('restart without persistence (fail-closed): within burst + rate × (L + d) (+1) in every interval, calls refused only while down, admitted again after the restart', async () => {
    const r = await lossRun('restart', 'fail-closed');
    expect(r.lost).toBeGreaterThanOrEqual(1);
    expect(r.excess).toBeLessThanOrEqual(1);
    expect(r.refused).toBeGreaterThan(0);
    expect(r.recoveryMs).toBeLessThan(2000);
  }, 30_000);

  it('restart without persistence (local-share): nothing refused, excess over burst + rate × (L + d) within one burst', async () => {
    const r = await lossRun('restart', 'local-share');
    // Exact (+1) when every process is back on Redis within RECOVERY_STAGGER_MS of the first; a
    // process slower than that runs on its share meanwhile, which this machine's load can cause.
    expect(r.excess).toBeLessThanOrEqual(BURST);
    expect(r.refused).toBe(0);
  }, 30_000);
});
