import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { EventHub } from '../events/hub.ts';
import type { Job, JobEvent } from '../job/model.ts';
import { isTerminalEvent } from '../contract/job-events.ts';
import { metrics } from '../observability/metrics.ts';

export interface StreamParams {
  tenant: string;
  jobId: string;
  /** Send events with a sequence number above this. */
  after: number;
  /** Interval of the `:` keep-alive comment, in ms. */
  heartbeatMs: number;
  /** Event types left out of this stream (a job token's stream leaves out the job's own log). Default: none. */
  hide?: ReadonlySet<string>;
  /**
   * Ends the stream whatever the job does: called with `end` when the stream starts, it
   * answers a function called when the stream is over (e.g. the end of a job token's validity,
   * see `whileJobTokenValid`). Default: none.
   */
  endWhen?: (end: () => void) => () => void;
  /** Called once the stream is over, however it ended (the job finished, the client left, the server stops). Default: none. */
  onEnd?: () => void;
}

/**
 * Streams a job's events as SSE. Each event's `id:` is its sequence number, so a reconnecting
 * EventSource resumes with `Last-Event-ID` and gets exactly what it missed. The stream replays
 * the log from `after`, follows it live and closes after the terminal event. Its events come
 * from the process's event hub, which reads the database once for all streams of a job and
 * pushes new events as their statements announce them.
 */
export function streamJobEvents(c: Context, hub: EventHub, p: StreamParams): Response {
  c.header('x-accel-buffering', 'no');
  c.header('cache-control', 'no-cache');
  return streamSSE(c, async (stream) => {
    const subscription = hub.subscribe(p.tenant, p.jobId, p.after);
    const release = streamOpened('job', p.onEnd);
    stream.onAbort(() => {
      subscription.close();
      release();
    });
    const heartbeat = setInterval(() => void stream.write(': keep-alive\n\n').catch(() => {}), p.heartbeatMs);
    // Closing the subscription ends the loop below as a client leaving does.
    const stopEnding = p.endWhen?.(() => subscription.close());
    try {
      while (!stream.aborted) {
        const events = await subscription.next();
        if (events.length === 0) break; // closed: the client went away, or the server stops
        // One write for the batch: a token stream arrives as many small events at once.
        const shown = p.hide ? events.filter((event) => !p.hide!.has(event.type)) : events;
        if (shown.length > 0) await stream.write(shown.map(formatEvent).join(''));
        if (events.some(isTerminalEvent)) break;
      }
    } finally {
      clearInterval(heartbeat);
      stopEnding?.();
      subscription.close();
      release();
    }
  });
}

/** Counts a stream as open until the answer is called (it acts once, however often called), then calls `onEnd`. */
function streamOpened(kind: 'job' | 'tenant', onEnd: (() => void) | undefined): () => void {
  const closed = metrics.sseOpened(kind);
  let ended = false;
  return () => {
    if (ended) return;
    ended = true;
    closed();
    onEnd?.();
  };
}

function formatEvent(event: JobEvent): string {
  // JSON has no raw newlines, so the data is one `data:` line.
  return `id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

export interface TenantStreamParams {
  tenant: string;
  /** Interval of the `:` keep-alive comment, in ms. */
  heartbeatMs: number;
  /** What a message carries for a job. */
  view: (job: Job) => unknown;
  /** Called once the stream is over, however it ended (the client left, the server stops). Default: none. */
  onEnd?: () => void;
}

/**
 * Streams every change to any job of one tenant, for dashboards: `event: job` with the job's
 * current state. Bursts are coalesced (a job reporting progress 50 times a second is read and
 * sent at most once per window), so a client sees the latest state, not every step. After a
 * lost database notification connection, or when the client reads too slowly to keep up,
 * `event: resync` tells the client to list again.
 */
export function streamTenantJobs(c: Context, hub: EventHub, p: TenantStreamParams): Response {
  c.header('x-accel-buffering', 'no');
  c.header('cache-control', 'no-cache');
  return streamSSE(c, async (stream) => {
    // Fed by the hub from one read per window for every tenant stream of this process.
    const subscription = hub.subscribeTenant(p.tenant);
    const release = streamOpened('tenant', p.onEnd);
    stream.onAbort(() => {
      subscription.close();
      release();
    });
    const heartbeat = setInterval(() => void stream.write(': keep-alive\n\n').catch(() => {}), p.heartbeatMs);
    try {
      // A first comment flushes the headers, so the client knows at once that the stream is open.
      await stream.write(': connected\n\n');
      while (!stream.aborted) {
        const { jobs, resync, closed } = await subscription.next();
        if (closed) break;
        let text = resync ? 'event: resync\ndata: {}\n\n' : '';
        for (const job of jobs) text += `event: job\ndata: ${JSON.stringify(p.view(job))}\n\n`;
        await stream.write(text);
      }
    } finally {
      clearInterval(heartbeat);
      subscription.close();
      release();
    }
  });
}
