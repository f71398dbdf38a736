/**
 * The npm package as a user gets it: packed from a copy of the source tree as a fresh clone has it
 * (no dist/, so `prepack` has to build), installed into an empty project with npm, then imported
 * from an ES module, type-checked against, and run through its command.
 */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

const exec = promisify(execFile);
const repo = fileURLToPath(new URL('../..', import.meta.url));
const version = (JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string }).version;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (bounded by a 120 s kill): its exit code and output, whether it failed or not. */
function sh(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return exec(file, args, { cwd, env, timeout: 120_000, maxBuffer: 64 * 1024 * 1024 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** Every file under `dir`, relative to it. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
}

interface Packed {
  filename: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: { path: string }[];
}

describe('the npm package, packed from a fresh tree and installed into an empty project', () => {
  const work = mkdtempSync(join(tmpdir(), 'tql-pack-'));
  const tree = join(work, 'tree');
  const app = join(work, 'app');
  const installed = join(app, 'node_modules', 'thrift-queue-limiter');
  let packed: Packed;
  let paths: string[];

  beforeAll(async () => {
    // The files a clone has (tracked, plus new ones not ignored), and the dependencies beside them.
    const listed = await sh('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], repo);
    expect(listed.code).toBe(0);
    for (const file of listed.stdout.split('\0').filter(Boolean)) {
      if (!existsSync(join(repo, file))) continue; // deleted in the working tree, not yet committed
      mkdirSync(dirname(join(tree, file)), { recursive: true });
      cpSync(join(repo, file), join(tree, file));
    }
    symlinkSync(realpathSync(join(repo, 'node_modules')), join(tree, 'node_modules'));
    expect(existsSync(join(tree, 'dist'))).toBe(false);

    const pack = await sh('npm', ['pack', '--json', '--pack-destination', work], tree);
    expect(pack.code, pack.stderr).toBe(0);
    packed = (JSON.parse(pack.stdout) as Packed[])[0]!;
    paths = packed.files.map((f) => f.path);

    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }));
    // The cache first: in CI it holds every dependency after `npm ci`; the registry for the rest.
    const install = await sh('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(work, packed.filename)], app);
    expect(install.code, install.stderr).toBe(0);
  }, 120_000);
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  /** `npx thrift-queue-limiter …` in the project, as a user types it; never installing from the registry instead. */
  const npx = (...args: string[]): Promise<Run> => sh('npx', ['thrift-queue-limiter', ...args], app, { ...process.env, npm_config_yes: 'false' });

  test('the tarball holds what runs and the documents, and nothing of the tests, benchmarks or sources', () => {
    for (const needed of [
      'package.json',
      'README.md',
      'LICENSE',
      'CHANGELOG.md',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/src/cli/main.js',
      'dist/workers/thrift-worker.js',
      'examples/calculator-handler.js',
      'examples/gen-nodejs/Calculator.js',
      'examples/gen-nodejs/calculator_types.js',
      'examples/gen-nodejs/package.json',
    ]) {
      expect(paths, needed).toContain(needed);
    }
    const stray = paths.filter(
      (p) =>
        !/^(package\.json|README\.md|LICENSE|CHANGELOG\.md)$/.test(p) &&
        !/^dist\/src\/.+\.(js|d\.ts)$/.test(p) &&
        !/^dist\/workers\/[^/]+\.js$/.test(p) &&
        !/^examples\/(calculator\.thrift|calculator-handler\.js|gen-nodejs\/[^/]+\.js|gen-nodejs\/package\.json)$/.test(p),
    );
    expect(stray).toEqual([]);
    expect(paths.filter((p) => p.startsWith('dist/test/') || p.startsWith('dist/bench/') || p.endsWith('.map'))).toEqual([]);
    expect(readFileSync(join(installed, 'LICENSE'), 'utf8')).toContain('Apache License\n                           Version 2.0, January 2004');
    expect(JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8'))).toMatchObject({ license: 'Apache-2.0', version });
  });

  test('every compiled module of src/ is in the package, and its type declarations carry no @internal member', () => {
    const sources = filesUnder(join(tree, 'src')).filter((f) => f.endsWith('.ts'));
    for (const source of sources) {
      expect(paths, source).toContain(`dist/src/${source.replace(/\.ts$/, '.js')}`);
      expect(paths, source).toContain(`dist/src/${source.replace(/\.ts$/, '.d.ts')}`);
    }
    const declarations = filesUnder(installed).filter((f) => f.endsWith('.d.ts'));
    expect(declarations.length).toBe(sources.length);
    expect(declarations.filter((f) => readFileSync(join(installed, f), 'utf8').includes('@internal'))).toEqual([]);
  });

  test('its type declarations type-check in a strict TypeScript project that checks libraries too (skipLibCheck off)', async () => {
    writeFileSync(
      join(app, 'check.ts'),
      [
        "import { createThreadedServer, TokenBucket, type LimiterSnapshot, type ThreadedServerOptions } from 'thrift-queue-limiter';",
        'const bucket = new TokenBucket({ rate: 10, periodMs: 1000, burst: 1 });',
        'export const snapshot: LimiterSnapshot = bucket.snapshot();',
        "export const options: ThreadedServerOptions = { service: './s.js', handler: './h.js', limits: { add: { rate: 5 } } };",
        'export const create = createThreadedServer;',
        '',
      ].join('\n'),
    );
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          lib: ['ES2023', 'ES2024.SharedMemory', 'ESNext.Disposable'],
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          types: ['node'],
          typeRoots: [join(repo, 'node_modules', '@types')],
        },
        files: ['check.ts'],
      }),
    );
    const tsc = await sh(process.execPath, [join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], app);
    expect(tsc.stdout + tsc.stderr).toBe('');
    expect(tsc.code).toBe(0);
  });

  test('an ES module imports it and uses a limiter; its package.json is importable', async () => {
    writeFileSync(
      join(app, 'use.mjs'),
      [
        "import { TokenBucket, createThreadedServer } from 'thrift-queue-limiter';",
        "import pkg from 'thrift-queue-limiter/package.json' with { type: 'json' };",
        'const bucket = new TokenBucket({ rate: 1000, periodMs: 1000, burst: 3 });',
        'const taken = [bucket.tryAcquire(), bucket.tryAcquire(), bucket.tryAcquire(), bucket.tryAcquire()];',
        'await bucket.acquire();',
        'console.log(JSON.stringify({ version: pkg.version, taken, admitted: bucket.snapshot().admitted, server: typeof createThreadedServer }));',
      ].join('\n'),
    );
    const use = await sh(process.execPath, ['use.mjs'], app);
    expect(use.stderr).toBe('');
    expect(JSON.parse(use.stdout)).toEqual({ version, taken: [true, true, true, false], admitted: 4, server: 'function' });
  });

  test('npx thrift-queue-limiter --version and -v print the package version', async () => {
    for (const flag of ['--version', '-v']) {
      const run = await npx(flag);
      expect(run).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
    }
  });

  test('the installed demo runs the shipped example service at twice its limit, and passes its own checks', async () => {
    const out = join(work, 'demo-report');
    const demo = await npx('demo', '--duration', '1s', '--rate', '100', '--burst', '5', '--out', out);
    expect(demo.stderr).toBe('');
    expect(demo.code).toBe(0);
    expect(demo.stdout).toMatch(/refused\s+0\s+failed 0\n/);
    expect(demo.stdout).toContain('demo: ok');
    expect(existsSync(join(out, 'demo.svg'))).toBe(true);
  });

  test('the installed bench says in one line that it needs a source checkout, and exits non-zero', async () => {
    const bench = await npx('bench', '--quick');
    expect(bench.code).toBe(1);
    expect(bench.stdout).toBe('');
    expect(bench.stderr).toBe(
      'thrift-queue-limiter: bench needs a source checkout with its dev dependencies (npm ci, then npm run bench): the installed package has no benchmark suites\n',
    );
  });
});
