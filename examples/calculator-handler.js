// Handler of the example Calculator service (examples/calculator.thrift), as the threaded server
// loads it in every worker: `createHandler(context)` receives the server's limiters attached in
// this thread (context.limiters, by method name) and returns the handler object.
//
// Methods are promise-style: each declares exactly the IDL's parameters, which is how the
// generated Processor tells promise style from callback style.
import { createRequire } from 'node:module';
import process from 'node:process';

const require = createRequire(import.meta.url);
const { DivideByZero, Point } = require('./gen-nodejs/calculator_types.js');

/** @param {{ limiters: Record<string, unknown>, threadId: number }} context */
export function createHandler(context) {
  const counts = new Map();
  const count = (name) => counts.set(name, (counts.get(name) ?? 0) + 1);

  return {
    add(a, b) {
      count('add');
      return a + b;
    },
    echo(data) {
      count('echo');
      return data;
    },
    ping() {
      count('ping');
    },
    record(event) {
      count('record');
      void event;
    },
    divide(a, b) {
      count('divide');
      if (b === 0) throw new DivideByZero({ message: `cannot divide ${a} by zero` });
      return Math.trunc(a / b);
    },
    translate(p, dx, dy) {
      count('translate');
      return new Point({ x: p.x + dx, y: p.y + dy, label: p.label });
    },
    work(micros) {
      count('work');
      // Burn CPU for about `micros` µs; the checksum keeps the loop from being optimised away.
      const end = process.hrtime.bigint() + BigInt(micros) * 1000n;
      let checksum = 0;
      while (process.hrtime.bigint() < end) {
        for (let i = 0; i < 100; i++) checksum = (checksum * 31 + i) | 0;
      }
      return checksum;
    },
    sleep(ms) {
      count('sleep');
      return new Promise((resolve) => setTimeout(() => resolve(ms), ms));
    },
    fail(how) {
      count('fail');
      switch (how) {
        case 'throw':
          throw new Error('handler failed on purpose');
        case 'reject-null':
          return Promise.reject(null);
        case 'bad-result':
          return 12345; // declared as string
        default:
          return `unknown mode ${how} (thread ${context.threadId})`;
      }
    },
    counters() {
      count('counters');
      return Object.fromEntries(counts);
    },
  };
}
