/**
 * The contract between the I/O thread and the workers: what each worker is given, the messages
 * between them, and how frames are packed into those messages.
 *
 * Many frames travel in one ArrayBuffer that is transferred, not copied, between threads: one
 * message per batch costs about a microsecond per call where a message (or a piscina task) per
 * call costs tens (see docs/ARCHITECTURE.md for the measurements).
 */

import type { KeyedTokenBucket, KeyedTokenBucketDescriptor } from '../keyed/keyed-token-bucket.js';
import type { AnyLimiter } from '../limiters/attach.js';
import type { LimiterDescriptor } from '../limiters/limiter.js';
import { defineLayout } from '../shared/layout.js';
import type { Protocol } from '../thrift/message-header.js';
import type { ServiceModules } from './server-options.js';

/**
 * A worker's heartbeat, a SharedArrayBuffer of its own posted once at start: BEAT holds
 * `process.hrtime.bigint()` of the thread's latest timer turn, which the dispatcher's watchdog reads.
 */
export const HeartbeatLayout = defineLayout('worker heartbeat', { BYTES: 8, I32: {}, I64: { BEAT: 0 } });

/** What the I/O thread passes to every worker (piscina `workerData`). */
export interface ThriftWorkerData {
  services: ServiceModules[];
  limiters: Record<string, LimiterDescriptor>;
  /** The per-key limits' limiters, by method name. */
  keyedLimiters: Record<string, KeyedTokenBucketDescriptor>;
  /** The BroadcastChannel on which the I/O thread sends the limiters again when they change. */
  limitsChannel: string;
  /** The server's `handlerTimeoutMs` (Infinity when disabled): a batch's task ends by then. */
  handlerTimeoutMs: number;
  /** How often a worker bumps its heartbeat word. */
  heartbeatMs: number;
}

/** What the I/O thread broadcasts on {@link ThriftWorkerData.limitsChannel} when the limits change. */
export interface LimitsMessage {
  /** Changes since start; a worker ignores a message older than what it has. */
  version: number;
  limiters: Record<string, LimiterDescriptor>;
  keyedLimiters: Record<string, KeyedTokenBucketDescriptor>;
}

/** What a handler module's `createHandler(context)` receives in each worker. */
export interface HandlerContext {
  /**
   * The server's limiters by method name ('*' for the default), attached in this thread; kept
   * current in place when `server.setLimits` changes them (look one up when it is used).
   */
  limiters: Record<string, AnyLimiter>;
  /** The server's per-key limiters by method name (limits with `perKey`), attached in this thread; kept current likewise. */
  keyedLimiters: Record<string, KeyedTokenBucket>;
  /** This worker's thread id. */
  threadId: number;
}

/** The protocols, by the code a {@link WorkerBatch} gives each frame. */
export const PROTOCOLS: readonly Protocol[] = ['binary', 'compact', 'json'];

/** The code of `protocol` in {@link PROTOCOLS}. */
export function protocolCode(protocol: Protocol): number {
  return protocol === 'binary' ? 0 : protocol === 'compact' ? 1 : 2;
}

/** A batch of request frames for a worker (a piscina task). */
export interface WorkerBatch {
  /** Call ids, to route replies back. */
  ids: number[];
  /** Each frame's protocol, as its index in {@link PROTOCOLS}: one connection speaks one, a server many. */
  protocols: number[];
  /** Frame lengths, in order; frames are back to back in `buffer`. */
  lengths: number[];
  /** The frames, transferred. */
  buffer: ArrayBuffer;
}

/** Replies from a worker (posted on its parentPort); a length of -1 marks a oneway call's null. */
export interface WorkerReplies {
  replies: true;
  ids: number[];
  lengths: number[];
  buffer: ArrayBuffer;
  /** Handler failures since the worker's previous message, `method: message`, for the server's log. */
  errors?: string[];
}

/** What a worker posts on its parentPort: replies, or how its start went. */
export type WorkerEvent =
  | WorkerReplies
  /** The handler is loaded; `heartbeat` is its {@link HeartbeatLayout} word. */
  | { ready: true; threadId: number; heartbeat: BigInt64Array }
  /** The handler could not be loaded: one line saying why. */
  | { startFailed: string; threadId: number };

/** Copies `frames` back to back into one fresh ArrayBuffer (null frames take no bytes). */
export function packFrames(frames: readonly (Uint8Array | null)[]): { buffer: ArrayBuffer; lengths: number[] } {
  let total = 0;
  for (const f of frames) if (f !== null) total += f.byteLength;
  const buffer = new ArrayBuffer(total);
  const bytes = new Uint8Array(buffer);
  const lengths = new Array<number>(frames.length);
  let offset = 0;
  for (let i = 0; i < frames.length; i++) {
    const f = frames[i]!;
    if (f === null) {
      lengths[i] = -1;
      continue;
    }
    bytes.set(f, offset);
    offset += f.byteLength;
    lengths[i] = f.byteLength;
  }
  return { buffer, lengths };
}
