/**
 * `wrapHandler` for servers that keep `thrift.createServer`: every method of a handler waits for
 * its token before it runs, with the same limits, bounds and errors as the threaded server. It
 * works on the main thread and inside worker threads (give it limiters attached from `share()`
 * descriptors and every thread enforces one limit).
 */
import { isOverloadError, overloadMessage, type OverloadError } from '../errors.js';
import { resolveHandlerFairnessOptions, type HandlerFairnessOptions } from '../fair/fair-options.js';
import { FairQueue } from '../fair/fair-queue.js';
import type { AnyLimiter } from '../limiters/attach.js';
import { MethodLimits, type HandlerCall, type HandlerLimitsConfig, type QueueBounds } from '../limits/method-limits.js';

/** The error a wrapped method fails with when its call is refused for overload. */
export class ServerOverloadedError extends Error {
  /** Stable machine-readable reason. */
  readonly code = 'SERVER_OVERLOADED' as const;
  /** The refusal reason of `cause`: `'queue_full'`, `'queue_timeout'`, or `'store_unavailable'` (a distributed store down, fail-closed). */
  readonly reason: OverloadError['reason'];

  /**
   * @param method the method whose call was refused.
   * @param cause the limiter's refusal, kept as `cause`.
   */
  constructor(method: string, cause: OverloadError) {
    super(overloadMessage(method, cause), { cause });
    this.name = 'ServerOverloadedError';
    this.reason = cause.reason;
  }
}

type AnyFunction = (...args: unknown[]) => unknown;

/**
 * Returns a handler whose methods queue for their limit (`limits[method]`, else `limits['*']`)
 * and then call the original with the same arguments and `this`. Callback-style and promise-style
 * methods both work: the wrapper keeps each method's declared parameter count, which is how the
 * generated Processor tells the two styles apart. A refused call fails with
 * {@link ServerOverloadedError} (the stock Processor sends it as a TApplicationException with
 * its message, of type 0, UNKNOWN, where the threaded server answers 11).
 *
 * With `fairness`, calls wait per flow (`fairness.flow({ method, args })`) inside priority
 * levels, in one {@link FairQueue} per limiter, and flows take turns for the tokens; `queue`
 * bounds the fair queues and `fairness.maxQueuedPerFlow` each flow.
 *
 * A per-key limit (`{ rate, perKey, … }`) takes its key from `perKey({ method, args })`, a
 * function (a handler sees no address or connection); its calls wait per key, without a fair
 * queue even with `fairness`.
 * @throws TypeError naming `limits.<method>.perKey` when a per-key limit's key is not a function.
 */
export function wrapHandler<H extends object>(
  handler: H,
  limits: HandlerLimitsConfig | MethodLimits,
  queue: QueueBounds = {},
  fairness?: HandlerFairnessOptions,
): H {
  if (handler === null || typeof handler !== 'object') throw new TypeError('wrapHandler(handler): handler must be an object');
  if (!(limits instanceof MethodLimits) && limits !== null && typeof limits === 'object') {
    for (const [name, spec] of Object.entries(limits)) {
      if (spec !== null && typeof spec === 'object' && 'perKey' in spec) checkHandlerPerKey(name, spec.perKey);
    }
  }
  const methodLimits = limits instanceof MethodLimits ? limits : new MethodLimits(limits, queue);
  for (const [name, keyed] of methodLimits.keyedEntries()) checkHandlerPerKey(name, keyed.perKey);
  const fair = fairness === undefined ? undefined : resolveHandlerFairnessOptions(fairness);
  const fairQueues = new Map<AnyLimiter, FairQueue>();
  const wrapped: Record<string, unknown> = {};
  for (const name of methodNames(handler)) {
    const original = (handler as Record<string, AnyFunction>)[name]!;
    const limiter = methodLimits.for(name);
    const keyed = limiter === undefined ? methodLimits.keyedFor(name) : undefined;
    if (limiter === undefined && keyed === undefined) {
      wrapped[name] = original.bind(handler);
      continue;
    }
    const acquireOptions = queue.maxWaitMs === undefined ? undefined : { maxWaitMs: queue.maxWaitMs };
    let runLimited = <T>(task: () => T | PromiseLike<T>, _args: unknown[]): Promise<T> => limiter!.run(task, 1, acquireOptions);
    if (keyed !== undefined) {
      const perKey = keyed.perKey as (call: HandlerCall) => string;
      runLimited = <T>(task: () => T | PromiseLike<T>, args: unknown[]): Promise<T> => {
        let key: string;
        try {
          key = String(perKey({ method: name, args }));
        } catch (error) {
          return Promise.reject(error);
        }
        return keyed.limiter.run(key, task, 1, acquireOptions);
      };
    } else if (fair !== undefined && limiter !== undefined) {
      let fairQueue = fairQueues.get(limiter);
      if (fairQueue === undefined) {
        const { flow: _flow, ...rest } = fair;
        fairQueue = new FairQueue(limiter, {
          ...rest,
          ...(queue.maxQueued !== undefined ? { maxQueued: queue.maxQueued } : {}),
          ...(queue.maxWaitMs !== undefined ? { maxWaitMs: queue.maxWaitMs } : {}),
        });
        fairQueues.set(limiter, fairQueue);
      }
      const q = fairQueue;
      const level = q.levelOf(name);
      runLimited = <T>(task: () => T | PromiseLike<T>, args: unknown[]): Promise<T> => {
        let flow: string;
        try {
          flow = String(fair.flow({ method: name, args }));
        } catch (error) {
          return Promise.reject(error);
        }
        return q.run(task, { flow, level });
      };
    }
    const refused = (error: unknown): never => {
      if (isOverloadError(error)) throw new ServerOverloadedError(name, error);
      throw error;
    };
    const fn = function (...args: unknown[]): unknown {
      const callback =
        args.length === original.length && typeof args.at(-1) === 'function' ? (args.at(-1) as (err: unknown, value?: unknown) => void) : undefined;
      if (callback === undefined) {
        return runLimited(() => original.apply(handler, args), args).catch(refused);
      }
      // Hold the permit until the callback runs, so a concurrency limit counts the whole call.
      const run = (): Promise<void> =>
        new Promise<void>((done) => {
          original.apply(handler, [
            ...args.slice(0, -1),
            (err: unknown, value?: unknown) => {
              done();
              callback(err, value);
            },
          ]);
        });
      runLimited(run, args.slice(0, -1)).catch((error: unknown) => {
        try {
          refused(error);
        } catch (e) {
          callback(e);
        }
      });
      return undefined;
    };
    Object.defineProperty(fn, 'length', { value: original.length });
    Object.defineProperty(fn, 'name', { value: name });
    wrapped[name] = fn;
  }
  return wrapped as H;
}

/** A per-key limit of wrapHandler must take its key from the call's method and arguments. */
function checkHandlerPerKey(name: string, perKey: unknown): void {
  if (typeof perKey !== 'function') {
    const shown = typeof perKey === 'string' ? JSON.stringify(perKey) : perKey !== null && typeof perKey === 'object' ? JSON.stringify(perKey) : String(perKey);
    throw new TypeError(
      `limits.${name}.perKey must be a function ({ method, args }) => string with wrapHandler (a handler sees no address or connection), got ${shown}`,
    );
  }
}

/** Own and inherited method names (class instances keep their methods on the prototype). */
function methodNames(handler: object): string[] {
  const names = new Set<string>();
  for (let o: object | null = handler; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) {
    for (const key of Object.getOwnPropertyNames(o)) {
      if (key !== 'constructor' && typeof (handler as Record<string, unknown>)[key] === 'function') names.add(key);
    }
  }
  return [...names];
}
