import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import { WaitlessClient } from '../client/client.ts';
import { memoryPersistence } from './persistence.ts';
import { type PersistOptions, sharedScope, type SubmitFunction, type SubmitSnapshot, type SubmittedJob, SubmitScope } from './submit-scope.ts';

/** Options of {@link useSubmitJob}. Give `submit` (your own endpoint), or `client` / `baseUrl` (the Waitless API). */
export interface UseSubmitJobOptions<Input = unknown, Result = unknown> {
  /**
   * Sends the submit through your app's own endpoint, which submits the job server-side (with
   * the `idempotencyKey` it is given as `Idempotency-Key`) and may mint a job token for the
   * browser. Must resolve with `{ job, token? }`; abort on `signal` (fired by `reset()`).
   * Default: `client.submit(name, input, { idempotencyKey, signal })`.
   */
  submit?: SubmitFunction<Input, Result>;
  /** The client the default `submit` uses. Default: one built from `baseUrl` and `apiKey`. */
  client?: WaitlessClient;
  /** Where the Waitless API is served (up to `/v1`), for the default `submit` without `client`. Default: none. */
  baseUrl?: string;
  /**
   * Bearer key for the default `submit` without `client`. A key in a browser is readable by its
   * user: use this only against an open development server; in production submit through your
   * own endpoint (`submit`). Default: none.
   */
  apiKey?: string;
  /**
   * Keep `{ jobId, token, subject }` across reloads (and the pending intent's idempotency key,
   * so a reload mid-submit that submits the same input again gets the same job). Every
   * component using the same key shares one state and one pending submit. Default: none (the
   * job is forgotten when the component unmounts).
   */
  persist?: PersistOptions;
}

/** Options of one call of {@link UseSubmitJobResult.submit}. */
export interface SubmitCallOptions {
  /** What the job is about; kept with the job (and persisted), returned as `subject`, for `useJob`'s `subject`. Default: none. */
  subject?: string;
}

/** What {@link useSubmitJob} returns. */
export interface UseSubmitJobResult<Input = unknown, Result = unknown> extends SubmitSnapshot<Input, Result> {
  /**
   * Submits the job. While a submit is pending, further calls return the same promise and send
   * nothing (a double click is one request). Each intent has one idempotency key, reused when
   * the same input is submitted again after a failure, replaced after a success, a `reset()` or
   * for another input. Resolves with `{ job, token? }`, or `undefined` when it failed (see
   * `error`) or was reset. Never rejects.
   */
  submit: (input: Input, options?: SubmitCallOptions) => Promise<SubmittedJob<Input, Result> | undefined>;
  /** Forgets the job and its intent, aborts a pending submit, clears what was persisted. */
  reset: () => void;
}

/**
 * Submits a job, once per intent, however often the button is clicked, and remembers it across
 * reloads when asked to (`persist`).
 *
 * ```tsx
 * const scan = useSubmitJob<ScanInput>('risk-scan', { submit: postToMyBackend, persist: { key: `scan:${company.id}` } });
 * <button disabled={scan.pending} onClick={() => void scan.submit(answers, { subject: company.id })}>
 *   {scan.pending ? 'Submitting…' : 'Run scan'}
 * </button>
 * const job = useJob(scan.jobId, { baseUrl: '/api', token: scan.token, initial: scan.job, subject: company.id });
 * ```
 */
export function useSubmitJob<Input = unknown, Result = unknown>(name: string, options: UseSubmitJobOptions<Input, Result> = {}): UseSubmitJobResult<Input, Result> {
  const [own] = useState(() => new SubmitScope<Input, Result>(memoryPersistence()));
  const persistKey = options.persist?.key;
  const persistStorage = options.persist?.storage;
  const scope = useMemo(
    () => (persistKey === undefined ? own : sharedScope<Input, Result>({ key: persistKey, storage: persistStorage })),
    [own, persistKey, persistStorage],
  );
  const snapshot = useSyncExternalStore(scope.subscribe, scope.getSnapshot, scope.getSnapshot);

  const { client: given, baseUrl, apiKey } = options;
  const client = useMemo(() => given ?? (baseUrl !== undefined ? new WaitlessClient({ baseUrl, apiKey }) : undefined), [given, baseUrl, apiKey]);
  const latest = useRef({ options, client, name });
  useEffect(() => {
    latest.current = { options, client, name };
  });

  const submit = useCallback(
    (input: Input, call: SubmitCallOptions = {}) => {
      const send: SubmitFunction<Input, Result> = (value, context) => {
        const { options: current, client: currentClient, name: jobName } = latest.current;
        if (current.submit) return current.submit(value, context);
        if (!currentClient) throw new TypeError('useSubmitJob: pass `submit`, `client` or `baseUrl`.');
        return currentClient.submit<Input, Result>(jobName, value, context).then((job) => ({ job }));
      };
      return scope.submit(input, call.subject, send);
    },
    [scope],
  );
  const reset = useCallback(() => scope.reset(), [scope]);
  return { ...snapshot, submit, reset };
}
