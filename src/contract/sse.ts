/**
 * Reading a `text/event-stream` body with `fetch`: the one SSE reader of the client SDK, the
 * dashboard and the tests. Parsing follows the WHATWG rules through `eventsource-parser`; this
 * adds the stream plumbing (decoding, releasing the body). `EventSource` is not used because it
 * cannot send an `Authorization` header. Browser-safe.
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser';

/** One dispatched SSE message. */
export interface SseMessage {
  /** The `event:` field; `undefined` when the message named none (a plain `message`). */
  event: string | undefined;
  /** The `data:` lines joined with `\n`. */
  data: string;
  /** The `id:` field of this message, when it carried one. */
  id: string | undefined;
}

/** Options of {@link readSse}. */
export interface ReadSseOptions {
  /** Hears of every chunk's size in bytes (keep-alives included), e.g. to arm an idle timer. Default: none. */
  onBytes?: (bytes: number) => void;
  /** Hears every comment line (`: keep-alive`), without its colon and surrounding spaces. Default: none. */
  onComment?: (comment: string) => void;
}

/**
 * The messages of an SSE body, as they complete. Ends with the stream; throws when reading it
 * fails (a dropped connection, an abort of the request's signal). The body is released however
 * the iteration ends.
 */
export async function* readSse(body: ReadableStream<Uint8Array>, options: ReadSseOptions = {}): AsyncGenerator<SseMessage, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const ready: SseMessage[] = [];
  const parser = createParser({
    onEvent: (message: EventSourceMessage) => ready.push({ event: message.event, data: message.data, id: message.id }),
    onComment: options.onComment && ((comment: string) => options.onComment?.(comment.trim())),
  });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      options.onBytes?.(value.byteLength);
      parser.feed(decoder.decode(value, { stream: true }));
      while (ready.length > 0) yield ready.shift()!;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
