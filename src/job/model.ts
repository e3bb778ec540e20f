import type { JobError } from './errors.ts';
import type { ProgressUpdate } from './definition.ts';
import type { JobStatus } from '../contract/statuses.ts';

/** A job as every reader sees it: API, long-poll, SSE, CLI. */
export interface Job<Input = unknown, Result = unknown> {
  id: string;
  name: string;
  status: JobStatus;
  /** True once the status is terminal; then exactly one of `result` / `error` is set. */
  done: boolean;
  input: Input;
  result?: Result;
  /**
   * The definition's instant answer (`fallback(input)`), computed without AI at submit. Present
   * until the job completes; then `result` replaces it.
   */
  fallback?: { result: Result; provisional: true };
  error?: JobError;
  progress?: ProgressUpdate;
  /** Partial output written so far (`ctx.write`). */
  output: string;
  attempt: number;
  maxAttempts: number;
  /** Sequence number of the latest event; grows with every change. Use as `?since=`. */
  version: number;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  updatedAt: string;
  /** When a queued job becomes claimable (later than `createdAt` while a retry waits or when it was delayed). */
  runAt: string;
  /** Higher runs first. */
  priority: number;
  /** The job's steps (`ctx.step`), in the order they started, with their timings. */
  steps?: JobStep[];
  /** What the job was asked about, as submitted; `relevant(context)` is checked against it at delivery. */
  context?: unknown;
  /** Token usage of the job's model calls (`ctx.recordUsage`), in total and per model. */
  usage?: JobUsage;
  /** The latest-wins key it was submitted with. */
  supersedeKey?: string;
  /** The flow-control key it runs under, and how many of its jobs may run at once. */
  concurrency?: { key: string; limit: number };
}

/** One step of a job, as its status shows it. */
export interface JobStep {
  name: string;
  status: 'running' | 'completed' | 'failed';
  /** The attempt that last ran it. */
  attempt: number;
  startedAt: string;
  finishedAt?: string;
  durationMs?: number;
  error?: string;
}

/** Token counts, summed over the job's model calls. */
export interface JobUsage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  byModel: Record<string, { promptTokens: number; completionTokens: number; totalTokens: number; calls: number }>;
}

/** Kinds of job event. The terminal one is a `status` event whose status is terminal. */
export type JobEventType = 'status' | 'progress' | 'output' | 'step' | 'log';

/** One line of a job's own log (`ctx.log`): the `data` of a `log` event. */
export interface JobLogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  message: string;
  /** The attempt that wrote it. */
  attempt: number;
  /** What the handler passed with the line (JSON). */
  data?: unknown;
  /** Only on the line that closes an attempt's log when lines were dropped: how many. */
  dropped?: number;
}

/** A log line as `GET /v1/jobs/:id/logs` answers it: with its event's sequence number and time. */
export interface JobLogEntry extends JobLogLine {
  seq: number;
  at: string;
}

/** One entry of a job's event log. `seq` starts at 1 and grows by one per event. */
export interface JobEvent {
  seq: number;
  type: JobEventType;
  data: Record<string, unknown>;
  at: string;
}
