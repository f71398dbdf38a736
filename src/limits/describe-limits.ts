/**
 * The limits of a server as plain JSON-ready data, read from the live limiters each time it is
 * asked for: what the metrics endpoint's `/limits` shows. Unbounded values (Infinity) are `null`.
 */
import { resolveFairQueueOptions, type ResolvedFairnessOptions } from '../fair/fair-options.js';
import { AdaptiveConcurrencyLimit } from '../limiters/adaptive-concurrency-limit.js';
import type { AnyLimiter } from '../limiters/attach.js';
import type { CallKeySpec } from './call-key.js';
import type { KeyedMethodLimit, MethodLimits } from './method-limits.js';

/**
 * One configured limit: its kind (`'token-bucket'`, `'fixed-window'`, `'concurrency'`,
 * `'adaptive-concurrency'`, `'keyed-token-bucket'`, …) and its validated options as the limiter
 * holds them now (`rate`, `periodMs`, `burst`; `maxCalls`; `max`; `minLimit`, `maxLimit`, …; the
 * queue bounds `maxQueued`, `maxWaitMs`; …), named as in the options; an adaptive limit adds the
 * `limit` it has set itself and its `noLoadLatencyMs` (null until measured).
 */
export interface LimitDescription {
  /** The limiter kind: `'token-bucket'`, `'fixed-window'`, `'concurrency'`, `'adaptive-concurrency'` or `'keyed-token-bucket'`. */
  kind: string;
  /** A per-key limit's key: `'address'`, `'connection'`, `'method'`, `{ field: N }`, or `'function'` for a key function. */
  perKey?: string | { field: number };
  /** A rate limit held in a distributed store: which, its key there, and its fault policy. */
  store?: { kind: string; key: string; onStoreError: string };
  [option: string]: unknown;
}

/** Fair admission's settings (`fairness` option), or what `/limits` shows without it: `null`. */
export interface FairnessDescription {
  /** As {@link LimitDescription} `perKey`. */
  flow: string | { field: number };
  /** Priority levels in declaration order, the implicit default level included. */
  levels: { name: string; share: number; methods: string[]; borrow: boolean }[];
  /** The level of methods no level names. */
  defaultLevel: string;
  /** Calls a flow takes per turn. */
  quantum: number;
  /** Most calls one flow may have waiting, `null` for unbounded. */
  maxQueuedPerFlow: number | null;
}

/** What `/limits` answers. */
export interface LimitsDescription {
  /** The configured limits by name: a method, `Service:*` (a service's default) or `*` (the default). */
  limits: Record<string, LimitDescription>;
  /** Every method of the service(s), with the name of the limit it is under, or `null` (unlimited). */
  methods: Record<string, string | null>;
  /** Fair admission's settings, or `null` without the `fairness` option. */
  fairness: FairnessDescription | null;
}

const bound = (n: number): number | null => (n === Infinity ? null : n);

/** Options as JSON shows them: Infinity (unbounded) is null. */
function plain(options: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(options).map(([k, v]) => [k, v === Infinity ? null : v]));
}

function keySpec(spec: CallKeySpec | ((call: never) => string)): string | { field: number } {
  return typeof spec === 'function' ? 'function' : typeof spec === 'string' ? spec : { field: spec.field };
}

// From the limiter's own description (what share() hands to other threads), so every kind of
// limit is described by the code that defines it, and a value changed at runtime shows.
function describeLimiter(l: AnyLimiter): LimitDescription {
  const d = l.share();
  const store = l.store === undefined || d.remote === undefined ? {} : { store: { kind: l.store.kind, key: d.remote.key, onStoreError: l.store.onStoreError } };
  // An adaptive limit's options are its bounds; the limit it has set itself is read too.
  const now = l instanceof AdaptiveConcurrencyLimit ? { limit: l.limit, noLoadLatencyMs: l.noLoadLatencyMs ?? null } : {};
  return { kind: d.kind, ...plain(d.options), ...now, ...store };
}

function describeKeyed({ limiter, perKey }: KeyedMethodLimit): LimitDescription {
  const d = limiter.share();
  // The descriptor has the options the table was built with; the per-key limit in force is the
  // table's (setLimit), and the overflow bucket's rate is restated per the period in force.
  const builtPeriodMs = d.options.periodMs as number;
  const live = {
    rate: limiter.rate,
    periodMs: limiter.periodMs,
    burst: limiter.burst,
    overflowRate: (limiter.overflowRate * limiter.periodMs) / builtPeriodMs,
  };
  return { kind: d.kind, ...plain({ ...d.options, ...live }), perKey: keySpec(perKey) };
}

function describeFairness(f: ResolvedFairnessOptions): FairnessDescription {
  // The fair queues resolve their levels so (the implicit default level added): one definition.
  const { levels, defaultLevel } = resolveFairQueueOptions(f.levels === undefined ? {} : { levels: f.levels });
  return {
    flow: keySpec(f.flow),
    levels: levels.map((l) => ({ name: l.name, share: l.share, methods: [...l.methods], borrow: l.borrow })),
    defaultLevel,
    quantum: f.quantum,
    maxQueuedPerFlow: bound(f.maxQueuedPerFlow),
  };
}

/**
 * The limits now: every configured limit, the limit each of `methods` is under (as the server
 * looks it up), and fair admission's settings.
 */
export function describeLimits(limits: MethodLimits, methods: Iterable<string>, fairness: ResolvedFairnessOptions | undefined): LimitsDescription {
  const described: Record<string, LimitDescription> = {};
  for (const [name, l] of limits.entries()) described[name] = describeLimiter(l);
  for (const [name, k] of limits.keyedEntries()) described[name] = describeKeyed(k);
  const byMethod: Record<string, string | null> = {};
  for (const method of methods) byMethod[method] = limits.nameFor(method) ?? null;
  return { limits: described, methods: byMethod, fairness: fairness === undefined ? null : describeFairness(fairness) };
}
