/**
 * Start-up checks of the shared-memory layouts. Each layout names its words by index in an Int32
 * view and in a BigInt64 view of the same bytes; a word added past the end of its region, or an
 * Int32 word that lands inside a 64-bit one, would corrupt another field silently and only under
 * load. Each module that owns a layout checks it once, when it is loaded.
 */

/** One region of a layout: its Int32 words and its BigInt64 words, which must fit in `bytes` from `startByte`. */
export interface LayoutRegion {
  /** Int32 word indices of the region, relative to `startByte`. */
  i32: readonly number[];
  /** BigInt64 word indices of the region, relative to `startByte`. */
  i64: readonly number[];
  bytes: number;
}

/**
 * Throws if any word of `region` lies outside it, or if an Int32 word and a 64-bit word overlap.
 * @param name the layout, for the message.
 */
export function assertLayout(name: string, region: LayoutRegion): void {
  const spans = [
    ...region.i32.map((w) => ({ start: 4 * w, end: 4 * w + 4, word: `Int32 word ${w}` })),
    ...region.i64.map((w) => ({ start: 8 * w, end: 8 * w + 8, word: `BigInt64 word ${w}` })),
  ];
  for (const s of spans) {
    if (s.start < 0 || s.end > region.bytes) throw new Error(`${name}: ${s.word} (bytes ${s.start}–${s.end}) lies outside its ${region.bytes} bytes`);
  }
  for (const a of region.i32.map((w) => ({ start: 4 * w, end: 4 * w + 4, word: `Int32 word ${w}` }))) {
    for (const b of region.i64.map((w) => ({ start: 8 * w, end: 8 * w + 8, word: `BigInt64 word ${w}` }))) {
      if (a.start < b.end && b.start < a.end) throw new Error(`${name}: ${a.word} overlaps ${b.word}`);
    }
  }
}
