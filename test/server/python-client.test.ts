import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { ThreadedServer } from '../../src/server/threaded-server.js';
import { startServer, type Protocol } from './calculator.js';

const run = promisify(execFile);
const client = fileURLToPath(new URL('../fixtures/py_client.py', import.meta.url));
// Debian's interpreter: python3-thrift is installed for it, not for another python3 on PATH.
const PYTHON = '/usr/bin/python3';

describe.each(['binary', 'compact'] as Protocol[])('a Python client (python3-thrift, gen-py), %s protocol', (protocol) => {
  let server: ThreadedServer;
  let port: number;
  beforeAll(async () => {
    ({ server, port } = await startServer({ protocol, workers: 1 }));
  });
  afterAll(() => server.close({ timeoutMs: 100 }));

  test('gets every method kind answered as its IDL declares', async () => {
    const { stdout } = await run(PYTHON, [client, String(port), protocol], { timeout: 20_000 });
    expect(JSON.parse(stdout)).toEqual({
      add: 42,
      echo: 'python',
      ping: null,
      divide: 'DivideByZero: cannot divide 1 by zero',
      work: true,
      fail: { type: 6, message: 'fail: handler failed on purpose' },
      counters: ['add', 'counters', 'divide', 'echo', 'fail', 'ping', 'record', 'work'],
    });
  });
});
