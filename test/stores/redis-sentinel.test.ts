/**
 * The Redis store behind Sentinel (a master, a replica and a sentinel started by the test), under
 * load from 3 child processes: the master's process is SIGKILLed, the sentinel promotes the
 * replica, and the limit recovers on the new master by itself. Measured: the time from the kill to
 * the first admission beyond what was booked before it, the calls refused, and the excess over
 * burst + rate × (L + d), worst over every closed interval (where GCRA itself allows one more).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { LoadConfig } from '../fixtures/redis-load.js';
import { worstExcess } from '../helpers.js';
import { lookaheadUs, type StoreErrorPolicy } from '../../src/stores/store.js';
import { startLoad } from './redis-load-run.js';
import { startSentinel, type TestSentinel } from './redis-sentinel.js';

const RATE = 300;
const BURST = 15;

let sentinel: TestSentinel | undefined;
afterEach(async () => {
  await sentinel?.stop();
  sentinel = undefined;
});

const sleepUntil = async (ns: bigint): Promise<void> => {
  for (let left = ns - process.hrtime.bigint(); left > 0n; left = ns - process.hrtime.bigint()) {
    await new Promise((r) => setTimeout(r, Math.max(1, Number(left / 1_000_000n) - 2)));
  }
};

async function failover(onStoreError: StoreErrorPolicy) {
  sentinel = await startSentinel();
  const master = sentinel.masterPort();
  const config: Omit<LoadConfig, 'startAt'> = {
    sentinel: { sentinels: sentinel.sentinels, name: sentinel.name },
    prefix: 'sen:',
    lease: false,
    rate: RATE,
    burst: BURST,
    threads: 1,
    inFlight: 16,
    durationMs: 6000,
    store: { onStoreError, expectedProcesses: 3, timeoutMs: 300 },
  };
  const load = await startLoad([config, config, config]);
  await sleepUntil(load.startAt + 1_000_000_000n);
  const killedAt = process.hrtime.bigint();
  await sentinel.kill(master);
  const results = await load.results;
  const starts = results.flatMap((r) => r.starts.map(BigInt)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const holdMs = Math.max(...results.map((r) => r.store.maxHoldMs));
  const worst = worstExcess(starts, BURST, RATE);
  const excess = worst.excess - (RATE * holdMs) / 1000;
  const refused = results.reduce((a, r) => a + r.refusals.length, 0);
  const logs = results.flatMap((r) => r.logs);
  const downMs = Math.max(0, ...logs.map((l) => Number(/after (\d+) ms/.exec(l)?.[1] ?? 0)));
  const promoted = sentinel.masterPort();
  // Under fail-closed: the first start beyond what was booked before the kill (the look-ahead).
  const ahead = BigInt(Math.ceil(lookaheadUs({ kind: 'token-bucket', burst: BURST, intervalUs: 1e6 / RATE }, 3) * 1000));
  const firstAfter = starts.find((t) => t > killedAt + ahead);
  const recoveryMs = firstAfter === undefined ? Infinity : Number(firstAfter - killedAt) / 1e6;
  const tail = starts.filter((t) => t > load.startAt + 5_000_000_000n && t <= load.startAt + 6_000_000_000n).length;
  console.log(
    `sentinel failover (${onStoreError}) of ${master} to ${promoted}: store down for up to ${downMs} ms per process; first start beyond the look-ahead ${recoveryMs.toFixed(0)} ms after the kill; ${refused} calls refused; excess ${excess.toFixed(1)} (d ${holdMs.toFixed(1)} ms); last second ${tail} starts; admitted locally ${results.reduce((a, r) => a + r.store.admittedLocalShare, 0)}`,
  );
  return { master, promoted, excess, refused, downMs, recoveryMs, tail, results };
}

describe('Redis behind Sentinel: the master SIGKILLed under load (3 processes, 300/s burst 15)', () => {
  it('fail-closed: the replica is promoted, every process is back on the new master by itself (one log line in, one out), within the bound', async () => {
    const r = await failover('fail-closed');
    expect(r.promoted).not.toBe(r.master);
    expect(r.excess).toBeLessThanOrEqual(1);
    expect(r.refused).toBeGreaterThan(0);
    expect(r.downMs).toBeGreaterThan(0);
    // Detection (down-after 1 s), the sentinel's failover, the reconnection.
    expect(r.downMs).toBeLessThan(5000);
    // One incident per process (logged once, by whichever thread saw it), over by itself.
    for (const p of r.results) {
      expect(p.store.incidents).toBe(1);
      expect(p.store.down).toBe(false);
    }
    expect(r.tail).toBeGreaterThanOrEqual(0.9 * RATE);
  }, 60_000);

  it('local-share: nothing refused during the failover, excess over the bound within one burst', async () => {
    const r = await failover('local-share');
    expect(r.promoted).not.toBe(r.master);
    expect(r.refused).toBe(0);
    expect(r.excess).toBeLessThanOrEqual(BURST);
    expect(r.tail).toBeGreaterThanOrEqual(0.9 * RATE);
  }, 60_000);
});
