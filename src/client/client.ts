/**
 * The Waitless HTTP client. Runs in Node ≥ 22 and in browsers: it uses only `fetch`,
 * `ReadableStream`, `TextDecoder`, `AbortController`, `setTimeout` and `crypto.randomUUID`
 * (no Node built-ins, no `EventSource`).
 */
import type { Job, JobEvent } from '../job/model.ts';
import type { WebhookDelivery, WebhookEndpoint, WebhookSecretInfo } from '../store/webhook-store.ts';
import { retryAfterSeconds } from '../contract/cadence.ts';
import { type FoldedJob, foldJobEvent, isTerminalEvent, parseJobEvent } from '../contract/job-events.ts';
import { parseRetryAfter } from '../contract/retry-after.ts';
import { readSse } from '../contract/sse.ts';
import { type JobStatus, TERMINAL_STATUSES } from '../contract/statuses.ts';
import type { SubmitRequest } from '../contract/submit.ts';
import type { WebhookEvent } from '../contract/webhook-events.ts';
import { JobUnsuccessfulError, ResultTimeoutError } from '../errors.ts';
import { WaitlessApiError } from './errors.ts';

export { isTerminalEvent };
export type { WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookSecretInfo } from '../store/webhook-store.ts';
export type { WebhookEvent };

/** URLs of a job's resources (absolute paths on the server, including its base path). */
export interface JobLinks {
  self: string;
  events: string;
  cancel: string;
}

/** A job as the API shows it: the {@link Job} plus its links. */
export type JobView<Input = unknown, Result = unknown> = Job<Input, Result> & { links: JobLinks };

/** One page of {@link WaitlessClient.list}. */
export interface JobPage {
  /** Newest first. */
  jobs: JobView[];
  /** Pass as `cursor` for the next page; absent on the last one. */
  nextCursor?: string;
}

/**
 * An event yielded by {@link WaitlessClient.watch}: a {@link JobEvent} from the job's log, or,
 * when no transport can reach the events endpoint, one synthesized from a job snapshot.
 */
export interface WatchEvent extends JobEvent {
  /**
   * `true` when the event was made from a job snapshot (the events endpoint is blocked between
   * this client and the server). Its `seq` then lies within the range of log events it stands for.
   */
  synthesized?: true;
}

/** How requests are retried after a network error, a `5xx` or a `429`. */
export interface RetryOptions {
  /** Tries in all, the first included. `1` turns retries off. Default: `4`. */
  attempts?: number;
  /** Delay before the first retry, doubled for each further one (with jitter), in ms. Default: `250`. */
  initialDelayMs?: number;
  /** Longest delay between two tries, in ms; also caps a server's `Retry-After`. Default: `30_000`. */
  maxDelayMs?: number;
}

/** Options of {@link WaitlessClient}. */
export interface WaitlessClientOptions {
  /**
   * Where the API is served, up to (not including) `/v1`: `"https://jobs.example.com"`, or
   * `"https://app.example.com/jobs-api"` when the handler is mounted under a base path.
   * Required; no default.
   */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>` (required by `waitless serve`). Default: none. */
  apiKey?: string;
  /** The `fetch` to use (a wrapper that adds tracing, a mock…). Default: the global `fetch`. */
  fetch?: typeof fetch;
  /** Headers sent with every request (after the client's own, so they can override them). Default: `{}`. */
  headers?: Record<string, string>;
  /**
   * Retry policy of `submit`, `get`, `cancel` and `list` (all idempotent: a submit reuses its
   * idempotency key on every try). Default: `{ attempts: 4, initialDelayMs: 250, maxDelayMs: 30_000 }`.
   */
  retry?: RetryOptions;
  /** `?wait=` of the long-polls `watch` falls back to, in seconds (the server caps it, by default at 60). Default: `25`. */
  longPollSeconds?: number;
  /**
   * An SSE connection that delivers no byte (not even a keep-alive, sent every 15 s by
   * default) for this long is dropped and reopened; if SSE never delivered a byte, `watch`
   * concludes that something buffers the stream and falls back to long-poll. Also bounds (with
   * a 10 s ceiling) the reads of missed events in the long-poll and polling modes. Default: `45_000` ms.
   */
  sseIdleTimeoutMs?: number;
}

/**
 * Options of {@link WaitlessClient.submit}: every member of the `POST /v1/jobs/:name` body but
 * `input`, plus the call's own `idempotencyKey` and `signal`. Checked against the HTTP schema at
 * compile time (see {@link SUBMIT_BODY_FIELDS}), so the two cannot drift apart.
 */
export interface SubmitOptions {
  /**
   * `Idempotency-Key` (1–255 visible ASCII characters): the same key and input return the same
   * job. Default: a fresh `crypto.randomUUID()`, reused on every retry of this call.
   */
  idempotencyKey?: string;
  /**
   * Where the service POSTs the outcome (Standard Webhooks, signed). `events` picks which are
   * sent: default the terminal ones; add `job.progress` for every progress report.
   * Default: no job webhook (registered endpoints still receive).
   */
  webhook?: { url: string; events?: WebhookEvent[] };
  /**
   * Also mint a token for this job (see {@link WaitlessClient.createJobToken}); the answer then
   * carries it as `token`. `{}` asks for a read-only token of the default lifetime.
   * Default: no token.
   */
  token?: { cancel?: boolean; ttlSeconds?: number };
  /** Higher runs first, -1000 to 1000. Default: `0`. */
  priority?: number;
  /** Run no earlier than this instant (a `Date`, or an ISO 8601 string with offset). Not with `delay`. Default: now. */
  runAt?: Date | string;
  /** Run no earlier than this long from now: ms, or `"30s"`, `"5m"`, `"2h"`, `"250ms"`. Not with `runAt`. Default: none. */
  delay?: number | string;
  /**
   * Latest wins: a newer job with the same `key` replaces an older one in flight. `policy`:
   * `"supersede"` (cancel the older, default), `"reject"` (answer `409` while one is in flight)
   * or `"queue"` (run after it). Default: none.
   */
  supersede?: { key: string; policy?: 'supersede' | 'reject' | 'queue' };
  /** What the job is about (JSON), checked by the definition's `relevant(context)` at delivery. Default: none. */
  context?: unknown;
  /** Flow control: jobs with the same key run at most the definition's limit at once. Default: none. */
  concurrencyKey?: string;
  /** Aborts the call (and its retries). Default: none. */
  signal?: AbortSignal;
}

/**
 * The members of the submit body the client sends, `input` included: exactly the fields of the
 * HTTP schema (`submitRequestSchema`). A compile-time check below fails the build if either
 * side gains a field the other lacks.
 */
export const SUBMIT_BODY_FIELDS = ['input', 'webhook', 'token', 'priority', 'runAt', 'delay', 'supersede', 'context', 'concurrencyKey'] as const;

type SubmitBodyField = (typeof SUBMIT_BODY_FIELDS)[number];
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
// Each fails `tsc` when the schema, the options or the list gains or loses a field.
const _fieldsMatchSchema: Same<SubmitBodyField, keyof SubmitRequest> = true;
const _fieldsMatchOptions: Same<Exclude<SubmitBodyField, 'input'>, Exclude<keyof SubmitOptions, 'idempotencyKey' | 'signal'>> = true;
// The token request too: `createJobToken`'s options and the submit's `token` member.
const _tokenFieldsMatch: Same<Exclude<keyof JobTokenRequest, 'signal'>, keyof NonNullable<SubmitRequest['token']>> = true;
const _submitTokenMatches: Same<keyof NonNullable<SubmitOptions['token']>, keyof NonNullable<SubmitRequest['token']>> = true;
void _fieldsMatchSchema;
void _fieldsMatchOptions;
void _tokenFieldsMatch;
void _submitTokenMatches;

/** The `202` answer of {@link WaitlessClient.submit}: the job, plus its token when one was asked for. */
export type SubmittedJob<Input = unknown, Result = unknown> = JobView<Input, Result> & {
  /** The job's token, when the submit asked for one (`token` option). */
  token?: { token: string; expiresAt: string };
};

/** A change to one of the tenant's jobs, from {@link WaitlessClient.jobChanges}. */
export type JobChange =
  /** The job as it is now, without its `input`, `output`, `result` and `fallback` (fetch it for those). */
  | { type: 'job'; job: Omit<JobView, 'input' | 'output' | 'result' | 'fallback'> }
  /** Changes were missed (the server fell behind): list the jobs again. */
  | { type: 'resync' };

/** Options of {@link WaitlessClient.jobChanges}. */
export interface JobChangesOptions {
  /** Stops the stream; the iteration then throws the signal's reason. Default: none. */
  signal?: AbortSignal;
}

/** Options of {@link WaitlessClient.createWebhookEndpoint}. */
export interface WebhookEndpointRequest extends RequestOptions {
  /** Where deliveries go (checked: no private or loopback address unless the server allows it). Required. */
  url: string;
  /** The events it receives. Default: the terminal ones (`job.completed`, `job.failed`, `job.cancelled`, `job.timed_out`, `job.stale`). */
  events?: WebhookEvent[];
}

/** Options of {@link WaitlessClient.rotateWebhookSecret}. */
export interface RotateSecretOptions extends RequestOptions {
  /** How long the current secrets keep signing beside the new one, in seconds (0 – 7 days). Default: `86_400` (a day). */
  overlapSeconds?: number;
}

/** The key a client calls with, as `GET /v1/whoami` describes it. */
export interface Caller {
  /** The tenant every call acts on. */
  tenant: string;
  /** `admin` keys may also recover jobs and open the dashboard. */
  role: 'service' | 'admin';
}

/** Options of the single-request calls. */
export interface RequestOptions {
  /** Aborts the call (and its retries). Default: none. */
  signal?: AbortSignal;
}

/** Options of {@link WaitlessClient.createJobToken}. */
export interface JobTokenRequest extends RequestOptions {
  /** Let the bearer cancel the job too. Default: `false` (read only). */
  cancel?: boolean;
  /** Lifetime in seconds, 1–86 400. Default: `900` (15 min). */
  ttlSeconds?: number;
}

/** A token for one job, to hand to a browser (see {@link WaitlessClient.createJobToken}). */
export interface JobToken {
  /** `wlt_…`: send as `Authorization: Bearer …`, or `?access_token=…` where headers cannot be set. */
  token: string;
  /** ISO 8601. */
  expiresAt: string;
  jobId: string;
  scopes: Array<'read' | 'cancel'>;
}

/** Filters of {@link WaitlessClient.list}. */
export interface ListOptions extends RequestOptions {
  /** Only jobs in this status (or any of these). Default: every status. */
  status?: JobStatus | JobStatus[];
  /** Only jobs of this name. Default: every name. */
  name?: string;
  /** Page size, 1–100. Default: the server's, `20`. */
  limit?: number;
  /** `nextCursor` of the previous page. Default: the first page. */
  cursor?: string;
}

/** The transports of {@link WaitlessClient.watch}, from the best to the most robust. */
export type WatchTransport = 'sse' | 'long-poll' | 'poll';

/** Options of {@link WaitlessClient.watch}. */
export interface WatchOptions {
  /** Stops watching; the iteration then throws the signal's reason. Default: none. */
  signal?: AbortSignal;
  /** Yield only events with a sequence number above this (a resume point). Default: `0` (every event). */
  after?: number;
  /**
   * The rung of the transport ladder to start on: `"sse"`, then `"long-poll"`, then `"poll"`.
   * Default: `"sse"`.
   */
  transport?: WatchTransport;
}

/** Options of {@link WaitlessClient.result}. */
export interface ResultOptions {
  /** Stops waiting; the promise rejects with the signal's reason. Default: none. */
  signal?: AbortSignal;
  /** Longest wait in ms, then a {@link ResultTimeoutError} (the job keeps running). Default: no limit. */
  timeout?: number;
}

const TERMINAL: ReadonlySet<string> = TERMINAL_STATUSES;

/** Consecutive failed SSE connections (without an event) before watch falls back to long-poll. */
const SSE_MAX_FAILURES = 3;
/** Consecutive failed long-polls before watch falls back to plain polling. */
const LONG_POLL_MAX_FAILURES = 2;
/** Consecutive failed polls before watch gives up and throws. */
const POLL_MAX_FAILURES = 8;
/** How long a catch-up read of the events endpoint may take before it counts as blocked (at most the SSE idle timeout). */
const CATCH_UP_TIMEOUT_MS = 10_000;
/** Extra time a long-poll answer may take beyond its `wait`, before it counts as lost. */
const LONG_POLL_GRACE_MS = 15_000;

/** What a watcher knows of the job, to synthesize events from the next snapshot. */
type View = FoldedJob;

interface WatchState {
  id: string;
  /** Sequence number of the last event yielded (or covered by a synthesized one). */
  last: number;
  /** The events endpoint does not work through whatever is between us and the server. */
  eventsBlocked: boolean;
  /** The job as the events so far describe it; `undefined` until known. */
  view: View | undefined;
}

type Outcome = 'done' | 'fallback';

/**
 * A client of the Waitless HTTP API.
 *
 * ```ts
 * const client = new WaitlessClient({ baseUrl: 'https://jobs.example.com', apiKey });
 * const job = await client.submit('summarize', { url });
 * for await (const event of client.watch(job.id)) render(event);
 * const summary = await client.result(job.id);
 * ```
 */
export class WaitlessClient {
  readonly baseUrl: string;
  readonly #fetch: typeof fetch;
  readonly #headers: Record<string, string>;
  readonly #attempts: number;
  readonly #initialDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #longPollSeconds: number;
  readonly #sseIdleTimeoutMs: number;

  constructor(options: WaitlessClientOptions) {
    if (!options.baseUrl) throw new TypeError('WaitlessClient: `baseUrl` is required (e.g. "https://jobs.example.com").');
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    // Called through a wrapper: a browser's fetch throws "Illegal invocation" when called as a method of another object.
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#headers = { ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}), ...options.headers };
    this.#attempts = Math.max(1, Math.floor(options.retry?.attempts ?? 4));
    this.#initialDelayMs = options.retry?.initialDelayMs ?? 250;
    this.#maxDelayMs = options.retry?.maxDelayMs ?? 30_000;
    this.#longPollSeconds = options.longPollSeconds ?? 25;
    this.#sseIdleTimeoutMs = options.sseIdleTimeoutMs ?? 45_000;
  }

  /**
   * Submits a job: `POST /v1/jobs/:name` with `{ input }`; resolves with the job (`202` body).
   *
   * Network errors, `5xx` and `429` are retried (honouring `Retry-After`) with the same
   * `Idempotency-Key`, so a retried submit never creates a second job: if an earlier try did
   * create it and only its answer was lost, the retry gets that job back. Other `4xx` answers
   * reject at once with a {@link WaitlessApiError} (`422`: the input does not match the schema).
   * When every try failed, the last answer's {@link WaitlessApiError}, or `fetch`'s own error for
   * a network failure, is thrown.
   */
  async submit<Input = unknown, Result = unknown>(name: string, input: Input, options: SubmitOptions = {}): Promise<SubmittedJob<Input, Result>> {
    const { idempotencyKey = crypto.randomUUID(), signal, runAt, ...rest } = options;
    // Typed as the schema's input: a member the server would refuse fails to compile.
    const body: SubmitRequest = { input, ...rest, ...(runAt !== undefined ? { runAt: runAt instanceof Date ? runAt.toISOString() : runAt } : {}) };
    const response = await this.#send(`/v1/jobs/${encodeURIComponent(name)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': idempotencyKey },
      body: JSON.stringify(body),
      signal,
    });
    return this.#json<SubmittedJob<Input, Result>>(response);
  }

  /** The job: `GET /v1/jobs/:id`. Rejects with a {@link WaitlessApiError} `404` for an unknown id. */
  async get<Result = unknown>(id: string, options: RequestOptions = {}): Promise<JobView<unknown, Result>> {
    return this.#json(await this.#send(this.#jobPath(id), { signal: options.signal }));
  }

  /** Cancels the job (idempotent; a finished job is returned unchanged): `POST /v1/jobs/:id/cancel`. */
  async cancel(id: string, options: RequestOptions = {}): Promise<JobView> {
    return this.#json(await this.#send(`${this.#jobPath(id)}/cancel`, { method: 'POST', signal: options.signal }));
  }

  /**
   * Mints a short-lived token for one job (`POST /v1/jobs/:id/tokens`), for a service to hand
   * to the page that asked for the job: the page reads that job's status and events (and
   * cancels it, with `cancel: true`), with `new WaitlessClient({ baseUrl, apiKey: token })`,
   * and nothing else.
   */
  async createJobToken(id: string, options: JobTokenRequest = {}): Promise<JobToken> {
    const body = { ...(options.cancel !== undefined ? { cancel: options.cancel } : {}), ...(options.ttlSeconds !== undefined ? { ttlSeconds: options.ttlSeconds } : {}) };
    return this.#json(
      await this.#send(`${this.#jobPath(id)}/tokens`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: options.signal }),
    );
  }

  /**
   * The admin's recovery (`POST /v1/jobs/:id/recover`, an admin key): a failed, timed-out,
   * cancelled or stuck job goes back to `queued` with a fresh attempt budget, history kept.
   * Rejects with a {@link WaitlessApiError} `409` for a queued or completed job.
   */
  async recover(id: string, options: RequestOptions = {}): Promise<JobView> {
    return this.#json(await this.#send(`${this.#jobPath(id)}/recover`, { method: 'POST', signal: options.signal }));
  }

  /**
   * Every change to the tenant's jobs, as it happens (`GET /v1/events`, Server-Sent Events):
   * what a dashboard needs to keep a list live. A `resync` means changes were missed: list
   * again. The stream never ends by itself; a dropped connection ends the iteration (list
   * again, then call this again), and a refused key rejects with a {@link WaitlessApiError}.
   */
  async *jobChanges(options: JobChangesOptions = {}): AsyncGenerator<JobChange, void, undefined> {
    const response = await this.#fetch(this.#url('/v1/events'), { headers: this.#headersWith({ accept: 'text/event-stream' }), signal: options.signal });
    if (!response.ok || !response.body || !/^text\/event-stream/i.test(response.headers.get('content-type') ?? '')) {
      throw response.ok ? WaitlessApiError.fromText(response, await response.text(), 'an event stream') : await WaitlessApiError.fromResponse(response);
    }
    try {
      for await (const message of readSse(response.body)) {
        if (message.event === 'resync') yield { type: 'resync' };
        else if (message.event === 'job') {
          const job = parseJson(message.data) as JobView | undefined;
          if (job && typeof job === 'object' && typeof job.id === 'string') yield { type: 'job', job };
        }
      }
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      throw error;
    }
  }

  /** The tenant and role of this client's key (`GET /v1/whoami`): check a key before relying on it. */
  async whoami(options: RequestOptions = {}): Promise<Caller> {
    return this.#json<Caller>(await this.#send('/v1/whoami', { signal: options.signal }));
  }

  /**
   * The tenant's webhook signing secrets (`GET /v1/webhooks/secret`), newest first; one is made
   * on first use. Pass the list to `verifyWebhook` as it is: during a rotation a delivery may be
   * signed by any of them.
   */
  async webhookSecrets(options: RequestOptions = {}): Promise<WebhookSecretInfo[]> {
    return (await this.#json<{ secrets: WebhookSecretInfo[] }>(await this.#send('/v1/webhooks/secret', { signal: options.signal }))).secrets;
  }

  /**
   * A new signing secret (`POST /v1/webhooks/secret/rotate`): it signs from now on, and the
   * current ones keep signing beside it for `overlapSeconds`, so receivers can switch without
   * losing a message. Not retried (each call makes a secret).
   */
  async rotateWebhookSecret(options: RotateSecretOptions = {}): Promise<{ secret: string; previousExpireAt?: string }> {
    const body = options.overlapSeconds === undefined ? {} : { overlapSeconds: options.overlapSeconds };
    return this.#json(
      await this.#send('/v1/webhooks/secret/rotate', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: options.signal, once: true }),
    );
  }

  /** The tenant's registered webhook endpoints (`GET /v1/webhooks/endpoints`): each receives its events for every job. */
  async webhookEndpoints(options: RequestOptions = {}): Promise<WebhookEndpoint[]> {
    return (await this.#json<{ endpoints: WebhookEndpoint[] }>(await this.#send('/v1/webhooks/endpoints', { signal: options.signal }))).endpoints;
  }

  /**
   * Registers an endpoint (`POST /v1/webhooks/endpoints`). Rejects with a
   * {@link WaitlessApiError} `422` for a URL the server refuses to call. Not retried (each call
   * registers one).
   */
  async createWebhookEndpoint(options: WebhookEndpointRequest): Promise<WebhookEndpoint> {
    const body = { url: options.url, ...(options.events ? { events: options.events } : {}) };
    return this.#json(
      await this.#send('/v1/webhooks/endpoints', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: options.signal, once: true }),
    );
  }

  /** Removes an endpoint (`DELETE /v1/webhooks/endpoints/:id`). Rejects with a {@link WaitlessApiError} `404` for an unknown one. */
  async deleteWebhookEndpoint(id: string, options: RequestOptions = {}): Promise<void> {
    const response = await this.#send(`/v1/webhooks/endpoints/${encodeURIComponent(id)}`, { method: 'DELETE', signal: options.signal });
    if (!response.ok) throw await WaitlessApiError.fromResponse(response);
    await discard(response);
  }

  /** Every webhook delivery of the job, with each attempt (`GET /v1/jobs/:id/deliveries`). */
  async deliveries(jobId: string, options: RequestOptions = {}): Promise<WebhookDelivery[]> {
    return (await this.#json<{ deliveries: WebhookDelivery[] }>(await this.#send(`${this.#jobPath(jobId)}/deliveries`, { signal: options.signal }))).deliveries;
  }

  /** Sends a delivery again, now (`POST /v1/deliveries/:id/redeliver`); resolves with it, queued. */
  async redeliver(deliveryId: string, options: RequestOptions = {}): Promise<WebhookDelivery> {
    return this.#json(await this.#send(`/v1/deliveries/${encodeURIComponent(deliveryId)}/redeliver`, { method: 'POST', signal: options.signal }));
  }

  /** A page of jobs, newest first: `GET /v1/jobs?status=&name=&limit=&cursor=`. */
  async list(options: ListOptions = {}): Promise<JobPage> {
    const query = new URLSearchParams();
    if (options.status !== undefined) query.set('status', ([] as string[]).concat(options.status).join(','));
    if (options.name !== undefined) query.set('name', options.name);
    if (options.limit !== undefined) query.set('limit', String(options.limit));
    if (options.cursor !== undefined) query.set('cursor', options.cursor);
    const search = query.toString() ? `?${query.toString()}` : '';
    return this.#json(await this.#send(`/v1/jobs${search}`, { signal: options.signal }));
  }

  /**
   * Every event of the job, in sequence order, each exactly once, ending after the terminal
   * one (a `status` event whose `data.status` is `completed`, `failed`, `cancelled`, `timed_out` or `stale`).
   *
   * Transports, tried in order:
   * 1. **SSE** (`GET /v1/jobs/:id/events`, parsed from the fetch stream). A dropped connection
   *    is reopened with `Last-Event-ID`, so nothing is lost or repeated.
   * 2. **Long-poll** (`GET /v1/jobs/:id?wait=25&since=V`), when the answer is not an event
   *    stream (a proxy answers `406`, an HTML page or JSON), SSE keeps failing, or never
   *    delivers a byte (something buffers it).
   * 3. **Polling** (`GET /v1/jobs/:id`, following the server's `Retry-After`), when long-polls
   *    fail or are not held open.
   *
   * In modes 2 and 3, each snapshot whose `version` moved is followed by a read of the missed
   * events from the events endpoint (`?after=N`, without asking for `text/event-stream`), so
   * the events are the real ones. If that endpoint is blocked too, events are synthesized from
   * the snapshots (flagged `synthesized: true`): intermediate progress and output can then be
   * coalesced, but every status change the snapshots show, and the terminal status, are yielded.
   *
   * A job id the server does not know rejects with a {@link WaitlessApiError} `404`.
   */
  async *watch(id: string, options: WatchOptions = {}): AsyncGenerator<WatchEvent, void, undefined> {
    const { signal } = options;
    const state: WatchState = { id, last: options.after ?? 0, eventsBlocked: false, view: undefined };
    let transport = options.transport ?? 'sse';
    if (transport === 'sse') {
      if ((yield* this.#watchSse(state, signal)) === 'done') return;
      transport = 'long-poll';
    }
    if (transport === 'long-poll') {
      if ((yield* this.#watchLongPoll(state, signal)) === 'done') return;
    }
    yield* this.#watchPoll(state, signal);
  }

  /**
   * Waits for the job to finish. Resolves with its result when it `completed`; rejects with a
   * {@link JobUnsuccessfulError} (carrying the job) when it `failed`, was `cancelled`, `timed_out` or ended `stale`,
   * with a {@link ResultTimeoutError} after `timeout` ms, with the signal's reason on abort.
   */
  async result<Result = unknown>(id: string, options: ResultOptions = {}): Promise<Result> {
    const { controller, dispose } = linkSignal(options.signal);
    let timedOut = false;
    const timer =
      options.timeout === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            controller.abort(new ResultTimeoutError(id, options.timeout!));
          }, options.timeout);
    try {
      let job = await this.get<Result>(id, { signal: controller.signal });
      while (!job.done) {
        for await (const event of this.watch(id, { signal: controller.signal, after: job.version })) {
          if (isTerminalEvent(event)) break;
        }
        job = await this.get<Result>(id, { signal: controller.signal });
      }
      if (job.status === 'completed') return job.result as Result;
      throw new JobUnsuccessfulError(job);
    } catch (error) {
      if (timedOut && !options.signal?.aborted) throw new ResultTimeoutError(id, options.timeout!);
      throw error;
    } finally {
      clearTimeout(timer);
      dispose();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Requests

  #jobPath(id: string): string {
    return `/v1/jobs/${encodeURIComponent(id)}`;
  }

  #url(path: string): string {
    return `${this.baseUrl}${path}`;
  }

  #headersWith(extra: Record<string, string>): Record<string, string> {
    return { ...extra, ...this.#headers };
  }

  /** Delay before retry number `n` (1-based): doubling from the initial delay, with jitter, capped. */
  #backoff(n: number): number {
    const full = Math.min(this.#maxDelayMs, this.#initialDelayMs * 2 ** (n - 1));
    return full / 2 + Math.random() * (full / 2);
  }

  /** One request, retried after network errors, `5xx` and `429` per the retry policy. */
  async #send(
    path: string,
    init: { method?: string; headers?: Record<string, string>; body?: string; signal?: AbortSignal | undefined; once?: boolean },
  ): Promise<Response> {
    const { signal } = init;
    const headers = this.#headersWith({ accept: 'application/json, application/problem+json', ...init.headers });
    const attempts = init.once ? 1 : this.#attempts;
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      let response: Response;
      try {
        response = await this.#fetch(this.#url(path), { method: init.method ?? 'GET', headers, body: init.body, signal });
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        if (attempt >= attempts) throw error;
        await sleep(this.#backoff(attempt), signal);
        continue;
      }
      if (attempt < attempts && isTransient(response.status)) {
        const delay = Math.min(this.#maxDelayMs, parseRetryAfter(response.headers.get('retry-after')) ?? this.#backoff(attempt));
        await discard(response);
        await sleep(delay, signal);
        continue;
      }
      return response;
    }
  }

  /** The JSON body of a successful response; a {@link WaitlessApiError} for anything else. */
  async #json<T>(response: Response): Promise<T> {
    if (!response.ok) throw await WaitlessApiError.fromResponse(response);
    const text = await response.text();
    try {
      return JSON.parse(text) as T;
    } catch {
      throw WaitlessApiError.fromText(response, text, 'a JSON body');
    }
  }

  // ---------------------------------------------------------------------------------------
  // watch: SSE

  async *#watchSse(state: WatchState, signal: AbortSignal | undefined): AsyncGenerator<WatchEvent, Outcome, undefined> {
    let failures = 0;
    let everReceivedBytes = false;
    for (;;) {
      signal?.throwIfAborted();
      const { controller, dispose } = linkSignal(signal);
      let idle = false;
      let bytes = 0;
      let received = 0;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          idle = true;
          controller.abort(new Error('The SSE connection was idle for too long.'));
        }, this.#sseIdleTimeoutMs);
      };
      let retryAfterMs: number | undefined;
      try {
        arm();
        let response: Response | undefined;
        try {
          const headers: Record<string, string> = { accept: 'text/event-stream' };
          if (state.last > 0) headers['last-event-id'] = String(state.last);
          response = await this.#fetch(this.#url(`${this.#jobPath(state.id)}/events`), { headers: this.#headersWith(headers), signal: controller.signal });
        } catch {
          if (signal?.aborted) throw signal.reason;
        }
        if (response) {
          if (response.status === 204) {
            await discard(response);
            return 'done'; // the job is done and every event up to its last was seen
          }
          const contentType = response.headers.get('content-type') ?? '';
          if (!response.ok || !/^text\/event-stream/i.test(contentType) || !response.body) {
            if (isAuthoritative(response)) throw await WaitlessApiError.fromResponse(response);
            if (!isTransient(response.status)) {
              await discard(response);
              return 'fallback'; // not an event stream: a proxy refuses or rewrites SSE
            }
            retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
            await discard(response);
          } else {
            try {
              for await (const event of readJobEvents(response.body, (n) => {
                bytes += n;
                everReceivedBytes = true;
                arm();
              })) {
                if (event.seq <= state.last) continue;
                received++;
                clearTimeout(timer); // a slow consumer is not an idle connection
                yield this.#accept(state, event);
                if (isTerminalEvent(event)) return 'done';
                arm();
              }
            } catch {
              if (signal?.aborted) throw signal.reason;
              // The connection was cut (or idled out): reopen it below, from state.last.
            }
          }
        }
      } finally {
        clearTimeout(timer);
        controller.abort();
        dispose();
      }
      if (received > 0) {
        failures = 0;
        continue; // cut mid-job: resume at once with Last-Event-ID
      }
      if (idle && bytes === 0 && !everReceivedBytes) return 'fallback'; // something holds the stream back
      if (++failures >= SSE_MAX_FAILURES) return 'fallback';
      await sleep(Math.min(this.#maxDelayMs, retryAfterMs ?? this.#backoff(failures)), signal);
    }
  }

  /** Records an event from the log as seen, and returns it. */
  #accept(state: WatchState, event: JobEvent): WatchEvent {
    state.last = event.seq;
    state.view = applyEvent(state.view, event);
    return event;
  }

  // ---------------------------------------------------------------------------------------
  // watch: long-poll and polling

  async *#watchLongPoll(state: WatchState, signal: AbortSignal | undefined): AsyncGenerator<WatchEvent, Outcome, undefined> {
    let failures = 0;
    const wait = this.#longPollSeconds;
    for (;;) {
      signal?.throwIfAborted();
      const since = state.last;
      const started = Date.now();
      const job = await this.#snapshot(state.id, `?wait=${wait}&since=${since}`, signal, wait * 1000 + LONG_POLL_GRACE_MS);
      if (job === undefined) {
        if (++failures >= LONG_POLL_MAX_FAILURES) return 'fallback';
        await sleep(this.#backoff(failures), signal);
        continue;
      }
      failures = 0;
      yield* this.#advance(state, job, signal);
      if (job.done) return 'done';
      // An unchanged answer long before `wait`: something between us drops the query or the
      // held request, and long-polling would turn into a busy loop. Poll instead.
      if (job.version <= since && Date.now() - started < (wait * 1000) / 2) return 'fallback';
    }
  }

  async *#watchPoll(state: WatchState, signal: AbortSignal | undefined): AsyncGenerator<WatchEvent, void, undefined> {
    let failures = 0;
    for (;;) {
      signal?.throwIfAborted();
      let job: JobView | undefined;
      let retryAfterMs: number | undefined;
      let lastError: unknown;
      try {
        const response = await this.#fetch(this.#url(this.#jobPath(state.id)), {
          headers: this.#headersWith({ accept: 'application/json, application/problem+json' }),
          signal,
        });
        retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
        if (isAuthoritative(response)) throw await WaitlessApiError.fromResponse(response);
        job = await this.#json<JobView>(response);
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        if (error instanceof WaitlessApiError && !isTransient(error.status) && error.problem) throw error;
        lastError = error;
      }
      if (job === undefined) {
        if (++failures >= POLL_MAX_FAILURES) throw lastError;
        await sleep(Math.min(this.#maxDelayMs, retryAfterMs ?? this.#backoff(failures)), signal);
        continue;
      }
      failures = 0;
      yield* this.#advance(state, job, signal);
      if (job.done) return;
      await sleep(retryAfterMs ?? retryAfterSeconds(Math.max(0, Date.now() - Date.parse(job.createdAt)) || 0) * 1000, signal);
    }
  }

  /**
   * `GET /v1/jobs/:id{query}` for the watchers; `undefined` when it failed in a way a lower rung
   * may fix (network error, proxy answer, non-JSON body, no answer within `timeoutMs`). Throws
   * the server's own `4xx` problems (unknown job, bad key) and aborts.
   */
  async #snapshot(id: string, query: string, signal: AbortSignal | undefined, timeoutMs: number): Promise<JobView | undefined> {
    const { controller, dispose } = linkSignal(signal);
    const timer = setTimeout(() => controller.abort(new Error('No answer in time.')), timeoutMs);
    try {
      const response = await this.#fetch(this.#url(`${this.#jobPath(id)}${query}`), {
        headers: this.#headersWith({ accept: 'application/json, application/problem+json' }),
        signal: controller.signal,
      });
      if (isAuthoritative(response)) throw await WaitlessApiError.fromResponse(response);
      if (!response.ok) {
        await discard(response);
        return undefined;
      }
      const text = await response.text();
      const job = parseJson(text) as JobView | undefined;
      return job && typeof job === 'object' && typeof job.version === 'number' && typeof job.status === 'string' ? job : undefined;
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (error instanceof WaitlessApiError) throw error;
      return undefined;
    } finally {
      clearTimeout(timer);
      dispose();
    }
  }

  /** Brings the watcher up to the snapshot: the real events from the events endpoint, else synthesized ones. */
  async *#advance(state: WatchState, job: JobView, signal: AbortSignal | undefined): AsyncGenerator<WatchEvent, void, undefined> {
    if (job.version <= state.last) return;
    if (!state.eventsBlocked) yield* this.#catchUp(state, job.version, signal);
    if (state.last >= job.version) return;
    for (const event of synthesize(state, job)) yield event;
  }

  /**
   * Reads the events after `state.last` up to `target` from the events endpoint (a replay: they
   * exist already, so they come at once unless something buffers the stream). Marks the
   * endpoint blocked when its answer is not an event stream or nothing arrives in time.
   */
  async *#catchUp(state: WatchState, target: number, signal: AbortSignal | undefined): AsyncGenerator<WatchEvent, void, undefined> {
    const { controller, dispose } = linkSignal(signal);
    const timeoutMs = Math.min(CATCH_UP_TIMEOUT_MS, this.#sseIdleTimeoutMs);
    const timer = setTimeout(() => controller.abort(new Error('The events endpoint did not answer in time.')), timeoutMs);
    let received = 0;
    try {
      const response = await this.#fetch(this.#url(`${this.#jobPath(state.id)}/events?after=${state.last}`), {
        // No `Accept: text/event-stream`: a proxy that refuses SSE by that header lets this through.
        headers: this.#headersWith({}),
        signal: controller.signal,
      });
      if (response.status === 204) return void (await discard(response));
      if (!response.ok || !/^text\/event-stream/i.test(response.headers.get('content-type') ?? '') || !response.body) {
        if (isAuthoritative(response) && response.status !== 400) throw await WaitlessApiError.fromResponse(response);
        await discard(response);
        state.eventsBlocked = true;
        return;
      }
      for await (const event of readJobEvents(response.body, () => {})) {
        if (event.seq <= state.last) continue;
        received++;
        yield this.#accept(state, event);
        if (event.seq >= target || isTerminalEvent(event)) return;
      }
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (error instanceof WaitlessApiError) throw error;
      if (received === 0) state.eventsBlocked = true; // nothing in time: buffered or blocked
    } finally {
      clearTimeout(timer);
      controller.abort();
      dispose();
    }
  }
}

// -----------------------------------------------------------------------------------------
// Helpers

/** Worth another try: the server (or something in front of it) is overloaded or restarting. */
function isTransient(status: number): boolean {
  return status >= 500 || status === 429;
}

/**
 * An answer only the Waitless server gives: a problem+json `400`/`401`/`403`/`404`. A watcher
 * throws it instead of falling back to another transport (which would get the same answer).
 */
function isAuthoritative(response: Response): boolean {
  return [400, 401, 403, 404].includes(response.status) && /^application\/problem\+json/i.test(response.headers.get('content-type') ?? '');
}

async function discard(response: Response): Promise<void> {
  try {
    await response.body?.cancel();
  } catch {
    // already gone
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** An AbortController that aborts with `parent`; `dispose` unhooks it. */
function linkSignal(parent: AbortSignal | undefined): { controller: AbortController; dispose: () => void } {
  const controller = new AbortController();
  if (!parent) return { controller, dispose: () => {} };
  if (parent.aborted) {
    controller.abort(parent.reason);
    return { controller, dispose: () => {} };
  }
  const onAbort = () => controller.abort(parent.reason);
  parent.addEventListener('abort', onAbort, { once: true });
  return { controller, dispose: () => parent.removeEventListener('abort', onAbort) };
}

/** Resolves after `ms`; rejects with the signal's reason when it aborts first. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The job events of an SSE body; `onBytes` hears of every chunk. Releases the body when done. */
async function* readJobEvents(body: ReadableStream<Uint8Array>, onBytes: (n: number) => void): AsyncGenerator<JobEvent, void, undefined> {
  for await (const message of readSse(body, { onBytes })) {
    const event = parseJobEvent(message.data, message.id);
    if (event) yield event;
  }
}

/** The view after one event of the log; `undefined` while only events after the start are known. */
function applyEvent(view: View | undefined, event: JobEvent): View | undefined {
  // Joined mid-log: wait for a status event (or a snapshot) to know the job.
  if (!view && event.type !== 'status') return undefined;
  return foldJobEvent(view ?? { status: 'queued', done: false, attempt: 0, output: '', version: 0, updatedAt: '' }, event);
}

/**
 * Events that take the watcher from what it knows (`state.view`) to the snapshot. They are
 * numbered within `(state.last, job.version]`, in the order the log would have them (a new
 * status first, the terminal status last), and `state` then covers the snapshot's version.
 */
function synthesize(state: WatchState, job: JobView): WatchEvent[] {
  const previous = state.view;
  const terminal = TERMINAL.has(job.status);
  const newAttempt = !previous || previous.attempt !== job.attempt;
  const statusChanged = newAttempt || previous.status !== job.status;
  const progress = job.progress === undefined ? undefined : JSON.stringify(job.progress);

  const status: WatchEvent | undefined = statusChanged ? draft('status', statusData(job), job) : undefined;
  const ordered: Array<{ event: WatchEvent; priority: number }> = [];
  if (status && !terminal) ordered.push({ event: status, priority: 0 });
  if (progress !== undefined && progress !== (previous?.progress === undefined ? undefined : JSON.stringify(previous.progress))) {
    ordered.push({ event: draft('progress', { ...(job.progress as Record<string, unknown>) }, job), priority: 2 });
  }
  const base = previous && !(newAttempt && job.status === 'running') ? previous.output : '';
  if (job.output && job.output !== base) {
    ordered.push({ event: draft('output', { text: job.output.startsWith(base) ? job.output.slice(base.length) : job.output }, job), priority: 1 });
  }
  if (status && terminal) ordered.push({ event: status, priority: 0 });

  // Never more events than log entries they stand for: drop the least important first.
  const room = job.version - state.last;
  while (ordered.length > room) {
    const worst = ordered.reduce((a, b) => (b.priority >= a.priority ? b : a));
    ordered.splice(ordered.indexOf(worst), 1);
  }
  const events = ordered.map(({ event }, i) => ({ ...event, seq: job.version - ordered.length + 1 + i }));
  state.last = job.version;
  state.view = { status: job.status, done: job.done, attempt: job.attempt, progress: job.progress, output: job.output, version: job.version, updatedAt: job.updatedAt };
  return events;
}

function draft(type: WatchEvent['type'], data: Record<string, unknown>, job: JobView): WatchEvent {
  return { seq: 0, type, data, at: job.updatedAt, synthesized: true };
}

function statusData(job: JobView): Record<string, unknown> {
  const data: Record<string, unknown> = { status: job.status, attempt: job.attempt };
  if (job.status === 'completed') data.result = job.result ?? null;
  else if (job.error) data.error = job.error;
  if (job.status === 'queued' && job.attempt > 0) data.runAt = job.runAt;
  return data;
}
