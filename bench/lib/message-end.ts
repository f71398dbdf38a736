/**
 * Cost of finding where an unframed message ends (src/thrift/message-end.ts), per message: a
 * 100-byte `echo` call written by the npm thrift library, binary and compact, pushed whole, in
 * 1-byte chunks (the worst case of the resumable scan), and 100 back to back in one chunk.
 *
 *   npm run build && node dist/bench/lib/message-end.js [--quick]
 *
 * Prints a Markdown table of ns per message (median over runs).
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import thrift from 'thrift';
import { MessageScanner } from '../../src/thrift/message-end.js';
import { nsPerCall, type MicroOptions } from './micro.js';
import { fmt, machine, quick, table } from './report.js';

const MESSAGE_BYTES = 100;
const BACK_TO_BACK = 100;

type Protocol = 'binary' | 'compact';

/** An echo call of exactly MESSAGE_BYTES bytes, written by the library's generated client. */
function echoCall(protocol: Protocol): Buffer {
  const require = createRequire(import.meta.url);
  const { Client } = require(fileURLToPath(new URL('../../../examples/gen-nodejs/Calculator.js', import.meta.url))) as {
    Client: new (transport: unknown, protocol: unknown) => { send_echo(data: Buffer): void };
  };
  const write = (dataBytes: number): Buffer => {
    let out: Buffer | undefined;
    const transport = new thrift.TBufferedTransport(undefined, (b?: Buffer) => (out = Buffer.from(b!)));
    new Client(transport, protocol === 'compact' ? thrift.TCompactProtocol : thrift.TBinaryProtocol).send_echo(Buffer.alloc(dataBytes, 0x61));
    return out!;
  };
  // The envelope does not depend on the payload's size below 128 bytes (one-byte varint in compact).
  const envelope = write(0).length;
  const call = write(MESSAGE_BYTES - envelope);
  if (call.length !== MESSAGE_BYTES) throw new Error(`echo call of ${call.length} bytes, wanted ${MESSAGE_BYTES}`);
  return call;
}

/** ns per message of each way of feeding the scanner, both protocols. */
export async function messageEndBench(o: MicroOptions): Promise<Record<string, number>> {
  const tasks: Record<string, () => unknown> = {};
  for (const protocol of ['binary', 'compact'] as const) {
    const call = echoCall(protocol);
    const bytes = [...call].map((_, i) => call.subarray(i, i + 1));
    const batch = Buffer.concat(Array<Buffer>(BACK_TO_BACK).fill(call));
    const scanner = new MessageScanner(protocol, { maxMessageBytes: 16 << 20, maxDepth: 64 });
    tasks[`${protocol}, whole`] = () => scanner.push(call);
    tasks[`${protocol}, 1-byte chunks`] = () => {
      for (const b of bytes) scanner.push(b);
    };
    tasks[`${protocol}, ${BACK_TO_BACK} in one chunk`] = () => scanner.push(batch);
  }
  const perOp = await nsPerCall(tasks, { kind: 'sync' }, o);
  return Object.fromEntries(Object.entries(perOp).map(([name, ns]) => [name, name.includes('in one chunk') ? ns / BACK_TO_BACK : ns]));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const o: MicroOptions = quick ? { runs: 1, timeMs: 60, warmupMs: 20 } : { runs: 5, timeMs: 300, warmupMs: 100 };
  const ns = await messageEndBench(o);
  console.log(`MessageScanner, ${MESSAGE_BYTES}-byte echo call: ns per message (median of ${o.runs} runs)\n${machine()}\n`);
  console.log(
    table(
      ['feeding', 'ns / message'],
      Object.entries(ns).map(([name, v]) => [name, fmt(v, 0)]),
    ),
  );
}
