import { useCallback, useEffect, useMemo, useReducer, useRef } from 'react';
import { isTerminalEvent, type JobView, WaitlessClient } from '../client/client.ts';
import { initialJobState, jobReducer, type JobSnapshot, selectJob, SubjectBindings } from './job-state.ts';

/** Options of {@link useJob}. Give `client`, or `baseUrl` (with a `token` for a protected API). */
export interface UseJobOptions<Result = unknown> {
  /** The client to read the job with. Default: one built from `baseUrl` and `token`. */
  client?: WaitlessClient;
  /**
   * Where the Waitless API is served, up to (not including) `/v1`: `"/api"` (same origin) or
   * `"https://jobs.example.com"`. Used when no `client` is given. Default: none.
   */
  baseUrl?: string;
  /**
   * A job token (`wlt_…`, minted by your backend with `waitless.createJobToken`), sent as
   * `Authorization: Bearer`. Used with `baseUrl`. Default: none (an open API, e.g. `waitless dev`).
   */
  token?: string;
  /**
   * A view of the job already in hand, e.g. the `202` body of the submit: shown at once (with its
   * `fallback`), without a round trip. Ignored unless its `id` is the hook's id. Default: none
   * (the hook reads the job first).
   */
  initial?: JobView | undefined;
  /**
   * What the job is about (a document id, a company, a conversation). The hook binds the id to
   * the subject it first sees it with; rendered later with the same id and another subject (the
   * user moved on), the job is stale for good: its result is never applied, `isStale` is true,
   * `onStale` is called when it completes, `onResult` never. Default: `undefined` (one subject:
   * never stale unless a subject is given later).
   */
  subject?: string | undefined;
  /** Called once when the job's result lands (not when stale). Default: none. */
  onResult?: (result: Result, job: JobView<unknown, Result>) => void;
  /** Called once when a stale job completes: its result was not applied. Default: none. */
  onStale?: (job: JobView<unknown, Result>) => void;
}

/** What {@link useJob} returns. */
export interface UseJobResult<Result = unknown> extends JobSnapshot<Result> {
  /**
   * Cancels the job (`POST /v1/jobs/:id/cancel`; a job token needs the cancel scope). Resolves
   * with the job's view, its status then `cancelled` (or its final one if it had already ended),
   * or with `undefined` on failure (the error is in `error`). Never rejects.
   */
  cancel: () => Promise<JobView | undefined>;
}

/**
 * Follows one job: status, progress, partial output as it streams, the instant fallback, then
 * the real result, fetched when the job completes. Streams with `client.watch` (SSE, falling back
 * to long-poll, then polling; every event once), stops on unmount or when `id` changes, and never
 * applies the result of a job whose `subject` the user has left.
 *
 * ```tsx
 * const scan = useJob<Assessment>(jobId, { baseUrl: '/api', token, initial: submitted, subject: company.id });
 * return scan.result ? <Report value={scan.result} /> : <Estimate value={scan.fallback} progress={scan.progress} text={scan.partial} />;
 * ```
 *
 * `id` `null`, `undefined` or `''`: no job; the hook is idle and returns empty fields.
 */
export function useJob<Result = unknown>(id: string | null | undefined, options: UseJobOptions<Result> = {}): UseJobResult<Result> {
  const jobId = id || undefined;
  const { client: given, baseUrl, token, subject } = options;
  const client = useMemo(() => given ?? (baseUrl !== undefined ? new WaitlessClient({ baseUrl, apiKey: token }) : undefined), [given, baseUrl, token]);
  if (jobId && !client) throw new TypeError('useJob: pass `client`, or `baseUrl` (and a `token` for a protected API).');

  const [state, dispatch] = useReducer(jobReducer<Result>, undefined, () => initialJobState<Result>(jobId, options.initial));

  // Binding and staleness are recorded during render (idempotently), so that a result arriving
  // between this render and its commit is already held back.
  const bindings = useRef<SubjectBindings | null>(null);
  bindings.current ??= new SubjectBindings();
  const stale = jobId ? bindings.current.observe(jobId, subject) : false;

  const latest = useRef(options);
  const delivered = useRef(new Set<string>());
  useEffect(() => {
    latest.current = options;
  });

  useEffect(() => {
    const initial = latest.current.initial?.id === jobId ? latest.current.initial : undefined;
    dispatch({ type: 'reset', id: jobId, initial });
    if (!jobId || !client) return;
    const controller = new AbortController();
    const { signal } = controller;

    /** The job's final view: apply it, then tell the app (once per job). */
    const finish = (job: JobView) => {
      dispatch({ type: 'snapshot', id: jobId, job });
      if (job.status !== 'completed' || delivered.current.has(jobId)) return;
      delivered.current.add(jobId);
      const { onResult, onStale } = latest.current;
      if (bindings.current!.isStale(jobId)) onStale?.(job as JobView<unknown, Result>);
      else onResult?.(job.result as Result, job as JobView<unknown, Result>);
    };

    const follow = async () => {
      let view = initial;
      if (!view) {
        view = await client.get(jobId, { signal });
        dispatch({ type: 'snapshot', id: jobId, job: view });
      }
      if (view.done) return finish(view);
      for await (const event of client.watch(jobId, { signal, after: view.version })) {
        dispatch({ type: 'event', id: jobId, event });
        // The terminal event ends the log: read the final view, with the result (and no fallback).
        if (isTerminalEvent(event)) return finish(await client.get(jobId, { signal }));
      }
    };
    follow().catch((error: unknown) => {
      if (signal.aborted) return; // unmounted, or another id: nothing to report
      dispatch({ type: 'error', id: jobId, error: error instanceof Error ? error : new Error(String(error)) });
    });
    return () => controller.abort(new DOMException('useJob stopped following the job.', 'AbortError'));
  }, [jobId, client]);

  const cancel = useCallback(async (): Promise<JobView | undefined> => {
    if (!jobId || !client) return undefined;
    try {
      const job = await client.cancel(jobId);
      dispatch({ type: 'snapshot', id: jobId, job });
      return job;
    } catch (error) {
      dispatch({ type: 'error', id: jobId, error: error instanceof Error ? error : new Error(String(error)) });
      return undefined;
    }
  }, [jobId, client]);

  // Before the effect has reset the state for a new id, show that id's `initial` (or nothing), never the old job.
  const current = state.id === jobId ? state : initialJobState<Result>(jobId, options.initial);
  return { ...selectJob(current, jobId, stale), cancel };
}
