// `thrift-queue-limiter serve` as the tests run it: the compiled CLI in a child process of this
// node, on the example Calculator service, on 127.0.0.1. Kept apart from helpers.ts, which the
// worker fixtures import from dist/: this module loads the example service.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { handlerPath, servicePath } from './server/calculator.js';

/** The compiled CLI, the file the package's `bin` runs. */
export const cliPath = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));

/** What `serveArgs` puts before a test's own flags. */
export interface ServeBase {
  /** `--service`; the example Calculator by default. */
  service?: string;
  /** `--handler`; the example handler by default. */
  handler?: string;
  /** `--port`; 0 (a free port) by default. */
  port?: number;
  /** `--workers`; 1 by default, one thread being enough for what these tests ask of the server. */
  workers?: number;
}

/** The arguments after `node` that run `serve` with `--service`, `--handler`, `--port` and `--workers` of `base`, then `flags`. */
export function serveArgs(flags: readonly string[] = [], base: ServeBase = {}): string[] {
  const { service = servicePath, handler = handlerPath, port = 0, workers = 1 } = base;
  return [cliPath, 'serve', '--service', service, '--handler', handler, '--port', String(port), '--workers', String(workers), ...flags];
}

/** How a `serve` run ended: its exit code (null if a signal ended it), output, and time taken. */
export interface ServeEnded {
  code: number | null;
  /** The run outlived its time and was killed. */
  killed: boolean;
  stdout: string;
  stderr: string;
  ms: number;
}

/** A running `serve` and its output so far. */
export interface ServeProcess {
  child: ChildProcess;
  /** stdout so far. */
  out: () => string;
  /** stderr so far. */
  err: () => string;
  /** Its exit code (null if a signal ended it), once it exited and its output is read. */
  exited: Promise<number | null>;
  /** Its Thrift port, once it printed "serving … on 127.0.0.1:PORT"; rejects, with its output, if it exits first or has not within 20 s. */
  serving: Promise<number>;
}

/** How long `serving` waits: starting takes a second or two, more while other tests load the machine. */
const START_MS = 20_000;

/** Starts `serve` (arguments as `serveArgs`) with `env` added to this process's environment; the caller ends it. */
export function spawnServe(flags: readonly string[] = [], base: ServeBase & { env?: Record<string, string> } = {}): ServeProcess {
  const child = spawn(process.execPath, serveArgs(flags, base), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...base.env } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const serving = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start within ${START_MS} ms; stdout: ${out} stderr: ${err}`)), START_MS);
    child.stdout.on('data', () => {
      const m = /serving .* on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited ${code} before serving; stdout: ${out} stderr: ${err}`));
    });
  });
  // A test that never awaits `serving` (serve refused to start, as it expected) leaves no unhandled rejection.
  serving.catch(() => {});
  return { child, out: () => out, err: () => err, exited, serving };
}

/** `spawnServe`, resolved once it serves, with its port; killed if it does not. */
export async function startServe(
  flags: readonly string[] = [],
  base: ServeBase & { env?: Record<string, string> } = {},
): Promise<ServeProcess & { port: number }> {
  const serve = spawnServe(flags, base);
  try {
    return { ...serve, port: await serve.serving };
  } catch (error) {
    serve.child.kill('SIGKILL');
    throw error;
  }
}

/** Runs `serve` (arguments as `serveArgs`) to its exit, killing it (killed: true) if it has not exited within `timeoutMs`. */
export async function runServe(flags: readonly string[] = [], base: ServeBase = {}, timeoutMs = 15_000): Promise<ServeEnded> {
  const started = performance.now();
  const serve = spawnServe(flags, base);
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    serve.child.kill('SIGKILL');
  }, timeoutMs);
  try {
    const code = await serve.exited;
    return { code, killed, stdout: serve.out(), stderr: serve.err(), ms: performance.now() - started };
  } finally {
    clearTimeout(timer);
  }
}
