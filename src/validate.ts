/**
 * The checks every options object of the library is validated with, so that one invalid value
 * gives one message wherever it is given (a limiter's options, a server's `limits.<method>`,
 * `wrapHandler`'s limits, a store's options).
 *
 * A value of the wrong type, or an option no one reads, is a `TypeError`; a number out of range is
 * a `RangeError`. Both name the option (with its path, e.g. `fairness.levels.a.share`) and the
 * value received, so a typo in a config file fails loudly and early.
 */
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Largest whole number an option may take: counts live in 32-bit shared words. */
const MAX_WHOLE = 0x7fffffff;

/** A value as a message shows it: strings quoted, so `"10"` and `10` read differently. */
export function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

/**
 * `value` as an options object whose every key is in `known`.
 * @param renamed options that were renamed, old name → new name: giving an old one says which to use instead.
 * @throws TypeError when it is not an object, or names an unknown option (with the closest known one, or its new name).
 */
export function options(name: string, value: unknown, known: readonly string[], renamed: Readonly<Record<string, string>> = {}): Record<string, unknown> {
  const o = object(name, value);
  for (const key of Object.keys(o)) {
    if (known.includes(key)) continue;
    if (Object.hasOwn(renamed, key)) throw new TypeError(`${name}: option ${JSON.stringify(key)} was renamed ${JSON.stringify(renamed[key])}`);
    const near = closest(key, known);
    throw new TypeError(
      `${name}: unknown option ${JSON.stringify(key)} (${near === undefined ? `known options: ${known.join(', ')}` : `did you mean ${JSON.stringify(near)}?`})`,
    );
  }
  return o;
}

/** `value` as an object. @throws TypeError otherwise. */
export function object(name: string, value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== 'object') throw new TypeError(`${name} must be an options object, got ${describe(value)}`);
  return value as Record<string, unknown>;
}

/**
 * The word of `candidates` nearest to `word` by edit distance (ignoring case; swapping two
 * neighbours counts as one edit, the commonest typo), if it is near enough to be a likely typo.
 */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(best.length / 3)) ? best : undefined;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** A number, finite (or +Infinity where allowed). */
export function finite(name: string, value: unknown, allowInfinity = false): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, got ${describe(value)}`);
  if (Number.isNaN(value) || value === -Infinity || (!allowInfinity && value === Infinity)) {
    throw new RangeError(`${name} must be a finite number, got ${describe(value)}`);
  }
  return value;
}

/** A finite number > 0 (fractions allowed). */
export function positive(name: string, value: unknown): number {
  const n = finite(name, value);
  if (n <= 0) throw new RangeError(`${name} must be greater than 0, got ${describe(value)}`);
  return n;
}

/** A whole number from `min` to `max`; `Infinity` too when `allowInfinity` (meaning "no bound"). */
export function wholeNumber(name: string, value: unknown, min: number, max = MAX_WHOLE, allowInfinity = false): number {
  const n = finite(name, value, allowInfinity);
  if (n === Infinity) return n;
  if (!Number.isInteger(n)) throw new RangeError(`${name} must be a whole number, got ${describe(value)}`);
  if (n < min) throw new RangeError(`${name} must be ${min === 0 ? '0 or more' : `at least ${min}`}, got ${describe(value)}`);
  if (n > max) throw new RangeError(`${name} must be at most ${max}, got ${describe(value)}`);
  return n;
}

/** A bound on waiting, ms: a number ≥ 0 (fractions allowed), or `Infinity` for none. */
export function waitBound(name: string, value: unknown): number {
  const n = finite(name, value, true);
  if (n < 0) throw new RangeError(`${name} must be 0 or more, got ${describe(value)}`);
  return n;
}

/** A bound on a count: a whole number ≥ `min`, or `Infinity` for none. */
export function countBound(name: string, value: unknown, min: number): number {
  return wholeNumber(name, value, min, MAX_WHOLE, true);
}

/** One of `names`. @throws RangeError listing them. */
export function oneOf<T extends string>(name: string, value: unknown, names: readonly T[]): T {
  if (!names.includes(value as T)) throw new RangeError(`${name} must be ${listOf(names)}, got ${describe(value)}`);
  return value as T;
}

/** `'all'` (or absent) for every one of `names`, one of them, or a non-empty list of them, as a set. */
export function someOf<T extends string>(name: string, value: unknown, names: readonly T[]): ReadonlySet<T> {
  if (value === undefined || value === 'all') return new Set(names);
  const list = Array.isArray(value) ? (value as unknown[]) : [value];
  for (const v of list) {
    if (!names.includes(v as T))
      throw new RangeError(`${name} must be 'all', one of ${names.map((n) => `'${n}'`).join(', ')} or a list of them, got ${JSON.stringify(v)}`);
  }
  if (list.length === 0) throw new RangeError(`${name} must name at least one, got []`);
  return new Set(list as T[]);
}

function listOf(names: readonly string[]): string {
  const quoted = names.map((n) => `'${n}'`);
  return quoted.length === 1 ? quoted[0]! : `${quoted.slice(0, -1).join(', ')} or ${quoted.at(-1)}`;
}

/** A string. */
export function string(name: string, value: unknown): string {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string, got ${describe(value)}`);
  return value;
}

/** A function. */
export function func<F extends (...args: never[]) => unknown>(name: string, value: unknown): F {
  if (typeof value !== 'function') throw new TypeError(`${name} must be a function, got ${describe(value)}`);
  return value as F;
}

/** A module given as a path (relative to the working directory) or a file URL, as a file URL. */
export function moduleUrl(name: string, value: unknown): string {
  if (value instanceof URL) return value.href;
  if (typeof value !== 'string' || value.length === 0) throw new TypeError(`${name} must be a module path or file URL, got ${describe(value)}`);
  if (value.startsWith('file:')) return value;
  return pathToFileURL(isAbsolute(value) ? value : resolve(value)).href;
}
