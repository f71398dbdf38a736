#!/usr/bin/env node
/**
 * The `thrift-queue-limiter` command. Each subcommand lives in its own module; this file only
 * dispatches and turns a thrown usage error into one line on stderr and a non-zero exit.
 */
import { readFileSync } from 'node:fs';
import { bench } from './bench.js';
import { demo } from './demo.js';
import { load } from './load.js';
import { serve } from './serve.js';

const USAGE = `usage: thrift-queue-limiter <command> [options]
       thrift-queue-limiter --version

commands:
  demo [--duration 8s] [--rate 500] [--burst 20] [--workers 2]
      The example Thrift service on the threaded server, offered twice its limit: shows that
      queueing holds the rate without refusing a call (what npm start runs).
  serve --service FILE --handler FILE [--port 9090] [--limit work=100/s] ...
      Multi-threaded Thrift server with queueing limits (see serve --help).
  load --service FILE --method NAME --port N (--rate 2000/s | --concurrency 64) [--duration 10s] ...
      Thrift load generator: throughput, HDR latency percentiles, errors by kind (see load --help).
  bench [--quick] [--suite core|server|adaptive] [--out DIR]
      Benchmark suites with peers side by side; Markdown reports and SVG charts in bench/results/
      (needs a source checkout: the suites and their peer libraries are not in the npm package).

run 'thrift-queue-limiter <command> --help' for a command's options.`;

/** The version in package.json at the package root, three folders up from `dist/src/cli/` (in a checkout as installed). */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Thrown for bad command-line input: printed as one line, exit code 2. */
export class UsageError extends Error {
  /** Stable machine-readable reason. */
  readonly code = 'USAGE' as const;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'demo':
      return demo(rest);
    case 'serve':
      return serve(rest);
    case 'load':
      return load(rest);
    case 'bench':
      return bench(rest);
    case '--version':
    case '-v':
      console.log(packageVersion());
      return 0;
    case undefined:
    case '--help':
    case '-h':
      console.log(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command '${command}' (try --help)`);
  }
}

// A reader that went away (`serve … | head -1`, a log collector restarting) must not take the
// command down: Node reports the closed pipe as an 'error' event on the stream, which would end
// the process as an uncaught exception. From then on that output is dropped and the command goes
// on: a server keeps serving its clients, whose calls matter more than its log lines.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`thrift-queue-limiter: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = error instanceof UsageError || error instanceof TypeError || error instanceof RangeError ? 2 : 1;
  },
);
