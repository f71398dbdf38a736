/**
 * The `serve` flags of fair admission:
 *
 * ```
 * --fair-flow connection             flows by connection (address | connection | method | field:N)
 * --level 'interactive=3:add,echo'   level `interactive`, share 3, methods add and echo
 * --level batch=1                    level `batch`, share 1: the default level (no methods)
 * --no-borrow batch                  `batch` never takes more than its share of the rate
 * --max-queued-per-flow 100          most calls one flow may have waiting
 * --fair-quantum 1                   calls a flow takes per turn
 * ```
 * Any of them turns fairness on (flows by address unless `--fair-flow` says otherwise).
 */
import type { FairnessOptions, LevelOptions } from '../fair/fair-options.js';
import { parseCallKey, parsePositive } from './args.js';

/** The raw flag values. */
export interface FairnessFlags {
  fairFlow?: string | undefined;
  levels?: string[] | undefined;
  noBorrow?: string[] | undefined;
  maxQueuedPerFlow?: string | undefined;
  quantum?: string | undefined;
}

/** Parses one `--level NAME=SHARE[:METHOD,...]` value into the level name and its options. */
export function parseLevel(text: string): [string, LevelOptions] {
  const flag = `--level ${JSON.stringify(text)}`;
  const m = /^([^=:,\s]+)=(\d+(?:\.\d+)?)(?::(.*))?$/.exec(text);
  if (!m) throw new RangeError(`${flag}: expected NAME=SHARE or NAME=SHARE:METHOD,METHOD (e.g. interactive=3:add,echo)`);
  const share = Number(m[2]);
  if (share <= 0) throw new RangeError(`${flag}: the share must be greater than 0`);
  if (m[3] === undefined) return [m[1]!, { share }];
  const methods = m[3].split(',').map((s) => s.trim());
  if (methods.some((s) => s.length === 0)) throw new RangeError(`${flag}: empty method name in ${JSON.stringify(m[3])}`);
  return [m[1]!, { share, methods }];
}

/** Builds the server's `fairness` option from the flags, or undefined if none was given. */
export function parseFairnessFlags(flags: FairnessFlags): FairnessOptions | undefined {
  const levelTexts = flags.levels ?? [];
  const noBorrow = flags.noBorrow ?? [];
  if (flags.fairFlow === undefined && levelTexts.length === 0 && noBorrow.length === 0 && flags.maxQueuedPerFlow === undefined && flags.quantum === undefined)
    return undefined;
  const options: FairnessOptions = {};
  if (flags.fairFlow !== undefined) options.flow = parseCallKey('--fair-flow', flags.fairFlow);
  if (levelTexts.length > 0) {
    const levels: Record<string, LevelOptions> = {};
    for (const text of levelTexts) {
      const [name, level] = parseLevel(text);
      if (levels[name] !== undefined) throw new RangeError(`--level ${name} is given twice`);
      levels[name] = level;
    }
    for (const name of noBorrow) {
      if (levels[name] === undefined) throw new RangeError(`--no-borrow ${name}: no --level ${name}=SHARE`);
      levels[name] = { ...levels[name], borrow: false };
    }
    options.levels = levels;
  } else if (noBorrow.length > 0) {
    throw new RangeError(`--no-borrow ${noBorrow[0]}: no --level ${noBorrow[0]}=SHARE`);
  }
  if (flags.maxQueuedPerFlow !== undefined) options.maxQueuedPerFlow = parsePositive('--max-queued-per-flow', flags.maxQueuedPerFlow, true);
  if (flags.quantum !== undefined) options.quantum = parsePositive('--fair-quantum', flags.quantum, true);
  return options;
}
