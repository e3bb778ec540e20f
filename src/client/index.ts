/**
 * `waitless/client`: submit jobs, watch them (SSE → long-poll → polling), verify webhooks.
 * Runs in Node and in browsers: nothing here imports a Node-only module.
 * @packageDocumentation
 */
export { isTerminalEvent, WaitlessClient } from './client.ts';
export type {
  JobLinks,
  JobToken,
  JobTokenRequest,
  JobPage,
  JobView,
  ListOptions,
  RequestOptions,
  ResultOptions,
  RetryOptions,
  SubmitOptions,
  WaitlessClientOptions,
  WatchEvent,
  WatchOptions,
  WatchTransport,
} from './client.ts';
export { parseRetryAfter, WaitlessApiError, WaitlessJobError, WaitlessTimeoutError } from './errors.ts';
export type { ProblemDetails } from './errors.ts';
export { DEFAULT_WEBHOOK_TOLERANCE_SECONDS, verifyWebhook, WebhookDeduplicator, WebhookVerificationError } from './verify.ts';
export type { VerifiedWebhook, VerifyWebhookOptions, WebhookDeduplicatorOptions, WebhookRequest, WebhookVerificationErrorCode } from './verify.ts';
export type { Job, JobEvent, JobEventType } from '../job/model.ts';
export type { JobStatus } from '../contract/statuses.ts';
