/**
 * The live progress line of a long-running command (`demo`, `load`). On a terminal it is one line
 * rewritten in place, cut to the terminal's width (a wrapped line cannot be rewritten with a
 * carriage return); anywhere else (a pipe, a log file, CI output) it is a plain line at most once a
 * second, so the output stays a readable history instead of a run of carriage returns.
 */

/** How often a stream that is not a terminal gets a line. */
const PLAIN_EVERY_MS = 1000;

/** ANSI "erase to the end of the line": clears what a longer previous line left behind. */
const ERASE_TO_END = '\x1b[K';

/** A progress line on one stream; see {@link progressLine}. */
export interface ProgressLine {
  /** Whether the stream is a terminal, i.e. the line is rewritten in place (worth drawing a bar). */
  readonly live: boolean;
  /** Shows `text`: at once on a terminal, else as a new line if a second has passed since the last. */
  update(text: string): void;
  /** Ends the progress, leaving the last line shown on a terminal. */
  done(): void;
}

/** A progress line on `stream`, in place when it is a terminal. */
export function progressLine(stream: NodeJS.WriteStream): ProgressLine {
  const live = stream.isTTY === true;
  let shown = false;
  let lastPlainAt = performance.now();
  return {
    live,
    update(text) {
      if (live) {
        // The last column stays free: writing into it makes some terminals wrap at once.
        const width = stream.columns > 1 ? stream.columns - 1 : Infinity;
        stream.write(`\r${text.length > width ? text.slice(0, width) : text}${ERASE_TO_END}`);
        shown = true;
        return;
      }
      const now = performance.now();
      if (now - lastPlainAt < PLAIN_EVERY_MS) return;
      lastPlainAt = now;
      stream.write(`${text}\n`);
    },
    done() {
      if (live && shown) stream.write('\n');
      shown = false;
    },
  };
}
