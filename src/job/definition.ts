import type { z } from 'zod';
import type { JobLogLine } from './model.ts';
import { type Duration, toMs } from './duration.ts';
import { type ResolvedRetryPolicy, type RetryPolicy, resolveRetryPolicy } from './retry.ts';
import { type ResolvedRetentionRule, type RetentionRule, resolveRetentionRule } from '../maintenance/retention.ts';

/** A progress report from a handler. Every field is optional; omitted ones keep no value. */
export interface ProgressUpdate {
  /** 0–100. */
  percent?: number;
  /** A short machine-friendly step name, e.g. `"reading"`. */
  stage?: string;
  /** A sentence for people. */
  message?: string;
  /** Anything else worth showing (JSON). */
  data?: unknown;
}

/** What a handler receives besides its input. */
export interface JobContext {
  /** The job's id. */
  readonly jobId: string;
  /** The tenant the job belongs to. */
  readonly tenant: string;
  /** Which attempt this is, starting at 1. */
  readonly attempt: number;
  /**
   * Aborts when the job is cancelled, runs past its time budget, when this worker loses the
   * job's lease, or when the worker shuts down. `signal.reason` says which. Pass it to every
   * call that accepts one (fetch, model SDKs) so the work stops with the job.
   */
  readonly signal: AbortSignal;
  /**
   * The job's own log: `ctx.log.info('fetched the page', { bytes })`. Lines are kept with the
   * job as `log` events (read them at `GET /v1/jobs/:id/logs`, in the dashboard's job view, or
   * live on the job's event stream), up to the definition's `logs` limit per attempt, and are
   * echoed to the process's logger, bound to the job id and attempt.
   */
  readonly log: JobLog;
  /** Records progress as a job event. Rejects if the lease is lost. */
  progress(update: ProgressUpdate): Promise<void>;
  /**
   * Appends partial output (e.g. one model token). Buffered and written in batches, never one
   * database write per call; whatever is buffered is written before the job's result.
   */
  write(chunk: string): void;
  /** Writes buffered partial output now. */
  flush(): Promise<void>;
  /**
   * Runs `fn` once for this job, however often the job runs: its result (JSON) is recorded
   * durably (fenced by the lease, like every other write) and, when the job runs again after a
   * crash, a lost lease or a retryable failure, a completed step returns the recorded result
   * without running. Names are unique within a job. A step that throws records nothing and runs
   * again next attempt. Steps and their timings are part of the job's status and events.
   */
  step<T>(name: string, fn: (step: StepContext) => Promise<T>): Promise<T>;
  /**
   * Runs tasks in parallel, each with a child signal. The first failure aborts the others,
   * waits for them to settle, then rejects with that failure; cancelling or timing out the job
   * aborts every child. Resolves with the results, in order, when all succeed.
   */
  all<const T extends readonly ChildTask<unknown>[]>(tasks: T): Promise<{ -readonly [K in keyof T]: Awaited<ReturnType<T[K]>> }>;
  /** Like {@link JobContext.all}, but waits for every task and reports each outcome; only the job's own abort stops them. */
  allSettled<const T extends readonly ChildTask<unknown>[]>(tasks: T): Promise<{ -readonly [K in keyof T]: PromiseSettledResult<Awaited<ReturnType<T[K]>>> }>;
  /** Adds token usage (e.g. of one model call) to the job's running total, shown as `usage` in its status. */
  recordUsage(usage: TokenUsage): Promise<void>;
}

/** One task of {@link JobContext.all}: gets a child context whose signal aborts with its siblings' failure or the job. */
export type ChildTask<T> = (child: ChildContext) => Promise<T>;

/** What a task of {@link JobContext.all} receives. */
export interface ChildContext {
  /** Aborts when a sibling fails (in `all`), or when the job is cancelled, times out or loses its lease. */
  readonly signal: AbortSignal;
  /** {@link JobContext.step}, bound to this child's signal (safe to destructure). */
  readonly step: <T>(name: string, fn: (step: StepContext) => Promise<T>) => Promise<T>;
}

/** What a step's body receives. */
export interface StepContext {
  readonly name: string;
  /**
   * `<job id>:<step name>`: the same on every run of this step. Hand it to external APIs
   * (payments, e-mail) as their idempotency key, so a step that ran but was not recorded (a
   * crash between the call and the record) is not repeated by them either.
   */
  readonly idempotencyKey: string;
  /** The job's signal, or the child's inside `ctx.all`. */
  readonly signal: AbortSignal;
  /** What an earlier, unfinished run of this step saved with `saveCheckpoint` (undefined if none). */
  readonly checkpoint: unknown;
  /** Saves how far the step got (JSON), durably and fenced, for a later run to resume from. */
  saveCheckpoint(value: unknown): Promise<void>;
}

/** Levels of a job's log lines. */
export const JOB_LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const satisfies ReadonlyArray<JobLogLine['level']>;
export type JobLogLevel = JobLogLine['level'];

/** A job's own log (`ctx.log`): each call adds one line, with optional JSON data. Never throws, never waits. */
export type JobLog = Record<JobLogLevel, (message: string, data?: unknown) => void>;

/** How much of its own log a job keeps, per attempt. */
export interface JobLogLimits {
  /** Lines kept per attempt; later ones are dropped and counted. Default: `200`. */
  maxLines?: number;
  /** Bytes (of the lines as JSON) kept per attempt; later lines are dropped and counted. Default: `65_536`. */
  maxBytes?: number;
}

/**
 * Size limits of a job, so one job cannot grow the database without bound. Sizes are the
 * UTF-8 bytes of the value's JSON as stored (output: of its text). Past a limit the input is
 * refused at submit (`413`); a running job fails at once, without retries (another attempt
 * would pass it again), with a `limit_exceeded` error naming the limit and its value.
 */
export interface JobLimits {
  /** Bytes of the input. Default: `1_048_576` (1 MiB, the HTTP API's default body limit). */
  input?: number;
  /** Bytes of the result, and of each step's result or checkpoint. Default: `1_048_576` (1 MiB). */
  result?: number;
  /** Bytes of partial output (`ctx.write`) per attempt. Default: `4_194_304` (4 MiB). */
  output?: number;
  /** Bytes of one progress report. Default: `65_536` (64 KiB). */
  progress?: number;
  /**
   * Events of the job, over all its attempts: output rounds, progress reports, log lines,
   * step records and status changes (the final status is always recorded). Default: `25_000`.
   */
  events?: number;
}

/**
 * The built-in limits. Results over 1 MiB belong in a bucket, not in a status read; 4 MiB of
 * output is far more than any model answer; a progress report is a few hundred bytes, 64 KiB
 * leaves room for a table of data; an hour of streamed output at the default flush interval is
 * 18 000 output events, and the rest leaves room for progress, logs and steps.
 */
export const DEFAULT_LIMITS: Readonly<Required<JobLimits>> = Object.freeze({ input: 1_048_576, result: 1_048_576, output: 4_194_304, progress: 65_536, events: 25_000 });

/** Throws a `TypeError` naming the bad limit (`where` says whose), unless every given one is a whole number ≥ 1. */
export function checkLimits(limits: JobLimits | undefined, where: string): JobLimits {
  const checked: JobLimits = {};
  for (const [key, n] of Object.entries(limits ?? {}) as Array<[string, unknown]>) {
    if (!(key in DEFAULT_LIMITS)) throw new TypeError(`${where}: limits.${key} is not a limit; use ${Object.keys(DEFAULT_LIMITS).join(', ')}.`);
    if (n === undefined) continue;
    if (!(typeof n === 'number' && Number.isSafeInteger(n) && n >= 1)) throw new TypeError(`${where}: limits.${key} must be a whole number ≥ 1.`);
    checked[key as keyof JobLimits] = n;
  }
  return checked;
}

/** The limits that hold: the definition's, then the engine's, then {@link DEFAULT_LIMITS}. */
export const resolveLimits = (...layers: Array<JobLimits | undefined>): Required<JobLimits> =>
  Object.assign({}, DEFAULT_LIMITS, ...layers.slice().reverse()) as Required<JobLimits>;

/** Token usage of model calls, as OpenAI-compatible APIs report it. */
export interface TokenUsage {
  /** Default: `"unknown"`. */
  model?: string;
  promptTokens?: number;
  completionTokens?: number;
  /** Default: prompt + completion. */
  totalTokens?: number;
}

/** What `defineJob` accepts. */
export interface JobOptions<Schema extends z.ZodType, Result> {
  /** Unique name; also the URL segment in `POST /v1/jobs/:name`. Letters, digits, `-`, `_`, `.`. */
  name: string;
  /** zod schema of the input; requests that do not match are refused with 422 before any job exists. */
  input: Schema;
  /** Time budget of one attempt. Past it the job ends `timed_out`. Default: `"15m"`. */
  timeout?: Duration;
  /** Retries after a thrown error. Default: 3 attempts, 1 s doubling to at most 5 min. */
  retry?: RetryPolicy;
  /** The work. Its return value (JSON) becomes the job's result. */
  run: (input: z.output<Schema>, ctx: JobContext) => Promise<Result>;
  /**
   * An instant answer computed without AI (rules, a template, a cached value), in well under
   * 100 ms. It is computed at submit, returned in the `202` body and in the job's status as
   * `fallback: { result, provisional: true }` while the job runs, and replaced by the real
   * result when it lands. Keep it deterministic: a replayed submit shows the stored one. If it
   * throws, the job is submitted without one (and the error is logged). Default: none.
   */
  fallback?: (input: z.output<Schema>) => Result | Promise<Result>;
  /**
   * Relevance at delivery: called with the `context` the job was submitted with (e.g. the
   * version of the document it was asked about) once the result is ready. If it answers
   * false, the job ends `stale`: the result is kept for inspection, never delivered as
   * completed, and webhooks get `job.stale`. Not called for jobs submitted without a context.
   * Default: none (every result is delivered).
   */
  relevant?: (context: unknown, input: z.output<Schema>) => boolean | Promise<boolean>;
  /**
   * Flow control: at most `limit` jobs with the same key (per tenant) run at once, across
   * every worker process; the rest wait in the queue, by priority then age. `key` derives the
   * key from the input (e.g. the user id); a submit's own `concurrencyKey` overrides it.
   * Default: no limit.
   */
  concurrency?: { limit: number; key?: (input: z.output<Schema>) => string };
  /** How much of `ctx.log` is kept with the job, per attempt. Default: 200 lines and 64 KiB. */
  logs?: JobLogLimits;
  /** Size limits: input, result, output, progress, events. Default: the engine's `limits`, else {@link DEFAULT_LIMITS}. */
  limits?: JobLimits;
  /**
   * How long a finished job of this kind is kept (with its events, steps and webhook
   * deliveries) before it is deleted: a duration (e.g. `'7d'`), or `{ default, failed }` to
   * keep failed and timed-out jobs for another time. A tenant's rule in the engine's
   * `retention.tenants` wins over this. Applied by processes that load this definition; the
   * others treat its jobs by their tenant's rule or the engine's. Default: the engine's
   * `retention` (30 days).
   */
  retention?: RetentionRule | Duration;
}

/** A job definition, ready to register with `createWaitless({ jobs })`. */
export interface JobDefinition<Schema extends z.ZodType = z.ZodType, Result = unknown> {
  readonly name: string;
  readonly input: Schema;
  readonly timeoutMs: number;
  readonly retry: ResolvedRetryPolicy;
  readonly run: (input: z.output<Schema>, ctx: JobContext) => Promise<Result>;
  readonly fallback?: (input: z.output<Schema>) => Result | Promise<Result>;
  readonly relevant?: (context: unknown, input: z.output<Schema>) => boolean | Promise<boolean>;
  readonly concurrency?: { limit: number; key?: (input: z.output<Schema>) => string };
  /** `ctx.log` lines kept per attempt, resolved. */
  readonly logs: Required<JobLogLimits>;
  /** The size limits this definition sets (the rest come from the engine, or the defaults). */
  readonly limits: JobLimits;
  /** The definition's own retention, in ms, if it has one. */
  readonly retention?: ResolvedRetentionRule;
  /** Marks the object as a definition, so a module's other exports are ignored. */
  readonly kind: 'waitless.job';
}

/** Any job definition, whatever its input and result. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyJobDefinition = JobDefinition<any, any>;

/** What a job's name may be: letters, digits, `.`, `_` and `-`, up to 100 characters. */
export const JOB_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const DEFAULT_TIMEOUT: Duration = '15m';

/**
 * Defines a job type.
 *
 * ```ts
 * export const summarize = defineJob({
 *   name: 'summarize',
 *   input: z.object({ text: z.string() }),
 *   timeout: '5m',
 *   async run({ text }, ctx) {
 *     await ctx.progress({ percent: 10, stage: 'reading' });
 *     return { summary: text.slice(0, 100) };
 *   },
 * });
 * ```
 */
export function defineJob<Schema extends z.ZodType, Result>(options: JobOptions<Schema, Result>): JobDefinition<Schema, Result> {
  if (!JOB_NAME_PATTERN.test(options.name)) {
    throw new TypeError(`Invalid job name "${options.name}": use letters, digits, ".", "_" and "-" (at most 100).`);
  }
  const timeoutMs = toMs(options.timeout ?? DEFAULT_TIMEOUT, 'timeout');
  const limit = options.concurrency?.limit;
  if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1)) throw new TypeError(`Job "${options.name}": concurrency.limit must be a whole number ≥ 1.`);
  if (timeoutMs < 1 || timeoutMs > 2_147_483_647) throw new TypeError(`Job "${options.name}": timeout out of range.`);
  const logs = { maxLines: options.logs?.maxLines ?? 200, maxBytes: options.logs?.maxBytes ?? 65_536 };
  for (const [key, n] of Object.entries(logs)) {
    if (!(Number.isSafeInteger(n) && n >= 0)) throw new TypeError(`Job "${options.name}": logs.${key} must be a whole number ≥ 0.`);
  }
  return Object.freeze({
    kind: 'waitless.job',
    name: options.name,
    input: options.input,
    timeoutMs,
    retry: resolveRetryPolicy(options.retry),
    logs,
    limits: Object.freeze(checkLimits(options.limits, `Job "${options.name}"`)),
    run: options.run,
    ...(options.fallback ? { fallback: options.fallback } : {}),
    ...(options.relevant ? { relevant: options.relevant } : {}),
    ...(options.concurrency ? { concurrency: { ...options.concurrency } } : {}),
    ...(options.retention !== undefined ? { retention: resolveRetentionRule(options.retention, `Job "${options.name}": retention`) } : {}),
  });
}

export function isJobDefinition(value: unknown): value is AnyJobDefinition {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'waitless.job';
}
