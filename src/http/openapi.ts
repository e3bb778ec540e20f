/**
 * The OpenAPI 3.1 document of the HTTP API, served at `GET /v1/openapi.json`. Its schemas are
 * generated from the zod schemas the routes validate with (src/contract/submit.ts, the webhook
 * routes' bodies, each job's own input schema) and those the answers are checked against
 * (src/contract/responses.ts), so the document cannot describe another API than the one served.
 */
import { z } from 'zod';
import type { Waitless } from '../engine.ts';
import { JOB_STATUSES } from '../contract/statuses.ts';
import { jobTokenRequestSchema, submitRequestSchema } from '../contract/submit.ts';
import {
  callerSchema,
  healthSchema,
  livenessSchema,
  readinessSchema,
  jobErrorSchema,
  jobEventSchema,
  jobLinksSchema,
  jobLogEntrySchema,
  jobPageSchema,
  jobSchema,
  jobStepSchema,
  jobTokenSchema,
  jobUsageSchema,
  jobViewSchema,
  problemSchema,
  rotatedSecretSchema,
  submitResponseSchema,
  webhookAttemptSchema,
  webhookDeliverySchema,
  webhookEndpointSchema,
  webhookSecretSchema,
} from '../contract/responses.ts';
import { endpointRequestSchema, rotateRequestSchema } from './webhook-routes.ts';

type JsonObject = Record<string, unknown>;

/** What the document needs to know of the server's options. */
export interface OpenApiOptions {
  /** Path prefix the API is served under. Default: `""`. */
  basePath?: string;
  /** Longest `?wait=` of a long-poll, in seconds. Default: `60`. */
  maxWaitSeconds?: number;
  /** Largest accepted request body, in bytes. Default: `1_048_576`. */
  maxBodyBytes?: number;
  /** How `/metrics` is served (see `HttpOptions.metrics`): `'open'`, `'token'`, or not at all. Default: not at all. */
  metrics?: 'open' | 'token';
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: JsonObject) => ({ 'application/json': { schema } });

/** Converts the schemas of a registry to OpenAPI components (JSON Schema 2020-12, OpenAPI 3.1's dialect). */
function components(registry: z.core.$ZodRegistry<{ id: string }>, io: 'input' | 'output'): Record<string, JsonObject> {
  const { schemas } = z.toJSONSchema(registry, { target: 'draft-2020-12', io, unrepresentable: 'any', uri: (id) => `#/components/schemas/${id}` });
  // Each component is a schema within the document, not a document of its own.
  return Object.fromEntries(
    Object.entries(schemas).map(([id, { $schema: _schema, $id: _id, ...schema }]) => [id, io === 'output' ? openAnswers(schema) : (schema as JsonObject)]),
  );
}

/**
 * An answer's objects without `additionalProperties: false` (zod's output form of an object):
 * the API may add members to its answers, and a client generated today must not refuse them.
 */
function openAnswers<T>(schema: T): T {
  if (Array.isArray(schema)) return schema.map(openAnswers) as T;
  if (!schema || typeof schema !== 'object') return schema;
  const entries = Object.entries(schema).filter(([key, value]) => !(key === 'additionalProperties' && value === false));
  return Object.fromEntries(entries.map(([key, value]) => [key, openAnswers(value)])) as T;
}

const problemResponse = (description: string) => ({ description, content: { 'application/problem+json': { schema: ref('Problem') } } });

/** Error answers, each an RFC 9457 problem. */
const PROBLEM_RESPONSES = {
  BadRequest: problemResponse('Malformed JSON, a body that does not match, or a bad query parameter or header.'),
  Unauthorized: problemResponse('Missing, unknown or revoked API key; an expired or forged job token.'),
  Forbidden: problemResponse('A job token used outside its job, an action that needs an admin key, or a priority above the key\'s cap (`/problems/priority-above-cap`, with `maxPriority`).'),
  NotFound: problemResponse('No such job (or not one of this tenant), endpoint or delivery.'),
  Conflict: problemResponse('The request conflicts with the current state (see `type`), e.g. the tenant already has as many webhook endpoints as it may (`/problems/too-many-endpoints`).'),
  ContentTooLarge: problemResponse('The body is larger than the server accepts.'),
  UnsupportedMediaType: problemResponse('The body is not sent as `application/json`.'),
  UnprocessableContent: problemResponse('The request is well-formed but refused (invalid input, option or webhook, reused Idempotency-Key).'),
  ServiceUnavailable: {
    ...problemResponse('A dependency cannot be reached right now; try again after `Retry-After`.'),
    headers: { 'Retry-After': { $ref: '#/components/headers/Retry-After' } },
  },
  TooManyRequests: {
    ...problemResponse('A per-tenant limit was reached (`/problems/rate-limited`: submits per second; `/problems/too-many-streams`: open streams of the key); `limit` says which value. Try again after `Retry-After`.'),
    headers: { 'Retry-After': { $ref: '#/components/headers/Retry-After' } },
  },
} as const;

type ProblemName = keyof typeof PROBLEM_RESPONSES;
const STATUS_OF: Record<ProblemName, string> = {
  BadRequest: '400',
  Unauthorized: '401',
  Forbidden: '403',
  NotFound: '404',
  Conflict: '409',
  ContentTooLarge: '413',
  UnsupportedMediaType: '415',
  UnprocessableContent: '422',
  TooManyRequests: '429',
  ServiceUnavailable: '503',
};
const problems = (...names: ProblemName[]) => Object.fromEntries(names.map((name) => [STATUS_OF[name], { $ref: `#/components/responses/${name}` }]));

/** Who may call: an API key (the default), a job token on its own job, `?access_token=` for EventSource. */
const KEY = [{ apiKey: [] }];
const KEY_OR_TOKEN = [{ apiKey: [] }, { jobToken: [] }];
const STREAM = [{ apiKey: [] }, { jobToken: [] }, { accessToken: [] }];
const PUBLIC: never[] = [];

const idParameter = (description: string) => ({ name: 'id', in: 'path', required: true, description, schema: { type: 'string' } });
const JOB_ID = idParameter('The job id (a UUID).');

const SSE_DESCRIPTION =
  'Server-Sent Events. Each event\'s `id:` is its sequence number (resume with `Last-Event-ID` or `?after=`); `: keep-alive` comments keep the connection open.';

/** Builds the OpenAPI 3.1 document of the API as this engine serves it (its jobs, its base path and limits). */
export function openApiDocument(waitless: Waitless, options: OpenApiOptions = {}): JsonObject {
  const maxWait = options.maxWaitSeconds ?? 60;
  const maxBodyBytes = options.maxBodyBytes ?? 1_048_576;

  const requests = z.registry<{ id: string }>();
  requests.add(submitRequestSchema, { id: 'SubmitRequest' });
  requests.add(jobTokenRequestSchema, { id: 'JobTokenRequest' });
  requests.add(endpointRequestSchema, { id: 'WebhookEndpointRequest' });
  requests.add(rotateRequestSchema, { id: 'RotateSecretRequest' });
  const submitSchemaId = (name: string) => `Submit_${name.replace(/[^A-Za-z0-9._-]/g, '_')}`;
  for (const [name, definition] of waitless.jobs) {
    requests.add(submitRequestSchema.extend({ input: definition.input as z.ZodType }).meta({ description: `Body of a "${name}" submit: its \`input\` is the job's input schema.` }), {
      id: submitSchemaId(name),
    });
  }
  const responses = z.registry<{ id: string }>();
  const answers: Record<string, z.ZodType> = {
    Job: jobViewSchema,
    JobState: jobSchema,
    JobLinks: jobLinksSchema,
    JobError: jobErrorSchema,
    JobStep: jobStepSchema,
    JobUsage: jobUsageSchema,
    SubmitResponse: submitResponseSchema,
    JobPage: jobPageSchema,
    JobEvent: jobEventSchema,
    JobLogLine: jobLogEntrySchema,
    JobToken: jobTokenSchema,
    WebhookEndpoint: webhookEndpointSchema,
    WebhookAttempt: webhookAttemptSchema,
    WebhookDelivery: webhookDeliverySchema,
    WebhookSecret: webhookSecretSchema,
    RotatedWebhookSecret: rotatedSecretSchema,
    Health: healthSchema,
    Liveness: livenessSchema,
    Readiness: readinessSchema,
    Caller: callerSchema,
    Problem: problemSchema,
  };
  for (const [id, schema] of Object.entries(answers)) responses.add(schema, { id });

  const submitPaths = Object.fromEntries(
    [...waitless.jobs.keys()].map((name) => [
      `/v1/jobs/${name}`,
      {
        post: {
          operationId: `submit_${name.replace(/[^A-Za-z0-9]/g, '_')}`,
          tags: ['jobs'],
          summary: `Submit a "${name}" job`,
          description:
            `Validates the input against the job's schema and enqueues it. The same \`Idempotency-Key\` with the same request returns the same job. Bodies over ${maxBodyBytes} bytes are refused (413).`,
          parameters: [
            {
              name: 'Idempotency-Key',
              in: 'header',
              required: false,
              description: '1–255 visible ASCII characters, kept 24 h per tenant: the same key and request return the same job; another request under it → 422.',
              schema: { type: 'string', pattern: '^[\\x21-\\x7e]{1,255}$' },
            },
          ],
          requestBody: { required: true, content: json(ref(submitSchemaId(name))) },
          responses: {
            '202': {
              description: 'Accepted: the job (queued), with its `fallback` if the job has one. Poll `Location` at the `Retry-After` cadence, long-poll it, or stream its events.',
              headers: {
                Location: { description: "The job's URL.", schema: { type: 'string' } },
                'Retry-After': { $ref: '#/components/headers/Retry-After' },
                'Idempotent-Replayed': { description: '`true` when an earlier submit with this Idempotency-Key made the job.', schema: { type: 'string', enum: ['true'] } },
              },
              content: json(ref('SubmitResponse')),
            },
            ...problems('BadRequest', 'Unauthorized', 'Forbidden', 'NotFound', 'Conflict', 'ContentTooLarge', 'UnsupportedMediaType', 'UnprocessableContent', 'TooManyRequests', 'ServiceUnavailable'),
          },
        },
      },
    ]),
  );

  const paths: JsonObject = {
    '/livez': {
      get: {
        operationId: 'liveness',
        tags: ['service'],
        summary: 'Liveness',
        description: 'Answers while the process does; nothing else is checked. No key needed.',
        security: PUBLIC,
        responses: { '200': { description: 'The process answers.', content: json(ref('Liveness')) } },
      },
    },
    '/readyz': {
      get: {
        operationId: 'readiness',
        tags: ['service'],
        summary: 'Readiness',
        description: "Ready when the database answers and its applied migrations are exactly this version's. No key needed.",
        security: PUBLIC,
        responses: {
          '200': { description: 'Ready.', content: json(ref('Readiness')) },
          '503': problemResponse('The database does not answer, or its migrations are not this version\'s (the problem says which).'),
        },
      },
    },
    '/healthz': {
      get: {
        operationId: 'health',
        tags: ['service'],
        summary: 'Health check (older)',
        description: 'Answers when the database does; `/readyz` also checks the migrations. No key needed.',
        security: PUBLIC,
        responses: { '200': { description: 'The database answers.', content: json(ref('Health')) }, '503': problemResponse('The database does not answer.') },
      },
    },
    ...(options.metrics
      ? {
          '/metrics': {
            get: {
              operationId: 'metrics',
              tags: ['service'],
              summary: "This process's metrics",
              description:
                "The process's metrics in the Prometheus text format: its own counters, gauges and histograms, and the queue's depth read from the database. " +
                (options.metrics === 'token' ? 'Needs the metrics token (WAITLESS_METRICS_TOKEN), not an API key: the page spans every tenant.' : 'Open on this server.'),
              security: options.metrics === 'token' ? [{ metricsToken: [] }] : PUBLIC,
              responses: {
                '200': { description: 'Prometheus text format 0.0.4.', content: { 'text/plain': { schema: { type: 'string' } } } },
                ...(options.metrics === 'token' ? { '401': problemResponse('The metrics token is missing or wrong.') } : {}),
              },
            },
          },
        }
      : {}),
    '/v1/openapi.json': {
      get: {
        operationId: 'openapi',
        tags: ['service'],
        summary: 'This document',
        description: 'The OpenAPI 3.1 document of this API. No key needed: it holds no tenant data and is the same for every caller.',
        security: PUBLIC,
        responses: { '200': { description: 'The OpenAPI document.', content: json({ type: 'object' }) } },
      },
    },
    ...submitPaths,
    '/v1/jobs': {
      get: {
        operationId: 'listJobs',
        tags: ['jobs'],
        summary: "List the tenant's jobs, newest first",
        parameters: [
          { name: 'status', in: 'query', description: `Comma-separated statuses: ${JOB_STATUSES.join(', ')}.`, schema: { type: 'string' } },
          { name: 'name', in: 'query', description: 'Only jobs of this name.', schema: { type: 'string' } },
          { name: 'limit', in: 'query', description: 'Jobs per page.', schema: { type: 'integer', minimum: 1, maximum: 100, default: 20 } },
          { name: 'cursor', in: 'query', description: 'The `nextCursor` of the previous page.', schema: { type: 'string' } },
        ],
        responses: { '200': { description: 'A page of jobs.', content: json(ref('JobPage')) }, ...problems('BadRequest', 'Unauthorized', 'Forbidden') },
      },
    },
    '/v1/jobs/{id}': {
      get: {
        operationId: 'getJob',
        tags: ['jobs'],
        summary: 'Read a job, or long-poll it',
        description: `Without \`wait\`, answers at once. With \`wait=S\`, answers as soon as the job's \`version\` passes \`since\` (at once if it already has, or the job is done), else after S seconds with its current state.`,
        security: KEY_OR_TOKEN,
        parameters: [
          JOB_ID,
          { name: 'wait', in: 'query', description: 'Long-poll for up to this many seconds.', schema: { type: 'number', minimum: 0, maximum: maxWait, default: 0 } },
          { name: 'since', in: 'query', description: 'The version already seen. Default: the current one (wait for the next change).', schema: { type: 'integer', minimum: 0 } },
        ],
        responses: {
          '200': {
            description: 'The job.',
            headers: { 'Retry-After': { $ref: '#/components/headers/Retry-After' } },
            content: json(ref('Job')),
          },
          ...problems('BadRequest', 'Unauthorized', 'Forbidden', 'NotFound'),
        },
      },
    },
    '/v1/jobs/{id}/events': {
      get: {
        operationId: 'streamJobEvents',
        tags: ['jobs'],
        summary: "Stream a job's events",
        description: `${SSE_DESCRIPTION} Replays the log after the resume point, follows it live and closes after the terminal event. Each event is \`event: <type>\` with a JobEvent as \`data:\`.`,
        security: STREAM,
        parameters: [
          JOB_ID,
          { name: 'Last-Event-ID', in: 'header', description: 'Resume after this event (sent by EventSource on reconnect).', schema: { type: 'integer', minimum: 0 } },
          { name: 'after', in: 'query', description: 'Resume after this event (when the header cannot be set).', schema: { type: 'integer', minimum: 0, default: 0 } },
        ],
        responses: {
          '200': {
            description: 'The event stream. Each `data:` line holds a JobEvent (see the JobEvent schema).',
            content: { 'text/event-stream': { schema: { type: 'string', description: 'SSE frames; `data:` carries a JobEvent.' } } },
          },
          '204': { description: 'The job is done and the client has every event: stop reconnecting.' },
          ...problems('BadRequest', 'Unauthorized', 'Forbidden', 'NotFound', 'TooManyRequests'),
        },
      },
    },
    '/v1/whoami': {
      get: {
        operationId: 'whoami',
        tags: ['service'],
        summary: "The tenant and role of the caller's key",
        description: 'Lets a tool check a key before using it (the dashboard asks for an admin key). Job tokens are refused.',
        responses: { '200': { description: 'The caller.', content: json(ref('Caller')) }, ...problems('Unauthorized', 'Forbidden') },
      },
    },
    '/v1/jobs/{id}/cancel': {
      post: {
        operationId: 'cancelJob',
        tags: ['jobs'],
        summary: 'Cancel a job',
        description: 'Queued or running → `cancelled`; a done job is answered as it finished. Idempotent.',
        security: KEY_OR_TOKEN,
        parameters: [JOB_ID],
        responses: { '200': { description: 'The job.', content: json(ref('Job')) }, ...problems('Unauthorized', 'Forbidden', 'NotFound') },
      },
    },
    '/v1/jobs/{id}/tokens': {
      post: {
        operationId: 'createJobToken',
        tags: ['jobs'],
        summary: 'Mint a job token for a browser',
        description: "A short-lived bearer token that reads this job's status and events (and cancels it, with `cancel: true`), nothing else.",
        parameters: [JOB_ID],
        requestBody: { required: false, content: json(ref('JobTokenRequest')) },
        responses: {
          '201': { description: 'The token.', content: json(ref('JobToken')) },
          ...problems('BadRequest', 'Unauthorized', 'Forbidden', 'NotFound', 'ContentTooLarge', 'UnsupportedMediaType'),
        },
      },
    },
    '/v1/jobs/{id}/recover': {
      post: {
        operationId: 'recoverJob',
        tags: ['jobs'],
        summary: 'Recover a failed, timed-out, cancelled or stuck job (admin keys only)',
        parameters: [JOB_ID],
        responses: {
          '200': { description: 'The job, back in `queued` with a fresh attempt budget.', content: json(ref('Job')) },
          ...problems('Unauthorized', 'Forbidden', 'NotFound', 'Conflict'),
        },
      },
    },
    '/v1/jobs/{id}/logs': {
      get: {
        operationId: 'listJobLogs',
        tags: ['jobs'],
        summary: "The job's own log lines (ctx.log), oldest first",
        description:
          "Every attempt's lines, as the job definition's `logs` limit kept them (200 lines and 64 KiB per attempt by default; a closing `warn` line with `dropped` counts the rest). " +
          'They are `log` events of the job\'s event log too, so a stream opened with a key shows them live; a job token neither reads them here nor sees them in its stream.',
        security: KEY,
        parameters: [
          JOB_ID,
          { name: 'after', in: 'query', description: 'Lines after this sequence number (the `nextAfter` of the previous page).', schema: { type: 'integer', minimum: 0, default: 0 } },
        ],
        responses: {
          '200': {
            description: 'Up to 1000 lines; `nextAfter` when there are more.',
            content: json({ type: 'object', properties: { lines: { type: 'array', items: ref('JobLogLine') }, nextAfter: { type: 'integer' } }, required: ['lines'] }),
          },
          ...problems('BadRequest', 'Unauthorized', 'Forbidden', 'NotFound'),
        },
      },
    },
    '/v1/jobs/{id}/deliveries': {
      get: {
        operationId: 'listDeliveries',
        tags: ['webhooks'],
        summary: "A job's webhook deliveries, each with every attempt",
        parameters: [JOB_ID],
        responses: {
          '200': { description: 'The deliveries.', content: json({ type: 'object', properties: { deliveries: { type: 'array', items: ref('WebhookDelivery') } }, required: ['deliveries'] }) },
          ...problems('Unauthorized', 'Forbidden', 'NotFound'),
        },
      },
    },
    '/v1/deliveries/{id}/redeliver': {
      post: {
        operationId: 'redeliver',
        tags: ['webhooks'],
        summary: 'Send a delivery again now (same `webhook-id`)',
        parameters: [idParameter('The delivery id.')],
        responses: { '202': { description: 'The delivery, due now.', content: json(ref('WebhookDelivery')) }, ...problems('Unauthorized', 'Forbidden', 'NotFound') },
      },
    },
    '/v1/events': {
      get: {
        operationId: 'streamTenantJobs',
        tags: ['jobs'],
        summary: "Stream every change to the tenant's jobs",
        description: `${SSE_DESCRIPTION} \`event: job\` carries the job without \`input\`, \`output\`, \`result\` and \`fallback\`, coalesced per 100 ms; \`event: resync\` asks the client to list again.`,
        security: STREAM,
        responses: {
          '200': { description: 'The event stream.', content: { 'text/event-stream': { schema: { type: 'string', description: 'SSE frames; `data:` carries a job summary.' } } } },
          ...problems('Unauthorized', 'Forbidden', 'TooManyRequests'),
        },
      },
    },
    '/v1/webhooks/secret': {
      get: {
        operationId: 'listWebhookSecrets',
        tags: ['webhooks'],
        summary: "The tenant's webhook signing secrets, newest first",
        responses: {
          '200': { description: 'The secrets.', content: json({ type: 'object', properties: { secrets: { type: 'array', items: ref('WebhookSecret') } }, required: ['secrets'] }) },
          ...problems('Unauthorized', 'Forbidden'),
        },
      },
    },
    '/v1/webhooks/secret/rotate': {
      post: {
        operationId: 'rotateWebhookSecret',
        tags: ['webhooks'],
        summary: 'Start signing with a new secret; the old ones sign beside it for the overlap',
        requestBody: { required: false, content: json(ref('RotateSecretRequest')) },
        responses: {
          '201': { description: 'The new secret.', content: json(ref('RotatedWebhookSecret')) },
          ...problems('BadRequest', 'Unauthorized', 'Forbidden', 'ContentTooLarge', 'UnsupportedMediaType'),
        },
      },
    },
    '/v1/webhooks/endpoints': {
      get: {
        operationId: 'listWebhookEndpoints',
        tags: ['webhooks'],
        summary: "The tenant's webhook endpoints",
        responses: {
          '200': { description: 'The endpoints.', content: json({ type: 'object', properties: { endpoints: { type: 'array', items: ref('WebhookEndpoint') } }, required: ['endpoints'] }) },
          ...problems('Unauthorized', 'Forbidden'),
        },
      },
      post: {
        operationId: 'createWebhookEndpoint',
        tags: ['webhooks'],
        summary: "Register an endpoint for the tenant's job events",
        requestBody: { required: true, content: json(ref('WebhookEndpointRequest')) },
        responses: {
          '201': { description: 'The endpoint.', content: json(ref('WebhookEndpoint')) },
          ...problems('BadRequest', 'Unauthorized', 'Forbidden', 'Conflict', 'ContentTooLarge', 'UnsupportedMediaType', 'UnprocessableContent', 'ServiceUnavailable'),
        },
      },
    },
    '/v1/webhooks/endpoints/{id}': {
      delete: {
        operationId: 'deleteWebhookEndpoint',
        tags: ['webhooks'],
        summary: 'Remove an endpoint',
        parameters: [idParameter('The endpoint id.')],
        responses: { '204': { description: 'Removed.' }, ...problems('Unauthorized', 'Forbidden', 'NotFound') },
      },
    },
  };

  return {
    openapi: '3.1.0',
    info: {
      title: 'Waitless',
      version: '1',
      description:
        'Long-running jobs behind an asynchronous request-reply API: submit (202 + Location), then poll, long-poll, stream Server-Sent Events or receive a signed webhook. Errors are `application/problem+json` (RFC 9457). A server started without API keys (local development) needs no credentials.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    servers: [{ url: options.basePath || '/' }],
    security: KEY,
    tags: [
      { name: 'jobs', description: 'Submit, read, follow and control jobs.' },
      { name: 'webhooks', description: 'Signing secrets, endpoints and deliveries.' },
      { name: 'service', description: 'Health and this document.' },
    ],
    paths,
    components: {
      schemas: { ...components(responses, 'output'), ...components(requests, 'input') },
      responses: PROBLEM_RESPONSES,
      headers: {
        'Retry-After': {
          description: 'While the job is not done: seconds until the next poll is worth making (1 s for the first 10 s, then 2, 5, 15, 30 as it ages).',
          schema: { type: 'integer', minimum: 0 },
        },
      },
      securitySchemes: {
        apiKey: { type: 'http', scheme: 'bearer', bearerFormat: 'wl_…', description: 'An API key (`waitless keys create`): `Authorization: Bearer wl_…`.' },
        jobToken: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'wlt_…',
          description: "A job token (`POST /v1/jobs/{id}/tokens`): reads one job's status and events, and cancels it if minted so.",
        },
        accessToken: {
          type: 'apiKey',
          in: 'query',
          name: 'access_token',
          description: 'A job token as a query parameter, for EventSource, which cannot set headers. API keys are refused here (401): send them in the Authorization header.',
        },
        ...(options.metrics === 'token'
          ? { metricsToken: { type: 'http', scheme: 'bearer', description: 'The metrics token of the server (WAITLESS_METRICS_TOKEN), for scrapers of `/metrics`.' } }
          : {}),
      },
    },
  };
}
