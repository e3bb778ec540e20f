import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { Waitless } from '../engine.ts';
import type { Job } from '../job/model.ts';
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

export interface TenantStreamParams {
  tenant: string;
  /** Interval of the `:` keep-alive comment, in ms. */
  heartbeatMs: number;
  /** What a message carries for a job. */
  view: (job: Job) => unknown;
  /** Changes arriving within this window are sent together, each job once, at its latest state. Default: `100` ms. */
  coalesceMs?: number;
}

/**
 * Streams every change to any job of one tenant, for dashboards: `event: job` with the job's
 * current state. Bursts are coalesced (a job reporting progress 50 times a second is read and
 * sent at most once per window), so a client sees the latest state, not every step. After a
 * lost database notification connection, `event: resync` tells the client to list again.
 */
export function streamTenantJobs(c: Context, waitless: Waitless, p: TenantStreamParams): Response {
  c.header('x-accel-buffering', 'no');
  c.header('cache-control', 'no-cache');
  const coalesceMs = p.coalesceMs ?? 100;
  return streamSSE(c, async (stream) => {
    const changed = new Set<string>();
    let resync = false;
    let wake: () => void = () => {};
    const unsubscribe = waitless.notifier.onAnyJob((jobId) => {
      changed.add(jobId);
      wake();
    });
    const unsubscribeResync = waitless.notifier.onResync(() => {
      resync = true;
      wake();
    });
    stream.onAbort(() => wake());
    const heartbeat = setInterval(() => void stream.write(': keep-alive\n\n').catch(() => {}), p.heartbeatMs);
    try {
      // A first comment flushes the headers, so the client knows at once that the stream is open.
      await stream.write(': connected\n\n');
      while (!stream.aborted) {
        if (changed.size === 0 && !resync) await new Promise<void>((resolve) => (wake = resolve));
        wake = () => {};
        if (stream.aborted) break;
        await new Promise((resolve) => setTimeout(resolve, coalesceMs));
        if (stream.aborted) break;
        if (resync) {
          resync = false;
          await stream.writeSSE({ event: 'resync', data: '{}' });
        }
        const ids = [...changed];
        changed.clear();
        for (const id of ids) {
          // Notifications carry no tenant; reading through the tenant's scope drops everyone else's jobs.
          const job = await waitless.store.get(p.tenant, id).catch((error: unknown) => {
            // A failed read (the database going away as the server stops) ends this stream;
            // the client reconnects and lists again, so nothing is lost.
            waitless.logger.warn({ err: error }, 'job stream read failed; closing the stream');
            return null;
          });
          if (job === null) return;
          if (job) await stream.writeSSE({ event: 'job', data: JSON.stringify(p.view(job)) });
        }
      }
    } finally {
      clearInterval(heartbeat);
      unsubscribe();
      unsubscribeResync();
    }
  });
}
