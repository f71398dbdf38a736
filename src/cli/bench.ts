/**
 * `thrift-queue-limiter bench`: runs the benchmark suites one after another (each in its own
 * process, so one suite's threads and heap do not disturb the next) and says where their reports
 * and charts were written.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseFlags } from './args.js';

const SUITES = ['core', 'server', 'adaptive'] as const;

const HELP = `usage: thrift-queue-limiter bench [--quick] [--suite core|server|adaptive] [--out DIR]

Runs the benchmark suites with peers side by side in the same run and writes Markdown reports and
SVG charts (default: bench/results/). --quick runs every suite for a few seconds: a check that
they run and write their reports, not a measurement.`;

/** Whether `specifier` resolves from here: the suites import their dev dependencies, which an installed package lacks. */
function resolvable(specifier: string): boolean {
  try {
    import.meta.resolve(specifier);
    return true;
  } catch {
    return false;
  }
}

/** Runs `bench`; resolves with the exit code. */
export async function bench(argv: string[]): Promise<number> {
  const f = parseFlags(argv, {
    quick: { type: 'boolean', default: false },
    suite: { type: 'string', multiple: true },
    out: { type: 'string' },
    help: { type: 'boolean', default: false },
  });
  if (f.help) {
    console.log(HELP);
    return 0;
  }
  const chosen = (f.suite as string[] | undefined) ?? [...SUITES];
  for (const s of chosen) {
    if (!(SUITES as readonly string[]).includes(s)) throw new RangeError(`--suite must be one of ${SUITES.join(', ')}, got ${JSON.stringify(s)}`);
  }
  const scripts = chosen.map((suite) => fileURLToPath(new URL(`../../bench/${suite}.js`, import.meta.url)));
  if (!scripts.every((script) => existsSync(script)) || !resolvable('tinybench')) {
    throw new Error('bench needs a source checkout with its dev dependencies (npm ci, then npm run bench): the installed package has no benchmark suites');
  }
  for (const [i, suite] of chosen.entries()) {
    const script = scripts[i]!;
    const args = [script, ...(f.quick ? ['--quick'] : []), ...(f.out ? ['--out', f.out as string] : [])];
    console.log(`bench: ${suite}${f.quick ? ' (quick)' : ''}`);
    const code = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, args, { stdio: 'inherit' });
      child.on('exit', (c) => resolve(c ?? 1));
    });
    if (code !== 0) {
      console.error(`bench: suite ${suite} failed (exit ${code})`);
      return 1;
    }
  }
  return 0;
}
