import { describe, expect, test } from 'vitest';
import { parseLimit } from '../../src/cli/limit-spec.js';

describe('--limit METHOD=SPEC', () => {
  test.each([
    ['work=100/s', ['work', { rate: 100, periodMs: 1000 }]],
    ['*=1000/s,burst=50', ['*', { rate: 1000, periodMs: 1000, burst: 50 }]],
    ['report=600/min,window', ['report', { maxCalls: 600, periodMs: 60_000 }]],
    ['slow=2.5/1500ms', ['slow', { rate: 2.5, periodMs: 1500 }]],
    ['export=concurrency=4', ['export', { concurrency: 4 }]],
    ['work=adaptive', ['work', { adaptive: {} }]],
    ['work=adaptive,min=2,max=200', ['work', { adaptive: { minLimit: 2, maxLimit: 200 } }]],
    ['work=adaptive,initial=8,max=50', ['work', { adaptive: { initialLimit: 8, maxLimit: 50 } }]],
    ['add=10/s,per=address', ['add', { rate: 10, periodMs: 1000, perKey: 'address' }]],
    ['add=10/s,per=connection', ['add', { rate: 10, periodMs: 1000, perKey: 'connection' }]],
    ['*=100/s,per=method', ['*', { rate: 100, periodMs: 1000, perKey: 'method' }]],
    ['add=10/s,burst=5,per=field:1,slots=10000', ['add', { rate: 10, periodMs: 1000, burst: 5, perKey: { field: 1 }, slots: 10_000 }]],
    ['add=10/s,per=address,slots=512,probeWindow=4', ['add', { rate: 10, periodMs: 1000, perKey: 'address', slots: 512, probeWindow: 4 }]],
  ])('%s', (text, expected) => {
    expect(parseLimit(text)).toEqual(expected);
  });

  test.each([
    ['work', /expected METHOD=SPEC/],
    ['work=100', /expected RATE\/PERIOD/],
    ['work=100/fortnight', /unknown period 'fortnight'/],
    ['work=100/s,burst=x', /unknown setting 'burst=x'/],
    ['work=100/s,window,burst=2', /burst does not apply to a fixed window/],
    ['work=concurrency=2,burst=1', /takes no other settings/],
    ['add=10/s,per=ip', /--limit "add=10\/s,per=ip": per must be address, connection, method or field:N \(a Thrift field id\), got "ip"/],
    ['add=10/s,per=field:x', /per must be .*, got "field:x"/],
    ['add=10/s,per=field:40000', /per must be .*field:N \(a Thrift field id\), got "field:40000"/],
    ['add=10/s,slots=100', /slots=N applies to a per-key limit only/],
    ['add=10/s,probeWindow=4', /probeWindow=N applies to a per-key limit only/],
    ['add=10/s,per=address,probeWindow=x', /unknown setting 'probeWindow=x' \(burst=N, window, per=KEY, slots=N or probeWindow=N\)/],
    ['add=10/s,per=address,capacity=100', /--limit "add=10\/s,per=address,capacity=100": capacity=N was renamed slots=N/],
    ['add=10/min,window,per=address', /a per-key limit is a token bucket, not a fixed window/],
    ['add=concurrency=2,per=address', /takes no other settings/],
    ['work=adaptive,burst=2', /unknown setting 'burst=2' of an adaptive limit \(min=N, max=N or initial=N\)/],
    ['work=adaptive,min=x', /unknown setting 'min=x'/],
  ])('rejects %s naming the flag', (text, message) => {
    expect(() => parseLimit(text)).toThrow(RangeError);
    expect(() => parseLimit(text)).toThrow(message);
  });
});
