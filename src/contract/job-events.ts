/**
 * A job's event log, read: what an SSE message of `GET /v1/jobs/:id/events` holds, and how each
 * event changes the job it describes. The client's `watch`, React's `useJob` and the dashboard
 * fold events with {@link foldJobEvent}, so they agree on what a job looks like after them.
 * Browser-safe.
 */
import type { JobEvent, JobEventType } from '../job/model.ts';
import { isJobStatus, type JobStatus, TERMINAL_STATUSES } from './statuses.ts';

const EVENT_TYPES: ReadonlySet<string> = new Set<JobEventType>(['status', 'progress', 'output', 'step', 'log']);

/** Whether an event is the last of its job's log: a `status` event with a terminal status. */
export function isTerminalEvent(event: JobEvent): boolean {
  return event.type === 'status' && typeof event.data.status === 'string' && (TERMINAL_STATUSES as ReadonlySet<string>).has(event.data.status);
}

/**
 * The job event an SSE message carries (`data` is the event as JSON; `id`, its sequence
 * number, stands in when the JSON has none); `undefined` for anything else.
 */
export function parseJobEvent(data: string, id?: string): JobEvent | undefined {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return undefined;
  }
  if (!value || typeof value !== 'object') return undefined;
  const event = value as Partial<JobEvent>;
  if (typeof event.type !== 'string' || !EVENT_TYPES.has(event.type)) return undefined;
  const seq = typeof event.seq === 'number' ? event.seq : Number(id);
  if (!Number.isInteger(seq) || seq < 1) return undefined;
  const eventData = event.data && typeof event.data === 'object' && !Array.isArray(event.data) ? event.data : {};
  return { seq, type: event.type, data: eventData, at: typeof event.at === 'string' ? event.at : '' };
}

/** What the event log tells of a job: the fields {@link foldJobEvent} keeps up to date. */
export interface FoldedJob {
  status: JobStatus;
  done: boolean;
  attempt: number;
  /** The latest progress report (an event's `data`, as sent). */
  progress?: object | undefined;
  /** The current attempt's output: `output` events' `text`, appended; a new attempt starts afresh. */
  output: string;
  /** The sequence number of the latest event folded in. */
  version: number;
  /** When the latest event was written. */
  updatedAt: string;
  /** The result a `completed` status event carries. */
  result?: unknown;
  /** The error a `failed`, `cancelled`, `timed_out` or `stale` status event (or a retry) carries. */
  error?: unknown;
}

/**
 * The job after one more event of its log. Events at or below `job.version` (covered by a
 * snapshot, or seen already) change nothing. Any other fields of `job` are kept as they are.
 */
export function foldJobEvent<T extends FoldedJob>(job: T, event: JobEvent): T {
  if (event.seq <= job.version) return job;
  const data = event.data;
  const next: T = { ...job, version: event.seq, updatedAt: event.at || job.updatedAt };
  switch (event.type) {
    case 'status': {
      if (typeof data.status !== 'string' || !isJobStatus(data.status)) break;
      next.status = data.status;
      next.done = TERMINAL_STATUSES.has(data.status);
      if (typeof data.attempt === 'number') next.attempt = data.attempt;
      // Each attempt writes its output afresh (the server's `output` restarts with it too).
      if (data.status === 'running') next.output = '';
      if (data.status === 'completed') next.result = data.result;
      if (data.error !== undefined) next.error = data.error;
      break;
    }
    case 'progress':
      next.progress = data;
      break;
    case 'output':
      if (typeof data.text === 'string') next.output = job.output + data.text;
      break;
    default:
      break; // `step` and `log` events are shown by those who list them; they change none of these fields
  }
  return next;
}
