/**
 * What one connection speaks, told from its first bytes, and the two halves that follow from it:
 * the reader that turns its bytes into messages, and the framing of its replies.
 *
 * Replies arrive here as workers (and `applicationExceptionFrame`) write them: one message behind
 * a 4-byte length prefix, i.e. already framed. The framed transport sends them as they are (the
 * hot path adds nothing); the others drop the prefix and wrap the message as their transport
 * wants: nothing (unframed), a THeader (header), an HTTP response (http).
 */
import { readMessageHeader, type Protocol } from '../thrift/message-header.js';
import { FrameReader } from '../thrift/frame-reader.js';
import { HttpReader, httpResponse } from '../thrift/http-reader.js';
import type { MessageReader } from '../thrift/message-reader.js';
import { UnframedReader } from '../thrift/unframed-reader.js';
import { decodeTHeader, encodeTHeader, type THeaderFrame } from '../thrift/theader.js';

/** Transports the server tells apart. */
export type Transport = 'framed' | 'buffered' | 'header' | 'http';

/** A connection's transport and protocol (undefined for HTTP until its first request's body). */
export interface Wire {
  transport: Transport;
  protocol: Protocol | undefined;
}

/** What a wire's reader hands on. */
export interface WireEvents {
  /** A message (no framing) of `protocol`, and whether the client wants the connection kept (HTTP). */
  onMessage(message: Buffer, protocol: Protocol, keepAlive: boolean): void;
  /** The bytes break the transport's rules; `httpStatus` is set when the client is owed an HTTP error response. */
  onError(reason: string, httpStatus?: number): void;
}

/** One connection's transport, once known. */
export interface WireEndpoint {
  readonly transport: Transport;
  readonly reader: MessageReader;
  /** `frame` (a reply with its length prefix) as this transport's bytes. */
  encode(frame: Buffer, keepAlive: boolean): Buffer;
}

/** Builds the endpoint for `transport`; the protocol is learnt per message (THeader, HTTP) or fixed (`protocol`). */
export function openWire(transport: Transport, protocol: Protocol, maxMessageBytes: number, events: WireEvents): WireEndpoint {
  switch (transport) {
    case 'framed':
      return {
        transport,
        reader: new FrameReader({
          maxFrameBytes: maxMessageBytes,
          onFrame: (frame) => events.onMessage(frame, protocol, true),
          onError: (e) => events.onError(e.message),
        }),
        encode: (frame) => frame,
      };
    case 'buffered':
      return {
        transport,
        reader: new UnframedReader(protocol, {
          maxMessageBytes,
          onMessage: (message) => events.onMessage(message, protocol, true),
          onError: (e) => events.onError(e.message),
        }),
        encode: (frame) => frame.subarray(4),
      };
    case 'header': {
      // The reply mirrors the request's protocol and flags (a client keeps them per connection)
      // and carries its call's seqid, read back from the reply message.
      let request: THeaderFrame | undefined;
      const onFrame = (frame: Buffer): void => {
        try {
          request = decodeTHeader(frame);
        } catch (error) {
          events.onError((error as Error).message);
          return;
        }
        events.onMessage(request.payload, request.protocol, true);
      };
      return {
        transport,
        reader: new FrameReader({ maxFrameBytes: maxMessageBytes, onFrame, onError: (e) => events.onError(e.message) }),
        encode: (frame) => {
          const payload = frame.subarray(4);
          const { seqid } = readMessageHeader(payload, request!.protocol);
          return encodeTHeader({ protocolId: request!.protocolId, flags: request!.flags, seqid }, payload);
        },
      };
    }
    case 'http':
      return {
        transport,
        reader: new HttpReader({
          maxBodyBytes: maxMessageBytes,
          onRequest: ({ body, keepAlive }) => {
            const p = protocolOf(body);
            if (p === undefined) events.onError('HTTP body is not a Thrift message (binary, compact or JSON)', 415);
            else events.onMessage(body, p, keepAlive);
          },
          onError: (e, status) => events.onError(e.message, status),
        }),
        encode: (frame, keepAlive) => httpResponse(frame.subarray(4), keepAlive),
      };
  }
}

/** The protocol an unframed message starts with, if any. */
export function protocolOf(message: Uint8Array): Protocol | undefined {
  if (message.length < 2) return undefined;
  if (message[0] === 0x80 && message[1] === 0x01) return 'binary';
  if (message[0] === 0x82 && (message[1]! & 0x1f) === 1) return 'compact';
  if (message[0] === 0x5b) return 'json';
  return undefined;
}

/** How a wire is named in log lines and metrics, e.g. "unframed binary". */
export function describeWire(wire: Wire): string {
  return `${wire.transport === 'header' ? 'THeader' : wire.transport === 'http' ? 'HTTP' : wire.transport}${wire.protocol === undefined ? '' : ` ${wire.protocol}`}`;
}
