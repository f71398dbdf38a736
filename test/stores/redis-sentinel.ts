/**
 * Redis behind Sentinel for the tests, started and stopped by them: a master, one replica and one
 * sentinel (`redis-server --sentinel`, so Debian's redis-sentinel package is not needed), on
 * 127.0.0.1 and free ports, in a temporary directory removed at the end (a sentinel rewrites its
 * configuration file). The sentinel declares the master down after `downAfterMs` and promotes the
 * replica. Killed when the test process exits, whatever happened.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './redis-server.js';

/** A master, its replica and a sentinel watching them as `name`. */
export interface TestSentinel {
  /** `host:port` of the sentinel, and the master's name there. */
  readonly sentinels: string[];
  readonly name: string;
  /** The port of the master the sentinel names now. */
  masterPort(): number;
  /** SIGKILL of the process serving `port`. */
  kill(port: number): Promise<void>;
  /** One command with redis-cli against `port`. */
  cli(port: number, ...args: string[]): string;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const cliAt = (port: number, args: string[]): string => spawnSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' }).stdout.trim();

async function until(check: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Starts master, replica and sentinel; resolves once the sentinel knows the replica. */
export async function startSentinel(options: { downAfterMs?: number } = {}): Promise<TestSentinel> {
  const dir = mkdtempSync(join(tmpdir(), 'tql-sentinel-'));
  const [master, replica, sentinel] = [await freePort(), await freePort(), await freePort()];
  const children = new Map<number, ChildProcess>();
  const launch = (port: number, args: string[]): void => {
    const child = spawn('redis-server', args, { stdio: 'ignore' });
    running.add(child);
    child.once('exit', () => running.delete(child));
    children.set(port, child);
  };
  const common = (port: number): string[] => ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'];
  launch(master, common(master));
  launch(replica, [...common(replica), '--replicaof', '127.0.0.1', String(master)]);
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(
    conf,
    [
      `port ${sentinel}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor tql 127.0.0.1 ${master} 1`,
      `sentinel down-after-milliseconds tql ${options.downAfterMs ?? 1000}`,
      'sentinel failover-timeout tql 5000',
      'sentinel parallel-syncs tql 1',
      '',
    ].join('\n'),
  );
  launch(sentinel, [conf, '--sentinel']);
  const stop = async (): Promise<void> => {
    await Promise.all([...children.keys()].map((p) => kill(p)));
    rmSync(dir, { recursive: true, force: true });
  };
  const kill = (port: number): Promise<void> =>
    new Promise<void>((resolve) => {
      const c = children.get(port)!;
      if (c.exitCode !== null || c.signalCode !== null) return resolve();
      c.once('exit', () => resolve());
      c.kill('SIGKILL');
    });
  try {
    await until(() => /master_link_status:up/.test(cliAt(replica, ['info', 'replication'])), 'the replica to sync');
    await until(() => /slaves=1/.test(cliAt(sentinel, ['info', 'sentinel'])), 'the sentinel to see the replica');
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    sentinels: [`127.0.0.1:${sentinel}`],
    name: 'tql',
    masterPort: () => Number(cliAt(sentinel, ['sentinel', 'get-master-addr-by-name', 'tql']).split('\n')[1]),
    kill,
    cli: (port, ...args) => cliAt(port, args),
    stop,
  };
}
