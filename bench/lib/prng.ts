/**
 * mulberry32: a tiny seeded pseudo-random generator, uniform in [0, 1). Benchmarks and tests use it
 * so that a varied run is the same every time, and a failing case can be replayed from its seed.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
