/**
 * The reference the keyed table is checked against: one GCRA per key in a plain Map (unbounded
 * memory, no slots, no reclaiming, one thread), with the table's arithmetic: T in whole µs, the
 * check exact in ns, the stored TAT rounded up to a whole µs. Written in BigInt ns, independently
 * of the table's code.
 */
export class GcraModel {
  private readonly tat = new Map<string, bigint>();
  private readonly intervalNs: bigint;
  private readonly toleranceNs: bigint;

  constructor(intervalUs: number, burst: number) {
    this.intervalNs = BigInt(intervalUs) * 1000n;
    this.toleranceNs = this.intervalNs * BigInt(burst);
  }

  /** Takes `n` tokens of `key` at `tNs` (ns since the table's epoch) if the key's bucket allows. */
  takeNs(key: string, tNs: number | bigint, n = 1): boolean {
    const t = BigInt(tNs);
    const tat = this.tat.get(key) ?? 0n;
    const next = (tat > t ? tat : t) + BigInt(n) * this.intervalNs;
    if (next - t > this.toleranceNs) return false;
    this.tat.set(key, ((next + 999n) / 1000n) * 1000n);
    return true;
  }
}
