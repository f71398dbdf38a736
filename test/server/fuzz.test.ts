// Seeded random frames at the threaded server: valid message headers (CALL or ONEWAY, a method of
// the service or an unknown name, any seqid) followed by random bytes, or by a well-formed
// argument struct with random values (mostly small, 3% any 32-bit value: a `work` of minutes, a
// `sleep` of weeks) and random trailing bytes, plus a few frames of pure garbage, over several raw
// sockets. Whatever a frame does (decode error in the worker, unknown
// method, wrong message type, a `work` or `sleep` with a random argument), the server must keep
// answering and must not leave a call running. Bounded by count and by time.
import type net from 'node:net';
import { describe, expect, test } from 'vitest';
import type { ThreadedServer } from '../../src/server/threaded-server.js';
import { connect, rawSocket, startServer, type Protocol } from './calculator.js';
import { argsStruct, framed, MessageType, messageHeader, mulberry32, within, type Arg } from './frames.js';

const METHODS = ['add', 'echo', 'ping', 'record', 'divide', 'work', 'sleep', 'fail', 'counters'];
const UNKNOWN = ['nope', 'Add', '', 'x'.repeat(300), 'Calculator:add', 'addd'];
const FRAMES = 3000;
const SEND_BUDGET_MS = 20_000;
const SOCKETS = 4;
const HANDLER_TIMEOUT_MS = 1000;

interface Slot {
  socket: net.Socket;
  open: boolean;
}

describe('threaded server under seeded random frames', () => {
  test.each(['binary', 'compact'] as const)(
    'after 3,000 seeded random frames on each protocol the server still answers and no call is left running (%s)',
    async (protocol: Protocol) => {
      const seed = protocol === 'binary' ? 0x5eed_0001 : 0x5eed_0002;
      const rand = mulberry32(seed);
      const int = (n: number): number => Math.floor(rand() * n);
      const log: string[] = [];
      const { server, port } = await startServer({ protocol, workers: 2, handlerTimeoutMs: HANDLER_TIMEOUT_MS, log: (line) => log.push(line) });
      const counts = { sent: 0, garbage: 0, wellFormed: 0, closedByServer: 0, connections: 0, replies: 0, replyBytes: 0 };
      const slots: Array<Slot | undefined> = [];
      const open = async (): Promise<Slot> => {
        const socket = await rawSocket(port);
        counts.connections++;
        const slot: Slot = { socket, open: true };
        socket.on('error', () => {});
        let pending: Buffer = Buffer.alloc(0);
        socket.on('data', (chunk: Buffer) => {
          counts.replyBytes += chunk.length;
          pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
          while (pending.length >= 4 && pending.length >= 4 + pending.readInt32BE(0)) {
            counts.replies++;
            pending = pending.subarray(4 + pending.readInt32BE(0));
          }
        });
        socket.on('close', () => {
          if (slot.open) counts.closedByServer++;
          slot.open = false;
        });
        return slot;
      };
      const randomBytes = (n: number): Buffer => {
        const b = Buffer.allocUnsafe(n);
        for (let i = 0; i < n; i++) b[i] = int(256);
        return b;
      };
      const i32 = (): number => (rand() < 0.97 ? int(2000) : int(2 ** 32) | 0);
      // Well-formed arguments with random values.
      const plausible: Record<string, () => Arg[]> = {
        add: () => [
          { id: 1, i32: i32() },
          { id: 2, i32: i32() },
        ],
        echo: () => [{ id: 1, binary: randomBytes(int(100)) }],
        ping: () => [],
        record: () => [{ id: 1, binary: 'event' }],
        divide: () => [
          { id: 1, i32: i32() },
          { id: 2, i32: int(3) },
        ],
        work: () => [{ id: 1, i32: i32() }],
        sleep: () => [{ id: 1, i32: i32() }],
        fail: () => [{ id: 1, binary: ['throw', 'reject-null', 'bad-result', 'ok'][int(4)]! }],
        counters: () => [],
      };
      try {
        const started = performance.now();
        while (counts.sent < FRAMES && performance.now() - started < SEND_BUDGET_MS) {
          const k = int(SOCKETS);
          let slot = slots[k];
          if (slot === undefined || !slot.open || slot.socket.destroyed) slots[k] = slot = await open();
          let frame: Buffer;
          if (rand() < 0.03) {
            frame = framed(randomBytes(1 + int(64)));
            counts.garbage++;
          } else {
            const name = rand() < 0.8 ? METHODS[int(METHODS.length)]! : UNKNOWN[int(UNKNOWN.length)]!;
            const type = rand() < 0.8 ? MessageType.CALL : MessageType.ONEWAY;
            const seqid = int(2 ** 32) | 0;
            const make = plausible[name];
            const wellFormed = make !== undefined && rand() < 0.5;
            if (wellFormed) counts.wellFormed++;
            const args = wellFormed ? Buffer.concat([argsStruct(protocol, make()), randomBytes(int(50))]) : randomBytes(int(201));
            frame = framed(Buffer.concat([messageHeader(protocol, name, type, seqid), args]));
          }
          slot.socket.write(frame);
          counts.sent++;
          if (counts.sent % 50 === 0) await new Promise((resolve) => setTimeout(resolve, 2));
        }
        const sendMs = performance.now() - started;

        // Calls still in flight may take up to handlerTimeoutMs (plus a worker replacement).
        await expect.poll(() => server.stats().running, { timeout: HANDLER_TIMEOUT_MS + 3000, interval: 50 }).toBe(0);
        // A `work` of minutes leaves its worker blocked until the watchdog replaces it (within a
        // heartbeat, handlerTimeoutMs / 4, of its call's timeout); a call handed to a blocked worker
        // is failed with it, so give the watchdog that long before the fresh client's call.
        await new Promise((resolve) => setTimeout(resolve, HANDLER_TIMEOUT_MS / 2));
        const fresh = await connect(port, protocol);
        expect(await within(fresh.client.add(2, 3), 5000, 'add(2, 3) on a fresh client after the fuzzing')).toBe(5);
        fresh.close();
        const s = server.stats() as ReturnType<ThreadedServer['stats']> & Record<string, unknown>;
        console.log(
          `fuzz ${protocol} seed 0x${seed.toString(16)}: sent ${counts.sent} frames (${counts.wellFormed} with well-formed arguments, ${counts.garbage} garbage) in ${sendMs.toFixed(0)} ms over ${counts.connections} connections; ` +
            `closed by server ${counts.closedByServer}; replies read ${counts.replies}; server: admitted ${s.admitted}, completed ${s.completed}, protocolErrors ${s.protocolErrors}, ` +
            `workerFailures ${s.workerFailures}, handlerTimeouts ${String(s.handlerTimeouts)}, workerReplacements ${String(s.workerReplacements)}, invalidCalls ${String(s.invalidCalls)}; log lines ${log.length}`,
        );
        expect(counts.sent).toBe(FRAMES);
        expect(counts.replies).toBeGreaterThan(0);
      } finally {
        for (const slot of slots) slot?.socket.destroy();
        await server.close({ timeoutMs: 100 });
      }
    },
    45_000,
  );
});
