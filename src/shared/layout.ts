/**
 * How the library describes its shared-memory layouts, and their start-up checks.
 *
 * **Convention.** Every layout of shared memory (a limiter's header and thread-table row, the
 * keyed table's header, row and slot, a process's pool of a limit held in a store, a worker's
 * heartbeat, the demo's counters) is one frozen object named `<Thing>Layout`, made by
 * {@link defineLayout} next to the code that owns the memory:
 *
 * ```
 * BYTES   the region's size in bytes; for a region repeated in a table (a row, a slot), its stride
 * I32     UPPER_SNAKE field name → index of its word in an Int32Array over the region
 * I64     UPPER_SNAKE field name → index of its word in a BigInt64Array over the region
 * SPANS   (optional) field name → number of consecutive words, for a field that is an array
 * ```
 *
 * Indices count from the region's start in their view's unit (`I32.X` is bytes 4·X to 4·X + 4,
 * `I64.X` bytes 8·X to 8·X + 8), so a word of the first region of a buffer is read as
 * `Atomics.load(i64, LimiterLayout.I64.STATE)` and a word of row r after it as
 * `Atomics.load(i32, LimiterLayout.BYTES / 4 + r * (LimiterRowLayout.BYTES / 4) + LimiterRowLayout.I32.OWNER)`.
 * The owning module's top comment draws the layout with byte offsets.
 *
 * **Checks.** A word placed past the end of its region, or an Int32 word inside a 64-bit one,
 * would corrupt another field silently, and only under load. `defineLayout` throws when the
 * module loads instead, if:
 * - a word (or a span of words) lies outside `BYTES`;
 * - two fields share a byte (an Int32 word inside a 64-bit one, or two names for one word);
 * - `BYTES` is not a multiple of 8: regions are laid one after another, and every 64-bit word of
 *   the ones that follow must stay 8-byte aligned.
 */

/** A layout as {@link defineLayout} takes it. */
export interface LayoutSpec<I32 extends Record<string, number>, I64 extends Record<string, number>> {
  /** Size of the region in bytes (a repeated region's stride). */
  BYTES: number;
  /** Int32 word indices by field name. */
  I32: I32;
  /** BigInt64 word indices by field name. */
  I64: I64;
  /** Fields that are arrays of words: how many words each spans (default 1). */
  SPANS?: Partial<Record<keyof I32 | keyof I64, number>>;
}

/** A checked, frozen layout (see the convention at the top of this module). */
export interface Layout<I32 extends Record<string, number>, I64 extends Record<string, number>> {
  /** Size of the region in bytes (a repeated region's stride). */
  readonly BYTES: number;
  /** Int32 word indices by field name. */
  readonly I32: Readonly<I32>;
  /** BigInt64 word indices by field name. */
  readonly I64: Readonly<I64>;
}

/**
 * Checks `spec` (see the rules at the top of this module) and returns it frozen.
 * @param name the layout, for the message.
 * @throws Error naming the layout and the field at fault.
 */
export function defineLayout<const I32 extends Record<string, number>, const I64 extends Record<string, number>>(
  name: string,
  spec: LayoutSpec<I32, I64>,
): Layout<I32, I64> {
  const { BYTES: bytes, SPANS: spans = {} } = spec;
  if (!Number.isInteger(bytes) || bytes <= 0 || bytes % 8 !== 0) throw new Error(`${name}: BYTES (${bytes}) must be a positive multiple of 8`);
  const words = [
    ...Object.entries(spec.I32).map(([field, index]) => span(field, index, 4, spans)),
    ...Object.entries(spec.I64).map(([field, index]) => span(field, index, 8, spans)),
  ];
  for (const w of words) {
    if (!Number.isInteger(w.start) || w.start < 0 || w.end > bytes)
      throw new Error(`${name}: ${w.what} (bytes ${w.start}–${w.end}) lies outside its ${bytes} bytes`);
  }
  for (let i = 0; i < words.length; i++) {
    for (let j = i + 1; j < words.length; j++) {
      const [a, b] = [words[i]!, words[j]!];
      if (a.start < b.end && b.start < a.end) throw new Error(`${name}: ${a.what} overlaps ${b.what}`);
    }
  }
  return Object.freeze({ BYTES: bytes, I32: Object.freeze({ ...spec.I32 }), I64: Object.freeze({ ...spec.I64 }) });
}

/** The bytes field `field` at word `index` of `size` bytes covers. */
function span(field: string, index: number, size: number, spans: Partial<Record<string, number>>): { start: number; end: number; what: string } {
  const count = spans[field] ?? 1;
  const what = `${size === 4 ? 'Int32' : 'BigInt64'} word ${index} (${field}${count > 1 ? ` × ${count}` : ''})`;
  return { start: size * index, end: size * (index + count), what };
}
