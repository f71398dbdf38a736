/**
 * The pool entry: each worker thread loads the generated service module and the user's handler
 * module once, then runs the generated Processor on raw request frames in memory.
 *
 * A task is a batch of request frames packed in one transferred ArrayBuffer. Calls of a batch run
 * concurrently; each reply is sent back as soon as it is ready (replies finishing in the same
 * event-loop turn travel together, in one transferred buffer, over the worker's parentPort, which
 * piscina re-emits as the pool's 'message' event). The task itself resolves when every call of the
 * batch has answered, or when the handler deadline has passed (the I/O thread has answered the
 * stragglers by then; their late replies still come back, to be counted), so a handler that never
 * settles cannot pin its task forever. If the thread dies, piscina rejects the task and the I/O
 * thread answers the calls that had not been answered yet.
 *
 * Start-up is reported, not thrown: a thread that cannot load the handler posts `startFailed`
 * (which `listen()` turns into a rejection) instead of dying, since piscina would restart a dying
 * worker forever. A thread that did load posts `ready` with its heartbeat word, which it bumps on
 * a timer: a heartbeat that stops moving tells the I/O thread this thread's event loop is blocked.
 */
import { BroadcastChannel, parentPort, threadId, workerData } from 'node:worker_threads';
import { MethodLimits } from '../src/limits/method-limits.js';
// Registers the Redis store, so limits held in Redis attach in this thread (see stores/store.ts).
import '../src/stores/redis-store.js';
import { guardHandler, runProcessor, type LoadedService, type Processor, type RunOptions } from '../src/thrift/run-processor.js';
import { processorClass, serviceMethods, type ServiceModule } from '../src/thrift/service-methods.js';
import type { HandlerContext, LimitsMessage, ThriftWorkerData, WorkerBatch, WorkerEvent, WorkerReplies } from '../src/server/batch.js';
import type { ServiceModules } from '../src/server/server-options.js';
import { HeartbeatLayout, packFrames, PROTOCOLS } from '../src/server/batch.js';

const data = workerData as ThriftWorkerData;

// Handler failures since the last message to the I/O thread, which logs them (rate-limited).
let pendingErrors: string[] = [];

async function loadService(modules: ServiceModules, context: HandlerContext): Promise<LoadedService> {
  const service = (await import(modules.serviceUrl)) as ServiceModule;
  const Processor = processorClass(service);
  const methods = serviceMethods(service);
  if (Processor === undefined || methods === undefined) throw new TypeError(`${modules.serviceUrl} does not export a Thrift service Processor`);
  const mod = (await import(modules.handlerUrl)) as Record<string, unknown>;
  let handler: unknown;
  if (typeof mod.createHandler === 'function') {
    try {
      handler = await (mod.createHandler as (c: HandlerContext) => unknown)(context);
    } catch (error) {
      throw new Error(`createHandler threw: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  } else handler = mod.handler ?? mod.default;
  if (handler === null || typeof handler !== 'object') {
    throw new TypeError(`${modules.handlerUrl} must export createHandler(context), handler or a default handler object`);
  }
  return { processor: new Processor(guardHandler(handler)) as Processor, methods };
}

const context: HandlerContext = { limiters: MethodLimits.attach(data.limiters), keyedLimiters: MethodLimits.attachKeyed(data.keyedLimiters ?? {}), threadId };

// server.setLimits: the handlers' context follows the I/O thread's limiters, in place. A limiter
// changed in place needs nothing here (its settings are in shared memory); new ones are attached,
// retired ones dropped and disposed (their hooks on this thread's store would keep them alive).
let limitsVersion = 0;
const limitsChannel = new BroadcastChannel(data.limitsChannel);
limitsChannel.unref();
limitsChannel.onmessage = (event: unknown): void => {
  const m = (event as { data: LimitsMessage }).data;
  if (m.version <= limitsVersion) return;
  limitsVersion = m.version;
  for (const retired of replaceAll(context.limiters, MethodLimits.attach(m.limiters))) retired.dispose();
  replaceAll(context.keyedLimiters, MethodLimits.attachKeyed(m.keyedLimiters));
};

/** Makes `target` hold exactly `source`'s entries, in place; returns the values it no longer holds. */
function replaceAll<T>(target: Record<string, T>, source: Record<string, T>): T[] {
  const kept = new Set(Object.values(source));
  const dropped = new Set(Object.values(target).filter((value) => !kept.has(value)));
  for (const name of Object.keys(target)) if (!(name in source)) delete target[name];
  Object.assign(target, source);
  return [...dropped];
}

async function load(): Promise<RunOptions> {
  const services = new Map<string, LoadedService>();
  for (const modules of data.services) services.set(modules.name, await loadService(modules, context));
  return { services, onHandlerError: (method, message) => pendingErrors.push(`${method}: ${message}`) };
}

let loaded: RunOptions | undefined;
let startError: Error | undefined;
try {
  loaded = await load();
  const heartbeat = new BigInt64Array(new SharedArrayBuffer(HeartbeatLayout.BYTES));
  const beat = (): void => {
    Atomics.store(heartbeat, HeartbeatLayout.I64.BEAT, process.hrtime.bigint());
  };
  beat();
  setInterval(beat, data.heartbeatMs).unref();
  parentPort!.postMessage({ ready: true, threadId, heartbeat } satisfies WorkerEvent);
} catch (error) {
  startError = error instanceof Error ? error : new Error(String(error));
  parentPort!.postMessage({ startFailed: startError.message, threadId } satisfies WorkerEvent);
}

// Replies finished in this turn, flushed together on setImmediate.
let pendingIds: number[] = [];
let pendingFrames: (Buffer | null)[] = [];
let flushScheduled = false;

function replies(ids: number[], frames: (Buffer | null)[]): { message: WorkerReplies; transfer: ArrayBuffer[] } {
  const packed = packFrames(frames);
  const message: WorkerReplies = { replies: true, ids, buffer: packed.buffer, lengths: packed.lengths };
  if (pendingErrors.length > 0) {
    message.errors = pendingErrors;
    pendingErrors = [];
  }
  return { message, transfer: [packed.buffer] };
}

function flush(): void {
  flushScheduled = false;
  const { message, transfer } = replies(pendingIds, pendingFrames);
  pendingIds = [];
  pendingFrames = [];
  parentPort!.postMessage(message, transfer);
}

function reply(id: number, frame: Buffer | null): void {
  pendingIds.push(id);
  pendingFrames.push(frame);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flush);
  }
}

/**
 * Runs one batch. Calls that finish within the batch's first event-loop turn (synchronous
 * handlers, mostly) come back in the task's own result, so a batch of fast calls costs one
 * message each way; calls still running after that turn reply on their own as they finish, and
 * the task resolves (with null) once they all have, or at the handler deadline.
 */
export default async function runBatch(batch: WorkerBatch): Promise<WorkerReplies | null> {
  if (loaded === undefined) throw startError ?? new Error('the handler is not loaded');
  const options = loaded;
  const bytes = new Uint8Array(batch.buffer);
  const count = batch.ids.length;
  const earlyIds: number[] = [];
  const earlyFrames: (Buffer | null)[] = [];
  let firstTurnOver = false;
  let remaining = count;
  let allDone: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    allDone = resolve;
  });
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const length = batch.lengths[i]!;
    const frame = Buffer.from(bytes.buffer, offset, length);
    offset += length;
    const id = batch.ids[i]!;
    void runProcessor(frame, PROTOCOLS[batch.protocols[i]!]!, options).then((out) => {
      if (firstTurnOver) reply(id, out);
      else {
        earlyIds.push(id);
        earlyFrames.push(out);
      }
      if (--remaining === 0) allDone();
    });
  }
  await new Promise((resolve) => setImmediate(resolve));
  firstTurnOver = true;
  const early = replies(earlyIds, earlyFrames);
  if (remaining === 0) return early.message;
  if (earlyIds.length > 0 || early.message.errors !== undefined) parentPort!.postMessage(early.message, early.transfer);
  let deadline: NodeJS.Timeout | undefined;
  if (data.handlerTimeoutMs !== Infinity) deadline = setTimeout(allDone, data.handlerTimeoutMs);
  await finished;
  clearTimeout(deadline);
  return null;
}
