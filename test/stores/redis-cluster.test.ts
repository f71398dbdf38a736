/**
 * The Redis store on a real Redis Cluster started by the test (3 masters; 3 masters + 3 replicas
 * for the failover), under load from child processes with worker threads. Every rate limit is
 * judged on the instants its calls started (CLOCK_MONOTONIC, one clock for every process): the
 * excess over burst + rate × (L + d), worst over every closed interval (where GCRA itself allows
 * one more), d being the longest a token was held (`maxHoldMs`).
 *
 * - limits whose keys live on three different masters, with SCRIPT FLUSH on every master mid-run
 *   (NOSCRIPT answered by reloading the script wherever it is);
 * - a limit's slot migrated to another master mid-run, with the key moved while the slot is
 *   MIGRATING, so that every call of that time goes through an ASK redirection;
 * - the master of a limit's slot killed mid-run, its replica promoted by the cluster;
 * - the concurrency limit (several keys in one slot, PUBLISH across the cluster).
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { ConcurrencyConfig, ConcurrencyResult } from '../fixtures/redis-concurrency.js';
import type { KeyResult, LoadConfig, LoadResult } from '../fixtures/redis-load.js';
import { worstExcess } from '../helpers.js';
import { startCluster, type TestCluster } from './redis-cluster.js';
import { lookaheadUs } from '../../src/stores/store.js';
import { startLoad } from './redis-load-run.js';

const RATE = 300;
const BURST = 15;

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});
afterAll(async () => {
  await cluster?.stop();
});

const sleepUntil = async (ns: bigint): Promise<void> => {
  for (let left = ns - process.hrtime.bigint(); left > 0n; left = ns - process.hrtime.bigint()) {
    await new Promise((r) => setTimeout(r, Math.max(1, Number(left / 1_000_000n) - 2)));
  }
};

/** One limit over every process: its sorted starts, worst excess over burst + rate × (L + d), refusals, store counters. */
function judge(results: LoadResult[], key: string) {
  const per: KeyResult[] = results.map((r) => r.byKey[key]!);
  const starts = per.flatMap((r) => r.starts.map(BigInt)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const holdMs = Math.max(...per.map((r) => r.store.maxHoldMs));
  const worst = worstExcess(starts, BURST, RATE);
  return {
    starts,
    holdMs,
    excess: worst.excess - (RATE * holdMs) / 1000,
    refused: per.reduce((a, r) => a + r.refusals.length, 0),
    errors: per.reduce((a, r) => a + r.store.errors, 0),
    roundTrips: per.reduce((a, r) => a + r.store.roundTrips, 0),
  };
}

/** Keys whose slots are served by `count` different masters. */
function keysOnDistinctMasters(c: TestCluster, count: number): string[] {
  const byMaster = new Map<number, string>();
  for (let i = 0; byMaster.size < count; i++) {
    const key = `limit-${i}`;
    const port = c.masterOf(c.slotOf(`{${key}}`)).port;
    if (!byMaster.has(port)) byMaster.set(port, key);
  }
  return [...byMaster.values()];
}

const loadConfig = (c: TestCluster, keys: string[], over: Partial<LoadConfig> = {}): Omit<LoadConfig, 'startAt'> => ({
  cluster: c.urls,
  prefix: `cl:${Math.random()}:`,
  keys,
  lease: false,
  rate: RATE,
  burst: BURST,
  threads: 1,
  inFlight: 16,
  durationMs: 2500,
  store: { timeoutMs: 300 },
  ...over,
});

describe('Redis Cluster (3 masters)', () => {
  it('limits on three different masters, 3 processes each: every limit within burst + rate × (L + d) (+1), at its rate, with SCRIPT FLUSH on every master mid-run and no store error', async () => {
    cluster = await startCluster();
    const keys = keysOnDistinctMasters(cluster, 3);
    const config = loadConfig(cluster, keys);
    const load = await startLoad([config, config, config]);
    await sleepUntil(load.startAt + 1_000_000_000n);
    for (const node of cluster.nodes) expect(node.cli('script', 'flush')).toBe('OK');
    const results = await load.results;
    for (const key of keys) {
      const j = judge(results, key);
      const elapsedS = Number(j.starts.at(-1)! - j.starts[0]!) / 1e9;
      console.log(
        `${key} (slot ${cluster.slotOf(`{${key}}`)}, master ${cluster.masterOf(cluster.slotOf(`{${key}}`)).port}): ${j.starts.length} starts in ${elapsedS.toFixed(2)} s; excess ${j.excess.toFixed(1)} (d ${j.holdMs.toFixed(1)} ms); round trips ${j.roundTrips}; errors ${j.errors}`,
      );
      expect(j.errors).toBe(0);
      expect(j.excess).toBeLessThanOrEqual(1);
      // Overloaded throughout (48 calls waiting per limit): the rate is reached.
      expect(j.starts.length).toBeGreaterThanOrEqual(0.95 * (BURST + RATE * 2.4));
    }
    // The keys were on three masters indeed.
    expect(new Set(keys.map((k) => cluster!.masterOf(cluster!.slotOf(`{${k}}`)).port)).size).toBe(3);
  }, 90_000);

  it("a limit's slot migrated to another master mid-run (600 ms with the key moved and the slot MIGRATING: every call through ASK): calls go on, within the bound, no store error", async () => {
    cluster = await startCluster();
    const [key] = keysOnDistinctMasters(cluster, 1);
    const config = loadConfig(cluster, [key!]);
    const slot = cluster.slotOf(`{${key}}`);
    const from = cluster.masterOf(slot);
    const to = cluster.nodes.find((n) => n.port !== from.port && n.cli('role').startsWith('master'))!;
    const load = await startLoad([config, config, config]);
    await sleepUntil(load.startAt + 800_000_000n);
    expect(to.cli('cluster', 'setslot', String(slot), 'importing', cluster.idOf(from.port))).toBe('OK');
    expect(from.cli('cluster', 'setslot', String(slot), 'migrating', cluster.idOf(to.port))).toBe('OK');
    const moved = from.cli('cluster', 'getkeysinslot', String(slot), '100').split('\n').filter(Boolean);
    expect(moved).toContain(`${config.prefix}{${key}}:tb`);
    expect(from.cli('migrate', '127.0.0.1', String(to.port), '', '0', '5000', 'keys', ...moved)).toBe('OK');
    const askFrom = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, 600));
    const askTo = process.hrtime.bigint();
    for (const node of cluster.nodes) node.cli('cluster', 'setslot', String(slot), 'node', cluster.idOf(to.port));
    const results = await load.results;
    const j = judge(results, key!);
    const duringAsk = j.starts.filter((t) => t >= askFrom && t < askTo).length;
    console.log(
      `migration of slot ${slot} from ${from.port} to ${to.port}: ${duringAsk} starts in the 600 ms of ASK; ${j.starts.length} starts; excess ${j.excess.toFixed(1)} (d ${j.holdMs.toFixed(1)} ms); errors ${j.errors}; refused ${j.refused}`,
    );
    expect(j.errors).toBe(0);
    expect(j.refused).toBe(0);
    expect(j.excess).toBeLessThanOrEqual(1);
    // The key lived only on the target while the source owned the slot: these calls were served through ASK.
    expect(duringAsk).toBeGreaterThanOrEqual(0.8 * RATE * 0.6);
    expect(to.cli('exists', `${config.prefix}{${key}}:tb`)).toBe('1');
  }, 90_000);

  it('the concurrency limit on the cluster (3 keys in one slot, PUBLISH across nodes): at most max in flight over 2 processes × 2 threads, every permit released once', async () => {
    cluster = await startCluster();
    const config: ConcurrencyConfig = {
      mode: 'load',
      cluster: cluster.urls,
      prefix: `clc:${Math.random()}:`,
      max: 3,
      permitLeaseMs: 1500,
      threads: 2,
      inFlight: 4,
      holdMs: [5, 15],
      durationMs: 1500,
    };
    const load = await startLoad<ConcurrencyResult>([config, config], 'redis-concurrency');
    const results = await load.results;
    const calls = results.flatMap((r) => r.calls.map(([s, e]) => [BigInt(s), BigInt(e)] as const));
    const events = calls.flatMap(([s, e]): [bigint, number][] => [
      [s, 1],
      [e, -1],
    ]);
    events.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1]));
    let cur = 0;
    let most = 0;
    for (const [, d] of events) most = Math.max(most, (cur += d));
    const roundTrips = results.reduce((a, r) => a + r.store.roundTrips, 0);
    console.log(`cluster concurrency: ${calls.length} calls, most in flight ${most} (max 3), ${(roundTrips / calls.length).toFixed(2)} round trips per call`);
    expect(results.every((r) => r.store.errors === 0)).toBe(true);
    expect(most).toBeLessThanOrEqual(3);
    expect(calls.length).toBeGreaterThan(100);
    const master = cluster.masterOf(cluster.slotOf('{shared}'));
    expect(master.cli('hget', `${config.prefix}{shared}:cl`, 'n')).toBe('0');
  }, 90_000);
});

describe('Redis Cluster (3 masters, 3 replicas): a master fails over', () => {
  it("the master of a limit's slot SIGKILLed under load: its replica takes over, the limit recovers by itself, within the bound", async () => {
    cluster = await startCluster({ replicas: 1 });
    const [key] = keysOnDistinctMasters(cluster, 1);
    const config = loadConfig(cluster, [key!], { durationMs: 5000 });
    const slot = cluster.slotOf(`{${key}}`);
    const master = cluster.masterOf(slot);
    const load = await startLoad([config, config, config]);
    await sleepUntil(load.startAt + 1_000_000_000n);
    const killedAt = process.hrtime.bigint();
    await master.kill();
    const results = await load.results;
    const j = judge(results, key!);
    const promoted = cluster.masterOf(slot);
    // Recovery: the first start after the kill beyond what was booked before it (the look-ahead).
    const ahead = BigInt(Math.ceil(lookaheadUs({ kind: 'token-bucket', burst: BURST, intervalUs: 1e6 / RATE }, 1) * 1000));
    const after = j.starts.filter((t) => t > killedAt + ahead);
    const recoveryMs = after.length === 0 ? Infinity : Number(after[0]! - killedAt) / 1e6;
    const tail = j.starts.filter((t) => t > load.startAt + 4_000_000_000n && t <= load.startAt + 5_000_000_000n).length;
    const logs = results.flatMap((r) => r.logs);
    const downMs = Math.max(0, ...logs.map((l) => Number(/after (\d+) ms/.exec(l)?.[1] ?? 0)));
    console.log(
      `failover of ${master.port} to ${promoted.port}: store down for up to ${downMs} ms per process; first start beyond the look-ahead ${recoveryMs.toFixed(0)} ms after the kill; ${j.refused} calls refused; excess ${j.excess.toFixed(1)} (d ${j.holdMs.toFixed(1)} ms); errors ${j.errors}; last second ${tail} starts`,
    );
    expect(promoted.port).not.toBe(master.port);
    expect(j.excess).toBeLessThanOrEqual(1);
    expect(recoveryMs).toBeLessThan(4000);
    // Back at its rate for the last second.
    expect(tail).toBeGreaterThanOrEqual(0.9 * RATE * 0.95);
  }, 90_000);
});
