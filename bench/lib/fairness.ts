/**
 * Fair admission against the plain FIFO, in the same run. Writes bench/results/fairness.md.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/lib/fairness.js [--quick] [--out DIR]
 *
 * 1. Simulated time (ManualClock, deterministic): a limit of 100/s; one heavy client offers
 *    10 × the rate, nine light clients 1/20 of it each, for 10 s; the same queue room in both
 *    modes (FIFO `maxQueued` 500, fair `maxQueuedPerFlow` 50 × 10 flows). Reported: Jain's
 *    fairness index over every client's admitted rate divided by its max-min fair share (1 = each
 *    got its fair share; 0.1 = one client took everything), the light clients' share of their
 *    demand that was served, and their queue waits.
 * 2. Real time: the threaded server (limit 200/s on `add`, 1 worker) on 127.0.0.1 with npm-thrift
 *    clients; a heavy connection keeps 400 calls outstanding (2 s of backlog at the limit), and
 *    meanwhile nine light connections send 4 calls each, 100 ms apart. Reported: the light calls'
 *    latency as their client sees it, with flows by connection and with the FIFO.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import thrift from 'thrift';
import { createThreadedServer } from '../../src/server/threaded-server.js';
import type { ThreadedServerOptions } from '../../src/server/server-options.js';
import { jain, maxMinFair, percentile, simulate, type RunResult, type Scenario } from './fair-scenario.js';
import { fmt, machine, quick, table, writeResult } from './report.js';

const require = createRequire(import.meta.url);
const servicePath = fileURLToPath(new URL('../../../examples/gen-nodejs/Calculator.js', import.meta.url));
const handlerPath = fileURLToPath(new URL('../../../examples/calculator-handler.js', import.meta.url));
const Calculator = require(servicePath) as unknown;

interface Row {
  mode: string;
  jain: number;
  lightServedPct: number;
  lightWaits: number[];
  heavyPerSec: number;
  totalPerSec: number;
}

function summarize(s: Scenario, mode: string, r: RunResult): Row {
  const seconds = s.durationMs / 1000;
  const demand = [s.heavyRate, ...r.lights.map(() => s.lightRate)];
  const fair = maxMinFair(demand, s.rate);
  const got = [r.heavy, ...r.lights].map((c) => c.served / seconds);
  const lightOffered = r.lights.reduce((a, l) => a + l.offered, 0);
  const lightServed = r.lights.reduce((a, l) => a + l.served, 0);
  return {
    mode,
    jain: jain(got.map((g, i) => g / fair[i]!)),
    lightServedPct: (100 * lightServed) / lightOffered,
    lightWaits: r.lights.flatMap((l) => l.waits).sort((a, b) => a - b),
    heavyPerSec: r.heavy.served / seconds,
    totalPerSec: r.starts.length / seconds,
  };
}

async function simulated(s: Scenario): Promise<Row[]> {
  return [summarize(s, 'fair (flows by client)', await simulate(s, 'fair')), summarize(s, 'FIFO', await simulate(s, 'fifo'))];
}

interface Client {
  add(a: number, b: number): Promise<number>;
}

async function connectClient(port: number): Promise<{ client: Client; close: () => void }> {
  const connection = thrift.createConnection('127.0.0.1', port, { transport: thrift.TFramedTransport, protocol: thrift.TBinaryProtocol });
  connection.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    connection.once('connect', () => resolve());
    connection.once('error', reject);
  });
  return { client: thrift.createClient<Client>(Calculator as never, connection), close: () => connection.end() };
}

/**
 * One real-time run; returns the light calls' latencies (ms, sorted), the heavy client's completed
 * calls per second and every client's admitted calls per second, over the light clients' phase.
 */
async function realTime(
  fairness: ThreadedServerOptions['fairness'],
  heavyOutstanding: number,
): Promise<{ lightMs: number[]; heavyPerSec: number; totalPerSec: number }> {
  const server = createThreadedServer({
    service: servicePath,
    handler: handlerPath,
    workers: 1,
    limits: { add: { rate: 200, burst: 1 } },
    log: () => {},
    ...(fairness ? { fairness } : {}),
  });
  const { port } = await server.listen(0);
  const clients = await Promise.all(Array.from({ length: 10 }, () => connectClient(port)));
  try {
    await clients[0]!.client.add(0, 0); // the worker is up
    // The heavy client: a closed loop of `heavyOutstanding` calls, until the light clients are done.
    let stop = false;
    let heavyDone = 0;
    const heavy = Promise.all(
      Array.from({ length: heavyOutstanding }, async (_, k) => {
        while (!stop) {
          await clients[0]!.client.add(k, 0);
          heavyDone++;
        }
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    const phase = { at: performance.now(), heavy: heavyDone, admitted: server.stats().admitted };
    const lightMs: number[] = [];
    await Promise.all(
      clients.slice(1).map(async ({ client }, c) => {
        for (let k = 0; k < 4; k++) {
          const sent = performance.now();
          await client.add(c, k);
          lightMs.push(performance.now() - sent);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }),
    );
    const seconds = (performance.now() - phase.at) / 1000;
    const heavyPerSec = (heavyDone - phase.heavy) / seconds;
    const totalPerSec = (server.stats().admitted - phase.admitted) / seconds;
    stop = true;
    await heavy;
    return { lightMs: lightMs.sort((a, b) => a - b), heavyPerSec, totalPerSec };
  } finally {
    clients.forEach((c) => c.close());
    await server.close({ timeoutMs: 1000 });
  }
}

const scenario: Scenario = { rate: 100, burst: 1, heavyRate: 1000, lights: 9, lightRate: 5, durationMs: quick ? 3000 : 10_000, maxQueued: 500 };
const unbounded: Scenario = { ...scenario, maxQueued: 1_000_000 };
const simRows = [
  ...(await simulated(scenario)).map((r) => ({ ...r, room: '500 calls' })),
  ...(await simulated(unbounded)).map((r) => ({ ...r, room: 'unbounded' })),
];
const heavyOutstanding = 400;
const real = [
  { mode: "fair (flows by 'connection')", ...(await realTime({ flow: 'connection' }, heavyOutstanding)) },
  { mode: 'FIFO', ...(await realTime(undefined, heavyOutstanding)) },
];

const report = `# Fair admission vs FIFO

${machine()}${quick ? ' (--quick)' : ''}

Command: \`npx tsc -p tsconfig.json && node dist/bench/lib/fairness.js\` (source: \`bench/lib/fairness.ts\`,
scenario: \`bench/lib/fair-scenario.ts\`).

## Simulated time: one heavy client at 10 × the limit, nine light clients at 1/20 of it each

Limit 100/s (token interval 10 ms), burst 1; heavy client 1000/s, light clients 5/s each, for
${scenario.durationMs / 1000} s on a ManualClock (deterministic: every run gives the same figures). Queue room is the same
in both modes: the FIFO's \`maxQueued\`, or \`maxQueuedPerFlow\` × 10 flows for the fair queue.
Jain's index is taken over every client's admitted rate divided by its max-min fair share (light
clients 5/s each, the heavy client the remaining 55/s): 1 means every client got its fair share.

${table(
  ['queue room', 'mode', "Jain's index", 'light demand served', 'light wait p50 / p99 / max (ms)', 'heavy admitted/s', 'total admitted/s'],
  simRows.map((r) => [
    r.room,
    r.mode,
    fmt(r.jain, 3),
    `${fmt(r.lightServedPct, 1)} %`,
    `${fmt(percentile(r.lightWaits, 50), 0)} / ${fmt(percentile(r.lightWaits, 99), 0)} / ${fmt(r.lightWaits.at(-1) ?? 0, 0)}`,
    fmt(r.heavyPerSec, 1),
    fmt(r.totalPerSec, 1),
  ]),
)}

"Light demand served" counts calls admitted within the run. With the FIFO the heavy client's
backlog is in front of every light call: with bounded room most light calls are refused (queue
full); with unbounded room they are queued, but behind a backlog that grows by 900 calls a
second, so most are still waiting when the run ends and those served waited seconds. With the
fair queue every light call is served, waiting for at most one call of each other backlogged flow
(here about two token intervals), the limit stays saturated, and the heavy client gets the rest.

## Real time: the threaded server with npm-thrift clients on 127.0.0.1

Limit 200/s on \`add\`, 1 worker, binary protocol. One connection keeps ${heavyOutstanding} calls outstanding
(${heavyOutstanding / 200} s of backlog at the limit); meanwhile nine other connections send 4 calls each, 100 ms
apart. Latency of the light calls as their client measures it (send to reply); rates over the
light clients' phase (about 0.6 s fair, 9 s FIFO); one run each, so the figures move by a few ms
from run to run. Both modes admit under 200/s: with burst 1 every admission after
the first waits for a timer, and Node's timers fire on whole milliseconds, late by up to one,
so each 5 ms token interval stretches a little; the fair queue adds no loss of its own (the
simulated runs admit exactly the limit).

${table(
  ['mode', 'light calls', 'light latency p50 / p99 / max (ms)', 'heavy client replies/s', 'all clients admitted/s'],
  real.map((r) => [
    r.mode,
    r.lightMs.length,
    `${fmt(percentile(r.lightMs, 50), 1)} / ${fmt(percentile(r.lightMs, 99), 1)} / ${fmt(r.lightMs.at(-1) ?? 0, 1)}`,
    fmt(r.heavyPerSec, 1),
    fmt(r.totalPerSec, 1),
  ]),
)}
`;

console.log(report);
console.log(`written to ${writeResult('fairness.md', report)}`);
