// Runs a command on a real terminal: a pseudo-terminal from util-linux's `script` (Debian's
// bsdutils, always installed), for the output the CLI draws only when stdout is a TTY.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Single-quoted for sh. */
function quote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * Runs `node ...args` on a pseudo-terminal `columns` wide, bounded by a 60 s kill. Resolves with its
 * exit code and what the terminal received (the terminal turns each \n into \r\n).
 */
export function onTerminal(args: string[], columns: number): Promise<{ code: number; output: string }> {
  const command = [process.execPath, ...args].map(quote).join(' ');
  return run('script', ['-qec', `stty cols ${columns}; ${command}`, '/dev/null'], { timeout: 60_000 }).then(
    (r) => ({ code: 0, output: r.stdout }),
    (e: { code: number; stdout: string }) => ({ code: e.code, output: e.stdout }),
  );
}
