/**
 * The 64-bit hash that identifies a key in the shared table, and the slot its search starts at.
 *
 * The hash is FNV-1a 64 over the key's UTF-16 code units (low byte, then high byte: the bytes of
 * `Buffer.from(key, 'utf16le')`), with the offset basis XORed with a random 64-bit seed drawn when
 * the table is created and stored in it, so every thread computes the same hash and a client
 * cannot pick keys that collide without knowing the seed. The table compares all 64 bits, so two
 * distinct keys share a bucket only if their hashes are equal: probability 2⁻⁶⁴ for a pair, about
 * m²/2⁶⁵ that any two of m distinct keys collide (2.7·10⁻⁸ for a million keys). Keys that do collide
 * share one bucket, so together they get one key's limit: a collision can cost admissions, never
 * add any.
 *
 * The 64-bit product is computed in two 32-bit halves with plain doubles: FNV's prime is
 * 2⁴⁰ + 435, so h·prime mod 2⁶⁴ = h·435 + (lo << 40), and lo·435 < 2⁴¹ is exact in a double.
 * No BigInt, no allocation.
 */

const FNV_BASIS_HI = 0xcbf29ce4;
const FNV_BASIS_LO = 0x84222325;
const FNV_PRIME_LOW = 435; // 0x1b3; the prime is 2^40 + 0x1b3
const TWO_32 = 4294967296;

/** Hashes keys for one table: the result of the last {@link hash} call is in its fields. */
export class KeyHasher {
  /** High 32 bits of the last key's hash (as a signed 32-bit integer, as an Int32Array holds it). */
  hi = 0;
  /** Low 32 bits of the last key's hash (signed 32-bit); never both 0 with {@link hi}. */
  lo = 0;
  /** Slot where the last key's search starts. */
  home = 0;

  /**
   * @param seedHi high 32 bits of the table's seed.
   * @param seedLo low 32 bits of the table's seed.
   * @param slots slots in the table.
   */
  constructor(
    private readonly seedHi: number,
    private readonly seedLo: number,
    private readonly slots: number,
  ) {}

  /** Hashes `key` into {@link hi}, {@link lo} and {@link home}. */
  hash(key: string): void {
    let hi = (FNV_BASIS_HI ^ this.seedHi) >>> 0;
    let lo = (FNV_BASIS_LO ^ this.seedLo) >>> 0;
    for (let i = 0; i < key.length; i++) {
      const unit = key.charCodeAt(i);
      lo = (lo ^ (unit & 0xff)) >>> 0;
      let t = lo * FNV_PRIME_LOW;
      hi = (hi * FNV_PRIME_LOW + Math.floor(t / TWO_32) + ((lo << 8) >>> 0)) >>> 0;
      lo = t >>> 0;
      lo = (lo ^ (unit >>> 8)) >>> 0;
      t = lo * FNV_PRIME_LOW;
      hi = (hi * FNV_PRIME_LOW + Math.floor(t / TWO_32) + ((lo << 8) >>> 0)) >>> 0;
      lo = t >>> 0;
    }
    if (hi === 0 && lo === 0) lo = 1; // 0 is reserved for "no key written yet"
    this.hi = hi | 0;
    this.lo = lo | 0;
    // FNV's multiply only carries upwards, so its low bits mix poorly: finish with murmur3's
    // fmix32 before taking the slot, which must depend on every bit.
    let h = (hi ^ lo) >>> 0;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    this.home = (h >>> 0) % this.slots;
  }
}
