/**
 * The key of a call on the threaded server's I/O thread: its connection's remote address, the
 * connection, the method, an argument field read from the frame, or a function of the call. Fair
 * admission groups calls into flows by it (`fairness.flow`, `--fair-flow`), and a per-key limit
 * picks the bucket of a call by it (`limits.<method>.perKey`): one type, one validator and one
 * function, so both mean the same thing (the flags' text form: `parseCallKey`, cli/args.ts).
 */
import { readArgField } from '../thrift/arg-field.js';
import type { MessageHeader, Protocol } from '../thrift/message-header.js';

/** What the threaded server knows of a call when it computes the call's key. */
export interface FlowCall {
  /** Method name. */
  method: string;
  /** Remote IP address of the connection ('' if unknown). */
  remoteAddress: string;
  /** Server-unique id of the connection. */
  connectionId: number;
  /** The message header (name, type, seqid). */
  header: MessageHeader;
  /** The whole request frame (no length prefix), for keys read from the arguments. */
  frame: Buffer;
}

/**
 * How a call's key is computed: `'address'` (the connection's remote IP), `'connection'`,
 * `'method'` (useful on a per-key limit of `'*'`), `{ field: N }` (argument N of the call, a
 * string or integer field read from the frame, such as a tenant id; calls without it share the
 * key `''`), or a function of the call.
 */
export type CallKeySpec = 'address' | 'connection' | 'method' | { field: number } | ((call: FlowCall) => string);

/**
 * The call key under its name in `fairness.flow` (calls are grouped into flows by it): an alias
 * of {@link CallKeySpec}, kept because it is public.
 */
export type FlowKeySpec = CallKeySpec;

/**
 * The call key under its name in a per-key limit's `perKey` (it picks the call's bucket): an
 * alias of {@link CallKeySpec}, kept because it is public.
 */
export type PerKeySpec = CallKeySpec;

/** What {@link callKey} reads of the call's connection (the server's `Connection`). */
export interface KeyedConnection {
  readonly id: number;
  readonly socket: { readonly remoteAddress?: string | undefined };
}

/**
 * The key of one call. A key function's result is turned into a string; if it throws, so does this.
 * @param frame the request frame (no length prefix), for `{ field: N }` and key functions.
 */
export function callKey(spec: CallKeySpec, connection: KeyedConnection, header: MessageHeader, frame: Buffer, protocol: Protocol): string {
  if (spec === 'address') return connection.socket.remoteAddress ?? '';
  if (spec === 'connection') return String(connection.id);
  if (spec === 'method') return header.name;
  if (typeof spec === 'function') {
    const call: FlowCall = { method: header.name, remoteAddress: connection.socket.remoteAddress ?? '', connectionId: connection.id, header, frame };
    return String(spec(call));
  }
  // Calls without the field (or with another type in it) share one key.
  return readArgField(frame, protocol, spec.field) ?? '';
}

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

/**
 * Validates a {@link CallKeySpec}; errors name the option (`name`, e.g. `fairness.flow`).
 * @throws TypeError for a value of another kind, RangeError for a field id out of range.
 */
export function resolveCallKeySpec(name: string, value: unknown): CallKeySpec {
  if (value === 'address' || value === 'connection' || value === 'method' || typeof value === 'function') return value as CallKeySpec;
  if (value !== null && typeof value === 'object' && 'field' in value) {
    const field = value.field;
    if (typeof field !== 'number' || !Number.isInteger(field) || field < -32768 || field > 32767) {
      throw new RangeError(`${name}.field must be a Thrift field id (a whole number in -32768..32767), got ${describe(field)}`);
    }
    return { field };
  }
  throw new TypeError(`${name} must be 'address', 'connection', 'method', { field: N } or a function, got ${describe(value)}`);
}
