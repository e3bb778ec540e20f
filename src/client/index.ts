/**
 * `waitless/client`: submit jobs, watch them (SSE → long-poll → polling), verify webhooks.
 * Runs in Node and in browsers: nothing here imports a Node-only module.
 * @packageDocumentation
 */
export { isTerminalEvent, SUBMIT_BODY_FIELDS, WaitlessClient } from './client.ts';
export type {
  JobChange,
  JobChangesOptions,
  JobLinks,
  JobToken,
  JobTokenRequest,
  JobPage,
  JobView,
  ListOptions,
  RequestOptions,
  ResultOptions,
  RetryOptions,
  RotateSecretOptions,
  SubmitOptions,
  SubmittedJob,
  Caller,
  WaitlessClientOptions,
  WatchEvent,
  WatchOptions,
  WatchTransport,
  WebhookAttempt,
  WebhookDelivery,
  WebhookEndpoint,
  WebhookEndpointRequest,
  WebhookEvent,
  WebhookSecretInfo,
} from './client.ts';
export { WaitlessApiError } from './errors.ts';
export { JobUnsuccessfulError, ResultTimeoutError, WaitlessError } from '../errors.ts';
export type { WaitlessErrorCode } from '../errors.ts';
export { parseRetryAfter } from '../contract/retry-after.ts';
export type { ProblemDetails } from './errors.ts';
export { DEFAULT_WEBHOOK_TOLERANCE_SECONDS, verifyWebhook, WebhookDeduplicator, WebhookVerificationError } from './verify.ts';
export type { VerifiedWebhook, VerifyWebhookOptions, WebhookDeduplicatorOptions, WebhookRequest, WebhookSecrets, WebhookVerificationErrorCode } from './verify.ts';
export type { Job, JobEvent, JobEventType, JobLogEntry, JobLogLine } from '../job/model.ts';
export type { JobStatus } from '../contract/statuses.ts';
