/**
 * Server benchmarks: the stock single-threaded thrift server against the threaded server with 1
 * and 2 workers, on the example service, with a load client in another process that sends
 * pre-encoded frames (8 connections × 8 calls outstanding). Servers alternate within each round;
 * figures are medians over rounds. Writes bench/results/server.md.
 *
 *   npm run bench:server             full run (a few minutes)
 *   node dist/bench/server.js --quick    a few seconds: checks the suite runs and writes its report
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { basename } from 'node:path';
import { barChart, histogram, lineChart } from '../src/report/svg-chart.js';
import { closedLoop, type ArgsWriter } from './lib/load-client.js';
import { fmt, machine, median, percentile, quick, table, verdict, writeResult } from './lib/report.js';

const ROUNDS = quick ? 1 : 3;
const LIMIT_BURST = 20;
const SECONDS = quick ? 0.5 : 4;
const CONNECTIONS = 8;
const PER_CONNECTION = 8;
const child = fileURLToPath(new URL('./server-child.js', import.meta.url));

interface Measured {
  latenciesMs: number[];
  completionsAtMs: number[];
  reqPerSec: number;
  p50: number;
  p99: number;
  errors: number;
  ioCpuUsPerCall: number;
  totalCpuUsPerCall: number;
}

function message<T>(proc: ChildProcess, key: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const on = (m: Record<string, unknown>): void => {
      if (key in m) {
        proc.off('message', on);
        resolve(m as T);
      }
    };
    proc.on('message', on);
    proc.once('exit', (code) => reject(new Error(`server process exited (${code})`)));
  });
}

async function measure(
  kind: 'stock' | 'threaded',
  workers: number,
  method: string,
  args: ArgsWriter,
  limit?: number,
  transport: 'framed' | 'buffered' = 'framed',
): Promise<Measured> {
  const proc = fork(child, [kind, String(workers), transport, ...(limit ? [String(limit)] : [])], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const { port } = await message<{ port: number }>(proc, 'port');
    // A short warm-up so every server is measured with its code compiled.
    await closedLoop(port, method, args, 2, 4, quick ? 0.1 : 0.5, transport);
    proc.send('start');
    await message(proc, 'started');
    const load = await closedLoop(port, method, args, CONNECTIONS, PER_CONNECTION, SECONDS, transport);
    proc.send('stop');
    const cpu = await message<{ processCpuUs: number; mainActiveUs: number }>(proc, 'processCpuUs');
    const lat = load.latenciesMs.sort((a, b) => a - b);
    return {
      latenciesMs: lat,
      completionsAtMs: load.completionsAtMs,
      // A limited server starts with a full bucket; count only what the rate itself let through.
      reqPerSec: (load.calls - (limit ? LIMIT_BURST : 0)) / load.seconds,
      p50: percentile(lat, 0.5),
      p99: percentile(lat, 0.99),
      errors: load.errors,
      ioCpuUsPerCall: (kind === 'stock' ? cpu.processCpuUs : cpu.mainActiveUs) / load.calls,
      totalCpuUsPerCall: cpu.processCpuUs / load.calls,
    };
  } finally {
    proc.send('exit');
    await new Promise((r) => proc.once('exit', r));
  }
}

const echoArgs: ArgsWriter = (out) => {
  out.writeFieldBegin('data', thriftString, 1);
  out.writeBinary(Buffer.alloc(100, 0x61));
  out.writeFieldEnd();
};
const workArgs: ArgsWriter = (out) => {
  out.writeFieldBegin('micros', thriftI32, 1);
  out.writeI32(1000);
  out.writeFieldEnd();
};
const addArgs: ArgsWriter = (out) => {
  out.writeFieldBegin('a', thriftI32, 1);
  out.writeI32(1);
  out.writeFieldEnd();
  out.writeFieldBegin('b', thriftI32, 2);
  out.writeI32(2);
  out.writeFieldEnd();
};
const thriftString = 11;
const thriftI32 = 8;

const configs: { name: string; kind: 'stock' | 'threaded'; workers: number }[] = [
  { name: 'stock thrift server (1 thread)', kind: 'stock', workers: 0 },
  { name: 'threaded server, 1 worker', kind: 'threaded', workers: 1 },
  { name: 'threaded server, 2 workers', kind: 'threaded', workers: 2 },
];

async function workload(label: string, method: string, args: ArgsWriter, transport: 'framed' | 'buffered' = 'framed'): Promise<Map<string, Measured>> {
  const rounds = new Map<string, Measured[]>();
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of configs) {
      const m = await measure(c.kind, c.workers, method, args, undefined, transport);
      (rounds.get(c.name) ?? rounds.set(c.name, []).get(c.name)!).push(m);
      console.log(`${label} round ${r + 1}: ${c.name}: ${fmt(m.reqPerSec, 0)} req/s`);
    }
  }
  const result = new Map<string, Measured>();
  for (const [name, list] of rounds) {
    result.set(name, {
      latenciesMs: [],
      completionsAtMs: [],
      reqPerSec: median(list.map((m) => m.reqPerSec)),
      p50: median(list.map((m) => m.p50)),
      p99: median(list.map((m) => m.p99)),
      errors: list.reduce((a, m) => a + m.errors, 0),
      ioCpuUsPerCall: median(list.map((m) => m.ioCpuUsPerCall)),
      totalCpuUsPerCall: median(list.map((m) => m.totalCpuUsPerCall)),
    });
  }
  return result;
}

function section(title: string, results: Map<string, Measured>): string {
  const stock = results.get(configs[0]!.name)!;
  return [
    `## ${title}`,
    '',
    table(
      ['server', 'req/s', 'vs stock', 'latency p50 / p99 (ms)', 'I/O-thread CPU µs per call', 'total CPU µs per call', 'errors'],
      [...results].map(([name, m]) => [
        name,
        fmt(m.reqPerSec, 0),
        `${fmt(m.reqPerSec / stock.reqPerSec, 2)} ×`,
        `${fmt(m.p50, 2)} / ${fmt(m.p99, 2)}`,
        fmt(m.ioCpuUsPerCall, 1),
        fmt(m.totalCpuUsPerCall, 1),
        m.errors,
      ]),
    ),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  console.log(`server benchmarks${quick ? ' (quick)' : ''}: ${machine()}`);
  const echo = await workload('echo', 'echo', echoArgs);
  const bufferedEcho = await workload('buffered echo', 'echo', echoArgs, 'buffered');
  const work = await workload('work', 'work', workArgs);
  const limited: Measured[] = [];
  const rate = 2000;
  for (let r = 0; r < ROUNDS; r++) limited.push(await measure('threaded', 2, 'add', addArgs, rate));
  const achieved = median(limited.map((m) => m.reqPerSec));
  const limitedErrors = limited.reduce((a, m) => a + m.errors, 0);

  const stockEcho = echo.get(configs[0]!.name)!;
  const bestEcho = Math.max(echo.get(configs[1]!.name)!.reqPerSec, echo.get(configs[2]!.name)!.reqPerSec);
  const stockWork = work.get(configs[0]!.name)!;
  const bestWork = Math.max(work.get(configs[1]!.name)!.reqPerSec, work.get(configs[2]!.name)!.reqPerSec);
  const ioPerCall = echo.get(configs[1]!.name)!.ioCpuUsPerCall;
  const stockBuffered = bufferedEcho.get(configs[0]!.name)!;
  const bestBuffered = Math.max(bufferedEcho.get(configs[1]!.name)!.reqPerSec, bufferedEcho.get(configs[2]!.name)!.reqPerSec);
  const lines = [
    `# Server benchmarks${quick ? ' (QUICK smoke run: figures are not meaningful)' : ''}`,
    '',
    `Machine: ${machine()}. Command: \`npm run bench:server\`${quick ? ' (here `--quick`)' : ''}.`,
    `Method: the server runs in a child process; the load client (this process) keeps ${CONNECTIONS} connections × ${PER_CONNECTION} calls outstanding with pre-encoded binary requests (framed unless the section says buffered) for ${SECONDS} s after a warm-up; servers alternate within each of ${ROUNDS} rounds; medians. CPU per call comes from the server process: \`process.cpuUsage()\` (all threads) and the main thread's event-loop active time (the I/O thread). The load client shares the same 2 cores.`,
    '',
    section('(a) echo of 100 bytes', echo),
    section('(b) echo of 100 bytes, buffered transport (the stock server configured for buffered; ours on the same port as framed)', bufferedEcho),
    section('(c) work: ~1 ms of CPU per call', work),
    '## Limited server',
    '',
    `\`add\` limited to ${rate}/s (burst ${LIMIT_BURST}), 2 workers, offered ${CONNECTIONS * PER_CONNECTION} calls outstanding (far above the limit): achieved (calls − burst) / time = ${fmt(achieved, 1)} req/s = ${fmt((100 * achieved) / rate, 2)} % of the configured rate; errors/refusals: ${limitedErrors}.`,
    '',
    '## Targets',
    '',
    `- CPU-bound ≥ 1.7 × stock: ${verdict(bestWork >= 1.7 * stockWork.reqPerSec)} (${fmt(bestWork / stockWork.reqPerSec, 2)} ×)`,
    `- echo ≥ 1.0 × stock: ${verdict(bestEcho >= stockEcho.reqPerSec)} (${fmt(bestEcho / stockEcho.reqPerSec, 2)} ×)`,
    `- buffered echo ≥ 1.0 × the stock server on buffered: ${verdict(bestBuffered >= stockBuffered.reqPerSec)} (${fmt(bestBuffered / stockBuffered.reqPerSec, 2)} ×; the scan for the end of each unframed message costs ${fmt(echo.get(configs[1]!.name)!.ioCpuUsPerCall, 1)} → ${fmt(bufferedEcho.get(configs[1]!.name)!.ioCpuUsPerCall, 1)} µs of I/O-thread CPU per call, 1 worker)`,
    `- I/O-thread CPU per call below the stock server's total CPU per call: ${verdict(ioPerCall < stockEcho.totalCpuUsPerCall)} (${fmt(ioPerCall, 1)} µs vs ${fmt(stockEcho.totalCpuUsPerCall, 1)} µs, echo, 1 worker)`,
    `- limited server within 1 % of its rate, zero refused: ${verdict(Math.abs(achieved - rate) <= rate * 0.01 && limitedErrors === 0)} (${fmt((100 * achieved) / rate, 2)} %, ${limitedErrors} refused)`,
    '',
  ];
  // Charts: admitted rate over time against the limit, the distribution of queue waits (the
  // limited run's latencies: nearly all of it is waiting for a token), req/s by server.
  const last = limited.at(-1)!;
  const buckets = new Map<number, number>();
  for (const t of last.completionsAtMs) buckets.set(Math.floor(t / 100), (buckets.get(Math.floor(t / 100)) ?? 0) + 1);
  const horizon = Math.floor(SECONDS * 10);
  const ratePoints: [number, number][] = [];
  for (let b = 0; b < horizon; b++) ratePoints.push([(b + 1) / 10, (buckets.get(b) ?? 0) * 10]);
  const charts = {
    rate: writeResult(
      'server-limited-rate.svg',
      lineChart(
        `Limited server: completed calls/s (100 ms buckets), limit ${rate}/s`,
        'time (s)',
        'calls/s',
        [{ name: 'completed/s, 64 calls outstanding', points: ratePoints }],
        [{ name: `limit ${rate}/s`, y: rate }],
      ),
    ),
    wait: writeResult(
      'server-limited-wait.svg',
      histogram(`Limited server: latency of each call (mostly queue wait), ${last.latenciesMs.length} calls`, 'ms', last.latenciesMs),
    ),
    throughput: writeResult(
      'server-throughput.svg',
      barChart(
        'req/s by server (8 connections × 8 outstanding)',
        'req/s',
        configs.map((c) => c.name.replace(' (1 thread)', '')),
        [
          { name: 'echo 100 B', values: configs.map((c) => echo.get(c.name)!.reqPerSec) },
          { name: 'echo 100 B, buffered', values: configs.map((c) => bufferedEcho.get(c.name)!.reqPerSec) },
          { name: 'work ~1 ms CPU', values: configs.map((c) => work.get(c.name)!.reqPerSec) },
        ],
      ),
    ),
  };
  lines.push(
    '## Charts',
    '',
    `![admitted rate](${basename(charts.rate)})`,
    '',
    `![queue wait](${basename(charts.wait)})`,
    '',
    `![req/s by server](${basename(charts.throughput)})`,
    '',
  );
  const path = writeResult('server.md', lines.join('\n'));
  console.log(lines.join('\n'));
  console.log(`\nwrote ${path}`);
}

await main();
process.exit(0);
