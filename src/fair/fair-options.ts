/**
 * Options of fair admission: the fair queue's levels and bounds, the per-call options, and the
 * server's flow key; their types, defaults and validation (with the checks of `validate.ts`).
 *
 * Invalid input throws at construction with a `TypeError` (wrong type, unknown option) or a
 * `RangeError` (value out of range), naming the option and the value, like every other option of
 * the library.
 */
import { systemClock, type Clock } from '../clock.js';
import { checkClock } from '../options.js';
import { describe, object, options as knownOptions, positive, waitBound, wholeNumber } from '../validate.js';
import { resolveCallKeySpec, type FlowKeySpec } from '../limits/call-key.js';

/** One priority level: its share of the rate and the methods whose calls belong to it. */
export interface LevelOptions {
  /**
   * Relative weight (> 0): under overload, backlogged levels are served in proportion to their
   * shares. A level with `share: 3` next to one with `share: 1` gets 3/4 of the admissions.
   */
  share: number;
  /**
   * Methods whose calls belong to this level. The level without `methods` is the default level,
   * for every other method; if every level lists methods, an implicit level `default` with
   * share 1 takes the rest.
   */
  methods?: string[];
  /**
   * Whether the level may use the share of idle levels (default true: the queue is work
   * conserving). `false` caps the level at `share / Σ shares` of the limiter's rate even when
   * every other level is idle (a rate limit only: token bucket or fixed window).
   */
  borrow?: boolean;
}

/** Options of a {@link FairQueue}. */
export interface FairQueueOptions {
  /** Priority levels by name. Default: one level `default` with share 1. */
  levels?: Record<string, LevelOptions>;
  /**
   * Calls a flow may take per turn of the round robin within its level (deficit round robin with
   * unit cost). Default 1: flows alternate call by call.
   */
  quantum?: number;
  /** Most calls one flow may have waiting; more are refused with `QueueFullError`. Default: unbounded. */
  maxQueuedPerFlow?: number;
  /** Most calls waiting in the whole queue; more are refused with `QueueFullError`. Default: unbounded. */
  maxQueued?: number;
  /** Default bound on waiting, ms; a call still waiting then is refused with `QueueTimeoutError`. Default: unbounded. */
  maxWaitMs?: number;
  /** Time source and timers (tests inject a `ManualClock`). Default: the process clock. */
  clock?: Clock;
}

/** Per-call options of {@link FairQueue.run}. */
export interface FairRunOptions {
  /** The call's flow: calls of one flow wait in one queue, flows take turns. */
  flow: string;
  /** The call's priority level by name; default: the default level. */
  level?: string;
  /** Aborting removes the waiting call from the queue and rejects it with the signal's reason. */
  signal?: AbortSignal;
  /** Bound on this call's wait, ms; overrides the queue's `maxWaitMs`. */
  maxWaitMs?: number;
}

/** A level after validation. */
export interface ResolvedLevel {
  name: string;
  share: number;
  methods: string[];
  borrow: boolean;
}

/** {@link FairQueueOptions} after defaults and validation. */
export interface ResolvedFairQueueOptions {
  /** In declaration order; the default level is among them. */
  levels: ResolvedLevel[];
  /** Name of the level for methods no level lists. */
  defaultLevel: string;
  quantum: number;
  maxQueuedPerFlow: number;
  maxQueued: number;
  maxWaitMs: number;
  clock: Clock;
}

/** Fair admission of the threaded server (`fairness` option). Queue bounds come from its `queue` option. */
export interface FairnessOptions {
  /** How calls are grouped into flows. Default `'address'`. */
  flow?: FlowKeySpec;
  /** Priority levels by name (see {@link FairQueueOptions.levels}). */
  levels?: Record<string, LevelOptions>;
  /** Calls a flow takes per turn. Default 1. */
  quantum?: number;
  /** Most calls one flow may have waiting, per limit. Default: unbounded. */
  maxQueuedPerFlow?: number;
}

/** Fair admission of {@link wrapHandler} (its fourth argument). Queue bounds come from its `queue` argument. */
export interface HandlerFairnessOptions {
  /** The flow of a call, from its method and arguments (the stock server tells a handler nothing of the connection). */
  flow: (call: { method: string; args: unknown[] }) => string;
  /** Priority levels by name (see {@link FairQueueOptions.levels}). */
  levels?: Record<string, LevelOptions>;
  /** Calls a flow takes per turn. Default 1. */
  quantum?: number;
  /** Most calls one flow may have waiting, per limit. Default: unbounded. */
  maxQueuedPerFlow?: number;
}

/** {@link FairnessOptions} after validation. */
export interface ResolvedFairnessOptions {
  flow: FlowKeySpec;
  levels: Record<string, LevelOptions> | undefined;
  quantum: number;
  maxQueuedPerFlow: number;
}

const DEFAULT_LEVEL = 'default';

const LEVEL_KEYS = ['share', 'methods', 'borrow'];
const FAIR_QUEUE_KEYS = ['levels', 'quantum', 'maxQueuedPerFlow', 'maxQueued', 'maxWaitMs', 'clock'];
const FAIRNESS_KEYS = ['flow', 'levels', 'quantum', 'maxQueuedPerFlow'];

/** A bound: a whole number ≥ 1, or Infinity. */
function bound(name: string, value: unknown): number {
  return wholeNumber(name, value, 1, undefined, true);
}

/** Validates the levels; adds the implicit default level when every level lists methods. */
function resolveLevels(value: unknown, prefix: string): { levels: ResolvedLevel[]; defaultLevel: string } {
  if (value === undefined) return { levels: [{ name: DEFAULT_LEVEL, share: 1, methods: [], borrow: true }], defaultLevel: DEFAULT_LEVEL };
  const config = object(`${prefix}levels`, value);
  const levels: ResolvedLevel[] = [];
  const owner = new Map<string, string>();
  let defaultLevel: string | undefined;
  for (const [name, spec] of Object.entries(config)) {
    const at = `${prefix}levels.${name}`;
    const o = knownOptions(at, spec, LEVEL_KEYS);
    if (o.share === undefined) throw new TypeError(`${at}.share is required (the level's relative weight)`);
    const share = positive(`${at}.share`, o.share);
    if (o.borrow !== undefined && typeof o.borrow !== 'boolean') throw new TypeError(`${at}.borrow must be a boolean, got ${describe(o.borrow)}`);
    let methods: string[] = [];
    if (o.methods === undefined) {
      if (defaultLevel !== undefined)
        throw new RangeError(`${at} has no methods, and neither has ${prefix}levels.${defaultLevel}: only one level may be the default`);
      defaultLevel = name;
    } else {
      if (!Array.isArray(o.methods) || o.methods.some((m) => typeof m !== 'string' || m.length === 0)) {
        throw new TypeError(`${at}.methods must be an array of method names, got ${describe(o.methods)}`);
      }
      if (o.methods.length === 0) throw new RangeError(`${at}.methods is empty (leave it out to make ${name} the default level)`);
      methods = o.methods as string[];
      for (const m of methods) {
        const other = owner.get(m);
        if (other !== undefined && other !== name) throw new RangeError(`method ${m} is in ${prefix}levels.${other} and ${at}`);
        owner.set(m, name);
      }
    }
    levels.push({ name, share, methods, borrow: o.borrow !== false });
  }
  if (levels.length === 0) throw new RangeError(`${prefix}levels must define at least one level`);
  if (defaultLevel === undefined) {
    if (config[DEFAULT_LEVEL] !== undefined)
      throw new RangeError(`${prefix}levels.${DEFAULT_LEVEL} lists methods, so no level is left for the others: add a level without methods`);
    levels.push({ name: DEFAULT_LEVEL, share: 1, methods: [], borrow: true });
    defaultLevel = DEFAULT_LEVEL;
  }
  return { levels, defaultLevel };
}

/** Validates {@link FairQueueOptions} and fills in defaults. */
export function resolveFairQueueOptions(options: unknown, prefix = ''): ResolvedFairQueueOptions {
  const o = knownOptions(prefix === '' ? 'FairQueue options' : prefix.slice(0, -1), options ?? {}, FAIR_QUEUE_KEYS);
  const clock = o.clock === undefined ? systemClock : checkClock(o.clock);
  return {
    ...resolveLevels(o.levels, prefix),
    quantum: o.quantum === undefined ? 1 : wholeNumber(`${prefix}quantum`, o.quantum, 1),
    maxQueuedPerFlow: o.maxQueuedPerFlow === undefined ? Infinity : bound(`${prefix}maxQueuedPerFlow`, o.maxQueuedPerFlow),
    maxQueued: o.maxQueued === undefined ? Infinity : bound(`${prefix}maxQueued`, o.maxQueued),
    maxWaitMs: o.maxWaitMs === undefined ? Infinity : waitBound(`${prefix}maxWaitMs`, o.maxWaitMs),
    clock,
  };
}

/** Validates per-call options of {@link FairQueue.run}. */
export function checkFairRunOptions(options: unknown): FairRunOptions {
  const o = object('fair run options', options);
  if (typeof o.flow !== 'string') throw new TypeError(`flow must be a string, got ${describe(o.flow)}`);
  if (o.level !== undefined && typeof o.level !== 'string') throw new TypeError(`level must be a level name, got ${describe(o.level)}`);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal');
  if (o.maxWaitMs !== undefined) waitBound('maxWaitMs', o.maxWaitMs);
  return o as unknown as FairRunOptions;
}

/** Validates the flow key of the server (the same keys as a per-key limit's, limits/call-key.ts). */
function resolveFlowKey(value: unknown): FlowKeySpec {
  if (value === undefined) return 'address';
  return resolveCallKeySpec('fairness.flow', value);
}

/** Validates the threaded server's {@link FairnessOptions} (the levels are checked here too). */
export function resolveFairnessOptions(options: unknown): ResolvedFairnessOptions {
  const o = knownOptions('fairness', options, FAIRNESS_KEYS);
  const checked = resolveFairQueueOptions({ levels: o.levels, quantum: o.quantum, maxQueuedPerFlow: o.maxQueuedPerFlow }, 'fairness.');
  return {
    flow: resolveFlowKey(o.flow),
    levels: o.levels as Record<string, LevelOptions> | undefined,
    quantum: checked.quantum,
    maxQueuedPerFlow: checked.maxQueuedPerFlow,
  };
}

/** Validates the fairness argument of `wrapHandler` (the levels are checked here too). */
export function resolveHandlerFairnessOptions(options: unknown): HandlerFairnessOptions {
  const o = knownOptions('wrapHandler fairness', options, FAIRNESS_KEYS);
  if (typeof o.flow !== 'function') throw new TypeError(`fairness.flow must be a function ({ method, args }) => string, got ${describe(o.flow)}`);
  resolveFairQueueOptions({ levels: o.levels, quantum: o.quantum, maxQueuedPerFlow: o.maxQueuedPerFlow }, 'fairness.');
  return o as unknown as HandlerFairnessOptions;
}
