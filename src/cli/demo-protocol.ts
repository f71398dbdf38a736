/**
 * What the demo and its load thread share: the live counters in shared memory and the messages.
 */
import { defineLayout } from '../shared/layout.js';

/** The live counters the load thread bumps and the demo displays: calls sent, replied, failed. */
export const DemoCountersLayout = defineLayout('demo counters', { BYTES: 16, I32: { SENT: 0, REPLIED: 1, FAILED: 2 }, I64: {} });

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
