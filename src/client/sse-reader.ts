/**
 * A Server-Sent Events parser that follows the WHATWG "event stream interpretation" rules:
 * lines end in CRLF, LF or CR (also split across chunks), a leading BOM is dropped, `:` lines are
 * comments, a field without a colon has an empty value, one space after the colon is removed,
 * `data` lines are joined with LF, and a blank line dispatches the event (only when it has data).
 *
 * It uses nothing but strings, so it runs in browsers and Node alike. Feed it decoded text
 * (`TextDecoder` with `{ stream: true }`) chunk by chunk.
 */

/** One dispatched SSE message. */
export interface SseMessage {
  /** The `event:` field; `"message"` when the event named none. */
  event: string;
  /** The `data:` lines joined with `\n`. */
  data: string;
  /**
   * The last event id the stream has set (the `id:` of this event, or of an earlier one: as in
   * `EventSource`, an id persists until another `id:` field changes it). `""` when none.
   */
  lastEventId: string;
  /** The `id:` field of this very event, when it carried one. */
  id?: string;
  /** The `retry:` field, in ms, when this event carried one. */
  retry?: number;
}

export class SseParser {
  #buffer = '';
  #first = true;
  /** The previous chunk ended in CR: an LF at the start of the next one belongs to it. */
  #pendingCr = false;
  #event = '';
  #data: string[] = [];
  #id: string | undefined;
  #retry: number | undefined;
  #lastEventId = '';
  /** The number of comment lines (`: keep-alive`) seen so far. */
  comments = 0;

  /** Parses one chunk of text and returns the messages it completed. */
  push(chunk: string): SseMessage[] {
    if (this.#first && chunk.length > 0) {
      this.#first = false;
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
    }
    if (this.#pendingCr && chunk.startsWith('\n')) chunk = chunk.slice(1);
    this.#pendingCr = false;
    this.#buffer += chunk;
    const out: SseMessage[] = [];
    let start = 0;
    for (let i = 0; i < this.#buffer.length; i++) {
      const ch = this.#buffer.charCodeAt(i);
      if (ch !== 0x0a && ch !== 0x0d) continue;
      const line = this.#buffer.slice(start, i);
      if (ch === 0x0d) {
        if (i + 1 < this.#buffer.length) {
          if (this.#buffer.charCodeAt(i + 1) === 0x0a) i++;
        } else {
          this.#pendingCr = true;
        }
      }
      start = i + 1;
      const message = this.#line(line);
      if (message) out.push(message);
    }
    this.#buffer = this.#buffer.slice(start);
    return out;
  }

  /**
   * The stream ended. Per the spec, an event not terminated by a blank line is discarded, so
   * this returns nothing; it resets the parser's per-event state.
   */
  end(): void {
    this.#buffer = '';
    this.#reset();
  }

  #reset(): void {
    this.#event = '';
    this.#data = [];
    this.#id = undefined;
    this.#retry = undefined;
  }

  #line(line: string): SseMessage | undefined {
    if (line === '') return this.#dispatch();
    if (line.startsWith(':')) {
      this.comments++;
      return undefined;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        this.#event = value;
        break;
      case 'data':
        this.#data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) {
          this.#id = value;
          this.#lastEventId = value;
        }
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.#retry = Number(value);
        break;
      default:
        break; // unknown fields are ignored
    }
    return undefined;
  }

  #dispatch(): SseMessage | undefined {
    if (this.#data.length === 0) {
      this.#reset();
      return undefined;
    }
    const message: SseMessage = { event: this.#event || 'message', data: this.#data.join('\n'), lastEventId: this.#lastEventId };
    if (this.#id !== undefined) message.id = this.#id;
    if (this.#retry !== undefined) message.retry = this.#retry;
    this.#reset();
    return message;
  }
}
