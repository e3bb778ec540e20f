/**
 * The state behind `useJob`, as a pure reducer: no React, no I/O. The hook feeds it job views
 * (the `202` body, `GET /v1/jobs/:id`, a cancel's answer) and the events of `client.watch`, and
 * reads it back through {@link selectJob}.
 */
import type { JobView, WatchEvent } from '../client/client.ts';
import { JobUnsuccessfulError } from '../errors.ts';
import type { Job } from '../job/model.ts';
import { foldJobEvent } from '../contract/job-events.ts';
import { isJobStatus, type JobStatus, TERMINAL_STATUSES } from '../contract/statuses.ts';

/** A job's progress report: `{ percent?, stage?, message?, data? }`. */
export type JobProgress = NonNullable<Job['progress']>;

/** Everything the hook knows of one job. */
export interface JobState<Result = unknown> {
  /** The job these fields describe; `undefined` when there is none. */
  id: string | undefined;
  /** The latest view of the job: the last snapshot, brought up to date by the events since. */
  job: JobView<unknown, Result> | undefined;
  status: JobStatus | undefined;
  progress: JobProgress | undefined;
  /** Partial output of the current attempt (the `output` events, appended). */
  partial: string;
  /** The real result, once a snapshot of the completed job has landed. */
  result: Result | undefined;
  /** Whether `result` is the completed job's result (which may itself be `null`). */
  hasResult: boolean;
  /** The definition's instant answer (`job.fallback.result`), until the real result lands. */
  fallback: Result | undefined;
  /** Why there is no result: an API or network error, or a `JobUnsuccessfulError` for a failed / timed-out job. */
  error: Error | undefined;
  /** Sequence number of the latest event applied (the view's `version`); older input is ignored. */
  version: number;
}

/** What changes the state. Every action but `reset` names its job and is ignored for another one. */
export type JobAction =
  /** Start over for a job (or none); a matching `initial` view is applied at once. Same id: kept, but its error is cleared. */
  | { type: 'reset'; id: string | undefined; initial?: JobView | undefined }
  /** A whole view of the job (`GET`, the `202` body, a cancel's answer). */
  | { type: 'snapshot'; id: string; job: JobView }
  /** One event of the job's log, from `client.watch`. */
  | { type: 'event'; id: string; event: WatchEvent }
  /** Reading the job failed. */
  | { type: 'error'; id: string; error: Error };

const TERMINAL: ReadonlySet<string> = TERMINAL_STATUSES;

/** Whether the status is final: `completed`, `failed`, `cancelled`, `timed_out` or `stale`. */
export function isTerminalStatus(status: string | undefined): boolean {
  return status !== undefined && TERMINAL.has(status);
}

/** The state for a job the hook has only just been given: empty, or built from `initial` when it is that job's view. */
export function initialJobState<Result = unknown>(id: string | undefined, initial?: JobView): JobState<Result> {
  const empty: JobState<Result> = {
    id,
    job: undefined,
    status: undefined,
    progress: undefined,
    partial: '',
    result: undefined,
    hasResult: false,
    fallback: undefined,
    error: undefined,
    version: 0,
  };
  return id !== undefined && initial?.id === id ? fromView(empty, initial as JobView<unknown, Result>) : empty;
}

/** The reducer of {@link JobState}. Pure: the same state and action always give the same state. */
export function jobReducer<Result = unknown>(state: JobState<Result>, action: JobAction): JobState<Result> {
  if (action.type === 'reset') {
    if (action.id === state.id && action.id !== undefined) {
      // The same job again (a new client, a remount): keep what is known, forget the last error.
      const kept = state.error === undefined || state.error instanceof JobUnsuccessfulError ? state : { ...state, error: undefined };
      return action.initial?.id === action.id ? jobReducer(kept, { type: 'snapshot', id: action.id, job: action.initial }) : kept;
    }
    return initialJobState<Result>(action.id, action.initial);
  }
  if (action.id !== state.id) return state; // late news of a job the hook has left
  switch (action.type) {
    case 'snapshot':
      // An older view (a cancel answer overtaken by events) would move the state back.
      return action.job.version < state.version ? state : fromView(state, action.job as JobView<unknown, Result>);
    case 'event':
      return applyEvent(state, action.event);
    case 'error':
      return { ...state, error: action.error };
  }
}

function fromView<Result>(state: JobState<Result>, job: JobView<unknown, Result>): JobState<Result> {
  const completed = job.status === 'completed';
  return {
    ...state,
    job,
    status: job.status,
    progress: job.progress,
    partial: job.output ?? '',
    result: completed ? job.result : undefined,
    hasResult: completed,
    fallback: completed ? undefined : job.fallback?.result,
    error: job.status === 'failed' || job.status === 'timed_out' ? new JobUnsuccessfulError(job) : undefined,
    version: job.version,
  };
}

function applyEvent<Result>(state: JobState<Result>, event: WatchEvent): JobState<Result> {
  if (event.seq <= state.version) return state; // covered by a snapshot or applied already
  // The fields the log tells of, folded as every other reader of the log folds them.
  const folded = foldJobEvent(
    { status: state.status ?? 'queued', done: false, attempt: state.job?.attempt ?? 0, progress: state.progress, output: state.partial, version: state.version, updatedAt: state.job?.updatedAt ?? '' },
    event,
  );
  const status = event.type === 'status' && typeof event.data.status === 'string' && isJobStatus(event.data.status) ? folded.status : state.status;
  const progress = folded.progress;
  const job = state.job && {
    ...state.job,
    status: status ?? state.job.status,
    attempt: folded.attempt,
    progress,
    output: folded.output,
    version: event.seq,
    updatedAt: folded.updatedAt,
    done: isTerminalStatus(status),
  };
  return { ...state, job, status, progress, partial: folded.output, version: event.seq };
}

/** What `useJob` returns of the state (its callbacks aside). */
export interface JobSnapshot<Result = unknown> {
  /**
   * The latest view of the job (`undefined` until one is known). While the job is stale its
   * `result`, `fallback` and `output` are removed, as they describe the subject the user left.
   */
  job: JobView<unknown, Result> | undefined;
  /** `queued`, `running`, `completed`, `failed`, `cancelled`, `timed_out` or `stale`; `undefined` until known. */
  status: JobStatus | undefined;
  /** The latest progress report, if any. */
  progress: JobProgress | undefined;
  /** Partial output of the current attempt so far (`''` while stale). */
  partial: string;
  /** The job's result once it completed and was fetched; `undefined` before, and always while stale. */
  result: Result | undefined;
  /** The instant answer (`fallback(input)`) until the real result lands; `undefined` while stale. */
  fallback: Result | undefined;
  /** Why no result will come: an API / network error, or the job failed or timed out. */
  error: Error | undefined;
  /** The user moved on: the hook saw this id with another `subject` than the one it was bound to. */
  isStale: boolean;
  /** The job reached a final status. */
  isDone: boolean;
}

/**
 * The state as the component sees it: the fields of `id`'s job (empty for another), with every
 * subject-specific field withheld when the job is stale.
 */
export function selectJob<Result>(state: JobState<Result>, id: string | undefined, stale: boolean): JobSnapshot<Result> {
  const own = state.id === id ? state : initialJobState<Result>(id);
  const isDone = own.job?.done === true || isTerminalStatus(own.status);
  if (!stale) {
    return {
      job: own.job,
      status: own.status,
      progress: own.progress,
      partial: own.partial,
      result: own.hasResult ? own.result : undefined,
      fallback: own.hasResult ? undefined : own.fallback,
      error: own.error,
      isStale: false,
      isDone,
    };
  }
  let job = own.job;
  if (job) {
    const { result: _result, fallback: _fallback, ...rest } = job;
    job = { ...rest, output: '' };
  }
  return { job, status: own.status, progress: own.progress, partial: '', result: undefined, fallback: undefined, error: own.error, isStale: true, isDone };
}

/**
 * Binds each job id to the subject it was first seen with. Seen later with another subject
 * (including `undefined` for a bound string, or the reverse), the id is stale for good: the
 * user moved on, and whatever the job brings back is no longer for the view it would land in.
 */
export class SubjectBindings {
  readonly #bound = new Map<string, string | undefined>();
  readonly #stale = new Set<string>();

  /** Records that `id` is shown for `subject` now; answers whether the id is stale. Idempotent. */
  observe(id: string, subject: string | undefined): boolean {
    if (!this.#bound.has(id)) this.#bound.set(id, subject);
    else if (this.#bound.get(id) !== subject) this.#stale.add(id);
    return this.#stale.has(id);
  }

  /** Whether `id` was seen with another subject than its own. */
  isStale(id: string): boolean {
    return this.#stale.has(id);
  }

  /** The subject `id` is bound to (`undefined` also when unbound). */
  subjectOf(id: string): string | undefined {
    return this.#bound.get(id);
  }
}
