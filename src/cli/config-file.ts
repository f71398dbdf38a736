/**
 * `serve --config FILE`: a JSON file holding the server's `limits`, `queue` and `fairness` options
 * in the shapes the library takes (fairness without functions: JSON has none), e.g.
 *
 * ```json
 * { "limits": { "add": { "rate": 50 }, "export": { "concurrency": 4 }, "*": { "rate": 1000, "burst": 50 } },
 *   "queue": { "maxWaitMs": 5000 },
 *   "fairness": { "flow": "address", "levels": { "interactive": { "share": 3, "methods": ["add"] }, "batch": { "share": 1 } } } }
 * ```
 *
 * Flags given on the command line override it: a `--limit M=…` replaces the file's limit of M,
 * `--max-wait` and `--max-queued` the file's queue bounds, a fairness flag the same field of the
 * file's fairness. The file is read again on SIGHUP (serve.ts).
 */
import { readFileSync } from 'node:fs';
import type { FairnessOptions } from '../fair/fair-options.js';
import { resolveQueueBounds, type LimitsConfig, type QueueBounds } from '../limits/method-limits.js';
import { object, options as knownOptions } from '../validate.js';

/** What a config file holds. */
export interface ServeConfig {
  limits: LimitsConfig;
  queue: QueueBounds;
  fairness: FairnessOptions | undefined;
}

/**
 * Reads and checks `file`: valid JSON, only the known sections, a `limits` object, valid queue
 * bounds (each limit is checked when the server takes it, fairness when the server is built).
 * @throws TypeError | RangeError naming the file and what is wrong; Error when it cannot be read.
 */
export function readConfig(file: string): ServeConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`--config ${file}: cannot read it: ${(error as Error).message}`, { cause: error });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new TypeError(`--config ${file}: not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  try {
    const o = knownOptions('config', value, ['limits', 'queue', 'fairness']);
    const limits = o.limits === undefined ? {} : object('limits', o.limits);
    const queue = resolveQueueBounds(o.queue ?? {});
    const fairness = o.fairness === undefined ? undefined : (object('fairness', o.fairness) as FairnessOptions);
    return { limits: limits as LimitsConfig, queue, fairness };
  } catch (error) {
    if (error instanceof RangeError) throw new RangeError(`--config ${file}: ${error.message}`, { cause: error });
    if (error instanceof TypeError) throw new TypeError(`--config ${file}: ${error.message}`, { cause: error });
    throw error;
  }
}

/** `file`'s settings with the command line's on top (see the top of this file). */
export function withFlags(config: ServeConfig, flags: { limits: LimitsConfig; queue: QueueBounds; fairness: FairnessOptions | undefined }): ServeConfig {
  const fairness = config.fairness === undefined && flags.fairness === undefined ? undefined : { ...config.fairness, ...flags.fairness };
  return { limits: { ...config.limits, ...flags.limits }, queue: { ...config.queue, ...flags.queue }, fairness };
}
