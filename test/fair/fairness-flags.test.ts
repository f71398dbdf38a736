import { describe, expect, test } from 'vitest';
import { parseFairnessFlags, parseLevel } from '../../src/cli/fairness-spec.js';
import { runServe, startServe } from '../serve-cli.js';
import { connect } from '../server/calculator.js';

describe('serve fairness flags', () => {
  test('--fair-flow, --level, --no-borrow, --max-queued-per-flow and --fair-quantum build the fairness option', () => {
    expect(parseFairnessFlags({})).toBeUndefined();
    expect(parseFairnessFlags({ levels: [], noBorrow: [] })).toBeUndefined();
    expect(parseFairnessFlags({ fairFlow: 'connection' })).toEqual({ flow: 'connection' });
    expect(
      parseFairnessFlags({ fairFlow: 'field:3', levels: ['interactive=3:add,echo', 'batch=1'], noBorrow: ['batch'], maxQueuedPerFlow: '100', quantum: '2' }),
    ).toEqual({
      flow: { field: 3 },
      levels: { interactive: { share: 3, methods: ['add', 'echo'] }, batch: { share: 1, borrow: false } },
      maxQueuedPerFlow: 100,
      quantum: 2,
    });
    expect(parseFairnessFlags({ fairFlow: 'address' })).toEqual({ flow: 'address' });
    expect(parseFairnessFlags({ fairFlow: 'method' })).toEqual({ flow: 'method' });
    expect(parseLevel('x=0.5')).toEqual(['x', { share: 0.5 }]);
  });

  test('bad values are refused with an error naming the flag', () => {
    expect(() => parseFairnessFlags({ fairFlow: 'ip' })).toThrow('--fair-flow must be address, connection, method or field:N (a Thrift field id), got "ip"');
    expect(() => parseFairnessFlags({ fairFlow: 'field:99999' })).toThrow(/--fair-flow/);
    expect(() => parseLevel('interactive')).toThrow('--level "interactive": expected NAME=SHARE or NAME=SHARE:METHOD,METHOD (e.g. interactive=3:add,echo)');
    expect(() => parseLevel('a=0')).toThrow('--level "a=0": the share must be greater than 0');
    expect(() => parseLevel('a=1:add,,echo')).toThrow(/empty method name/);
    expect(() => parseFairnessFlags({ levels: ['a=1', 'a=2'] })).toThrow('--level a is given twice');
    expect(() => parseFairnessFlags({ levels: ['a=1'], noBorrow: ['b'] })).toThrow('--no-borrow b: no --level b=SHARE');
    expect(() => parseFairnessFlags({ noBorrow: ['b'] })).toThrow('--no-borrow b: no --level b=SHARE');
    expect(() => parseFairnessFlags({ maxQueuedPerFlow: '0' })).toThrow('--max-queued-per-flow must be a positive whole number, got "0"');
    expect(() => parseFairnessFlags({ quantum: '1.5' })).toThrow(/--fair-quantum/);
  });

  test('serve with fairness flags serves calls and says so; a bad flag exits 2 with one line naming it', async () => {
    const serve = await startServe([
      ...['--limit', 'add=200/s', '--fair-flow', 'connection', '--level', 'interactive=3:add', '--level', 'rest=1'],
      ...['--no-borrow', 'rest', '--max-queued-per-flow', '50'],
    ]);
    try {
      expect(serve.out()).toMatch(/fair admission, flows by connection/);
      const { client, close } = await connect(serve.port);
      expect(await Promise.all(Array.from({ length: 5 }, (_, k) => client.add(k, 1)))).toEqual([1, 2, 3, 4, 5]);
      close();
    } finally {
      serve.child.kill('SIGTERM');
    }
    expect(await serve.exited).toBe(0);
    const e = await runServe(['--fair-flow', 'ip']);
    expect(e.code).toBe(2);
    expect(e.stderr.trim()).toBe('thrift-queue-limiter: --fair-flow must be address, connection, method or field:N (a Thrift field id), got "ip"');
  });
});
