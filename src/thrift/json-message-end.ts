/**
 * Finds where one TJSONProtocol message ends in a byte stream. A message is a JSON array
 * `[1,"name",type,seqid,{arguments}]`; fields are `"id":{"type":value}`, lists
 * `["type",count,...]`, maps `["ktype","vtype",count,{...}]`, binary is base64 in a string.
 *
 * Unlike binary and compact, JSON delimits every value itself, so the end of the message is the
 * bracket that closes it: the scan matches brackets outside strings instead of skipping fields by
 * type, which finds the same end for every well-formed message. It checks what framing depends
 * on and leaves the rest to the decoder: the five elements of the message array (version 1, a
 * string name, numeric type and seqid, an object of arguments), bracket pairs, string escapes, and
 * no character outside strings that a Thrift JSON writer never emits (so no `true`/`null`).
 *
 * Resumable byte by byte: the state is the open brackets, the lexical mode (in a string, after a
 * backslash, in a `\uXXXX`, in a number) and the element of the message array being read, so each
 * byte is looked at once however the message is cut into chunks.
 */
import { MalformedMessageError, NEED_MORE } from './value-skipper.js';

const NORMAL = 0;
const STRING = 1;
const ESCAPE = 2;
const UNICODE = 3;
const NUMBER = 4;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const COMMA = 0x2c;
const COLON = 0x3a;
const MINUS = 0x2d;
const ONE = 0x31;

/** The elements of the message array, by position. */
const ELEMENTS = ['version', 'name', 'type', 'seqid', 'arguments'] as const;

/** Bytes that may follow a backslash in a JSON string. */
const ESCAPABLE = new Set([...'"\\/bfnrtu'].map((ch) => ch.charCodeAt(0)));

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** Characters of a JSON number after its first: digits, `+-.eE`. */
function isNumberChar(c: number): boolean {
  return isDigit(c) || c === 0x2b || c === MINUS || c === 0x2e || c === 0x65 || c === 0x45;
}

function isHex(c: number): boolean {
  return isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function show(c: number): string {
  return c > 0x20 && c < 0x7f ? `'${String.fromCharCode(c)}'` : `byte 0x${c.toString(16).padStart(2, '0')}`;
}

function malformed(detail: string): MalformedMessageError {
  return new MalformedMessageError(`JSON message: ${detail}`);
}

/** Resumable finder of the end of one TJSONProtocol message (see the module comment). */
export class JsonMessageEnd {
  /** Offset of the next byte to read. */
  pos = 0;
  private depth = 0;
  /** The open brackets, outermost first. */
  private readonly open: Uint8Array;
  private mode = NORMAL;
  private hexLeft = 0;
  /** Which element of the message array is being read, and whether its value has begun. */
  private element = 0;
  private elementStarted = false;

  /** @param maxBrackets most brackets open at once (the message's own array counts). */
  constructor(readonly maxBrackets: number) {
    this.open = new Uint8Array(maxBrackets);
  }

  /** Starts on a message whose first byte is at `at`. */
  begin(at: number): void {
    this.pos = at;
    this.depth = 0;
    this.mode = NORMAL;
    this.element = 0;
    this.elementStarted = false;
  }

  /** Moves the scan position by `delta`, for bytes that moved to another buffer. */
  rebase(delta: number): void {
    this.pos += delta;
  }

  /**
   * Goes on over `b[pos, end)`: the offset just after the message, or NEED_MORE.
   * @throws MalformedMessageError
   */
  resume(b: Uint8Array, end: number): number {
    let p = this.pos;
    while (p < end) {
      const mode = this.mode;
      if (mode === STRING) {
        // The bulk of a message (names, base64 binaries) is string bytes: one tight loop. Raw
        // control characters are let through: Python's writer emits all but \b\f\n\r\t as is.
        for (; p < end; p++) {
          const c = b[p]!;
          if (c === QUOTE || c === BACKSLASH) {
            this.mode = c === QUOTE ? NORMAL : ESCAPE;
            p++;
            break;
          }
        }
        continue;
      }
      const c = b[p]!;
      if (mode === ESCAPE) {
        if (!ESCAPABLE.has(c)) throw malformed(`bad escape \\${String.fromCharCode(c)} in a string`);
        if (c === 0x75) {
          this.mode = UNICODE;
          this.hexLeft = 4;
        } else {
          this.mode = STRING;
        }
        p++;
        continue;
      }
      if (mode === UNICODE) {
        if (!isHex(c)) throw malformed(`bad \\u escape: ${show(c)} is not a hex digit`);
        if (--this.hexLeft === 0) this.mode = STRING;
        p++;
        continue;
      }
      if (mode === NUMBER) {
        if (isNumberChar(c)) {
          if (this.depth === 1 && this.element === 0) throw malformed('version must be 1');
          p++;
          continue;
        }
        this.mode = NORMAL;
      }
      p++;
      if (this.depth === 0) {
        if (c !== OPEN_ARRAY) throw malformed(`a message is a JSON array, got ${show(c)}`);
        this.open[this.depth++] = c;
        continue;
      }
      if (isSpace(c)) continue;
      if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
        this.startValue(c);
        if (this.depth === this.maxBrackets) throw malformed(`nested deeper than ${this.maxBrackets} brackets`);
        this.open[this.depth++] = c;
      } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
        if (this.open[this.depth - 1] !== (c === CLOSE_ARRAY ? OPEN_ARRAY : OPEN_OBJECT)) {
          throw malformed(`${show(c)} closes ${show(this.open[this.depth - 1]!)}`);
        }
        if (--this.depth === 0) {
          if (this.element !== 4 || !this.elementStarted) {
            throw malformed(`the message array ends at its ${ELEMENTS[this.element]} element; it holds ${ELEMENTS.join(', ')}`);
          }
          this.pos = p;
          return p;
        }
      } else if (c === COMMA) {
        if (this.depth === 1) {
          if (!this.elementStarted) throw malformed(`no value for the ${ELEMENTS[this.element]} element`);
          if (++this.element === ELEMENTS.length) throw malformed(`more than ${ELEMENTS.length} elements in the message array`);
          this.elementStarted = false;
        }
      } else if (c === COLON) {
        if (this.open[this.depth - 1] !== OPEN_OBJECT) throw malformed("':' outside an object");
      } else if (c === QUOTE) {
        this.startValue(c);
        this.mode = STRING;
      } else if (c === MINUS || isDigit(c)) {
        this.startValue(c);
        this.mode = NUMBER;
      } else {
        throw malformed(`unexpected ${show(c)}`);
      }
    }
    this.pos = p;
    return NEED_MORE;
  }

  /** Checks a value that begins with `c` directly in the message array against the element it is. */
  private startValue(c: number): void {
    if (this.depth !== 1) return;
    const element = ELEMENTS[this.element]!;
    if (this.elementStarted) throw malformed(`two values in the ${element} element (a ',' is missing)`);
    this.elementStarted = true;
    const ok = element === 'version' ? c === ONE : element === 'name' ? c === QUOTE : element === 'arguments' ? c === OPEN_OBJECT : c === MINUS || isDigit(c);
    if (!ok) {
      const expected = { version: 'the number 1', name: 'a string', type: 'a number', seqid: 'a number', arguments: 'an object' }[element];
      throw malformed(`its ${element} must be ${expected}, got ${show(c)}`);
    }
  }
}
