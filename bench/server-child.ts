// The server side of the server benchmark, in its own process so its CPU time can be measured
// apart from the load client's: the stock thrift server or ours, on the example service.
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import thrift from 'thrift';
import { createThreadedServer } from '../src/server/threaded-server.js';

const require = createRequire(import.meta.url);
const servicePath = fileURLToPath(new URL('../../examples/gen-nodejs/Calculator.js', import.meta.url));
const handlerPath = fileURLToPath(new URL('../../examples/calculator-handler.js', import.meta.url));

const [kind, workers, transport, limit] = process.argv.slice(2) as ['stock' | 'threaded', string, 'framed' | 'buffered', string | undefined];

let close: () => Promise<void>;
let stats: () => unknown = () => ({});
if (kind === 'stock') {
  const { createHandler } = (await import(handlerPath)) as { createHandler: (c: object) => object };
  const server = thrift.createServer(require(servicePath) as never, createHandler({ limiters: {}, threadId: 0 }) as never, {
    // The stock server speaks one transport; ours tells each connection's from its first bytes.
    transport: transport === 'buffered' ? thrift.TBufferedTransport : thrift.TFramedTransport,
    protocol: thrift.TBinaryProtocol,
  });
  server.on('error', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  process.send!({ port: (server.address() as AddressInfo).port });
  close = () => new Promise<void>((resolve) => server.close(() => resolve()));
} else {
  const server = createThreadedServer({
    service: servicePath,
    handler: handlerPath,
    workers: Number(workers),
    limits: limit ? { add: { rate: Number(limit), burst: 20 } } : {}, // burst: LIMIT_BURST in server.ts
  });
  const address = await server.listen(0);
  process.send!({ port: address.port });
  close = () => server.close({ timeoutMs: 100 });
  stats = () => server.stats();
}

let cpu = process.cpuUsage();
let elu = performance.eventLoopUtilization();
process.on('message', (m: string) => void onMessage(m));
async function onMessage(m: string): Promise<void> {
  if (m === 'start') {
    cpu = process.cpuUsage();
    elu = performance.eventLoopUtilization();
    process.send!({ started: true });
  } else if (m === 'stop') {
    const c = process.cpuUsage(cpu);
    const e = performance.eventLoopUtilization(elu);
    // Main-thread busy time: the event loop's active time (the I/O thread's work).
    process.send!({ processCpuUs: c.user + c.system, mainActiveUs: e.active * 1000, stats: stats() });
  } else if (m === 'exit') {
    await close();
    process.exit(0);
  }
}
