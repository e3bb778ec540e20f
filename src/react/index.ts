/**
 * `waitless/react`: React hooks for Waitless jobs in the browser.
 *
 * - {@link useSubmitJob} submits once per intent (a double click is one request; a retry after
 *   a failure reuses the idempotency key) and can keep the job across reloads.
 * - {@link useJob} follows a job: the instant fallback at once, status, progress and partial
 *   output as they happen (SSE → long-poll → polling), then the real result in place; a job
 *   whose subject the user has left is never applied.
 *
 * React (≥ 18) is an optional peer dependency of `waitless`, imported only by this entry point.
 * Browser-safe: nothing here imports a Node module.
 * @packageDocumentation
 */
export { useJob } from './use-job.ts';
export type { UseJobOptions, UseJobResult } from './use-job.ts';
export { useSubmitJob } from './use-submit-job.ts';
export type { SubmitCallOptions, UseSubmitJobOptions, UseSubmitJobResult } from './use-submit-job.ts';
export { initialJobState, isTerminalStatus, jobReducer, selectJob, SubjectBindings } from './job-state.ts';
export type { JobAction, JobProgress, JobSnapshot, JobState } from './job-state.ts';
export { SubmitScope } from './submit-scope.ts';
export type { PersistOptions, SubmitFunction, SubmitSnapshot, SubmittedJob } from './submit-scope.ts';
export { fingerprintOf, intentFor, memoryPersistence, storagePersistence, urlPersistence } from './persistence.ts';
export type { PersistedJob, Persistence, StorageLike, SubmitIntent, UrlLike } from './persistence.ts';
export { WaitlessApiError } from '../client/errors.ts';
export { JobUnsuccessfulError } from '../errors.ts';
export type { JobView, WatchEvent } from '../client/client.ts';
export type { JobStatus } from '../contract/statuses.ts';
