/**
 * `thrift-queue-limiter load`: the load generator from the command line.
 */
import { runLoad, type LoadProgress, type LoadProtocol, type LoadTransport } from '../load/load-generator.js';
import { parseDuration, parseFlags, parsePositive } from './args.js';
import { progressLine } from './progress.js';

const HELP = `usage: thrift-queue-limiter load --service FILE --method NAME --port N (--rate R/s | --concurrency N) [options]

  --service FILE     generated service module (its Client is used), e.g. ./gen-nodejs/Calculator.js
  --method NAME      method to call
  --args JSON        its arguments as a JSON array, in IDL order (default [])
  --port N           server port;  --host ADDR (default 127.0.0.1)
  --rate R/s         open loop: R calls per second on schedule; latency counts from the scheduled
                     time, so queueing at the server shows up (coordinated omission accounted for)
  --concurrency N    closed loop: N calls outstanding
  --duration DUR     how long to send (default 10s); unanswered calls are waited for up to 10 s
  --connections N    connections to spread calls over (default 8)
  --transport T      framed | buffered | header | http (default framed): framed or unframed
                     messages, THeader frames, or HTTP/1.1 POSTs over keep-alive sockets
  --protocol P       binary | compact | json (default binary; header takes binary or compact)
  --multiplexed NAME call NAME:method (TMultiplexedProtocol), for a server of several services
  --json             print the report as JSON (and no progress)

While it runs, a progress line: rewritten in place on a terminal, else one plain line a second.
A declared exception (one the IDL lists in \`throws\`) is an answer: it counts as completed, with its
latency, and is reported by name apart from the errors. A connection the server closes, or an
answer that cannot be read in the wire sent, stops the run at once with one line on stderr; the
calls then outstanding count as errors (exit code 1).`;

const TRANSPORTS: readonly LoadTransport[] = ['framed', 'buffered', 'header', 'http'];
const PROTOCOLS: readonly LoadProtocol[] = ['binary', 'compact', 'json'];

/** Runs `load`; resolves with the exit code (1 if any call failed or the run stopped early). */
export async function load(argv: string[]): Promise<number> {
  const f = parseFlags(argv, {
    service: { type: 'string' },
    method: { type: 'string' },
    args: { type: 'string', default: '[]' },
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    rate: { type: 'string' },
    concurrency: { type: 'string' },
    duration: { type: 'string', default: '10s' },
    connections: { type: 'string', default: '8' },
    protocol: { type: 'string', default: 'binary' },
    transport: { type: 'string', default: 'framed' },
    multiplexed: { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  });
  if (f.help) {
    console.log(HELP);
    return 0;
  }
  for (const required of ['service', 'method', 'port'] as const) {
    if (typeof f[required] !== 'string') throw new RangeError(`--${required} is required (see load --help)`);
  }
  if ((f.rate === undefined) === (f.concurrency === undefined))
    throw new RangeError('give exactly one of --rate R/s (open loop) or --concurrency N (closed loop)');
  let args: unknown;
  try {
    args = JSON.parse(f.args as string);
  } catch {
    throw new RangeError(`--args must be a JSON array, got ${JSON.stringify(f.args)}`);
  }
  if (!Array.isArray(args)) throw new RangeError(`--args must be a JSON array, got ${JSON.stringify(f.args)}`);
  const protocol = f.protocol as LoadProtocol;
  if (!PROTOCOLS.includes(protocol)) throw new RangeError(`--protocol must be ${PROTOCOLS.join(', ')}, got ${JSON.stringify(protocol)}`);
  const transport = f.transport as LoadTransport;
  if (!TRANSPORTS.includes(transport)) throw new RangeError(`--transport must be ${TRANSPORTS.join(', ')}, got ${JSON.stringify(transport)}`);
  const multiplexed = f.multiplexed as string | undefined;
  if (multiplexed !== undefined && !/^[^:\s]+$/.test(multiplexed))
    throw new RangeError(`--multiplexed must be a service name without ':' or spaces, got ${JSON.stringify(multiplexed)}`);
  const mode =
    f.rate !== undefined
      ? { rate: parsePositive('--rate', (f.rate as string).replace(/\/s$/, '')) }
      : { concurrency: parsePositive('--concurrency', f.concurrency as string, true) };
  const durationMs = parseDuration('--duration', f.duration as string);
  const progress = f.json ? undefined : progressLine(process.stdout);
  let previous = { at: 0, completed: 0 };
  const onProgress = (p: LoadProgress): void => {
    const perSec = ((p.completed - previous.completed) * 1000) / Math.max(1, p.elapsedMs - previous.at);
    previous = { at: p.elapsedMs, completed: p.completed };
    progress!.update(
      `load: ${(p.elapsedMs / 1000).toFixed(1)} s of ${durationMs / 1000} s  sent ${p.sent}  completed ${p.completed} (${perSec.toFixed(0)}/s)  failed ${p.failed}`,
    );
  };
  const report = await runLoad({
    service: f.service as string,
    method: f.method as string,
    args,
    port: parsePositive('--port', f.port as string, true),
    host: f.host as string,
    mode,
    durationMs,
    connections: parsePositive('--connections', f.connections as string, true),
    protocol,
    transport,
    ...(multiplexed === undefined ? {} : { multiplexed }),
    ...(progress === undefined ? {} : { onProgress }),
  }).finally(() => progress?.done());
  const failed = Object.values(report.errors).reduce((a, b) => a + b, 0);
  if (f.json) {
    console.log(JSON.stringify(report));
  } else {
    const l = report.latencyMs;
    console.log(
      `${report.mode} loop, ${report.method}: sent ${report.sent}, completed ${report.completed} in ${report.seconds.toFixed(2)} s (${report.throughput.toFixed(1)}/s)`,
    );
    const exceptions = Object.entries(report.exceptions);
    console.log(
      `declared exceptions: ${exceptions.length === 0 ? 'none' : `${exceptions.map(([k, n]) => `${k} ${n}`).join(', ')} (answers: in completed and in the latency)`}`,
    );
    console.log(
      `latency ms: mean ${l.mean.toFixed(2)}  p50 ${l.p50.toFixed(2)}  p90 ${l.p90.toFixed(2)}  p99 ${l.p99.toFixed(2)}  p99.9 ${l.p999.toFixed(2)}  max ${l.max.toFixed(2)}`,
    );
    console.log(
      `errors: ${
        failed === 0
          ? 'none'
          : Object.entries(report.errors)
              .map(([k, n]) => `${k} ${n}`)
              .join(', ')
      }`,
    );
  }
  if (report.stopped !== undefined) console.error(`load: ${report.stopped}`);
  return failed === 0 && report.stopped === undefined ? 0 : 1;
}
