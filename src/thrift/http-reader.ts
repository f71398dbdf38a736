/**
 * Splits an HTTP/1.1 byte stream into Thrift requests, as `thrift.createWebServer` and Python's
 * `THttpClient` send them: `POST` with a `Content-Length` body holding one unframed message, on a
 * keep-alive connection. Anything else (another method, a chunked body, a head over 16 KiB, a body
 * over the frame bound) is an error the caller answers by closing the connection after a short
 * response, since an HTTP client reads nothing from a Thrift error frame.
 *
 * Responses are written in request order by construction: the server reads the next request only
 * after answering the previous one (the connection pauses its reader), which is what these clients
 * do anyway: one request at a time per connection.
 */
import type { MessageReader } from './message-reader.js';

const MAX_HEAD_BYTES = 16 * 1024;
const HEAD_END = Buffer.from('\r\n\r\n');

/** One request's body and what the response must say. */
export interface HttpRequest {
  /** The body: one unframed Thrift message. */
  body: Buffer;
  /** False when the client asked to close after the response (`Connection: close`, or HTTP/1.0 without keep-alive). */
  keepAlive: boolean;
}

/** Options of an {@link HttpReader}. */
export interface HttpReaderOptions {
  /** Largest body accepted, bytes. */
  maxBodyBytes: number;
  onRequest(request: HttpRequest): void;
  /** A request that cannot be served: `status` is the HTTP status to answer with before closing. */
  onError(error: Error, status: number): void;
}

/** Incremental HTTP/1.1 request reader for one connection. */
export class HttpReader implements MessageReader {
  // Chunks are kept as they come and joined once per head and once per body: joining on every
  // chunk would make a body trickled in byte by byte cost O(n²).
  private chunks: Buffer[] = [];
  private buffered = 0;
  private body: { length: number; keepAlive: boolean } | undefined;
  private paused_ = false;
  private failed = false;
  private started = 0;

  constructor(private readonly options: HttpReaderOptions) {}

  get hasPartialFrame(): boolean {
    return this.buffered > 0;
  }

  get frameStartedAt(): number {
    return this.started;
  }

  push(chunk: Buffer, now = 0): void {
    if (this.failed) return;
    if (this.buffered === 0) this.started = now;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.deliver(now);
  }

  pause(): void {
    this.paused_ = true;
  }

  resume(now: number): void {
    this.paused_ = false;
    this.started = now;
    this.deliver(now);
  }

  private deliver(now: number): void {
    while (!this.paused_ && !this.failed) {
      if (this.body === undefined && !this.readHead()) return;
      const body = this.body!;
      if (this.buffered < body.length) return;
      const joined = this.join();
      const message = joined.subarray(0, body.length);
      this.keep(joined.subarray(body.length));
      this.body = undefined;
      this.started = now;
      this.options.onRequest({ body: message, keepAlive: body.keepAlive });
    }
  }

  /** Parses the request head once it is complete; false while it is not. */
  private readHead(): boolean {
    const joined = this.join();
    const end = joined.indexOf(HEAD_END);
    if (end < 0) {
      if (joined.length > MAX_HEAD_BYTES) this.fail(`HTTP request head over ${MAX_HEAD_BYTES} bytes`, 431);
      return false;
    }
    const lines = joined.subarray(0, end).toString('latin1').split('\r\n');
    this.keep(joined.subarray(end + HEAD_END.length));
    const [method, , version] = lines[0]!.split(' ');
    if (method !== 'POST') return this.fail(`HTTP ${method ?? '?'} request: only POST carries Thrift calls`, 405);
    let length: number | undefined;
    let keepAlive = version === 'HTTP/1.1';
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line
        .slice(colon + 1)
        .trim()
        .toLowerCase();
      if (name === 'content-length') length = /^\d+$/.test(value) ? Number(value) : NaN;
      else if (name === 'transfer-encoding' && value !== 'identity') return this.fail(`HTTP body with Transfer-Encoding ${value}: send a Content-Length`, 411);
      else if (name === 'connection') keepAlive = value.includes('keep-alive') || (version === 'HTTP/1.1' && !value.includes('close'));
    }
    if (length === undefined || Number.isNaN(length)) return this.fail('HTTP request without a valid Content-Length', 411);
    if (length > this.options.maxBodyBytes) return this.fail(`HTTP body of ${length} bytes exceeds maxFrameBytes ${this.options.maxBodyBytes}`, 413);
    this.body = { length, keepAlive };
    return true;
  }

  /** The buffered bytes as one buffer (kept as the only chunk). */
  private join(): Buffer {
    if (this.chunks.length !== 1) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    return this.chunks[0]!;
  }

  private keep(rest: Buffer): void {
    this.chunks = rest.length === 0 ? [] : [rest];
    this.buffered = rest.length;
  }

  private fail(reason: string, status: number): false {
    this.failed = true;
    this.keep(Buffer.alloc(0));
    this.options.onError(new Error(reason), status);
    return false;
  }
}

/** An HTTP/1.1 response carrying `body` (a Thrift reply, or nothing for a oneway call). */
export function httpResponse(body: Buffer | undefined, keepAlive: boolean, status = 200): Buffer {
  const reason = STATUS_TEXT[status] ?? 'Error';
  const length = body?.length ?? 0;
  const head = `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/x-thrift\r\nContent-Length: ${length}\r\nConnection: ${keepAlive ? 'keep-alive' : 'close'}\r\n\r\n`;
  return body === undefined || length === 0 ? Buffer.from(head, 'latin1') : Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  405: 'Method Not Allowed',
  411: 'Length Required',
  413: 'Payload Too Large',
  431: 'Request Header Fields Too Large',
};
