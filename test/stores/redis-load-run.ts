/**
 * Runs a multi-process Redis load (`test/fixtures/redis-load.ts`, or `redis-concurrency.ts`): forks
 * one process per config, waits until every thread of every process is connected, then gives them
 * one start line (CLOCK_MONOTONIC, shared by every process on Linux), so start-up time never eats
 * into the run.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { LoadResult } from '../fixtures/redis-load.js';

/** A started load: when it starts, and every process's result. */
export interface RunningLoad<R = LoadResult> {
  /** Monotonic ns at which every process starts offering. */
  startAt: bigint;
  results: Promise<R[]>;
  /** The processes, e.g. to kill one. */
  children: ChildProcess[];
}

/** The compiled fixture `name` (tests run from TS; child processes need the JS tsc wrote). */
export function fixturePath(name: string): string {
  return fileURLToPath(new URL(`../../dist/test/fixtures/${name}.js`, import.meta.url));
}

/** Forks one process of `fixture` per config and starts them together 200 ms after the last is ready. */
export async function startLoad<R = LoadResult>(configs: object[], fixture = 'redis-load'): Promise<RunningLoad<R>> {
  const path = fixturePath(fixture);
  const children = configs.map((c) => fork(path, [JSON.stringify(c)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  const results = children.map(
    (child) =>
      new Promise<R>((resolve, reject) => {
        let result: R | undefined;
        child.on('message', (m: R | { ready: true }) => {
          if (!(m !== null && typeof m === 'object' && 'ready' in m)) result = m;
        });
        child.once('error', reject);
        child.once('exit', (code) => (result !== undefined ? resolve(result) : reject(new Error(`load process exited ${code} without a result`))));
      }),
  );
  const ready = children.map((child) => new Promise<void>((resolve) => child.on('message', (m: { ready?: true }) => m.ready && resolve())));
  // A process that fails before it is ready rejects its result: fail then rather than wait forever.
  await Promise.race([Promise.all(ready), Promise.all(results)]);
  const startAt = process.hrtime.bigint() + 200_000_000n;
  for (const child of children) child.send({ startAt: String(startAt) });
  return { startAt, results: Promise.all(results), children };
}
