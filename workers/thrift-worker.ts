/**
 * The pool entry: each worker thread loads the generated service module and the user's handler
 * module once, then runs the generated Processor on raw request frames in memory.
 *
 * A task is a batch of request frames packed in one transferred ArrayBuffer. Calls of a batch run
 * concurrently; each reply is sent back as soon as it is ready (replies finishing in the same
 * event-loop turn travel together, in one transferred buffer, over the worker's parentPort, which
 * piscina re-emits as the pool's 'message' event). The task itself resolves when every call of the
 * batch has answered, so if the thread dies piscina rejects the task and the I/O thread answers the
 * calls that had not been answered yet.
 */
import { parentPort, threadId, workerData } from 'node:worker_threads';
import type { AnyLimiter } from '../src/limiters/attach.js';
import { MethodLimits } from '../src/server/method-limits.js';
import { guardHandler, runProcessor, type Processor } from '../src/thrift/run-processor.js';
import type { HandlerContext, ThriftWorkerData, WorkerBatch, WorkerReplies } from '../src/server/batch.js';
import { packFrames } from '../src/server/batch.js';

const data = workerData as ThriftWorkerData;
const limiters: Record<string, AnyLimiter> = MethodLimits.attach(data.limiters);
const keyedLimiters = MethodLimits.attachKeyed(data.keyedLimiters ?? {});

const processor: Processor = await loadProcessor(data.serviceUrl, data.handlerUrl);

async function loadProcessor(serviceUrl: string, handlerUrl: string): Promise<Processor> {
  const service = (await import(serviceUrl)) as Record<string, unknown> & { default?: Record<string, unknown> };
  const Processor = (service.Processor ?? service.default?.Processor) as (new (handler: unknown) => Processor) | undefined;
  if (typeof Processor !== 'function') throw new TypeError(`${serviceUrl} does not export a Thrift service Processor`);
  const mod = (await import(handlerUrl)) as Record<string, unknown>;
  const context: HandlerContext = { limiters, keyedLimiters, threadId };
  let handler: unknown;
  if (typeof mod.createHandler === 'function') handler = await (mod.createHandler as (c: HandlerContext) => unknown)(context);
  else handler = mod.handler ?? mod.default;
  if (handler === null || typeof handler !== 'object') {
    throw new TypeError(`${handlerUrl} must export createHandler(context), handler or a default handler object`);
  }
  return new Processor(guardHandler(handler));
}

// Replies finished in this turn, flushed together on setImmediate.
let pendingIds: number[] = [];
let pendingFrames: (Buffer | null)[] = [];
let flushScheduled = false;

function flush(): void {
  flushScheduled = false;
  const ids = pendingIds;
  const frames = pendingFrames;
  pendingIds = [];
  pendingFrames = [];
  const packed = packFrames(frames);
  const message: WorkerReplies = { replies: true, ids, buffer: packed.buffer, lengths: packed.lengths };
  parentPort!.postMessage(message, [packed.buffer]);
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
 * the task resolves (with null) once they all have.
 */
export default async function runBatch(batch: WorkerBatch): Promise<WorkerReplies | null> {
  const bytes = new Uint8Array(batch.buffer);
  const count = batch.ids.length;
  const earlyIds: number[] = [];
  const earlyFrames: (Buffer | null)[] = [];
  let firstTurnOver = false;
  let remaining = count;
  let allDone: () => void = () => {};
  const finished = new Promise<void>((resolve) => { allDone = resolve; });
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const length = batch.lengths[i]!;
    const frame = Buffer.from(bytes.buffer, offset, length);
    offset += length;
    const id = batch.ids[i]!;
    void runProcessor(processor, frame, data.protocol).then((out) => {
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
  const packed = packFrames(earlyFrames);
  const early: WorkerReplies = { replies: true, ids: earlyIds, buffer: packed.buffer, lengths: packed.lengths };
  if (remaining === 0) return early;
  if (earlyIds.length > 0) parentPort!.postMessage(early, [packed.buffer]);
  await finished;
  return null;
}
