/**
 * Real redis-server processes for the store tests, on 127.0.0.1 and a free port each, so a test
 * can kill, stop and restart its own server without disturbing others. Needs Debian's
 * `redis-server` on PATH (`.ci/run` installs it; locally: `apt-get install redis-server`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, createConnection } from 'node:net';

/** One redis-server the test controls. */
export interface TestRedis {
  readonly port: number;
  readonly url: string;
  /** SIGKILL, as a crash. */
  kill(): Promise<void>;
  /** Starts it again on the same port (empty: nothing is persisted). */
  restart(): Promise<void>;
  /** SIGSTOP / SIGCONT: a server that hangs without closing connections. */
  pause(): void;
  resume(): void;
  /** Sends one command with redis-cli and returns its output. */
  cli(...args: string[]): string;
  stop(): Promise<void>;
}

/** Servers started here and still running: killed when this process exits, whatever the tests did. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.setTimeout(200);
    socket.once('connect', () => socket.write('PING\r\n'));
    // +PONG, or -NOAUTH from a server with a password: either way it is up.
    socket.once('data', (d) => {
      socket.destroy();
      resolve(/PONG|NOAUTH/.test(d.toString()));
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

async function waitUntil(check: () => Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * The Redis that tests which need not kill it share: `REDIS_URL` when set (`.ci/run` starts one),
 * else a server of their own. `stop()` leaves an external server running.
 */
export async function sharedRedis(): Promise<Pick<TestRedis, 'url' | 'cli' | 'stop'>> {
  const url = process.env.REDIS_URL;
  if (url === undefined || url === '') return startRedis();
  return {
    url,
    cli: (...command: string[]) => spawnSync('redis-cli', ['-u', url, ...command], { encoding: 'utf8' }).stdout.trim(),
    stop: () => Promise.resolve(),
  };
}

/** Starts a redis-server on a free port; rejects with a clear message when none is installed. */
export async function startRedis(options: { password?: string } = {}): Promise<TestRedis> {
  if (spawnSync('redis-server', ['--version']).error !== undefined) {
    throw new Error('redis-server is not installed: the Redis store tests need it (apt-get install redis-server)');
  }
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
  if (options.password !== undefined) args.push('--requirepass', options.password);
  let child: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    child = spawn('redis-server', args, { stdio: 'ignore' });
    running.add(child);
    child.once('exit', () => running.delete(child!));
    await waitUntil(() => answersPing(port), `redis-server on port ${port}`);
  };
  const exited = (c: ChildProcess): Promise<void> =>
    c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', () => r()));
  await launch();
  const auth = options.password === undefined ? [] : ['-a', options.password, '--no-auth-warning'];
  return {
    port,
    url: `redis://${options.password === undefined ? '' : `:${options.password}@`}127.0.0.1:${port}`,
    async kill() {
      const c = child!;
      c.kill('SIGKILL');
      await exited(c);
    },
    restart: launch,
    pause: () => child!.kill('SIGSTOP'),
    resume: () => child!.kill('SIGCONT'),
    cli: (...command: string[]) => spawnSync('redis-cli', ['-p', String(port), ...auth, ...command], { encoding: 'utf8' }).stdout.trim(),
    async stop() {
      const c = child!;
      c.kill('SIGCONT');
      c.kill('SIGTERM');
      await exited(c);
    },
  };
}
