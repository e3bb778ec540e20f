import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { Waitless } from '../engine.ts';
import { isJobStatus, isTerminal } from '../job/states.ts';

export interface StreamParams {
  tenant: string;
  jobId: string;
  /** Send events with a sequence number above this. */
  after: number;
  /** Interval of the `:` keep-alive comment, in ms. */
  heartbeatMs: number;
}

/** A backstop re-read for a notification lost to a database reconnect. */
const BACKSTOP_MS = 5000;

/**
 * Streams a job's events as SSE. Each event's `id:` is its sequence number, so a reconnecting
 * EventSource resumes with `Last-Event-ID` and gets exactly what it missed. The stream replays
 * the log from `after`, follows it live and closes after the terminal event.
 */
export function streamJobEvents(c: Context, waitless: Waitless, p: StreamParams): Response {
  c.header('x-accel-buffering', 'no');
  c.header('cache-control', 'no-cache');
  return streamSSE(c, async (stream) => {
    let last = p.after;
    let wake: () => void = () => {};
    let pending = false;
    const unsubscribe = waitless.notifier.onJob(p.jobId, () => {
      pending = true;
      wake();
    });
    stream.onAbort(() => wake());
    const heartbeat = setInterval(() => void stream.write(': keep-alive\n\n').catch(() => {}), p.heartbeatMs);
    try {
      while (!stream.aborted) {
        pending = false;
        const events = await waitless.store.events(p.tenant, p.jobId, last);
        let finished = false;
        for (const event of events) {
          await stream.writeSSE({ id: String(event.seq), event: event.type, data: JSON.stringify(event) });
          last = event.seq;
          const status = event.data.status;
          if (event.type === 'status' && typeof status === 'string' && isJobStatus(status) && isTerminal(status)) finished = true;
        }
        if (finished) break;
        if (events.length > 0 || pending) continue;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, BACKSTOP_MS);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    } finally {
      clearInterval(heartbeat);
      unsubscribe();
    }
  });
}
