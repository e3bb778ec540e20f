/**
 * Waitless: long-running AI jobs behind an asynchronous request-reply API.
 * @packageDocumentation
 */
export { createWaitless, DEFAULT_TENANT } from './engine.ts';
export type { JobTokenOptions, ResultOptions, SubmitOptions, Waitless, WaitlessOptions, WebhookAdmin } from './engine.ts';
export {
  IdempotencyConflictError,
  InputValidationError,
  InvalidCursorError,
  InvalidOptionError,
  InvalidSubmitOptionError,
  InvalidWebhookError,
  isWaitlessError,
  DatabaseUnavailableError,
  JobNotFoundError,
  JobUnsuccessfulError,
  LimitExceededError,
  NotRecoverableError,
  PriorityAboveCapError,
  ResultTimeoutError,
  SupersedeConflictError,
  TenantLimitError,
  UnknownJobError,
  WaitlessError,
} from './errors.ts';
export type { WaitlessErrorCode } from './errors.ts';
export { MigrationError } from './store/migrate.ts';
export type { JobTokenScope, MintedJobToken } from './access/job-tokens.ts';
export type { ApiKeyRole, CreateApiKeyOptions, CreatedApiKey } from './store/api-keys.ts';
export { DEFAULT_LIMITS, defineJob, isJobDefinition } from './job/definition.ts';
export type { AnyJobDefinition, ChildContext, ChildTask, JobContext, JobDefinition, JobLimits, JobLog, JobLogLevel, JobLogLimits, JobOptions, ProgressUpdate, StepContext, TokenUsage } from './job/definition.ts';
export { SiblingFailedError } from './job/structured.ts';
export type { Duration } from './job/duration.ts';
export { JobCancelledError, JobTimeoutError, LeaseLostError, NonRetryableError, WorkerShutdownError } from './job/errors.ts';
export type { JobError } from './job/errors.ts';
export type { Job, JobEvent, JobEventType, JobLogEntry, JobLogLine, JobStep, JobUsage } from './job/model.ts';
export type { RetryPolicy } from './job/retry.ts';
export type { PruneCounts, PruneOptions, PruneReport, RetentionOptions, RetentionRule } from './maintenance/retention.ts';
export { JOB_STATUSES, isTerminal } from './contract/statuses.ts';
export type { JobStatus } from './contract/statuses.ts';
export type { JobPage, SubmitOutcome, SupersedePolicy } from './store/job-store.ts';
export { createHttpApp, createHttpHandler } from './http/app.ts';
export type { HttpOptions } from './http/app.ts';
export type { TenantLimits } from './http/rate-limit.ts';
export type { AuthMode } from './http/auth.ts';
export { createNodeListener } from './http/node.ts';
export type { NodeListenerOptions } from './http/node.ts';
export type { WorkerOptions } from './worker/worker.ts';
export type { EventHubOptions } from './events/hub.ts';
export type { Worker } from './worker/worker.ts';
export { DEFAULT_RETRY_SCHEDULE } from './webhooks/dispatcher.ts';
export type { DispatcherOptions } from './webhooks/dispatcher.ts';
export { generateWebhookSecret, signWebhook } from './webhooks/signing.ts';
export { checkWebhookUrl, UnsafeUrlError } from './webhooks/ssrf.ts';
export type { SsrfPolicy } from './webhooks/ssrf.ts';
export type { WebhookDelivery, WebhookEndpoint, WebhookSecretInfo } from './store/webhook-store.ts';
