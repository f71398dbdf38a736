import thrift from 'thrift';
import { describe, expect, test } from 'vitest';
import { readArgField } from '../../src/thrift/arg-field.js';

const T = thrift.Thrift.Type;

interface Protocol {
  writeMessageBegin(name: string, type: number, seqid: number): void;
  writeMessageEnd(): void;
  writeStructBegin(name: string): void;
  writeStructEnd(): void;
  writeFieldBegin(name: string, type: number, id: number): void;
  writeFieldEnd(): void;
  writeFieldStop(): void;
  writeListBegin(type: number, size: number): void;
  writeListEnd(): void;
  writeMapBegin(k: number, v: number, size: number): void;
  writeMapEnd(): void;
  writeString(s: string): void;
  writeI16(n: number): void;
  writeI32(n: number): void;
  writeI64(n: number): void;
  writeBool(b: boolean): void;
  writeDouble(d: number): void;
}

/** A call frame (no length prefix) written by the npm thrift library, with fields of every kind before the interesting ones. */
function frame(kind: 'binary' | 'compact' | 'json'): Buffer {
  let out: Buffer | undefined;
  const transport = new thrift.TFramedTransport(undefined, (buf?: Buffer) => {
    out = buf;
  });
  const Proto = { binary: thrift.TBinaryProtocol, compact: thrift.TCompactProtocol, json: thrift.TJSONProtocol }[kind];
  const p = new Proto(transport) as unknown as Protocol;
  p.writeMessageBegin('lookup', thrift.Thrift.MessageType.CALL, 7);
  p.writeStructBegin('lookup_args');
  p.writeFieldBegin('tags', T.LIST, 1);
  p.writeListBegin(T.STRING, 20);
  for (let i = 0; i < 20; i++) p.writeString(`tag${i}`);
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
  p.writeDouble(1.5);
  p.writeFieldEnd();
  p.writeFieldStop();
  p.writeStructEnd();
  p.writeFieldEnd();
  p.writeFieldBegin('ok', T.BOOL, 4);
  p.writeBool(false);
  p.writeFieldEnd();
  p.writeFieldBegin('big', T.I64, 5);
  p.writeI64(-1234567890123);
  p.writeFieldEnd();
  p.writeFieldBegin('tenant', T.STRING, 6);
  p.writeString('tenant-é');
  p.writeFieldEnd();
  p.writeFieldBegin('delta', T.I32, 7);
  p.writeI32(-5);
  p.writeFieldEnd();
  p.writeFieldBegin('far', T.I16, 300);
  p.writeI16(12);
  p.writeFieldEnd();
  p.writeFieldStop();
  p.writeStructEnd();
  p.writeMessageEnd();
  (transport as unknown as { flush(): void }).flush();
  return out!.subarray(4);
}

describe.each(['binary', 'compact', 'json'] as const)('readArgField, %s protocol', (protocol) => {
  test('reads a string or integer argument after skipping lists, maps, nested structs, bools and doubles', () => {
    const f = frame(protocol);
    expect(readArgField(f, protocol, 6)).toBe('tenant-é');
    expect(readArgField(f, protocol, 5)).toBe('-1234567890123');
    expect(readArgField(f, protocol, 7)).toBe('-5');
    expect(readArgField(f, protocol, 300)).toBe('12');
  });

  test('returns undefined for an absent field, a field of another type, and a truncated frame', () => {
    const f = frame(protocol);
    expect(readArgField(f, protocol, 42)).toBeUndefined();
    expect(readArgField(f, protocol, 3)).toBeUndefined();
    expect(readArgField(f, protocol, 1)).toBeUndefined();
    expect(readArgField(f.subarray(0, f.length - 20), protocol, 6)).toBeUndefined();
    expect(readArgField(f.subarray(0, 5), protocol, 6)).toBeUndefined();
  });
});
