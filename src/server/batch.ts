/**
 * The messages between the I/O thread and the workers, and how frames are packed into them.
 *
 * Many frames travel in one ArrayBuffer that is transferred, not copied, between threads: one
 * message per batch costs about a microsecond per call where a message (or a piscina task) per
 * call costs tens (see docs/ARCHITECTURE.md for the measurements).
 */

/** A batch of request frames for a worker (a piscina task). */
export interface WorkerBatch {
  /** Call ids, to route replies back. */
  ids: number[];
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
}

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
