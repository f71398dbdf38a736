/**
 * A limiter must hold the process open exactly while calls wait on it, as a pending timer would:
 * a script whose calls have all finished exits by itself, one with a call still waiting does not.
 * Each case runs a small ESM script in a child `node` importing the built package (dist/, which
 * `tsc` writes before the tests run).
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { sharedRedis, type TestRedis } from '../stores/redis-server.js';

const INDEX = new URL('../../dist/src/index.js', import.meta.url).href;
/** Bound on a script's work up to "done" (it takes well under a second). */
const WORK_MS = 15_000;
/** How long after "done" the script has to exit by itself. */
const EXIT_MS = 5_000;

interface Outcome {
  /** What the script printed after "done": calls that were waiting right after submission. */
  waiting: number | undefined;
  /** Exit code, or 'running' if it had not exited `graceMs` after "done". */
  exit: number | null | 'running';
  stderr: string;
}

/** Resolves with `promise`'s value, or with `fallback` after `ms`. */
function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)))]).finally(() => clearTimeout(timer));
}

/**
 * Runs `body` (with the package imported as `q`) in a child node; it must print
 * `done waiting=<n>` once its work is over. Waits for that, then up to `graceMs` for the exit.
 */
async function runScript(body: string, graceMs: number): Promise<Outcome> {
  const source = `import * as q from ${JSON.stringify(INDEX)};\n${body}`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    let stdout = '';
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const done = new Promise<void>((resolve) => {
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        stdout += d;
        if (/^done /m.test(stdout)) resolve();
      });
    });
    await within(Promise.race([done, exited]), WORK_MS, undefined);
    const m = /^done waiting=(\d+)$/m.exec(stdout);
    const exit = m === null ? await within(exited, 0, 'running' as const) : await within(exited, graceMs, 'running' as const);
    return { waiting: m === null ? undefined : Number(m[1]), exit, stderr };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** Asserts the script's calls did wait, it printed "done", and it then exited with 0 on its own. */
async function expectExits(body: string): Promise<void> {
  const outcome = await runScript(body, EXIT_MS);
  expect(outcome.stderr).toBe('');
  expect(outcome.waiting).toBeGreaterThan(0);
  expect(outcome.exit).toBe(0);
}

/** A task that takes a few ms, so concurrency permits are really held. */
const TASK = 'const task = () => new Promise((r) => setTimeout(r, 10));';

describe('a script exits on its own once its calls have finished', () => {
  test('a script exits on its own once its calls through a TokenBucket have finished', async () => {
    await expectExits(`${TASK}
      const limiter = new q.TokenBucket({ rate: 100, burst: 2 });
      const calls = Array.from({ length: 8 }, () => limiter.run(task));
      const waiting = limiter.size;
      await Promise.all(calls);
      console.log('done waiting=' + waiting);`);
  });

  test('a script exits on its own once its calls through a FixedWindow have finished', async () => {
    await expectExits(`${TASK}
      const limiter = new q.FixedWindow({ maxCalls: 2, periodMs: 50 });
      const calls = Array.from({ length: 6 }, () => limiter.run(task));
      const waiting = limiter.size;
      await Promise.all(calls);
      console.log('done waiting=' + waiting);`);
  });

  test('a script exits on its own once its calls through a ConcurrencyLimit have finished', async () => {
    await expectExits(`${TASK}
      const limiter = new q.ConcurrencyLimit({ max: 2 });
      const calls = Array.from({ length: 5 }, () => limiter.run(task));
      const waiting = limiter.size;
      await Promise.all(calls);
      console.log('done waiting=' + waiting);`);
  });

  test('a script exits on its own once the calls it let wait on a ConcurrencyLimit timed out or were aborted', async () => {
    await expectExits(`
      const limiter = new q.ConcurrencyLimit({ max: 1 });
      const holder = await limiter.acquire();
      const controller = new AbortController();
      const calls = [
        limiter.acquire(1, { maxWaitMs: 20 }).then(() => { throw new Error('admitted'); }, () => {}),
        limiter.acquire(1, { signal: controller.signal }).then(() => { throw new Error('admitted'); }, () => {}),
      ];
      const waiting = limiter.size;
      controller.abort();
      await Promise.all(calls);
      holder.release();
      console.log('done waiting=' + waiting);`);
  });

  test('a script exits on its own once its calls through a RateLimiter have finished', async () => {
    await expectExits(`${TASK}
      const limiter = new q.RateLimiter({ maxCalls: 100, burst: 2 });
      const call = limiter.wrap(task);
      const calls = Array.from({ length: 8 }, () => call());
      const waiting = limiter.limiter.size;
      await Promise.all(calls);
      console.log('done waiting=' + waiting);`);
  });

  test('a script exits on its own once its calls through a KeyedTokenBucket have finished', async () => {
    await expectExits(`${TASK}
      const limiter = new q.KeyedTokenBucket({ rate: 100, burst: 2 });
      const calls = Array.from({ length: 8 }, (_, i) => limiter.run('key-' + (i % 2), task));
      const waiting = limiter.size;
      await Promise.all(calls);
      console.log('done waiting=' + waiting);`);
  });

  test('a script exits on its own once its calls through a FairQueue in front of a ConcurrencyLimit have finished', async () => {
    await expectExits(`${TASK}
      const fair = new q.FairQueue(new q.ConcurrencyLimit({ max: 2 }));
      const calls = Array.from({ length: 8 }, (_, i) => fair.run(task, { flow: 'client-' + (i % 3) }));
      const waiting = fair.size;
      await Promise.all(calls);
      console.log('done waiting=' + waiting);`);
  });

  test('a script exits on its own once its calls through a FairQueue in front of a TokenBucket have finished', async () => {
    await expectExits(`${TASK}
      const fair = new q.FairQueue(new q.TokenBucket({ rate: 100, burst: 2 }));
      const calls = Array.from({ length: 8 }, (_, i) => fair.run(task, { flow: 'client-' + (i % 3) }));
      const waiting = fair.size;
      await Promise.all(calls);
      console.log('done waiting=' + waiting);`);
  });
});

describe('a script using the Redis store exits on its own once its calls have finished and it closed the store', () => {
  let redis: Pick<TestRedis, 'url' | 'cli' | 'stop'>;
  beforeAll(async () => {
    redis = await sharedRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  /** A script body: `make(store)` builds the limiter; calls through `run`, then the store is closed. */
  const onRedis = (make: string, waiting: string): string => `${TASK}
    const store = q.createRedisStore({ url: ${JSON.stringify(redis.url)}, prefix: 'exit:' + Math.random() + ':' });
    const limiter = ${make};
    const calls = Array.from({ length: 8 }, () => limiter.run(task));
    const waiting = ${waiting};
    await Promise.all(calls);
    await store.close();
    console.log('done waiting=' + waiting);`;

  test('a script exits on its own once its calls through a TokenBucket on the Redis store have finished and it closed the store', async () => {
    await expectExits(onRedis(`new q.TokenBucket({ rate: 100, burst: 2, store, key: 'tb' })`, 'limiter.size'));
  });

  test('a script exits on its own once its calls through a FixedWindow on the Redis store have finished and it closed the store', async () => {
    await expectExits(onRedis(`new q.FixedWindow({ maxCalls: 3, periodMs: 50, store, key: 'fw' })`, 'limiter.size'));
  });

  test('a script exits on its own once its calls through a RateLimiter on the Redis store have finished and it closed the store', async () => {
    await expectExits(onRedis(`new q.RateLimiter({ maxCalls: 100, burst: 2, store, key: 'rl' })`, 'limiter.limiter.size'));
  });
});

describe('a limiter with a call still waiting keeps the process alive', () => {
  test('a script whose call still waits on a ConcurrencyLimit (its holder never releases) keeps running', async () => {
    const outcome = await runScript(
      `const limiter = new q.ConcurrencyLimit({ max: 1 });
      await limiter.acquire();
      limiter.acquire().then(() => console.log('admitted'));
      console.log('done waiting=' + limiter.size);`,
      1000,
    );
    expect(outcome.stderr).toBe('');
    expect(outcome.waiting).toBe(1);
    expect(outcome.exit).toBe('running');
  });
});
