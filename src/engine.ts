import type { PGlite } from '@electric-sql/pglite';
import { pino, type Logger } from 'pino';
import type { z } from 'zod';
import {
  InputValidationError,
  InvalidOptionError,
  LimitExceededError,
  InvalidSubmitOptionError,
  InvalidWebhookError,
  JobNotFoundError,
  JobUnsuccessfulError,
  NotRecoverableError,
  ResultTimeoutError,
  TenantLimitError,
  UnknownJobError,
} from './errors.ts';
import { JOB_TOKEN_SECRET, JobTokens, type JobTokenScope, type MintedJobToken } from './access/job-tokens.ts';
import type { SubmitRequest } from './contract/submit.ts';
import { EventHub, type EventHubOptions } from './events/hub.ts';
import { type Duration, toMs } from './job/duration.ts';
import { type AnyJobDefinition, type JobDefinition, type JobLimits, checkLimits, isJobDefinition, resolveLimits } from './job/definition.ts';
import type { Job, JobEvent } from './job/model.ts';
import { ApiKeyStore } from './store/api-keys.ts';
import { assertSchemaName, type Driver } from './store/driver.ts';
import { type JobPage, JobStore, type ListParams, type SubmitOutcome, type SupersedePolicy } from './store/job-store.ts';
import { MAX_JSON_DEPTH, nestsDeeperThan, storedBytes, toStoredJson, toStoredValue } from './store/json.ts';
import { migrate, verifyMigrations } from './store/migrate.ts';
import { Notifier } from './store/notifications.ts';
import { createPgDriver } from './store/pg-driver.ts';
import { createPgliteDriver } from './store/pglite-driver.ts';
import { Worker, type WorkerOptions } from './worker/worker.ts';
import { WEBHOOK_EVENTS } from './store/queries.ts';
import { type WebhookEndpoint, WebhookStore } from './store/webhook-store.ts';
import { registerInternals } from './internals.ts';
import { Housekeeping, reclaimDeliveryLeases, reclaimJobLeases } from './maintenance/housekeeping.ts';
import { type PruneOptions, type PruneReport, Retention, type RetentionOptions, resolveRetentionOptions } from './maintenance/retention.ts';
import { DEFAULT_ENDPOINTS_PER_TENANT, type DispatcherOptions, WebhookDispatcher } from './webhooks/dispatcher.ts';
import { checkWebhookUrl, UnsafeUrlError } from './webhooks/ssrf.ts';
import { activeCarrier, submitSpan } from './observability/tracing.ts';

/** The tenant used when none is given (the library, `waitless dev`). */
export const DEFAULT_TENANT = 'default';

/** Options of {@link createWaitless}. */
export interface WaitlessOptions {
  /** Job definitions, as an array or as a module namespace (non-job exports are ignored). */
  jobs: readonly AnyJobDefinition[] | Record<string, unknown>;
  /**
   * Where jobs live. A `postgres://` or `postgresql://` URL connects to a PostgreSQL server;
   * anything else is a folder for embedded PGlite; `memory://` keeps PGlite in memory.
   * Default: `"./.waitless"`.
   */
  database?: string;
  /** An open PGlite instance to use (left open on `close()`). Takes precedence over `database`. */
  pglite?: PGlite;
  /** Schema for Waitless tables. Default: `"waitless"`. */
  schema?: string;
  /** Pool size for PostgreSQL. Default: `10`. */
  maxConnections?: number;
  /**
   * How long a statement waits for a pooled PostgreSQL connection before it fails with
   * a `DatabaseUnavailableError` (HTTP 503 with `Retry-After`). Default: `10_000` ms.
   */
  connectionTimeoutMs?: number;
  /**
   * Apply migrations on start. With `false` the schema must already hold exactly this
   * version's migrations (run `waitless migrate` first), else start fails with a `MigrationError`.
   * Default: `true`.
   */
  migrate?: boolean;
  /** Logger. Default: pino at `info` (or `LOG_LEVEL`). */
  logger?: Logger;
  /**
   * Outbound webhooks: retry schedule, receiver timeout, SSRF allow-list. The dispatcher runs
   * beside every worker started with `startWorker()`. Default: Svix's schedule, 15 s, no allow-list.
   */
  webhooks?: DispatcherOptions;
  /** How this process reads job events for its SSE streams and long-polls. Default: see {@link EventHubOptions}. */
  events?: EventHubOptions;
  /**
   * Size limits for every job whose definition does not set its own (input, result, output,
   * progress, events). Default: input and result 1 MiB, output 4 MiB per attempt, progress 64 KiB per report, 25 000 events per job.
   */
  limits?: JobLimits;
  /**
   * How long finished jobs are kept (with their events, steps, webhook deliveries and
   * idempotency key) before they are deleted, per tenant and for failed jobs; pruning runs in
   * every process with a worker, one process at a time, every `interval`. `false`: workers do
   * not prune (run `waitless prune` or {@link Waitless.prune} instead). A definition's own
   * `retention` applies where no tenant rule does. Default: 30 days for every job, every 10 minutes.
   */
  retention?: RetentionOptions | false;
}

export interface SubmitOptions {
  /** Owner of the job. Default: `"default"`. */
  tenant?: string;
  /** Same key + same input → the same job, however often it is sent. */
  idempotencyKey?: string;
  /**
   * Where to POST the outcome (Standard Webhooks, signed with the tenant's secrets). `events`
   * narrows which: default every terminal one (`job.completed`, `job.failed`, `job.cancelled`,
   * `job.timed_out`, `job.stale`); add `job.progress` to receive every progress report too. The URL must
   * pass the SSRF guard.
   */
  webhook?: { url: string; events?: string[] };
  /** Absolute base URL of the HTTP API, so webhook payloads can link to the job's status. */
  apiBaseUrl?: string;
  /** Higher runs first (an integer from -1000 to 1000). Default: `0`. */
  priority?: number;
  /** Not before this time. Default: now. Give `runAt` or `delay`, not both. */
  runAt?: Date | string;
  /** Not before this much time from now, e.g. `"10m"`. Default: none. */
  delay?: Duration;
  /**
   * Latest wins: `key` names what the job is about (e.g. `"doc:42:summary"`) among the
   * tenant's jobs; `policy` says what happens to the in-flight ones with the same key:
   * `supersede` (the default) cancels them, and whatever they return later is never
   * delivered as completed; `reject` refuses the new job ({@link SupersedeConflictError},
   * HTTP 409 naming the running job); `queue` runs the jobs one after another. Default: none.
   */
  supersede?: { key: string; policy?: SupersedePolicy };
  /**
   * What the job is asked about (JSON), e.g. `{ docId: 42, version: 7 }`: stored with the job
   * and handed to the definition's `relevant(context)` when the result is ready. Default: none.
   */
  context?: unknown;
  /** Flow-control key, overriding the definition's `concurrency.key(input)`; the limit is the definition's. Default: none. */
  concurrencyKey?: string;
}

// The engine's submit options and the HTTP submit body cannot drift apart: every body field
// but `input` (the argument) and `token` (createJobToken) is an option, and every option is a
// body field or one of the engine's own (the tenant, the Idempotency-Key header, the base URL
// the HTTP layer passes).
type SameKeys<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const _optionsMatchSubmitBody: SameKeys<Exclude<keyof SubmitRequest, 'input' | 'token'>, Exclude<keyof SubmitOptions, 'tenant' | 'idempotencyKey' | 'apiBaseUrl'>> = true;
void _optionsMatchSubmitBody;

/** Options of {@link Waitless.createJobToken}. */
export interface JobTokenOptions {
  /** Owner of the job. Default: `"default"`. */
  tenant?: string;
  /** Let the bearer cancel the job too. Default: `false` (read only: status and events). */
  cancel?: boolean;
  /** Lifetime, e.g. `"15m"` or a number of ms; at most 24 h. Default: `"15m"`. */
  ttl?: Duration;
}

/**
 * The tenant-scoped webhook management of {@link Waitless.webhooks}: signing secrets (with
 * rotation), registered endpoints, and each job's deliveries, which can be sent again.
 */
export interface WebhookAdmin {
  /** The tenant's active signing secrets, newest first (one is created on first use). */
  secrets: WebhookStore['secrets'];
  /** A new secret; the older ones stay valid for `overlapMs`. */
  rotateSecret: WebhookStore['rotateSecret'];
  listEndpoints: WebhookStore['listEndpoints'];
  /**
   * Registers an endpoint for the tenant's job events. Throws {@link InvalidWebhookError} unless `url` passes the SSRF guard,
   * and a `too_many_endpoints` {@link TenantLimitError} when the tenant has `webhooks.endpointsPerTenant` already.
   */
  createEndpoint(tenant: string, url: string, events: string[]): Promise<WebhookEndpoint>;
  /** False when the tenant has no endpoint with this id. */
  deleteEndpoint: WebhookStore['deleteEndpoint'];
  /** Every delivery of a job, each with its attempts. */
  listForJob: WebhookStore['listForJob'];
  /** Sends a delivery again now; undefined when the tenant has no delivery with this id. */
  redeliver: WebhookStore['redeliver'];
}

/** Options of {@link Waitless.result}. */
export interface ResultOptions {
  /** Owner of the job. Default: `"default"`. */
  tenant?: string;
  /** Stops waiting (the job keeps running); the promise rejects with the signal's reason. Default: none. */
  signal?: AbortSignal;
  /** Longest wait in ms, then a {@link ResultTimeoutError} (the job keeps running). Default: no limit. */
  timeout?: number;
}

/**
 * A running Waitless engine on one database: submit and read jobs, start workers. Its store,
 * driver and notifications are internal (they bypass the checks made here).
 */
export interface Waitless {
  /** The job definitions, by name. */
  readonly jobs: ReadonlyMap<string, AnyJobDefinition>;
  readonly logger: Logger;
  /** API keys of the HTTP API (`auth: { mode: 'api-key', keys: waitless.apiKeys }`): create, list, revoke, verify. */
  readonly apiKeys: ApiKeyStore;
  /** Webhook secrets, endpoints and deliveries, per tenant. */
  readonly webhooks: WebhookAdmin;
  /** Validates the input and enqueues a job. Throws {@link UnknownJobError} / {@link InputValidationError}. */
  submit<S extends z.ZodType, R>(job: JobDefinition<S, R> | string, input: z.input<S>, options?: SubmitOptions): Promise<SubmitOutcome>;
  /** Throws {@link InvalidWebhookError} saying why, unless `url` passes the SSRF guard. */
  checkWebhookUrl(url: string): Promise<void>;
  get(id: string, options?: { tenant?: string }): Promise<Job | undefined>;
  list(params?: Omit<ListParams, 'tenant'> & { tenant?: string }): Promise<JobPage>;
  cancel(id: string, options?: { tenant?: string }): Promise<Job | undefined>;
  /**
   * The admin's recovery: a failed, timed-out, cancelled or stuck (running) job goes back to
   * `queued` with a fresh attempt budget (its definition's `retry.attempts`), its history kept.
   * A worker still holding a stuck job is fenced out. Throws {@link NotRecoverableError} for a
   * queued or completed job; answers undefined for an unknown one.
   */
  recover(id: string, options?: { tenant?: string }): Promise<Job | undefined>;
  /**
   * Mints a short-lived bearer token for one job, to hand to a browser: it reads that job's
   * status and events (and cancels it, with `cancel: true`) and nothing else. Answers undefined
   * when the job does not exist for the tenant.
   */
  createJobToken(id: string, options?: JobTokenOptions): Promise<(MintedJobToken & { jobId: string; scopes: JobTokenScope[] }) | undefined>;
  /**
   * Replaces the secret that signs job tokens (one for the whole database, every tenant), in
   * every process on the database at once. Tokens signed before stay valid for `overlap`
   * (default `'24h'`, the longest a token lives: every one keeps working until it expires);
   * `overlap: 0` invalidates every job token now, e.g. after a leak. Only the secret just
   * replaced is kept, so a second rotation within the overlap ends the first one's tokens.
   */
  rotateJobTokenSecret(options?: { overlap?: Duration }): Promise<void>;
  events(id: string, afterSeq?: number, options?: { tenant?: string }): Promise<JobEvent[]>;
  /**
   * Long-poll: resolves with the job at its next change — as soon as its version passes `since`
   * (at once if it already has, or if the job is done) — or with its current state after
   * `timeoutMs`. Not the result: for that, see {@link Waitless.result}.
   */
  wait(id: string, options: { since?: number; timeoutMs: number; tenant?: string; signal?: AbortSignal }): Promise<Job | undefined>;
  /**
   * Waits for the job to finish. Resolves with its result when it `completed`; rejects with a
   * {@link JobUnsuccessfulError} (carrying the job) when it `failed`, was `cancelled`, `timed_out`
   * or ended `stale`, with a {@link JobNotFoundError} for an unknown job, with a
   * {@link ResultTimeoutError} after `timeout` ms, and with the signal's reason on abort.
   */
  result<R = unknown>(id: string, options?: ResultOptions): Promise<R>;
  /**
   * Deletes now what is past its retention (see {@link WaitlessOptions.retention}), in small
   * batches, and reports the rows per table; `dryRun` only counts them. Answers `skipped: true`,
   * having done nothing, while another process is pruning the same database.
   */
  prune(options?: PruneOptions): Promise<PruneReport>;
  /** Starts a worker in this process. It is stopped by `close()`. */
  startWorker(options?: WorkerOptions): Worker;
  /** Stops workers started here (gracefully), notifications and the database connection. */
  close(): Promise<void>;
}


/**
 * The definition's instant answer for an input, as JSON. A fallback is a convenience: when it
 * throws, the job still goes ahead without one, and the error is logged for its author.
 */
async function computeFallback(definition: AnyJobDefinition, input: unknown, logger: Logger): Promise<unknown> {
  if (!definition.fallback) return undefined;
  const started = performance.now();
  try {
    const value = toStoredValue(await definition.fallback(input));
    const elapsed = performance.now() - started;
    if (elapsed > 100) logger.warn({ job: definition.name, ms: Math.round(elapsed) }, 'fallback took over 100 ms: it delays every submit of this job');
    return value ?? undefined;
  } catch (error) {
    logger.error({ err: error, job: definition.name }, 'fallback threw; the job is submitted without one');
    return undefined;
  }
}

const KEY_PATTERN = /^[\x20-\x7e]{1,255}$/;
const MAX_DELAY_MS = 365 * 86_400_000;

/** Priority, run time, latest-wins key, context and concurrency key of a submit, checked. */
function scheduling(definition: AnyJobDefinition, input: unknown, o: SubmitOptions | undefined) {
  const priority = o?.priority ?? 0;
  if (!Number.isInteger(priority) || priority < -1000 || priority > 1000) throw new InvalidSubmitOptionError('priority must be a whole number from -1000 to 1000.');
  if (o?.runAt !== undefined && o.delay !== undefined) throw new InvalidSubmitOptionError('Give runAt or delay, not both.');
  let runAt: Date | undefined;
  if (o?.runAt !== undefined) {
    runAt = new Date(o.runAt);
    if (Number.isNaN(runAt.getTime())) throw new InvalidSubmitOptionError(`runAt is not a date: "${String(o.runAt)}". Use ISO 8601, e.g. 2026-12-24T18:00:00Z.`);
    const year = runAt.getUTCFullYear();
    if (year < 1970 || year > 9999) throw new InvalidSubmitOptionError(`runAt must fall between 1970 and 9999, got "${String(o.runAt)}".`);
  } else if (o?.delay !== undefined) {
    let ms: number;
    try {
      ms = toMs(o.delay, 'delay');
    } catch {
      throw new InvalidSubmitOptionError(`delay must be a duration such as 500ms, 30s or 10m, or a number of milliseconds.`);
    }
    if (ms < 0) throw new InvalidSubmitOptionError('delay cannot be negative.');
    if (ms > MAX_DELAY_MS) throw new InvalidSubmitOptionError('delay can be at most 365 days; use runAt for a date further out.');
    runAt = new Date(Date.now() + ms);
  }
  const supersede = o?.supersede && { key: o.supersede.key, policy: o.supersede.policy ?? 'supersede' };
  if (supersede && !KEY_PATTERN.test(supersede.key)) throw new InvalidSubmitOptionError('supersede.key must be 1–255 printable ASCII characters.');
  if (supersede && !['supersede', 'reject', 'queue'].includes(supersede.policy)) throw new InvalidSubmitOptionError('supersede.policy must be supersede, reject or queue.');
  const limit = definition.concurrency?.limit;
  if (supersede?.policy === 'queue' && limit) {
    throw new InvalidSubmitOptionError(`Job "${definition.name}" has a concurrency limit, which the queue policy would override: use supersede or reject with it.`);
  }
  const concurrencyKey = o?.concurrencyKey ?? (limit ? (definition.concurrency?.key?.(input) ?? undefined) : undefined);
  if (o?.concurrencyKey !== undefined && !limit) throw new InvalidSubmitOptionError(`Job "${definition.name}" declares no concurrency limit, so it takes no concurrencyKey.`);
  if (concurrencyKey !== undefined && !KEY_PATTERN.test(concurrencyKey)) throw new InvalidSubmitOptionError('The concurrency key must be 1–255 printable ASCII characters.');
  return {
    priority,
    runAt,
    supersede,
    context: o?.context === undefined ? undefined : checkedContext(o.context),
    concurrency: concurrencyKey !== undefined && limit ? { key: concurrencyKey, limit } : undefined,
  };
}

/** A duration option in ms, or an {@link InvalidOptionError} saying what is expected. */
function durationOption(value: Duration, name: string, examples: string): number {
  try {
    return toMs(value, name);
  } catch {
    throw new InvalidOptionError(`${name} must be a duration such as ${examples}, or a number of milliseconds.`);
  }
}

/** True when a JSON value holds a NUL character in a string or a key (PostgreSQL's text cannot). */
function hasNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\0');
  if (Array.isArray(value)) return value.some(hasNul);
  if (value && typeof value === 'object') return Object.entries(value).some(([key, v]) => key.includes('\0') || hasNul(v));
  return false;
}

function checkedContext(value: unknown): unknown {
  if (nestsDeeperThan(value, MAX_JSON_DEPTH)) throw new InvalidSubmitOptionError(`context nests deeper than ${MAX_JSON_DEPTH} levels.`);
  const context = toStoredValue(value);
  if (hasNul(context)) throw new InvalidSubmitOptionError('context contains a NUL character (\\u0000), which cannot be stored.');
  return context;
}

function collectJobs(jobs: WaitlessOptions['jobs']): Map<string, AnyJobDefinition> {
  const list = Array.isArray(jobs) ? jobs : Object.values(jobs);
  const map = new Map<string, AnyJobDefinition>();
  for (const job of list) {
    if (!isJobDefinition(job)) {
      if (Array.isArray(jobs)) throw new TypeError('Every entry of `jobs` must come from defineJob().');
      continue;
    }
    if (map.has(job.name)) throw new TypeError(`Two jobs are named "${job.name}".`);
    map.set(job.name, job);
  }
  return map;
}

/** Each definition with its limits resolved: its own, else the engine's, else the built-in ones. */
function withLimits(jobs: Map<string, AnyJobDefinition>, limits: JobLimits): Map<string, AnyJobDefinition> {
  return new Map([...jobs].map(([name, job]) => [name, Object.freeze({ ...job, limits: Object.freeze(resolveLimits(job.limits, limits)) })]));
}

async function openDriver(options: WaitlessOptions, schema: string): Promise<Driver> {
  if (options.pglite) return createPgliteDriver({ instance: options.pglite, schema });
  const database = options.database ?? './.waitless';
  if (/^postgres(ql)?:\/\//.test(database)) {
    return createPgDriver({ connectionString: database, schema, maxConnections: options.maxConnections, connectionTimeoutMs: options.connectionTimeoutMs });
  }
  return createPgliteDriver({ dataDir: database, schema });
}

/**
 * Opens the database, applies migrations and returns the engine.
 *
 * ```ts
 * const waitless = await createWaitless({ jobs: [summarize], database: process.env.DATABASE_URL });
 * waitless.startWorker();
 * const { job } = await waitless.submit(summarize, { text });
 * ```
 */
export async function createWaitless(options: WaitlessOptions): Promise<Waitless> {
  const schema = assertSchemaName(options.schema ?? 'waitless');
  const jobs = withLimits(collectJobs(options.jobs), checkLimits(options.limits, 'createWaitless'));
  const retentionPolicy = resolveRetentionOptions(options.retention || undefined, (message) => new InvalidOptionError(message));
  const endpointsPerTenant = options.webhooks?.endpointsPerTenant ?? DEFAULT_ENDPOINTS_PER_TENANT;
  if (!Number.isInteger(endpointsPerTenant) || endpointsPerTenant < 1) throw new InvalidOptionError('webhooks.endpointsPerTenant must be a whole number ≥ 1.');
  const logger = options.logger ?? pino({ level: process.env.LOG_LEVEL ?? 'info' });
  const driver = await openDriver(options, schema);
  try {
    if (options.migrate !== false) await migrate(driver, schema);
    else await verifyMigrations(driver, schema);
  } catch (error) {
    await driver.close();
    throw error;
  }
  const store = new JobStore(driver);
  const jobTokens = new JobTokens(driver);
  const notifier = await Notifier.start(driver, schema);
  // Another process rotated the job-token secret (or notifications were lost): read it again.
  notifier.onSecretRotated((name) => {
    if (name === undefined || name === JOB_TOKEN_SECRET) jobTokens.forget();
  });
  const hub = new EventHub(driver, notifier, logger.child({ component: 'events' }), options.events);
  const workers: Worker[] = [];
  const webhooks = new WebhookStore(driver);
  let dispatcher: WebhookDispatcher | undefined;
  const housekeeping = new Housekeeping(logger.child({ component: 'housekeeping' }));
  // Jobs of definitions this process does not load follow their tenant's rule or the engine's.
  const definitionRetention = new Map([...jobs].map(([name, definition]) => [name, definition.retention]));
  const retention = new Retention(driver, retentionPolicy, definitionRetention, logger.child({ component: 'retention' }));
  const tenantOf = (o?: { tenant?: string }) => o?.tenant ?? DEFAULT_TENANT;

  const waitless: Waitless = {
    jobs,
    logger,
    apiKeys: new ApiKeyStore(driver),
    webhooks: {
      secrets: (tenant) => webhooks.secrets(tenant),
      rotateSecret: (tenant, overlapMs) => webhooks.rotateSecret(tenant, overlapMs),
      listEndpoints: (tenant) => webhooks.listEndpoints(tenant),
      async createEndpoint(tenant, url, events) {
        const unknown = events.find((e) => !(WEBHOOK_EVENTS as readonly string[]).includes(e));
        if (unknown) throw new InvalidWebhookError(`Unknown webhook event "${unknown}". Use: ${WEBHOOK_EVENTS.join(', ')}.`);
        await waitless.checkWebhookUrl(url);
        const max = endpointsPerTenant;
        const endpoint = await webhooks.createEndpoint(tenant, url, events, max);
        if (!endpoint) {
          throw new TenantLimitError('too_many_endpoints', `Tenant "${tenant}" already has ${max} webhook endpoints, its limit. Delete one it no longer needs, then register this one.`, max);
        }
        return endpoint;
      },
      deleteEndpoint: (tenant, id) => webhooks.deleteEndpoint(tenant, id),
      listForJob: (tenant, jobId) => webhooks.listForJob(tenant, jobId),
      redeliver: (tenant, id) => webhooks.redeliver(tenant, id),
    },

    async submit(job, input, submitOptions) {
      const name = typeof job === 'string' ? job : job.name;
      const definition = jobs.get(name);
      if (!definition) throw new UnknownJobError(name);
      // The input is stored as JSON and parsed again in the worker, so the schema is checked
      // against that JSON form here: what passes now is exactly what the handler will get.
      // Refused before anything recursive walks it: a value nested thousands deep overflows the stack.
      if (nestsDeeperThan(input, MAX_JSON_DEPTH)) throw new InputValidationError(name, [{ code: 'custom', path: [], message: `nests deeper than ${MAX_JSON_DEPTH} levels`, input: null }]);
      const text = toStoredJson(input) ?? 'null';
      const maxInput = resolveLimits(definition.limits).input;
      if (storedBytes(text) > maxInput) {
        throw new LimitExceededError(`The input of job "${name}" (${storedBytes(text)} bytes as JSON)`, 'limits.input', maxInput, 'bytes', 'Pass large inputs by reference (a URL or an id).');
      }
      const stored: unknown = JSON.parse(text);
      // PostgreSQL cannot store a NUL character in text or jsonb: refuse it here, with a reason.
      if (hasNul(stored)) throw new InputValidationError(name, [{ code: 'custom', path: [], message: 'contains a NUL character (\\u0000), which cannot be stored', input: stored }]);
      const parsed = (definition.input as z.ZodType).safeParse(stored);
      if (!parsed.success) throw new InputValidationError(name, parsed.error.issues);
      const fallback = await computeFallback(definition, parsed.data, logger);
      const webhook = submitOptions?.webhook;
      if (webhook) {
        const unknown = webhook.events?.find((e) => !(WEBHOOK_EVENTS as readonly string[]).includes(e));
        if (unknown) throw new InvalidWebhookError(`Unknown webhook event "${unknown}". Use: ${WEBHOOK_EVENTS.join(', ')}.`);
        await waitless.checkWebhookUrl(webhook.url);
      }
      return store.submit({
        tenant: tenantOf(submitOptions),
        name,
        input: stored,
        webhook: webhook && { url: webhook.url, ...(webhook.events ? { events: webhook.events } : {}) },
        apiBaseUrl: submitOptions?.apiBaseUrl,
        maxAttempts: definition.retry.attempts,
        timeoutMs: definition.timeoutMs,
        idempotencyKey: submitOptions?.idempotencyKey,
        fallback,
        ...scheduling(definition, parsed.data, submitOptions),
        traceContext: activeCarrier(),
      });
    },

    async checkWebhookUrl(url) {
      try {
        await checkWebhookUrl(url, options.webhooks?.ssrf);
      } catch (error) {
        if (error instanceof UnsafeUrlError) throw new InvalidWebhookError(`The webhook URL is refused: ${error.reason}.`);
        const reason = error instanceof Error ? error.message : String(error);
        throw new InvalidWebhookError(`The webhook host could not be checked right now (${reason}); try again shortly.`, true);
      }
    },

    get: (id, o) => store.get(tenantOf(o), id),
    list: (params) => store.list({ ...params, tenant: tenantOf(params) }),
    cancel: (id, o) => store.cancel(tenantOf(o), id),
    events: (id, afterSeq = 0, o) => store.events(tenantOf(o), id, afterSeq),

    async recover(id, o) {
      const tenant = tenantOf(o);
      const job = await store.get(tenant, id);
      if (!job) return undefined;
      // A job whose definition is gone from this process keeps its own last budget.
      const attempts = jobs.get(job.name)?.retry.attempts ?? job.maxAttempts;
      const outcome = await store.recover(tenant, id, attempts);
      if (outcome === 'not-recoverable') throw new NotRecoverableError(job);
      return outcome;
    },

    async createJobToken(id, o) {
      const tenant = tenantOf(o);
      const ttlMs = durationOption(o?.ttl ?? '15m', 'ttl', '30s or 15m');
      if (ttlMs < 1000 || ttlMs > 86_400_000) throw new InvalidOptionError('A job token lives from 1 s to 24 h.');
      if (!(await store.get(tenant, id))) return undefined;
      const scopes: JobTokenScope[] = o?.cancel ? ['read', 'cancel'] : ['read'];
      const minted = await jobTokens.mint({ tenant, jobId: id, scopes, expiresAt: Math.floor((Date.now() + ttlMs) / 1000) });
      return { ...minted, jobId: id, scopes };
    },

    async rotateJobTokenSecret(o) {
      const overlapMs = durationOption(o?.overlap ?? '24h', 'overlap', '1h or 0');
      if (overlapMs < 0 || overlapMs > 86_400_000) throw new InvalidOptionError('overlap is from 0 to 24 h (the longest a job token lives).');
      await jobTokens.rotate(overlapMs);
    },

    async wait(id, o) {
      const tenant = tenantOf(o);
      const deadline = Date.now() + o.timeoutMs;
      // Watch before reading, so a change landing between the read and the wait is not missed.
      // The hub reads the job once per change for every long-poll on it.
      let latest: Job | undefined;
      let wake: () => void = () => {};
      const unwatch = hub.watch(tenant, id, (job) => {
        latest = job;
        wake();
      });
      const onAbort = () => wake();
      o.signal?.addEventListener('abort', onAbort, { once: true });
      try {
        let current = await store.get(tenant, id);
        if (!current) return undefined;
        const since = o.since ?? current.version;
        for (;;) {
          if (latest && latest.version >= current.version) current = latest;
          const remaining = deadline - Date.now();
          if (current.done || current.version > since || remaining <= 0 || o.signal?.aborted) return current;
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, remaining);
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          wake = () => {};
        }
      } finally {
        unwatch();
        o.signal?.removeEventListener('abort', onAbort);
      }
    },

    async result<R>(id: string, o: ResultOptions = {}): Promise<R> {
      const tenant = tenantOf(o);
      const deadline = o.timeout === undefined ? Infinity : Date.now() + o.timeout;
      o.signal?.throwIfAborted();
      let job = await store.get(tenant, id);
      for (;;) {
        if (!job) throw new JobNotFoundError(id);
        if (job.done) break;
        o.signal?.throwIfAborted();
        const remaining = deadline - Date.now();
        if (remaining <= 0) throw new ResultTimeoutError(id, o.timeout!);
        // wait() answers at every change; a minute bounds each round so an idle job is re-read.
        job = await waitless.wait(id, { tenant, since: job.version, timeoutMs: Math.min(remaining, 60_000), signal: o.signal });
      }
      if (job.status === 'completed') return job.result as R;
      throw new JobUnsuccessfulError(job);
    },

    prune: (pruneOptions) => retention.run(pruneOptions),

    startWorker(workerOptions) {
      const worker = new Worker(store, notifier, jobs, logger.child({ component: 'worker' }), workerOptions).start();
      workers.push(worker);
      dispatcher ??= new WebhookDispatcher(webhooks, notifier, logger.child({ component: 'webhooks' }), options.webhooks).start();
      housekeeping
        .schedule(reclaimJobLeases(store, logger.child({ component: 'worker' }), worker.pollMs))
        .schedule(reclaimDeliveryLeases(webhooks, dispatcher.pollMs));
      if (options.retention !== false) housekeeping.schedule(retention.task());
      return worker;
    },

    async close() {
      await housekeeping.stop();
      await Promise.all(workers.splice(0).map((worker) => worker.stop()));
      await dispatcher?.stop();
      hub.close();
      await store.drain();
      await notifier.close();
      await driver.close();
    },
  };
  // Every submit, the library's and the HTTP route's, runs in one span whose context is stored with the job.
  const submitUntraced = waitless.submit.bind(waitless);
  waitless.submit = (job, input, o) => submitSpan(typeof job === 'string' ? job : job.name, () => submitUntraced(job, input, o));
  registerInternals(waitless, { driver, schema, store, notifier, hub, jobTokens, webhooks, housekeeping });
  return waitless;
}
