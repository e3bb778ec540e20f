/**
 * What the HTTP API answers, as zod schemas: the OpenAPI document is generated from them, and
 * each is checked at compile time against the TypeScript type the server builds its answer
 * from, so neither can drift from the other. Browser-safe: nothing here imports a Node module.
 */
import { z } from 'zod';
import type { Caller } from '../client/client.ts';
import type { JobTokenScope } from '../access/job-tokens.ts';
import type { JobError } from '../job/errors.ts';
import type { Job, JobEvent, JobLogEntry, JobStep, JobUsage } from '../job/model.ts';
import type { WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookSecretInfo } from '../store/webhook-store.ts';
import { JOB_STATUSES } from './statuses.ts';

const timestamp = z.string().meta({ format: 'date-time', description: 'ISO 8601, UTC.' });

export const jobErrorSchema = z
  .object({
    code: z.string().meta({ description: 'Stable machine-readable code, e.g. `handler_error`, `timed_out`, `worker_lost`, `cancelled`.' }),
    message: z.string(),
    name: z.string().optional().meta({ description: "The error's class name when it came from a handler." }),
  })
  .meta({ description: 'Why a job failed.' });

export const jobStepSchema = z
  .object({
    name: z.string(),
    status: z.enum(['running', 'completed', 'failed']),
    attempt: z.number().int(),
    startedAt: timestamp,
    finishedAt: timestamp.optional(),
    durationMs: z.number().optional(),
    error: z.string().optional(),
  });

const tokenCounts = { promptTokens: z.number().int(), completionTokens: z.number().int(), totalTokens: z.number().int() };

export const jobUsageSchema = z
  .object({ ...tokenCounts, byModel: z.record(z.string(), z.object({ ...tokenCounts, calls: z.number().int() })) })
  .meta({ description: "Token usage of the job's model calls, in total and per model." });

/** A job, as `GET /v1/jobs/:id` (and every endpoint answering with a job) shows it. */
export const jobSchema = z
  .object({
    id: z.string().meta({ description: 'UUIDv7.' }),
    name: z.string(),
    status: z.enum(JOB_STATUSES),
    done: z.boolean().meta({ description: 'True once the status is terminal.' }),
    input: z.unknown(),
    result: z.unknown().optional().meta({ description: 'When completed.' }),
    fallback: z
      .object({ result: z.unknown(), provisional: z.literal(true) })
      .optional()
      .meta({ description: "The definition's instant answer, until the job completes." }),
    error: jobErrorSchema.optional(),
    progress: z
      .object({ percent: z.number().min(0).max(100).optional(), stage: z.string().optional(), message: z.string().optional(), data: z.unknown().optional() })
      .optional(),
    output: z.string().meta({ description: 'Partial output written so far.' }),
    attempt: z.number().int(),
    maxAttempts: z.number().int(),
    version: z.number().int().meta({ description: 'Sequence number of the latest event; use as `?since=`.' }),
    createdAt: timestamp,
    startedAt: timestamp.optional(),
    finishedAt: timestamp.optional(),
    updatedAt: timestamp,
    runAt: timestamp,
    priority: z.number().int(),
    steps: z.array(jobStepSchema).optional(),
    context: z.unknown().optional(),
    usage: jobUsageSchema.optional(),
    supersedeKey: z.string().optional(),
    concurrency: z.object({ key: z.string(), limit: z.number().int() }).optional(),
  });

/** The URLs of a job, relative to the server. */
export const jobLinksSchema = z.object({ self: z.string(), events: z.string(), cancel: z.string() });

/** A job with its links: what every endpoint answering with a job sends. */
export const jobViewSchema = jobSchema.extend({ links: jobLinksSchema });

/** A job token as minted by `POST /v1/jobs/:id/tokens`. */
export const jobTokenSchema = z
  .object({
    token: z.string().meta({ description: 'Bearer credential (`wlt_…`) for this one job.' }),
    expiresAt: timestamp,
    jobId: z.string(),
    scopes: z.array(z.enum(['read', 'cancel'])),
  });

/** `POST /v1/jobs/:name`: the job, and a job token when the submit asked for one. */
export const submitResponseSchema = jobViewSchema
  .extend({ token: z.object({ token: z.string(), expiresAt: timestamp }).optional().meta({ description: 'When the submit asked for one.' }) });

export const jobPageSchema = z
  .object({
    jobs: z.array(jobViewSchema),
    nextCursor: z.string().optional().meta({ description: 'Pass as `?cursor=` for the next page; absent on the last.' }),
  });

/** One entry of a job's event log, as an SSE `data:` line carries it. */
export const jobEventSchema = z
  .object({
    seq: z.number().int().min(1),
    type: z.enum(['status', 'progress', 'output', 'step', 'log']),
    data: z.record(z.string(), z.unknown()),
    at: timestamp,
  });

/** One line of a job's own log (`ctx.log`), as `GET /v1/jobs/:id/logs` lists it. */
export const jobLogEntrySchema = z.object({
  seq: z.number().int().min(1).meta({ description: "The sequence number of the line's `log` event in the job's event log." }),
  at: timestamp,
  level: z.enum(['debug', 'info', 'warn', 'error']),
  message: z.string(),
  attempt: z.number().int().meta({ description: 'The attempt that wrote it.' }),
  data: z.unknown().optional().meta({ description: 'What the handler passed with the line (JSON).' }),
  dropped: z
    .number()
    .int()
    .optional()
    .meta({ description: "Only on the line closing an attempt's log when it passed the definition's `logs` limit: how many lines were dropped." }),
});

export const webhookEndpointSchema = z
  .object({
    id: z.string(),
    url: z.string(),
    events: z.array(z.string()),
    createdAt: timestamp,
    disabledAt: timestamp.optional(),
    disabledReason: z.string().optional(),
  });

export const webhookAttemptSchema = z
  .object({
    n: z.number().int(),
    startedAt: timestamp,
    statusCode: z.number().int().optional(),
    latencyMs: z.number(),
    responseExcerpt: z.string().optional(),
    error: z.string().optional(),
  });

export const webhookDeliverySchema = z
  .object({
    id: z.string().meta({ description: 'Also the `webhook-id` header: the same on every attempt.' }),
    jobId: z.string(),
    endpointId: z.string().optional(),
    url: z.string(),
    eventType: z.string(),
    status: z.enum(['pending', 'delivering', 'succeeded', 'failed']),
    attempts: z.array(webhookAttemptSchema),
    nextAttemptAt: timestamp.optional(),
    lastError: z.string().optional(),
    createdAt: timestamp,
    deliveredAt: timestamp.optional(),
  });

export const webhookSecretSchema = z
  .object({ secret: z.string().meta({ description: '`whsec_…`' }), createdAt: timestamp, expiresAt: timestamp.optional() });

export const rotatedSecretSchema = z
  .object({ secret: z.string(), previousExpireAt: timestamp.optional() });

/** `GET /v1/whoami`: the tenant and role of the key a request carries. */
export const callerSchema = z.object({
  tenant: z.string(),
  role: z.enum(['service', 'admin']).meta({ description: '`admin` keys may also recover jobs and use the dashboard.' }),
});

export const healthSchema = z.object({ status: z.literal('ok'), database: z.enum(['postgres', 'pglite']) });

/** `GET /livez`: the process answers. */
export const livenessSchema = z.object({ status: z.literal('ok') });

/** `GET /readyz`: the database answers and its applied migrations are exactly this version's. */
export const readinessSchema = z.object({
  status: z.literal('ready'),
  database: z.enum(['postgres', 'pglite']),
  /** Newest migration applied to the database, and newest this version has: equal when ready. */
  migrations: z.object({ database: z.number().int(), code: z.number().int() }),
});

/** An RFC 9457 problem detail; extension members carry specifics. */
export const problemSchema = z
  .looseObject({
    type: z.string().meta({ description: 'A URI naming the problem type, e.g. `/problems/job-not-found`; `about:blank` when generic.' }),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    instance: z.string().optional(),
    errors: z
      .array(z.object({ path: z.string(), message: z.string(), code: z.string().optional() }))
      .optional()
      .meta({ description: 'Per-issue details of an invalid input (422).' }),
    runningJobId: z.string().optional().meta({ description: 'The in-flight job of a supersede key refused under the `reject` policy (409).' }),
    jobStatus: z.enum(JOB_STATUSES).optional().meta({ description: 'The status of a job that cannot be recovered (409).' }),
  });

// Compile-time checks: each schema describes exactly the type the server answers with (same
// values both ways, and the same members, optional ones included).
type Same<A, B> = [A, keyof A] extends [B, keyof B] ? ([B, keyof B] extends [A, keyof A] ? true : false) : false;
const check = <T extends true>(): T | undefined => undefined;
check<Same<z.output<typeof jobSchema>, Job>>();
check<Same<z.output<typeof jobErrorSchema>, JobError>>();
check<Same<z.output<typeof jobStepSchema>, JobStep>>();
check<Same<z.output<typeof jobUsageSchema>, JobUsage>>();
check<Same<z.output<typeof jobEventSchema>, JobEvent>>();
check<Same<z.output<typeof jobLogEntrySchema>, JobLogEntry>>();
check<Same<z.output<typeof jobTokenSchema>['scopes'][number], JobTokenScope>>();
check<Same<z.output<typeof webhookEndpointSchema>, WebhookEndpoint>>();
check<Same<z.output<typeof webhookAttemptSchema>, WebhookAttempt>>();
check<Same<z.output<typeof webhookDeliverySchema>, WebhookDelivery>>();
check<Same<z.output<typeof webhookSecretSchema>, WebhookSecretInfo>>();
check<Same<z.output<typeof callerSchema>, Caller>>();
