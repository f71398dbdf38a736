/**
 * The Redis server a benchmark talks to: `REDIS_URL` when set, otherwise a redis-server of our
 * own (from PATH) on 127.0.0.1 and a free port, without persistence, stopped by `stop()` (and,
 * as a last resort, when this process exits).
 */
import { spawnSync } from 'node:child_process';
import { startRedis } from '../../test/stores/redis-server.js';

export interface BenchRedis {
  /** redis://host:port */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** From REDIS_URL, for the peers' client options. */
  readonly password?: string;
  /** What it is, for the report. */
  readonly description: string;
  /** Stops the server if we started it. */
  stop(): Promise<void>;
}

/** Uses `REDIS_URL`, or starts a redis-server; rejects with a clear message when there is none. */
export async function benchRedis(): Promise<BenchRedis> {
  const given = process.env.REDIS_URL;
  if (given) {
    const u = new URL(given);
    const password = u.password ? decodeURIComponent(u.password) : undefined;
    return { url: given, host: u.hostname, port: Number(u.port || 6379), password, description: `REDIS_URL (${u.host})`, stop: async () => {} };
  }
  const version = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (version.error !== undefined) throw new Error('redis-server is not on PATH (apt-get install redis-server), and REDIS_URL is not set');
  const server = await startRedis();
  // Last resort if the benchmark dies before stop(): kill() sends SIGKILL synchronously.
  const kill = (): void => void server.kill();
  process.once('exit', kill);
  const v = /v=(\S+)/.exec(version.stdout)?.[1] ?? '?';
  return {
    url: server.url,
    host: '127.0.0.1',
    port: server.port,
    description: `redis-server ${v} started by the benchmark (127.0.0.1:${server.port}, --save '' --appendonly no)`,
    async stop() {
      process.off('exit', kill);
      await server.stop();
    },
  };
}
