/**
 * A log that repeats itself at most once per interval per kind of line: a hostile client or a
 * failing handler can produce thousands of identical events a second, and the log must stay
 * readable (and cheap) while they last. Lines held back are counted and the count is appended to
 * the next line of that kind.
 */

/** Rate-limited one-line logging. */
export class ThrottledLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  /**
   * @param log where lines go.
   * @param intervalMs least time between two lines of one kind.
   */
  constructor(
    private readonly log: (line: string) => void,
    private readonly intervalMs = 1000,
  ) {}

  /** Logs `line` unless a line of `kind` was logged less than the interval ago. */
  write(kind: string, line: string): void {
    const now = performance.now();
    const entry = this.last.get(kind);
    if (entry !== undefined && now - entry.at < this.intervalMs) {
      entry.suppressed++;
      return;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.last.set(kind, { at: now, suppressed: 0 });
    this.log(suppressed > 0 ? `${line} (${suppressed} more like it since the last such line)` : line);
  }
}
