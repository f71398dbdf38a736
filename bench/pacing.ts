/**
 * Pacing benchmark (issue 14): the rate a limit at burst 1 (strict spacing, bottleneck's `minTime`)
 * really delivers when every call waits and is released by a timer, in-process and with the limit
 * in Redis, against p-throttle in the same run; and what the pacing costs the thread in CPU.
 * Writes bench/results/pacing.md.
 *
 *   npm run bench:pacing                          about 4 minutes
 *   npm run bench:pacing -- --before ../base      also the build in ../base/dist, side by side
 *   npm run bench:pacing -- --rounds 5            5 rounds instead of 3
 *   node dist/bench/pacing.js --quick             about 30 s: checks the suite runs and writes its report
 *
 * Each run is one child process (bench/pacing-child.ts): burst 1 at `rate`, 2 s of calls submitted
 * at once through `run()`, each recording when its task starts. Achieved rate = (calls − 1) / (last
 * start − first start), as a share of the limit's rate. Runs are repeated and interleaved (every
 * subject at one rate, then the next rate, then the next round) so the host's noise spreads over
 * all subjects; figures are medians. Starts its own redis-server unless REDIS_URL is set.
 */
import { fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus, getPriority, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PacingConfig, PacingResult } from './pacing-child.js';
import { benchRedis } from './lib/redis-server.js';
import { fmt, median, quick, table, verdict, writeResult } from './lib/report.js';

const CHILD = fileURLToPath(new URL('./pacing-child.js', import.meta.url));
const THIS_BUILD = fileURLToPath(new URL('../', import.meta.url));
const RATES = [50, 200, 500, 1000];
const RUN_S = quick ? 0.3 : 2;
/** Rounds: 3, or `--rounds N` (more rounds let the median ride out a noisy host). */
const ROUNDS = quick ? 1 : Math.max(1, Number(process.argv[process.argv.indexOf('--rounds') + 1]) || 3);
const TARGET = 0.995;
/** The wake-up credit λ at `rate`/s, s (src/limiters/gcra.ts): max(1 / rate, 2 ms). */
const creditS = (rate: number): number => Math.max(1 / rate, 0.002);
const IN_PROCESS = 'ours: TokenBucket burst 1';
const REDIS = 'ours: TokenBucket burst 1, Redis store';
const BEFORE_IN_PROCESS = 'before: TokenBucket burst 1';
const BEFORE_REDIS = 'before: TokenBucket burst 1, Redis store';

interface Subject {
  label: string;
  config: Omit<PacingConfig, 'rate' | 'count'>;
  /** This build's token buckets: judged against the targets. */
  judged?: boolean;
}

function beforeDir(): string | undefined {
  const at = process.argv.indexOf('--before');
  if (at < 0) return undefined;
  const dir = join(resolve(process.argv[at + 1] ?? ''), 'dist');
  if (!existsSync(join(dir, 'src', 'index.js'))) throw new Error(`--before: no build at ${dir} (run npm run build there)`);
  return dir;
}

function subjects(redisUrl: string, before: string | undefined): Subject[] {
  const list: Subject[] = [
    { label: IN_PROCESS, config: { subject: 'token-bucket', lib: THIS_BUILD }, judged: true },
    { label: REDIS, config: { subject: 'token-bucket', lib: THIS_BUILD, redisUrl }, judged: true },
    { label: 'ours: FixedWindow, 1 call per window of 1 / rate', config: { subject: 'fixed-window', lib: THIS_BUILD } },
    { label: 'p-throttle `{ limit: 1, interval: 1000 / rate }`', config: { subject: 'p-throttle', lib: THIS_BUILD } },
  ];
  if (before === undefined) return list;
  return [
    ...list.slice(0, 3),
    { label: BEFORE_IN_PROCESS, config: { subject: 'token-bucket', lib: before } },
    { label: BEFORE_REDIS, config: { subject: 'token-bucket', lib: before, redisUrl } },
    { label: 'before: FixedWindow, 1 call per window of 1 / rate', config: { subject: 'fixed-window', lib: before } },
    list[3]!,
  ];
}

function runChild(config: PacingConfig): Promise<PacingResult> {
  return new Promise((resolvePromise, reject) => {
    const child = fork(CHILD, [JSON.stringify(config)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: PacingResult | undefined;
    const limit = setTimeout(() => child.kill('SIGKILL'), (3 * config.count * 1000) / config.rate + 15_000);
    child.once('message', (m) => {
      result = m as PacingResult;
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(limit);
      if (result !== undefined) resolvePromise(result);
      else reject(new Error(`pacing run ${JSON.stringify(config)} exited ${code} without a result`));
    });
  });
}

interface Figures {
  achieved: number;
  cpuPct: number;
  eluPct: number;
  /** CPU µs per call started. */
  cpuPerCallUs: number;
  /** Most starts over burst + rate × L in any interval (calls; ≤ 0: never over). */
  excess: number;
  /** Ours: the same over admission instants. */
  admissionExcess: number;
  /** In-process token bucket: ms of the run lost to wake-ups later than the credit (see {@link lostToLateness}). */
  lostMs: number;
  /** In-process token bucket: gaps between admissions longer than T + 2 ms (a stalled thread), count. */
  stalls: number;
  /** Redis store: d, the longest a token was held, ms. */
  holdMs: number;
}

/** Most instants in any interval over 1 + rate × L, from ns instants (one pass, as test/helpers.ts). */
function excessOverBucket(instants: number[], rate: number): number {
  let minU = Infinity;
  let worst = -Infinity;
  [...instants]
    .sort((a, b) => a - b)
    .forEach((t, k) => {
      const u = k - (rate * t) / 1e9;
      minU = Math.min(minU, u);
      worst = Math.max(worst, u - minU + 1 - 1);
    });
  return worst;
}

/**
 * Where the rate went, from the admission instants of a burst-1 bucket in overload: slot k is
 * max(slot k−1 + T, admission k − λ), so each admission later than λ after its slot moves the
 * schedule by the excess, which is lost for good. λ = the credit for this build, 0 for the build
 * before it (which lost every wake-up's lateness). Returns the ms lost and the gaps between
 * admissions longer than T + 2 ms, the same measure for both builds: a thread away that long.
 */
function lostToLateness(admissions: number[], rate: number, creditNs: number): { lostMs: number; stalls: number } {
  const a = [...admissions].sort((x, y) => x - y);
  const interval = 1e9 / rate;
  let slot = a[0]!;
  let lost = 0;
  let stalls = 0;
  for (let k = 1; k < a.length; k++) {
    const due = slot + interval;
    if (a[k]! - a[k - 1]! > interval + 2e6) stalls++;
    slot = Math.max(due, a[k]! - creditNs);
    lost += slot - due;
  }
  return { lostMs: lost / 1e6, stalls };
}

function figures(r: PacingResult, rate: number, s: Subject): Figures {
  const inProcessBucket = s.config.subject === 'token-bucket' && s.config.redisUrl === undefined && r.admissions !== undefined;
  const lost = inProcessBucket ? lostToLateness(r.admissions!, rate, s.config.lib === THIS_BUILD ? creditS(rate) * 1e9 : 0) : { lostMs: NaN, stalls: NaN };
  const starts = [...r.starts].sort((a, b) => a - b);
  const spanS = starts.at(-1)! / 1e9;
  return {
    achieved: (starts.length - 1) / spanS / rate,
    cpuPct: (100 * r.cpuUs) / r.wallUs,
    eluPct: 100 * r.elu,
    cpuPerCallUs: r.cpuUs / starts.length,
    excess: excessOverBucket(starts, rate),
    admissionExcess: r.admissions === undefined ? NaN : excessOverBucket(r.admissions, rate),
    holdMs: r.holdMs ?? NaN,
    ...lost,
  };
}

const t0 = performance.now();
function progress(what: string): void {
  console.log(`[${((performance.now() - t0) / 1000).toFixed(1)} s] ${what}`);
}

async function main(): Promise<void> {
  const c = cpus();
  const machineLine = `${c.length} × ${c[0]?.model ?? 'unknown CPU'}, Node ${process.version}, ${process.platform}/${process.arch}, load average at start ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' / ')}`;
  const date = new Date().toISOString();
  const before = beforeDir();
  const redis = await benchRedis();
  const list = subjects(redis.url, before);
  progress(`pacing benchmark${quick ? ' (quick)' : ''}: ${machineLine}; ${list.length} subjects × ${RATES.length} rates × ${ROUNDS} rounds`);
  const runs = new Map<string, Figures[]>();
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const rate of RATES) {
        for (const s of list) {
          const result = await runChild({ ...s.config, rate, count: Math.round(rate * RUN_S) + 1 });
          const f = figures(result, rate, s);
          const key = `${s.label}@${rate}`;
          runs.set(key, [...(runs.get(key) ?? []), f]);
          progress(`round ${round + 1}, ${rate}/s, ${s.label}: ${fmt(100 * f.achieved, 2)} %, CPU ${fmt(f.cpuPct, 1)} %`);
        }
      }
    }
  } finally {
    await redis.stop();
  }

  const med = (label: string, rate: number, pick: (f: Figures) => number): number => median(runs.get(`${label}@${rate}`)!.map(pick));
  const worst = (label: string, rate: number, pick: (f: Figures) => number): number => Math.max(...runs.get(`${label}@${rate}`)!.map(pick));
  const pct = (v: number): string => `${fmt(100 * v, 2)} %`;
  const range = (label: string, rate: number): string => {
    const all = runs.get(`${label}@${rate}`)!.map((f) => 100 * f.achieved);
    return `${fmt(Math.min(...all), 1)}–${fmt(Math.max(...all), 1)}`;
  };
  const perRate = (label: string, cell: (rate: number) => string): string[] => [label, ...RATES.map(cell)];
  const lowest = list.filter((s) => s.judged).map((s) => ({ s, low: Math.min(...RATES.map((rate) => med(s.label, rate, (f) => f.achieved))) }));
  const met = lowest.every((l) => l.low >= TARGET);
  // Admissions of each run against its own bound: in-process burst + rate × (L + λ); Redis
  // burst + rate × (L + d) with that run's d (which includes any credit used).
  const allowed = (label: string, rate: number, f: Figures): number => (label === REDIS ? (rate * f.holdMs) / 1000 : rate * creditS(rate));
  const boundOk = [IN_PROCESS, REDIS].every((label) =>
    RATES.every((rate) => runs.get(`${label}@${rate}`)!.every((f) => f.admissionExcess <= allowed(label, rate, f) + 1e-6)),
  );
  const boundText = RATES.map((rate) => {
    const inProcess = fmt(
      worst(IN_PROCESS, rate, (f) => f.admissionExcess),
      2,
    );
    const redisExcess = fmt(
      worst(REDIS, rate, (f) => f.admissionExcess),
      2,
    );
    return `${rate}/s in-process ${inProcess} (λ allows ${fmt(rate * creditS(rate), 0)}), Redis ${redisExcess} (d up to ${fmt(
      worst(REDIS, rate, (f) => f.holdMs),
      1,
    )} ms)`;
  }).join('; ');
  const cpuAt = (label: string): string =>
    `${fmt(
      med(label, 1000, (f) => f.cpuPerCallUs),
      1,
    )} µs per call (${fmt(
      med(label, 1000, (f) => f.cpuPct),
      1,
    )} % CPU)`;
  const cpuAfter = med(IN_PROCESS, 1000, (f) => f.cpuPerCallUs);
  const cpuBefore = before === undefined ? undefined : med(BEFORE_IN_PROCESS, 1000, (f) => f.cpuPerCallUs);
  const cpuVerdict = cpuBefore === undefined ? '' : ` not above 1.25 × before: ${verdict(cpuAfter <= 1.25 * cpuBefore)} —`;
  const runsNote = `median of ${ROUNDS} run${ROUNDS > 1 ? 's' : ''}`;
  const priority = getPriority();

  const lines = [
    `# Pacing at burst 1${quick ? ' — QUICK smoke run (short runs, figures indicative only)' : ''}`,
    `- Machine: ${machineLine}${priority < 0 ? `, run at nice ${priority} (the host was shared with other jobs)` : ''}. Date: ${date}. Command: \`npm run bench:pacing${before === undefined ? '' : ' -- --before <checkout before the change>'}\`${quick ? ' with `--quick`' : ''}. Redis: ${redis.description}.`,
    `- Method: one child process per run; ${fmt(RUN_S, 1)} s of calls (rate × ${fmt(RUN_S, 1)} + 1) submitted at once through \`run()\`, starts recorded in the task; achieved = (calls − 1) / (last start − first start) ÷ rate; ${runsNote}, subjects interleaved. CPU: process.cpuUsage (user + system, the whole process: its one JavaScript thread does the pacing) from the end of the submit loop to the last start, per call started and as a share of that time; ELU: that thread's event-loop utilization. Admission instants (ours): the limiter's clock reading its admitting step was judged on, read through a wrapping clock.${before === undefined ? '' : ' "before": the same code paths built from the checkout before the change, in the same run.'}`,
    '',
    '## Targets',
    `- ≥ ${fmt(100 * TARGET, 1)} % of the rate at burst 1, 50–1000/s, in-process and Redis: ${verdict(met)} — lowest median: ${lowest.map((l) => `${l.s.label} ${pct(l.low)}`).join('; ')}`,
    `- no spinning: I/O-thread CPU per call at 1000/s burst 1${cpuVerdict} after ${cpuAt(IN_PROCESS)}${before === undefined ? '' : `, before ${cpuAt(BEFORE_IN_PROCESS)}`}; Redis store: after ${cpuAt(REDIS)}${before === undefined ? '' : `, before ${cpuAt(BEFORE_REDIS)}`}`,
    `- admissions within the stated bound in every run, in-process burst + rate × (L + λ), λ = max(1 / rate, 2 ms), Redis burst + rate × (L + d), d measured: ${verdict(boundOk)} — worst excess over burst + rate × L, calls: ${boundText}`,
    '',
    `## Achieved rate at burst 1 (${runsNote}${ROUNDS > 1 ? '; lowest–highest run in brackets' : ''})`,
    table(
      ['subject', ...RATES.map((r) => `${r}/s`)],
      list.map((s) => perRate(s.label, (rate) => `${pct(med(s.label, rate, (f) => f.achieved))}${ROUNDS > 1 ? ` (${range(s.label, rate)})` : ''}`)),
    ),
    '',
    `## Where the rate went, in-process (${runsNote}): ms of each ${fmt(RUN_S, 1)} s run lost to wake-ups later than the credit λ (before: later than their slot at all) / gaps between admissions longer than T + 2 ms, i.e. the thread stalled`,
    table(
      ['subject', ...RATES.map((r) => `${r}/s`)],
      list
        .filter((s) => s.label === IN_PROCESS || s.label === BEFORE_IN_PROCESS)
        .map((s) =>
          perRate(
            s.label,
            (rate) =>
              `${fmt(
                med(s.label, rate, (f) => f.lostMs),
                1,
              )} ms / ${fmt(
                med(s.label, rate, (f) => f.stalls),
                0,
              )}`,
          ),
        ),
    ),
    '',
    `## CPU of the pacing thread (${runsNote}): µs per call / % of the time / event-loop utilization %`,
    table(
      ['subject', ...RATES.map((r) => `${r}/s`)],
      list.map((s) =>
        perRate(s.label, (rate) =>
          [
            fmt(
              med(s.label, rate, (f) => f.cpuPerCallUs),
              1,
            ),
            fmt(
              med(s.label, rate, (f) => f.cpuPct),
              1,
            ),
            fmt(
              med(s.label, rate, (f) => f.eluPct),
              1,
            ),
          ].join(' / '),
        ),
      ),
    ),
    '',
    `## Most admissions (starts) over burst + rate × L in any interval, calls, worst of ${ROUNDS} run${ROUNDS > 1 ? 's' : ''}; ≤ 0: never over. A fixed window allows 2 calls across a boundary by design; starts lag admissions when the OS pauses the thread in between.`,
    table(
      ['subject', ...RATES.map((r) => `${r}/s (λ allows ${fmt(r * creditS(r), 0)})`)],
      list.map((s) =>
        perRate(s.label, (rate) => {
          const starts = fmt(
            worst(s.label, rate, (f) => f.excess),
            2,
          );
          return s.config.subject === 'p-throttle'
            ? `(${starts})`
            : `${fmt(
                worst(s.label, rate, (f) => f.admissionExcess),
                2,
              )} (${starts})`;
        }),
      ),
    ),
  ];
  const text = lines.join('\n') + '\n';
  const path = writeResult('pacing.md', text);
  console.log(`\n${text}`);
  progress(`wrote ${path}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
