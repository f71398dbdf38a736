/**
 * Parsing of the few value kinds the command line takes (durations, rates, counts, call keys),
 * with errors that name the flag.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { CallKeySpec } from '../limits/call-key.js';

/** Flag values by name: strings for value flags, booleans for switches, arrays for repeatable ones. */
export type Flags = Record<string, string | boolean | string[] | boolean[] | undefined>;

/** Parses `argv` with node:util's parseArgs, turning its errors into RangeErrors naming the flag. */
export function parseFlags(argv: string[], options: NonNullable<ParseArgsConfig['options']>): Flags {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Flags;
  } catch (error) {
    throw new RangeError((error as Error).message, { cause: error });
  }
}

/** A duration like `500ms`, `5s`, `2m` or a bare number of seconds, in milliseconds. */
export function parseDuration(flag: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!m) throw new RangeError(`${flag} must be a duration like 500ms, 5s or 2m, got ${JSON.stringify(text)}`);
  const value = Number(m[1]);
  const unit = m[2] ?? 's';
  const ms = unit === 'ms' ? value : unit === 's' ? value * 1000 : value * 60_000;
  if (ms <= 0) throw new RangeError(`${flag} must be longer than 0, got ${JSON.stringify(text)}`);
  return ms;
}

/** A positive number (integer when `integer`), naming the flag on error. */
export function parsePositive(flag: string, text: string, integer = false): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new RangeError(`${flag} must be a positive ${integer ? 'whole ' : ''}number, got ${JSON.stringify(text)}`);
  }
  return n;
}

/** A duration as {@link parseDuration}, or `0` (in any unit: `0`, `0s`, `0ms`) meaning "off", returned as 0. */
export function parseDurationOrOff(flag: string, text: string): number {
  if (/^0+(?:\.0+)?(ms|s|m)?$/.test(text.trim())) return 0;
  return parseDuration(flag, text);
}

/**
 * A call key as `--fair-flow` and `--limit …,per=` write it: `address`, `connection`, `method` or
 * `field:N` (the key functions of the options have no text form).
 */
export function parseCallKey(flag: string, text: string): CallKeySpec {
  if (text === 'address' || text === 'connection' || text === 'method') return text;
  const field = /^field:(-?\d+)$/.exec(text);
  if (field) {
    const id = Number(field[1]);
    if (id >= -32768 && id <= 32767) return { field: id };
  }
  throw new RangeError(`${flag} must be address, connection, method or field:N (a Thrift field id), got ${JSON.stringify(text)}`);
}
