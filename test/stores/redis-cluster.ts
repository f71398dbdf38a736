/**
 * A real Redis Cluster for the tests, started and stopped by them: `masters` redis-server
 * processes with `--cluster-enabled yes` (and `replicas` per master), on 127.0.0.1 and ports below
 * 55536 (the cluster bus listens on port + 10000), joined with `redis-cli --cluster create`, in a
 * temporary directory removed at the end. Killed when the test process exits, whatever happened.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** One node of the cluster. */
export interface ClusterNode {
  readonly port: number;
  /** SIGKILL, as a crash. */
  kill(): Promise<void>;
  /** One command with redis-cli against this node (no redirections followed). */
  cli(...args: string[]): string;
}

/** A running cluster. */
export interface TestCluster {
  readonly nodes: ClusterNode[];
  /** redis:// URLs of every node, for `createRedisStore({ cluster })`. */
  readonly urls: string[];
  /** The node that serves `slot` now (its master), as node `port` sees the cluster. */
  masterOf(slot: number, askPort?: number): ClusterNode;
  /** The hash slot of `key`. */
  slotOf(key: string): number;
  /** The node ids by port, as the cluster knows them. */
  idOf(port: number): string;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A free port below 55536 whose cluster bus port (+10000) is free too. */
async function clusterPort(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 35000);
    if (taken.has(port) || taken.has(port + 10000) || taken.has(port - 10000)) continue;
    if ((await bindable(port)) && (await bindable(port + 10000))) {
      taken.add(port);
      return port;
    }
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function cliAt(port: number, args: string[]): string {
  return spawnSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' }).stdout.trim();
}

async function until(check: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Starts and joins the cluster; rejects with a clear message when redis-server or redis-cli is missing. */
export async function startCluster(options: { masters?: number; replicas?: number; nodeTimeoutMs?: number } = {}): Promise<TestCluster> {
  const masters = options.masters ?? 3;
  const replicas = options.replicas ?? 0;
  for (const tool of ['redis-server', 'redis-cli']) {
    if (spawnSync(tool, ['--version']).error !== undefined)
      throw new Error(`${tool} is not installed: the Redis Cluster tests need it (apt-get install redis-server redis-tools)`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'tql-cluster-'));
  const taken = new Set<number>();
  const ports: number[] = [];
  for (let i = 0; i < masters * (1 + replicas); i++) ports.push(await clusterPort(taken));
  const children = new Map<number, ChildProcess>();
  for (const port of ports) {
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${port}.conf`,
        '--cluster-node-timeout',
        String(options.nodeTimeoutMs ?? 1000),
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'no',
      ],
      { stdio: 'ignore' },
    );
    running.add(child);
    child.once('exit', () => running.delete(child));
    children.set(port, child);
  }
  const stop = async (): Promise<void> => {
    await Promise.all(
      [...children.values()].map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.kill('SIGKILL');
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await until(() => ports.every((p) => cliAt(p, ['ping']) === 'PONG'), 'the cluster nodes to start');
    const created = spawnSync(
      'redis-cli',
      ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes'],
      { encoding: 'utf8' },
    );
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
    await until(() => ports.every((p) => /cluster_state:ok/.test(cliAt(p, ['cluster', 'info']))), 'the cluster to be ok on every node');
    if (replicas > 0) {
      // Replicas must have synced before a failover can promote them.
      await until(
        () => ports.every((p) => !/role:slave/.test(cliAt(p, ['info', 'replication'])) || /master_link_status:up/.test(cliAt(p, ['info', 'replication']))),
        'the replicas to sync',
      );
    }
  } catch (error) {
    await stop();
    throw error;
  }
  const node = (port: number): ClusterNode => ({
    port,
    cli: (...args: string[]) => cliAt(port, args),
    kill: () =>
      new Promise<void>((resolve) => {
        const c = children.get(port)!;
        if (c.exitCode !== null || c.signalCode !== null) return resolve();
        c.once('exit', () => resolve());
        c.kill('SIGKILL');
      }),
  });
  const nodes = ports.map(node);
  const alive = (): number => ports.find((p) => children.get(p)!.exitCode === null && children.get(p)!.signalCode === null)!;
  return {
    nodes,
    urls: ports.map((p) => `redis://127.0.0.1:${p}`),
    slotOf: (key) => Number(cliAt(alive(), ['cluster', 'keyslot', key])),
    idOf: (port) => cliAt(port, ['cluster', 'myid']),
    masterOf(slot, askPort = alive()) {
      for (const line of cliAt(askPort, ['cluster', 'nodes']).split('\n')) {
        const [, addr, flags, , , , , , ...ranges] = line.split(' ');
        if (!flags?.includes('master') || flags.includes('fail')) continue;
        for (const r of ranges) {
          const [lo, hi] = r.split('-').map(Number);
          if (slot >= lo! && slot <= (hi ?? lo)!) return node(Number(/:(\d+)@/.exec(addr!)![1]));
        }
      }
      throw new Error(`no master serves slot ${slot}`);
    },
    stop,
  };
}
