/**
 * The demo's load generator, in its own thread so it does not share the server's I/O thread: the
 * npm thrift client over several connections, sending `add` calls on a fixed schedule (open loop:
 * a slow server cannot slow the offered load down, so queueing shows up as latency). Counts go to
 * shared memory for the live progress line; the latencies come back at the end.
 */
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';
import thrift from 'thrift';
import { DemoCountersLayout, type DemoLoadData, type DemoLoadReport } from './demo-protocol.js';

const data = workerData as DemoLoadData;
const require = createRequire(import.meta.url);
const Calculator = require(data.servicePath) as never;
const counters = new Int32Array(data.counters);

interface AddClient {
  add(a: number, b: number): Promise<number>;
}

async function main(): Promise<void> {
  const clients: { client: AddClient; connection: thrift.Connection }[] = [];
  for (let i = 0; i < data.connections; i++) {
    const connection = thrift.createConnection('127.0.0.1', data.port, { transport: thrift.TFramedTransport, protocol: thrift.TBinaryProtocol });
    connection.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      connection.once('connect', () => resolve());
      connection.once('error', reject);
    });
    clients.push({ connection, client: thrift.createClient<AddClient>(Calculator, connection) });
  }
  const report: DemoLoadReport = { latenciesMs: [], errors: [] };
  const calls: Promise<void>[] = [];
  const start = performance.now();
  let sent = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = performance.now() - start;
      const due = Math.floor((Math.min(elapsed, data.durationMs) * data.ratePerSec) / 1000);
      while (sent < due) {
        const k = sent++;
        const sentAt = performance.now();
        Atomics.add(counters, DemoCountersLayout.I32.SENT, 1);
        calls.push(
          clients[k % clients.length]!.client.add(k, 1)
            .then((sum) => {
              if (sum !== k + 1) throw new Error(`add(${k}, 1) returned ${sum}`);
              report.latenciesMs.push(performance.now() - sentAt);
              Atomics.add(counters, DemoCountersLayout.I32.REPLIED, 1);
            })
            .catch((error: unknown) => {
              Atomics.add(counters, DemoCountersLayout.I32.FAILED, 1);
              if (report.errors.length < 10) report.errors.push((error as Error)?.message ?? String(error));
            }),
        );
      }
      if (elapsed >= data.durationMs) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
  });
  await Promise.all(calls);
  for (const { connection } of clients) connection.end();
  parentPort!.postMessage(report);
}

void main();
