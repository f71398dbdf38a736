/**
 * What the demo and its load thread share: the slots of the live counters and the messages.
 */

/** Counter slots in the shared Int32Array. */
export const SENT = 0;
export const REPLIED = 1;
export const FAILED = 2;

/** What the load thread is given. */
export interface DemoLoadData {
  port: number;
  ratePerSec: number;
  durationMs: number;
  connections: number;
  servicePath: string;
  counters: SharedArrayBuffer;
}

/** What it reports when every call has been answered. */
export interface DemoLoadReport {
  latenciesMs: number[];
  errors: string[];
}
