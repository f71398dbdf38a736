// Thrift messages written by real Thrift stacks, for the tests of the wire pieces: the npm thrift
// library (the generated Calculator client plus hand-written calls holding every container kind)
// and Debian's python3-thrift (test/fixtures/py_wires.py).
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import thrift from 'thrift';
export { mulberry32 } from '../../bench/lib/prng.js';

const require = createRequire(import.meta.url);
const run = promisify(execFile);
const T = thrift.Thrift.Type;
const { CALL, REPLY } = thrift.Thrift.MessageType;

/** Debian's interpreter: python3-thrift is installed for it, not for another python3 on PATH. */
export const PYTHON = '/usr/bin/python3';
const PY_WIRES = fileURLToPath(new URL('../fixtures/py_wires.py', import.meta.url));

/** The wire formats of unframed messages; binary-nonstrict has no version word. */
export type MessageKind = 'binary' | 'binary-nonstrict' | 'compact' | 'json';
/** Every {@link MessageKind}. */
export const MESSAGE_KINDS: MessageKind[] = ['binary', 'binary-nonstrict', 'compact', 'json'];

/** The scanner protocol of a kind. */
export function protocolOf(kind: MessageKind): 'binary' | 'compact' | 'json' {
  return kind === 'binary-nonstrict' ? 'binary' : kind;
}

/** The writing side of the npm library's protocols (the part used here). */
export interface Writer {
  writeMessageBegin(name: string, type: number, seqid: number): void;
  writeMessageEnd(): void;
  writeStructBegin(name: string): void;
  writeStructEnd(): void;
  writeFieldBegin(name: string, type: number, id: number): void;
  writeFieldEnd(): void;
  writeFieldStop(): void;
  writeListBegin(type: number, size: number): void;
  writeListEnd(): void;
  writeSetBegin(type: number, size: number): void;
  writeSetEnd(): void;
  writeMapBegin(k: number, v: number, size: number): void;
  writeMapEnd(): void;
  writeString(s: string): void;
  writeBinary(b: Buffer): void;
  writeByte(n: number): void;
  writeI16(n: number): void;
  writeI32(n: number): void;
  writeI64(n: number): void;
  writeBool(b: boolean): void;
  writeDouble(d: number): void;
}

type ProtocolClass = new (transport: unknown) => Writer;

interface GeneratedClient {
  _seqid: number;
  send_echo(data: Buffer): void;
  send_add(a: number, b: number): void;
  send_record(event: string): void;
  send_ping(): void;
  send_counters(): void;
  send_divide(a: number, b: number): void;
}

const Calculator = require(fileURLToPath(new URL('../../examples/gen-nodejs/Calculator.js', import.meta.url))) as {
  Client: new (transport: unknown, protocol: ProtocolClass) => GeneratedClient;
};

function protocolClass(kind: MessageKind): ProtocolClass {
  const { TBinaryProtocol, TCompactProtocol, TJSONProtocol } = thrift as unknown as Record<string, ProtocolClass>;
  if (kind === 'binary-nonstrict') {
    const Binary = TBinaryProtocol as unknown as new (transport: unknown, strictRead: boolean, strictWrite: boolean) => Writer;
    return class NonStrictBinary extends Binary {
      constructor(transport: unknown) {
        super(transport, false, false);
      }
    };
  }
  return kind === 'compact' ? TCompactProtocol! : kind === 'json' ? TJSONProtocol! : TBinaryProtocol!;
}

/**
 * Writes messages with the npm library over a TBufferedTransport (unframed) or a TFramedTransport:
 * `write` gets a protocol, the generated client and a flush; each flush yields one message.
 */
export function written(
  kind: MessageKind,
  write: (p: Writer, client: GeneratedClient, flush: () => void) => void,
  transportKind: 'buffered' | 'framed' = 'buffered',
): Buffer[] {
  const out: Buffer[] = [];
  const Transport = transportKind === 'framed' ? thrift.TFramedTransport : thrift.TBufferedTransport;
  const transport = new Transport(undefined, (b?: Buffer) => out.push(Buffer.from(b!)));
  const P = protocolClass(kind);
  const client = new Calculator.Client(transport, P);
  client._seqid = 41;
  write(new P(transport), client, () => transport.flush());
  return out;
}

/** A call whose arguments hold every container kind, nested, and every scalar kind. */
function rich(p: Writer): void {
  p.writeMessageBegin('lookup', CALL, 7);
  p.writeStructBegin('lookup_args');
  p.writeFieldBegin('tags', T.LIST, 1);
  p.writeListBegin(T.STRING, 20);
  for (let i = 0; i < 20; i++) p.writeString(`tag${i}-é"\\`);
  p.writeListEnd();
  p.writeFieldEnd();
  p.writeFieldBegin('flags', T.MAP, 2);
  p.writeMapBegin(T.I32, T.BOOL, 2);
  p.writeI32(1);
  p.writeBool(true);
  p.writeI32(2);
  p.writeBool(false);
  p.writeMapEnd();
  p.writeFieldEnd();
  p.writeFieldBegin('nested', T.STRUCT, 3);
  p.writeStructBegin('Nested');
  p.writeFieldBegin('on', T.BOOL, 1);
  p.writeBool(true);
  p.writeFieldEnd();
  p.writeFieldBegin('x', T.DOUBLE, 20);
  p.writeDouble(-1.5e300);
  p.writeFieldEnd();
  p.writeFieldBegin('inner', T.STRUCT, 21);
  p.writeStructBegin('Inner');
  p.writeFieldBegin('ids', T.SET, 1);
  p.writeSetBegin(T.I64, 3);
  for (const id of [0, -1, 2 ** 52]) p.writeI64(id);
  p.writeSetEnd();
  p.writeFieldEnd();
  p.writeFieldStop();
  p.writeStructEnd();
  p.writeFieldEnd();
  p.writeFieldStop();
  p.writeStructEnd();
  p.writeFieldEnd();
  p.writeFieldBegin('byName', T.MAP, 4);
  p.writeMapBegin(T.STRING, T.LIST, 2);
  for (const name of ['a', 'b']) {
    p.writeString(name);
    p.writeListBegin(T.STRUCT, 2);
    for (let i = 0; i < 2; i++) {
      p.writeStructBegin('Item');
      p.writeFieldBegin('n', T.I16, 1);
      p.writeI16(-i);
      p.writeFieldEnd();
      p.writeFieldBegin('b', T.BYTE, 2);
      p.writeByte(-128);
      p.writeFieldEnd();
      p.writeFieldStop();
      p.writeStructEnd();
    }
    p.writeListEnd();
  }
  p.writeMapEnd();
  p.writeFieldEnd();
  p.writeFieldBegin('blob', T.STRING, 5);
  p.writeBinary(Buffer.from(Array.from({ length: 256 }, (_, i) => i)));
  p.writeFieldEnd();
  p.writeFieldBegin('empty', T.LIST, 6);
  p.writeListBegin(T.MAP, 0);
  p.writeListEnd();
  p.writeFieldEnd();
  p.writeFieldBegin('big', T.I64, 300);
  p.writeI64(-1234567890123);
  p.writeFieldEnd();
  p.writeFieldStop();
  p.writeStructEnd();
  p.writeMessageEnd();
}

/** A reply of `counters`: a map<string, i64> in the result struct. */
function countersReply(p: Writer): void {
  p.writeMessageBegin('counters', REPLY, 3);
  p.writeStructBegin('counters_result');
  p.writeFieldBegin('success', T.MAP, 0);
  p.writeMapBegin(T.STRING, T.I64, 2);
  p.writeString('echo');
  p.writeI64(12);
  p.writeString('add');
  p.writeI64(2 ** 40);
  p.writeMapEnd();
  p.writeFieldEnd();
  p.writeFieldStop();
  p.writeStructEnd();
  p.writeMessageEnd();
}

/** Calls of the example service and hand-written messages, one Buffer per message. */
export function libraryMessages(kind: MessageKind): Buffer[] {
  const calls = written(kind, (p, client, flush) => {
    client.send_echo(Buffer.from('\x00\xff[]{}"\\ echo'.repeat(8), 'latin1'));
    client.send_add(-5, 2 ** 31 - 1);
    client.send_record('é "quoted" \\ \n\t €');
    client.send_ping();
    client.send_counters();
    client.send_divide(1, 0);
    rich(p);
    flush();
  });
  // A fresh protocol: a protocol object records the seqid of the first message it writes and
  // warns on the next (it is meant to write one message).
  return [
    ...calls,
    ...written(kind, (p, _client, flush) => {
      countersReply(p);
      flush();
    }),
  ];
}

/**
 * A call whose field 1 holds `depth` lists nested in one another around one i32: the i32 is
 * nested in depth + 1 containers (the argument struct counts).
 */
export function nestedLists(kind: MessageKind, depth: number): Buffer {
  return written(kind, (p, _client, flush) => {
    p.writeMessageBegin('deep', CALL, 1);
    p.writeStructBegin('deep_args');
    p.writeFieldBegin('v', T.LIST, 1);
    for (let i = 1; i < depth; i++) p.writeListBegin(T.LIST, 1);
    p.writeListBegin(T.I32, 1);
    p.writeI32(5);
    for (let i = 0; i < depth; i++) p.writeListEnd();
    p.writeFieldEnd();
    p.writeFieldStop();
    p.writeStructEnd();
    p.writeMessageEnd();
    flush();
  })[0]!;
}

/** A call whose field 1 holds `depth` structs nested in one another around one i32 field. */
export function nestedStructs(kind: MessageKind, depth: number): Buffer {
  return written(kind, (p, _client, flush) => {
    p.writeMessageBegin('deep', CALL, 1);
    p.writeStructBegin('deep_args');
    for (let i = 0; i < depth; i++) {
      p.writeFieldBegin('s', T.STRUCT, 1);
      p.writeStructBegin('S');
    }
    p.writeFieldBegin('n', T.I32, 1);
    p.writeI32(5);
    p.writeFieldEnd();
    for (let i = 0; i < depth; i++) {
      p.writeFieldStop();
      p.writeStructEnd();
      p.writeFieldEnd();
    }
    p.writeFieldStop();
    p.writeStructEnd();
    p.writeMessageEnd();
    flush();
  })[0]!;
}

/** Runs test/fixtures/py_wires.py and parses what it prints. */
export async function pythonWires<T>(...args: string[]): Promise<T> {
  const { stdout } = await run(PYTHON, [PY_WIRES, ...args], { maxBuffer: 16 << 20 });
  return JSON.parse(stdout) as T;
}

/** Unframed messages written by python3-thrift, by kind. */
export async function pythonMessages(): Promise<Record<MessageKind, Buffer[]>> {
  const hex = await pythonWires<Record<MessageKind, string[]>>('messages');
  return Object.fromEntries(MESSAGE_KINDS.map((kind) => [kind, hex[kind].map((h) => Buffer.from(h, 'hex'))])) as Record<MessageKind, Buffer[]>;
}
