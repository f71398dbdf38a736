/**
 * Runs a generated Processor on one request frame in memory and returns the reply frame. This is
 * what a pool worker does per call. It never throws and never leaves a call unanswered because of
 * a handler failure:
 *
 * - a handler that throws synchronously, rejects with `null` or a non-Error, or fails its
 *   callback is answered with a TApplicationException INTERNAL_ERROR naming the method and the
 *   error (the generated code would otherwise escape the processor, crash on `err.message`, or
 *   send type UNKNOWN);
 * - a result the processor cannot encode (a wrong type) is answered the same way instead of with
 *   the half-written frame the generated code would flush;
 * - declared exceptions reach the client as declared.
 *
 * For that the handler must be wrapped once with {@link guardHandler} before the Processor is
 * built; the guard records, for the call being processed, the error a handler method failed with.
 */
import thrift from 'thrift';
import { applicationExceptionFrame, ExceptionType } from './application-exception.js';
import { readMessageHeader, type Protocol } from './message-header.js';
import type { ServiceMethods } from './service-methods.js';

const { TFramedTransport, TBinaryProtocol, TCompactProtocol, TJSONProtocol, Thrift } = thrift;

/** The thrift library's class for each protocol. */
const PROTOCOL_CLASSES = { binary: TBinaryProtocol, compact: TCompactProtocol, json: TJSONProtocol } as const;

/** A generated service Processor (the part used here). */
export interface Processor {
  process(input: unknown, output: unknown): void;
}

const EXCEPTION = 3;
const ONEWAY = 4;

/** What one call left behind while the processor ran it. */
interface CallContext {
  /** The non-declared error a handler method failed with. */
  error: unknown;
  hasError: boolean;
  /** Failure from encoding the result inside a callback, which leaves no frame to flush. */
  fail: (message: string) => void;
  /**
   * What a promise-style handler method returned. The generated code of a oneway method drops it,
   * so this is the only way to know when a oneway handler has finished (or failed).
   */
  returned: unknown;
}

/** The call whose handler method is being invoked right now (handlers are called synchronously by process()). */
let current: CallContext | undefined;

function describe(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  if (error === null) return 'rejected with null';
  if (error === undefined) return 'rejected with undefined';
  return typeof error === 'string' ? error : (JSON.stringify(error) ?? typeof error);
}

/** Declared exceptions (and TApplicationExceptions) are Thrift TExceptions and pass through untouched. */
function isThriftException(error: unknown): boolean {
  return error instanceof Thrift.TException;
}

function normalize(error: unknown, context: CallContext | undefined): unknown {
  if (error === null || error === undefined || isThriftException(error)) {
    if (error !== null && error !== undefined) return error;
  }
  if (context !== undefined && !isThriftException(error)) {
    context.error = error;
    context.hasError = true;
  }
  return error instanceof Error ? error : new Error(describe(error));
}

type AnyFunction = (...args: unknown[]) => unknown;

/**
 * Wraps every method of `handler` so its failures are recorded for {@link runProcessor} and can
 * never escape the processor. Each wrapper keeps the method's declared parameter count, which the
 * generated Processor reads to choose promise or callback style.
 */
export function guardHandler<H extends object>(handler: H): H {
  const guarded: Record<string, unknown> = {};
  for (let o: object | null = handler; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) {
    for (const key of Object.getOwnPropertyNames(o)) {
      const original = (handler as Record<string, unknown>)[key];
      if (key === 'constructor' || key in guarded || typeof original !== 'function') continue;
      guarded[key] = guard(handler, original as AnyFunction);
    }
  }
  return guarded as H;
}

function guard(handler: object, original: AnyFunction): AnyFunction {
  const fn = function (...args: unknown[]): unknown {
    const context = current;
    const callback = typeof args.at(-1) === 'function' ? (args.at(-1) as (err: unknown, value?: unknown) => void) : undefined;
    if (callback !== undefined) {
      const wrappedCallback = (err: unknown, value?: unknown): void => {
        try {
          callback(err === null || err === undefined ? null : normalize(err, context), value);
        } catch (encodeError) {
          context?.fail(`the handler's result could not be encoded: ${describe(encodeError)}`);
        }
      };
      try {
        return original.apply(handler, [...args.slice(0, -1), wrappedCallback]);
      } catch (error) {
        wrappedCallback(error === null || error === undefined ? new Error(describe(error)) : error);
        return undefined;
      }
    }
    let result: unknown;
    try {
      result = original.apply(handler, args);
    } catch (error) {
      result = Promise.reject(normalize(error, context));
      if (context !== undefined) context.returned = result;
      return result;
    }
    if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
      result = Promise.resolve(result).catch((error: unknown) => {
        throw normalize(error, context);
      });
    }
    if (context !== undefined) context.returned = result;
    return result;
  };
  Object.defineProperty(fn, 'length', { value: original.length });
  Object.defineProperty(fn, 'name', { value: original.name });
  return fn;
}

/** A service as a worker runs it. */
export interface LoadedService {
  /** Built on a {@link guardHandler}-wrapped handler. */
  processor: Processor;
  /** Its methods, to tell oneway ones (whose processor writes no reply) from the rest. */
  methods: ServiceMethods;
}

/** What {@link runProcessor} needs besides the frame and its protocol. */
export interface RunOptions {
  /**
   * The services by the name multiplexed clients prefix methods with (`Name:method`); the plain
   * service, called with unprefixed names, under ''.
   */
  services: ReadonlyMap<string, LoadedService>;
  /** Told, with the method name, of every handler failure answered INTERNAL_ERROR or swallowed by a oneway call. */
  onHandlerError(method: string, message: string): void;
}

/**
 * Runs the processor of the called service on `frame` (a request without its length prefix; a
 * multiplexed `Name:method` goes to service `Name`, which reads the plain method name, as
 * thrift's TMultiplexedProcessor does it). Resolves with the reply frame, length prefix included, or `null` for a
 * oneway call, once the handler has finished: a oneway method's handler is waited for too, so a
 * oneway call holds its permit (and counts against the handler deadline) while it runs. A
 * ONEWAY-typed message for a method that returns runs as usual and its reply is dropped: its
 * client reads no reply. Never rejects.
 */
export function runProcessor(frame: Buffer, protocol: Protocol, options: RunOptions): Promise<Buffer | null> {
  let name = '';
  let seqid = 0;
  let type: number;
  try {
    ({ name, seqid, type } = readMessageHeader(frame, protocol));
  } catch (error) {
    return Promise.resolve(applicationExceptionFrame({ name, seqid, type: ExceptionType.PROTOCOL_ERROR, message: describe(error), protocol }));
  }
  const colon = name.indexOf(':');
  const service = options.services.get(colon < 0 ? '' : name.slice(0, colon));
  const method = colon < 0 ? name : name.slice(colon + 1);
  const processor = service?.processor;
  if (processor === undefined || typeof (processor as unknown as Record<string, unknown>)[`process_${method}`] !== 'function') {
    return Promise.resolve(applicationExceptionFrame({ name, seqid, type: ExceptionType.UNKNOWN_METHOD, message: `Unknown function ${name}`, protocol }));
  }
  const noReply = type === ONEWAY;
  const onewayMethod = service!.methods.get(method) === true;
  return new Promise<Buffer | null>((resolve) => {
    let settled = false;
    const finish = (reply: Buffer | null): void => {
      if (settled) return;
      settled = true;
      resolve(noReply ? null : reply);
    };
    const fail = (message: string): void => {
      options.onHandlerError(name, message);
      finish(applicationExceptionFrame({ name, seqid, type: ExceptionType.INTERNAL_ERROR, message: `${name}: ${message}`, protocol }));
    };
    const context: CallContext = { error: undefined, hasError: false, fail, returned: undefined };
    let begins = 0;
    let lastType = 0;
    const Proto = PROTOCOL_CLASSES[protocol];
    const input = new Proto(new TFramedTransport(frame));
    if (colon >= 0) {
      const readMessageBegin = input.readMessageBegin.bind(input);
      input.readMessageBegin = () => ({ ...readMessageBegin(), fname: method });
    }
    const output = new Proto(
      new TFramedTransport(undefined, (reply?: Buffer) => {
        // Two message headers in one reply: encoding the result threw half-way and the generated
        // code then appended an exception to the partial frame.
        if (begins > 1) fail(`the handler's result could not be encoded (a value of the wrong type?)`);
        else if (lastType === EXCEPTION && context.hasError) fail(describe(context.error));
        else finish(reply ?? null);
      }),
    );
    const writeMessageBegin = output.writeMessageBegin.bind(output);
    output.writeMessageBegin = (n: string, t: number, s: number): void => {
      begins++;
      lastType = t;
      writeMessageBegin(n, t, s);
    };
    const previous = current;
    current = context;
    try {
      processor.process(input, output);
    } catch (error) {
      fail(describe(error));
    } finally {
      current = previous;
    }
    if (onewayMethod) {
      Promise.resolve(context.returned).then(
        () => finish(null),
        (error: unknown) => {
          options.onHandlerError(name, describe(error));
          finish(null);
        },
      );
    }
  });
}
