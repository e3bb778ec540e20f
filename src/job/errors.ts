import { WaitlessError } from '../errors.ts';

/** Thrown by a handler to fail the job at once, without the retries its policy allows. */
export class NonRetryableError extends WaitlessError {
  override name = 'NonRetryableError';
  readonly code = 'non_retryable';
}

/** The reason a handler's signal aborts when another worker has taken its job over. */
export class LeaseLostError extends WaitlessError {
  override name = 'LeaseLostError';
  readonly code = 'lease_lost';
  constructor(jobId: string) {
    super(`Job ${jobId}: this worker no longer holds the job's lease (it expired, or the job was cancelled or finished); its writes are refused.`);
  }
}

/** The reason a handler's signal aborts when the job is cancelled. */
export class JobCancelledError extends WaitlessError {
  override name = 'JobCancelledError';
  readonly code = 'job_cancelled';
  constructor(jobId: string) {
    super(`Job ${jobId} was cancelled.`);
  }
}

/** The reason a handler's signal aborts when the job runs past its time budget. */
export class JobTimeoutError extends WaitlessError {
  override name = 'JobTimeoutError';
  readonly code = 'job_timeout';
}

/** The reason a handler's signal aborts when its worker shuts down; the job runs again elsewhere. */
export class WorkerShutdownError extends WaitlessError {
  override name = 'WorkerShutdownError';
  readonly code = 'worker_shutdown';
  constructor() {
    super('The worker is shutting down; the job was handed back to the queue.');
  }
}

/** What a failed job reports as its `error`. */
export interface JobError {
  /** Stable machine-readable code, e.g. `handler_error`, `timed_out`, `worker_lost`, `cancelled`. */
  code: string;
  /** What happened and, where we know it, what to do about it. */
  message: string;
  /** The error's class name when it came from a handler. */
  name?: string;
}

/** Turns whatever a handler threw into a {@link JobError}, never leaking a stack trace. */
export function toJobError(thrown: unknown, code = 'handler_error'): JobError {
  if (thrown instanceof Error) return { code, name: thrown.name, message: thrown.message || thrown.name };
  return { code, message: typeof thrown === 'string' ? thrown : 'The handler threw a non-Error value.' };
}
