/**
 * Pacing at burst 1 with the limit in Redis, across 2 processes × 2 worker threads: one round trip
 * per token, each request reaching Redis a timer's lateness and a round trip after its slot, which
 * the lease script credits (src/stores/redis-scripts.ts). Judged on the instants calls started
 * (CLOCK_MONOTONIC, one clock for every process on Linux) against burst + rate × (L + d), d the
 * longest hold the processes measured (credit included); the achieved rate only against a floor a
 * loaded host clears (the rate itself is bench/pacing.ts's).
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadConfig, LoadResult } from '../fixtures/redis-load.js';
import { worstExcess } from '../helpers.js';
import { sharedRedis, type TestRedis } from './redis-server.js';

const FIXTURE = fileURLToPath(new URL('../../dist/test/fixtures/redis-load.js', import.meta.url));
const RATE = 500;
const PROCESSES = 2;

let redis: Pick<TestRedis, 'url' | 'cli' | 'stop'>;
beforeAll(async () => {
  redis = await sharedRedis();
});
afterAll(async () => {
  await redis?.stop();
});

function runProcess(config: LoadConfig): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = fork(FIXTURE, [JSON.stringify(config)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: LoadResult | undefined;
    child.once('message', (m) => {
      result = m as LoadResult;
    });
    child.once('error', reject);
    child.once('exit', (code) => (result !== undefined ? resolve(result) : reject(new Error(`load process exited ${code} without a result`))));
  });
}

describe('Redis store at burst 1 across 2 processes × 2 worker threads', () => {
  it('starts never exceed 1 + rate × (L + measured hold) in any interval, and the limit paces at ≥ 80 % of its rate (a floor for loaded hosts)', async () => {
    const startAt = String(process.hrtime.bigint() + 3_000_000_000n);
    const config: LoadConfig = {
      url: redis.url,
      prefix: `pace:${Math.random()}:`,
      lease: false,
      rate: RATE,
      burst: 1,
      threads: 2,
      inFlight: 8,
      durationMs: 2000,
      startAt,
    };
    const results = await Promise.all(Array.from({ length: PROCESSES }, () => runProcess(config)));
    expect(results.every((r) => r.store.errors === 0)).toBe(true);
    const starts = results.flatMap((r) => r.starts.map(BigInt)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const holdMs = Math.max(...results.map((r) => r.store.maxHoldMs));
    const worst = worstExcess(starts, 1, RATE);
    // Every thread keeps calls waiting until startAt + durationMs: the limit is overloaded up to there.
    const overloadEnd = BigInt(startAt) + BigInt(config.durationMs) * 1_000_000n;
    const overloaded = starts.filter((t) => t <= overloadEnd);
    const achieved = (overloaded.length - 1) / (Number(overloaded.at(-1)! - overloaded[0]!) / 1e9) / RATE;
    console.log(
      `burst 1 at ${RATE}/s in Redis: ${(100 * achieved).toFixed(2)} % of the rate; worst interval ${worst.count} starts in ${worst.lengthMs.toFixed(3)} ms; max hold ${holdMs.toFixed(2)} ms`,
    );
    expect(worst.excess, `worst interval: ${worst.count} starts in ${worst.lengthMs} ms`).toBeLessThanOrEqual((RATE * holdMs) / 1000 + 1e-6);
    expect(achieved).toBeGreaterThanOrEqual(0.8);
  }, 30_000);
});
