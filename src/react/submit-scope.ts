/**
 * The state behind `useSubmitJob`, without React: one {@link SubmitScope} per persisted key
 * (shared by every component using that key, and surviving their unmounts), or one per hook
 * instance when nothing is persisted. A scope sends at most one submit at a time.
 */
import type { JobView } from '../client/client.ts';
import { intentFor, type Persistence, storagePersistence, urlPersistence } from './persistence.ts';

/** What a submit resolves with: the job (the `202` body) and, when the app's endpoint mints one, a job token. */
export interface SubmittedJob<Input = unknown, Result = unknown> {
  job: JobView<Input, Result>;
  /** A job token (`wlt_…`) that reads (and maybe cancels) this job; pass it to `useJob`. */
  token?: string;
}

/** Sends one submit. Called with the intent's idempotency key, and a signal that aborts on `reset()`. */
export type SubmitFunction<Input = unknown, Result = unknown> = (
  input: Input,
  context: { idempotencyKey: string; signal: AbortSignal },
) => Promise<SubmittedJob<Input, Result>>;

/** The state of a scope, as `useSubmitJob` returns it. Replaced (never mutated) on every change. */
export interface SubmitSnapshot<Input = unknown, Result = unknown> {
  /** A submit is on its way: further calls return its promise and send nothing. */
  pending: boolean;
  /** The job as the submit answered it (the `202` body); `undefined` after a reload (only its id and token are kept). */
  job: JobView<Input, Result> | undefined;
  /** The submitted job's id (also after a reload, when persisted). */
  jobId: string | undefined;
  /** The job token returned with it, if any. */
  token: string | undefined;
  /** The subject the job was submitted for. */
  subject: string | undefined;
  /** Why the last submit failed (a `WaitlessApiError` for an API answer); cleared by the next submit. */
  error: Error | undefined;
}

interface Inflight<Input, Result> {
  promise: Promise<SubmittedJob<Input, Result> | undefined>;
  controller: AbortController;
}

export class SubmitScope<Input = unknown, Result = unknown> {
  readonly #persistence: Persistence;
  readonly #listeners = new Set<() => void>();
  #snapshot: SubmitSnapshot<Input, Result>;
  #inflight: Inflight<Input, Result> | undefined;

  constructor(persistence: Persistence) {
    this.#persistence = persistence;
    const record = persistence.load();
    this.#snapshot = { pending: false, job: undefined, jobId: record.jobId, token: record.token, subject: record.subject, error: undefined };
  }

  /** The current state (a stable object between changes, for `useSyncExternalStore`). */
  readonly getSnapshot = (): SubmitSnapshot<Input, Result> => this.#snapshot;

  /** Calls `listener` after every change; returns the unsubscribe function. */
  readonly subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  };

  /**
   * Submits `input` through `send`, unless a submit is pending: then answers that submit's
   * promise and sends nothing. Never rejects: resolves with `undefined` on failure (the error is
   * in the state) or when `reset()` came first.
   */
  submit(input: Input, subject: string | undefined, send: SubmitFunction<Input, Result>): Promise<SubmittedJob<Input, Result> | undefined> {
    if (this.#inflight) return this.#inflight.promise;
    const record = this.#persistence.load();
    const intent = intentFor(record.intent, input);
    this.#persistence.save({ ...record, intent }); // a reload mid-submit resends under the same key
    const entry: Inflight<Input, Result> = { controller: new AbortController(), promise: Promise.resolve(undefined) };
    this.#inflight = entry; // before `send` runs, so a call from inside it joins this one
    this.#set({ pending: true, error: undefined });
    entry.promise = this.#send(entry, input, subject, intent.key, send);
    return entry.promise;
  }

  async #send(
    entry: Inflight<Input, Result>,
    input: Input,
    subject: string | undefined,
    idempotencyKey: string,
    send: SubmitFunction<Input, Result>,
  ): Promise<SubmittedJob<Input, Result> | undefined> {
    try {
      const submitted = await send(input, { idempotencyKey, signal: entry.controller.signal });
      if (!submitted || typeof submitted.job?.id !== 'string') {
        throw new TypeError('useSubmitJob: `submit` must resolve with `{ job, token? }`, where `job` is the job view the API answered.');
      }
      if (this.#inflight !== entry) return undefined; // reset meanwhile
      this.#inflight = undefined;
      const { job, token } = submitted;
      // Success ends the intent: the same input submitted again is a new job.
      this.#persistence.save({ jobId: job.id, ...(token ? { token } : {}), ...(subject !== undefined ? { subject } : {}) });
      this.#set({ pending: false, job, jobId: job.id, token, subject, error: undefined });
      return submitted;
    } catch (error) {
      if (this.#inflight !== entry) return undefined;
      this.#inflight = undefined;
      this.#set({ pending: false, error: error instanceof Error ? error : new Error(String(error)) }); // the intent stays, for a retry
      return undefined;
    }
  }

  /** Forgets the job, the intent and any error (and aborts a pending submit); clears what was persisted. */
  reset(): void {
    const inflight = this.#inflight;
    this.#inflight = undefined;
    inflight?.controller.abort(new DOMException('useSubmitJob was reset.', 'AbortError'));
    this.#persistence.clear();
    this.#set({ pending: false, job: undefined, jobId: undefined, token: undefined, subject: undefined, error: undefined });
  }

  #set(change: Partial<SubmitSnapshot<Input, Result>>): void {
    this.#snapshot = { ...this.#snapshot, ...change };
    for (const listener of [...this.#listeners]) listener();
  }
}

/** Where a scope's record is kept. */
export interface PersistOptions {
  /** The storage key (in `sessionStorage`), e.g. `"risk-scan:acme"`. One key, one job at a time. */
  key: string;
  /**
   * `"session"`: the tab's `sessionStorage`. `"url"`: the job id in the page URL's query
   * (`?job=`, replaced in place), the token beside it in `sessionStorage`; one such scope per
   * page. Default: `"session"`.
   */
  storage?: 'session' | 'url';
}

const shared = new Map<string, SubmitScope<never, never>>();

/** The page-wide scope of a persisted key: every component using the key shares its state and its pending submit. */
export function sharedScope<Input, Result>(persist: PersistOptions): SubmitScope<Input, Result> {
  const storage = persist.storage ?? 'session';
  const id = `${storage}\u0000${persist.key}`;
  let scope = shared.get(id);
  if (!scope) {
    scope = new SubmitScope<never, never>(storage === 'url' ? urlPersistence(persist.key) : storagePersistence(persist.key));
    shared.set(id, scope);
  }
  return scope;
}
