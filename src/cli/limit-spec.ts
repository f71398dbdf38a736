/**
 * The `--limit` flag's little language:
 *
 * ```
 * --limit work=100/s               token bucket, 100 per second (burst defaults to the rate)
 * --limit 'work=100/s,burst=10'    token bucket with an explicit burst
 * --limit 'report=600/min,window'  fixed window: 600 per minute window
 * --limit 'export=concurrency=4'   at most 4 in flight
 * --limit work=adaptive            an adaptive concurrency limit (defaults: min 1, max 1000, initial 20)
 * --limit 'work=adaptive,min=2,max=200,initial=10'   with its bounds
 * --limit '*=1000/s,burst=50'      '*' is the default for methods without their own
 * --limit 'add=10/s,per=address'   a token bucket per client address (also per=connection,
 *                                  per=method, per=field:N for argument N of the call, e.g. a tenant id)
 * --limit 'add=10/s,burst=5,per=field:1,slots=10000'   per key, with a table of 10000 keys
 * --limit 'add=10/s,per=address,probeWindow=32'     per key, each key searched in 32 slots
 * ```
 * Periods: `s`, `min`, `h`, `ms`, or a duration such as `1500ms` or `2s`. A per-key limit is a
 * token bucket (no `window`); `slots` (of its key table, default 4096) and `probeWindow` (slots
 * searched per key, default 16) need `per`, and are checked by the per-key limit itself.
 */
import type { CallKeySpec } from '../limits/call-key.js';
import type { LimitSpec } from '../limits/method-limits.js';
import { parseCallKey } from './args.js';

const PERIODS: Record<string, number> = { ms: 1, s: 1000, sec: 1000, min: 60_000, m: 60_000, h: 3_600_000 };

function periodMs(text: string, flag: string): number {
  if (PERIODS[text] !== undefined) return PERIODS[text];
  const m = /^(\d+(?:\.\d+)?)(ms|s|min|m|h)$/.exec(text);
  if (!m) throw new RangeError(`${flag}: unknown period '${text}' (use s, min, h, ms or e.g. 1500ms)`);
  return Number(m[1]) * PERIODS[m[2]!]!;
}

/** Parses one `--limit NAME=SPEC` value into the method name and its limit. */
export function parseLimit(text: string): [string, LimitSpec] {
  const flag = `--limit ${JSON.stringify(text)}`;
  const eq = text.indexOf('=');
  if (eq <= 0) throw new RangeError(`${flag}: expected METHOD=SPEC, e.g. work=100/s`);
  const name = text.slice(0, eq);
  const [head, ...extras] = text
    .slice(eq + 1)
    .split(',')
    .map((s) => s.trim());
  if (head === 'adaptive') return [name, parseAdaptive(flag, extras)];
  const concurrency = /^concurrency=(\d+)$/.exec(head ?? '');
  if (concurrency) {
    if (extras.length > 0) throw new RangeError(`${flag}: a concurrency limit takes no other settings`);
    return [name, { concurrency: Number(concurrency[1]) }];
  }
  const rate = /^(\d+(?:\.\d+)?)\/(.+)$/.exec(head ?? '');
  if (!rate) throw new RangeError(`${flag}: expected RATE/PERIOD (e.g. 100/s), concurrency=N or adaptive`);
  const count = Number(rate[1]);
  const period = periodMs(rate[2]!, flag);
  let burst: number | undefined;
  let window = false;
  let perKey: CallKeySpec | undefined;
  let slots: number | undefined;
  let probeWindow: number | undefined;
  for (const extra of extras) {
    const b = /^burst=(\d+)$/.exec(extra);
    const k = /^slots=(\d+)$/.exec(extra);
    const p = /^probeWindow=(\d+)$/.exec(extra);
    if (b) burst = Number(b[1]);
    else if (k) slots = Number(k[1]);
    else if (p) probeWindow = Number(p[1]);
    else if (extra.startsWith('capacity=')) throw new RangeError(`${flag}: capacity=N was renamed slots=N (the slots of a per-key limit's table)`);
    else if (extra.startsWith('per=')) perKey = parseCallKey(`${flag}: per`, extra.slice(4));
    else if (extra === 'window') window = true;
    else throw new RangeError(`${flag}: unknown setting '${extra}' (burst=N, window, per=KEY, slots=N or probeWindow=N)`);
  }
  for (const [setting, value] of [
    ['slots', slots],
    ['probeWindow', probeWindow],
  ] as const) {
    if (value !== undefined && perKey === undefined)
      throw new RangeError(`${flag}: ${setting}=N applies to a per-key limit only (add per=address, per=connection, per=method or per=field:N)`);
  }
  if (window) {
    if (burst !== undefined) throw new RangeError(`${flag}: burst does not apply to a fixed window`);
    if (perKey !== undefined) throw new RangeError(`${flag}: a per-key limit is a token bucket, not a fixed window (drop window or per)`);
    return [name, { maxCalls: count, periodMs: period }];
  }
  if (perKey !== undefined) {
    return [
      name,
      {
        rate: count,
        periodMs: period,
        perKey,
        ...(burst !== undefined ? { burst } : {}),
        ...(slots !== undefined ? { slots } : {}),
        ...(probeWindow !== undefined ? { probeWindow } : {}),
      },
    ];
  }
  return [name, burst === undefined ? { rate: count, periodMs: period } : { rate: count, periodMs: period, burst }];
}

const ADAPTIVE_SETTINGS: Record<string, 'minLimit' | 'maxLimit' | 'initialLimit'> = { min: 'minLimit', max: 'maxLimit', initial: 'initialLimit' };

/** The settings of `adaptive`: `min=N`, `max=N`, `initial=N` (checked by the limit itself). */
function parseAdaptive(flag: string, extras: string[]): LimitSpec {
  const settings: Partial<Record<'minLimit' | 'maxLimit' | 'initialLimit', number>> = {};
  for (const extra of extras) {
    const m = /^(\w+)=(\d+)$/.exec(extra);
    const key = m ? ADAPTIVE_SETTINGS[m[1]!] : undefined;
    if (key === undefined) throw new RangeError(`${flag}: unknown setting '${extra}' of an adaptive limit (min=N, max=N or initial=N)`);
    settings[key] = Number(m![2]);
  }
  return { adaptive: settings };
}
