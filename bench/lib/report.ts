/**
 * Small helpers shared by the benchmark suites: statistics, machine description, Markdown tables,
 * and writing a report next to the others in bench/results/.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Median of a list of numbers. */
export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The value at fraction `p` (0..1) of sorted `values`. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** One line naming the machine the figures come from. */
export function machine(): string {
  const c = cpus();
  return `${c.length} × ${c[0]?.model ?? 'unknown cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${new Date().toISOString()}`;
}

/** A Markdown table. */
export function table(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** Formats a number with a fixed number of significant decimals. */
export function fmt(n: number, digits = 1): string {
  if (!Number.isFinite(n)) return String(n);
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** "met" or "NOT met" for a target line. */
export function verdict(ok: boolean): string {
  return ok ? 'met' : '**not met**';
}

/** Where reports go: `--out DIR`, else the repository's bench/results/ (not dist/). */
function resultsDir(): string {
  const at = process.argv.indexOf('--out');
  if (at >= 0 && process.argv[at + 1]) return resolve(process.argv[at + 1]!);
  return fileURLToPath(new URL('../../../bench/results/', import.meta.url));
}

/** Writes `<results dir>/<name>` and returns its path. */
export function writeResult(name: string, content: string): string {
  const dir = resultsDir();
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

/** True when the suite was started with --quick (CI smoke run). */
export const quick = process.argv.includes('--quick');
