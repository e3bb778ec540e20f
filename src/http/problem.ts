import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import {
  InputValidationError,
  LimitExceededError,
  NotRecoverableError,
  PriorityAboveCapError,
  SupersedeConflictError,
  TenantLimitError,
  WaitlessError,
  type WaitlessErrorCode,
} from '../errors.ts';

/** An RFC 9457 problem detail. Extra members carry machine-readable specifics. */
export interface Problem {
  /** A URI naming the problem type; relative URIs point into the API docs. */
  type?: string;
  title: string;
  detail?: string;
  [extension: string]: unknown;
}

/** Answers with `application/problem+json`; never an HTML page, never a stack trace. */
export function problem(c: Context, status: ContentfulStatusCode, body: Problem, headers: Record<string, string> = {}): Response {
  const payload = { type: body.type ?? 'about:blank', status, ...body, instance: new URL(c.req.url).pathname };
  return new Response(JSON.stringify(payload), {
    status,
    headers: { 'content-type': 'application/problem+json', 'cache-control': 'no-store', ...headers },
  });
}

/** How one error code is answered over HTTP. */
interface ProblemSpec {
  status: ContentfulStatusCode;
  /** Problem type URI. Default: `about:blank`. */
  type?: string;
  title: string;
  /** Extension members beyond `detail` (the error's message). */
  members?: (error: WaitlessError, base: string) => Record<string, unknown>;
  headers?: Record<string, string> | ((error: WaitlessError) => Record<string, string>);
}

/** The members of a tenant limit's problem: the limit reached. */
const limitMembers = (error: WaitlessError) => (error instanceof TenantLimitError ? { limit: error.limit } : {});

/**
 * Every engine error code and its answer: the one place where codes become statuses and
 * problem types. Every code must be listed (a new one is a compile error until it is): `null`
 * for those a request cannot meet or that are not the caller's fault, which answer 500.
 */
export const PROBLEMS: Record<WaitlessErrorCode, ProblemSpec | null> = {
  unknown_job: { status: 404, type: '/problems/unknown-job', title: 'Unknown job' },
  job_not_found: { status: 404, type: '/problems/job-not-found', title: 'Job not found' },
  invalid_input: {
    status: 422,
    type: '/problems/invalid-input',
    title: 'Invalid input',
    members: (error) => ({
      errors: error instanceof InputValidationError ? error.issues.map((i) => ({ path: ['input', ...i.path].join('.'), message: i.message, code: i.code })) : [],
    }),
  },
  invalid_option: { status: 422, type: '/problems/invalid-option', title: 'Invalid option' },
  invalid_webhook: { status: 422, type: '/problems/unsafe-webhook-url', title: 'Webhook refused' },
  webhook_check_unavailable: { status: 503, title: 'Service Unavailable', headers: { 'retry-after': '5' } },
  idempotency_conflict: { status: 422, type: '/problems/idempotency-key-reused', title: 'Idempotency-Key reused' },
  supersede_conflict: {
    status: 409,
    type: '/problems/key-in-flight',
    title: 'A job with this key is in flight',
    members: (error, base) =>
      error instanceof SupersedeConflictError ? { runningJobId: error.runningJobId, runningJob: `${base}/v1/jobs/${error.runningJobId}` } : {},
  },
  not_recoverable: {
    status: 409,
    type: '/problems/not-recoverable',
    title: 'Not recoverable',
    members: (error) => (error instanceof NotRecoverableError ? { jobStatus: error.job.status } : {}),
  },
  invalid_cursor: { status: 400, type: '/problems/invalid-query', title: 'Invalid cursor' },
  // At submit, the input over its job's limit; a running job's other limits fail the job instead.
  limit_exceeded: {
    status: 413,
    type: '/problems/limit-exceeded',
    title: 'Content Too Large',
    members: (error) => (error instanceof LimitExceededError ? { limit: error.limit, max: error.max } : {}),
  },
  // Thrown by waitless.result(), which no route calls.
  job_unsuccessful: null,
  result_timeout: null,
  database_unavailable: { status: 503, type: '/problems/database-unavailable', title: 'Service Unavailable', headers: { 'retry-after': '5' } },
  // The client's: an answer of the API that is not a success.
  api_error: null,
  // Thrown by or to job handlers, never at an HTTP caller.
  non_retryable: null,
  lease_lost: null,
  job_cancelled: null,
  job_timeout: null,
  worker_shutdown: null,
  // Permission, not a malformed body: the same submit is fine with another key.
  priority_above_cap: {
    status: 403,
    type: '/problems/priority-above-cap',
    title: 'Priority above the key’s cap',
    members: (error) => (error instanceof PriorityAboveCapError ? { priority: error.priority, maxPriority: error.maxPriority } : {}),
  },
  rate_limited: {
    status: 429,
    type: '/problems/rate-limited',
    title: 'Too Many Requests',
    members: limitMembers,
    // Whole seconds, at least 1: a client retrying at once would only be refused again.
    headers: (error) => ({ 'retry-after': String(Math.max(1, Math.ceil((error instanceof TenantLimitError ? (error.retryAfterMs ?? 1000) : 1000) / 1000))) }),
  },
  too_many_streams: { status: 429, type: '/problems/too-many-streams', title: 'Too Many Streams', members: limitMembers, headers: { 'retry-after': '5' } },
  too_many_endpoints: { status: 409, type: '/problems/too-many-endpoints', title: 'Too many webhook endpoints', members: limitMembers },
};

/** The problem+json answer for an engine error, or undefined when it is the server's fault (500). */
export function problemFor(c: Context, error: unknown, base: string): Response | undefined {
  if (!(error instanceof WaitlessError)) return undefined;
  const spec = PROBLEMS[error.code];
  if (!spec) return undefined;
  const headers = typeof spec.headers === 'function' ? spec.headers(error) : spec.headers;
  return problem(c, spec.status, { ...(spec.type ? { type: spec.type } : {}), title: spec.title, detail: error.message, ...spec.members?.(error, base) }, headers);
}
