// The example service seen from a client: the generated code and the npm thrift library, over a
// real socket on 127.0.0.1.
import { createRequire } from 'node:module';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import thrift from 'thrift';
import type { ThreadedServer } from '../../src/server/threaded-server.js';
import type { ThreadedServerOptions } from '../../src/server/server-options.js';

const require = createRequire(import.meta.url);
export const servicePath = fileURLToPath(new URL('../../examples/gen-nodejs/Calculator.js', import.meta.url));
export const handlerPath = fileURLToPath(new URL('../../examples/calculator-handler.js', import.meta.url));
export const Calculator = require(servicePath) as unknown;
export const types = require(fileURLToPath(new URL('../../examples/gen-nodejs/calculator_types.js', import.meta.url))) as {
  DivideByZero: new (args?: { message?: string }) => Error & { message: string };
};

/** The generated client's methods, promise style. */
export interface CalculatorClient {
  add(a: number, b: number): Promise<number>;
  echo(data: Buffer): Promise<Buffer>;
  ping(): Promise<void>;
  record(event: string): Promise<void>;
  divide(a: number, b: number): Promise<number>;
  work(micros: number): Promise<unknown>;
  sleep(ms: number): Promise<number>;
  fail(how: string): Promise<string>;
  counters(): Promise<Record<string, unknown>>;
}

/** A TApplicationException as the npm client decodes it. */
export interface AppException extends Error {
  type: number;
}

export type Protocol = 'binary' | 'compact';

/** Opens a framed connection with the generated client. */
export async function connect(
  port: number,
  protocol: Protocol = 'binary',
): Promise<{ client: CalculatorClient; close: () => void; connection: thrift.Connection }> {
  const connection = thrift.createConnection('127.0.0.1', port, {
    transport: thrift.TFramedTransport,
    protocol: protocol === 'compact' ? thrift.TCompactProtocol : thrift.TBinaryProtocol,
  });
  connection.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    connection.once('connect', () => resolve());
    connection.once('error', reject);
  });
  const client = thrift.createClient<CalculatorClient>(Calculator as never, connection);
  return { client, connection, close: () => connection.end() };
}

/**
 * The server module as compiled to dist/: its worker entry is a compiled file beside it, which the
 * TypeScript sources that vitest runs do not have.
 */
export async function serverModule(): Promise<typeof import('../../src/server/threaded-server.js')> {
  return (await import(new URL('../../dist/src/server/threaded-server.js', import.meta.url).href)) as typeof import('../../src/server/threaded-server.js');
}

/** Starts the example service on the threaded server, on a free port of 127.0.0.1. */
export async function startServer(options: Partial<ThreadedServerOptions> = {}): Promise<{ server: ThreadedServer; port: number }> {
  const log: string[] = [];
  const { createThreadedServer } = await serverModule();
  const server = createThreadedServer({ service: servicePath, handler: handlerPath, workers: 2, log: (line) => log.push(line), ...options });
  const address = await server.listen(0);
  return { server, port: address.port };
}

/** A raw socket to the server, for what no well-behaved client sends. */
export function rawSocket(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
    socket.on('error', reject);
  });
}

/** Resolves when `socket` closes, with the time it took. */
export function closed(socket: net.Socket): Promise<number> {
  const started = performance.now();
  return new Promise((resolve) => socket.once('close', () => resolve(performance.now() - started)));
}
