/**
 * The errors Waitless throws at its callers, one family: every one is a {@link WaitlessError}
 * with a stable `code`, so callers branch on `error.code` (or `instanceof`) rather than on a
 * message, and the HTTP layer maps each code to its problem+json answer in one table
 * (src/http/problem.ts). Handler-facing errors (src/job/errors.ts) and the client's
 * (`WaitlessApiError`, and the `result()` errors below, shared by engine and client) belong to
 * the family too. Browser-safe: only types are imported.
 */
import type { z } from 'zod';
import type { Job } from './job/model.ts';

/** Every code a {@link WaitlessError} can carry. Stable: new ones may be added, none renamed. */
export type WaitlessErrorCode =
  | 'unknown_job'
  | 'invalid_input'
  | 'invalid_option'
  | 'invalid_webhook'
  | 'webhook_check_unavailable'
  | 'idempotency_conflict'
  | 'supersede_conflict'
  | 'not_recoverable'
  | 'invalid_cursor'
  | 'limit_exceeded'
  | 'job_not_found'
  | 'job_unsuccessful'
  | 'result_timeout'
  | 'api_error'
  | 'database_unavailable'
  | 'non_retryable'
  | 'lease_lost'
  | 'job_cancelled'
  | 'job_timeout'
  | 'worker_shutdown'
  | 'priority_above_cap'
  | 'rate_limited'
  | 'too_many_streams'
  | 'too_many_endpoints';

/** The base of every error Waitless throws at a caller. */
export abstract class WaitlessError extends Error {
  /** Machine-readable and stable, e.g. `unknown_job`, `invalid_input`, `idempotency_conflict`. */
  abstract readonly code: WaitlessErrorCode;
}

/** True when `error` is one of Waitless's own, with a stable `code`. */
export const isWaitlessError = (error: unknown): error is WaitlessError => error instanceof WaitlessError;

/** An option is out of range (a submit's priority or run time, a job token's lifetime, …). */
export class InvalidOptionError extends WaitlessError {
  override name = 'InvalidOptionError';
  readonly code = 'invalid_option';
}

/** The submit's scheduling options are out of range (priority, run time, keys). */
export class InvalidSubmitOptionError extends InvalidOptionError {
  override name = 'InvalidSubmitOptionError';
}

/** The job cannot be recovered from its current status (it is queued or completed). */
export class NotRecoverableError extends WaitlessError {
  override name = 'NotRecoverableError';
  readonly code = 'not_recoverable';
  readonly job: Job;
  constructor(job: Job) {
    super(`Job ${job.id} is ${job.status}: only a failed, timed-out, cancelled or stuck (running) job can be recovered.`);
    this.job = job;
  }
}

/** The job name is not registered. */
export class UnknownJobError extends WaitlessError {
  override name = 'UnknownJobError';
  readonly code = 'unknown_job';
  readonly jobName: string;
  constructor(jobName: string) {
    super(`No job named "${jobName}" is defined.`);
    this.jobName = jobName;
  }
}

/**
 * The job's webhook cannot be used (unsafe URL, unknown event): code `invalid_webhook`; or its
 * host could not be checked right now (a DNS outage): code `webhook_check_unavailable`.
 */
export class InvalidWebhookError extends WaitlessError {
  override name = 'InvalidWebhookError';
  readonly code: 'invalid_webhook' | 'webhook_check_unavailable';
  /** True when the URL could not be checked right now (a DNS outage): ask again later. */
  readonly temporary: boolean;
  constructor(message: string, temporary = false) {
    super(message);
    this.temporary = temporary;
    this.code = temporary ? 'webhook_check_unavailable' : 'invalid_webhook';
  }
}

/** The input does not match the job's schema. */
export class InputValidationError extends WaitlessError {
  override name = 'InputValidationError';
  readonly code = 'invalid_input';
  readonly jobName: string;
  readonly issues: z.core.$ZodIssue[];
  constructor(jobName: string, issues: z.core.$ZodIssue[]) {
    super(`The input of job "${jobName}" is invalid: ${issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
    this.jobName = jobName;
    this.issues = issues;
  }
}

/** An idempotency key is reused with a different request. */
export class IdempotencyConflictError extends WaitlessError {
  override name = 'IdempotencyConflictError';
  readonly code = 'idempotency_conflict';
  readonly key: string;
  readonly jobId: string;
  constructor(key: string, jobId: string) {
    super(`Idempotency-Key "${key}" was already used for a different request (job ${jobId}). Use a new key for a new request.`);
    this.key = key;
    this.jobId = jobId;
  }
}

/** A job with the same supersede key is in flight and the policy is `reject`. */
export class SupersedeConflictError extends WaitlessError {
  override name = 'SupersedeConflictError';
  readonly code = 'supersede_conflict';
  readonly key: string;
  readonly runningJobId: string;
  constructor(key: string, runningJobId: string) {
    super(`Job ${runningJobId} with key "${key}" is still in flight; wait for it, or cancel it first.`);
    this.key = key;
    this.runningJobId = runningJobId;
  }
}

/** A list cursor that this API did not return. */
export class InvalidCursorError extends WaitlessError {
  override name = 'InvalidCursorError';
  readonly code = 'invalid_cursor';
  constructor() {
    super('The cursor is not one this API returned. Start again without it.');
  }
}

/**
 * The database did not answer: no pooled connection came free within the pool's wait, or the
 * server could not be reached. Worth retrying shortly (HTTP 503 with `Retry-After`).
 */
export class DatabaseUnavailableError extends WaitlessError {
  override name = 'DatabaseUnavailableError';
  readonly code = 'database_unavailable';
  /** What happened, e.g. `ECONNREFUSED` or "no database connection came free in time". */
  readonly reason: string;
  constructor(reason: string, options?: { cause?: unknown }) {
    super(`The database did not answer (${reason}); try again shortly.`, options);
    this.reason = reason;
  }
}

/** No job with this id exists for the tenant. Thrown by `result()`. */
export class JobNotFoundError extends WaitlessError {
  override name = 'JobNotFoundError';
  readonly code = 'job_not_found';
  readonly jobId: string;
  constructor(jobId: string) {
    super(`No job with id "${jobId}" exists for this tenant.`);
    this.jobId = jobId;
  }
}

/** A job ended without a delivered result: it `failed`, was `cancelled`, `timed_out` or `stale`. Thrown by `result()`. */
export class JobUnsuccessfulError extends WaitlessError {
  override name = 'JobUnsuccessfulError';
  readonly code = 'job_unsuccessful';
  /** The job as it ended (its `error` says why). */
  readonly job: Job;
  /** How it ended. */
  readonly jobStatus: 'failed' | 'cancelled' | 'timed_out' | 'stale';
  constructor(job: Job) {
    const jobStatus = job.status as JobUnsuccessfulError['jobStatus'];
    super(`Job ${job.id} (${job.name}) ${jobStatus.replace('_', ' ')}${job.error?.message ? `: ${job.error.message}` : '.'}`);
    this.job = job;
    this.jobStatus = jobStatus;
  }
}

/** `result()` gave up waiting: the job was still unfinished when its `timeout` ran out. */
export class ResultTimeoutError extends WaitlessError {
  override name = 'ResultTimeoutError';
  readonly code = 'result_timeout';
  readonly jobId: string;
  readonly timeoutMs: number;
  constructor(jobId: string, timeoutMs: number) {
    super(`Job ${jobId} did not finish within ${timeoutMs} ms. It keeps running: call result() again, or cancel() it.`);
    this.jobId = jobId;
    this.timeoutMs = timeoutMs;
  }
}

/** A size as people read it: `1 MiB`, `64 KiB`, or a number of bytes. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1_048_576 && bytes % 1_048_576 === 0) return `${bytes / 1_048_576} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

/**
 * Something a job sent or made passed one of its size limits (its definition's `limits`, or
 * the engine's): the input at submit (HTTP 413), or the result, output, a progress report or
 * its events while it ran (the job then fails with this error, without retries: another
 * attempt would pass the limit again). The message names the limit and its value.
 */
export class LimitExceededError extends WaitlessError {
  override name = 'LimitExceededError';
  readonly code = 'limit_exceeded';
  /** The option that set the limit, e.g. `limits.output`. */
  readonly limit: string;
  /** The limit's value (bytes, or events for `limits.events`). */
  readonly max: number;
  /**
   * @param what what passed it, e.g. "the job's output".
   * @param unit `bytes` for a size, `events` for a count.
   */
  constructor(what: string, limit: string, max: number, unit: 'bytes' | 'events' = 'bytes', advice = '') {
    const value = unit === 'bytes' ? formatBytes(max) : `${max} events`;
    super(`${what} passed its limit of ${value} (${limit}).${advice ? ` ${advice}` : ''}`);
    this.limit = limit;
    this.max = max;
  }
}

/** A submit asks for a priority above the cap of the API key it came with. */
export class PriorityAboveCapError extends WaitlessError {
  override name = 'PriorityAboveCapError';
  readonly code = 'priority_above_cap';
  readonly priority: number;
  readonly maxPriority: number;
  constructor(priority: number, maxPriority: number) {
    super(`This API key may give a job a priority of at most ${maxPriority}; the submit asked for ${priority}. Submit with a priority ≤ ${maxPriority}, or use a key with a higher cap.`);
    this.priority = priority;
    this.maxPriority = maxPriority;
  }
}

/**
 * A per-tenant limit was reached: too many submits per second (`rate_limited`, retry after
 * `retryAfterMs`), too many event streams open with one key (`too_many_streams`), or too many
 * webhook endpoints registered (`too_many_endpoints`). `limit` is the limit that was reached.
 */
export class TenantLimitError extends WaitlessError {
  override name = 'TenantLimitError';
  readonly code: 'rate_limited' | 'too_many_streams' | 'too_many_endpoints';
  readonly limit: number;
  /** When it is worth trying again (rate limits only). */
  readonly retryAfterMs: number | undefined;
  constructor(code: TenantLimitError['code'], message: string, limit: number, retryAfterMs?: number) {
    super(message);
    this.code = code;
    this.limit = limit;
    this.retryAfterMs = retryAfterMs;
  }
}
