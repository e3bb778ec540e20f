import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { cors } from 'hono/cors';
import type { Waitless } from '../engine.ts';
import { internals } from '../internals.ts';
import type { Duration } from '../job/duration.ts';
import { retryAfterSeconds } from '../contract/cadence.ts';
import { IDEMPOTENCY_KEY_PATTERN, jobTokenRequestSchema, submitRequestSchema } from '../contract/submit.ts';
import { JOB_NAME_PATTERN } from '../job/definition.ts';
import type { Job } from '../job/model.ts';
import { JOB_STATUSES, type JobStatus } from '../contract/statuses.ts';
import { authenticate, requireAdmin, whileJobTokenValid, type AuthEnv, type AuthMode } from './auth.ts';
import { addDashboardRoutes } from './dashboard.ts';
import { healthRoutes } from './health.ts';
import { readJsonBody } from './body.ts';
import { requestDeadline } from './deadline.ts';
import { localOnly } from './local-only.ts';
import { openApiDocument } from './openapi.ts';
import { problem, problemFor } from './problem.ts';
import { streamJobEvents, streamTenantJobs } from './sse.ts';
import { tenantGuards, type TenantLimits } from './rate-limit.ts';
import { cappedPriority } from '../store/api-keys.ts';
import { addWebhookRoutes } from './webhook-routes.ts';
import { metricsRoute } from './metrics-route.ts';
import { withIncomingTrace } from '../observability/tracing.ts';

/** Options of the HTTP handler. */
export interface HttpOptions {
  /**
   * Who may call; no default, so that an open API is always a choice. `{ mode: 'api-key', keys:
   * waitless.apiKeys }` asks every request for a key. `{ mode: 'none', tenant: 'default' }` runs
   * open: every caller is an admin of that tenant (local development only; it logs a warning).
   */
  auth: AuthMode;
  /**
   * Path prefix the requests arrive under (e.g. `"/jobs-api"` when the handler serves
   * `/jobs-api/v1/jobs`); routes and every `Location` / `links` URL include it. Default: `""`.
   */
  basePath?: string;
  /** Largest accepted request body, on every route that reads one (`413` past it). Default: `1_048_576` (1 MiB). */
  maxBodyBytes?: number;
  /** Longest `?wait=` a long-poll may ask for, in seconds. Default: `60`. */
  maxWaitSeconds?: number;
  /** Interval of the SSE keep-alive comment. Default: `15_000` ms. */
  sseHeartbeatMs?: number;
  /**
   * Serve the dashboard at `/dashboard`. Its page is public; its data comes from the API, so
   * with API keys it asks for an admin key. Default: `false` (the CLI turns it on).
   */
  dashboard?: boolean;
  /**
   * Let pages on other origins call the API (browsers holding job tokens). Give the allowed
   * origins exactly, e.g. `["https://app.example.com"]`. Default: none (same origin only).
   */
  cors?: { origin: string | string[] };
  /**
   * Serve the process's metrics at `/metrics` in the Prometheus text format. `true` serves them
   * to anyone who reaches the port (local development, or a port only the scraper can reach);
   * `{ bearerToken }` asks the scraper for `Authorization: Bearer <bearerToken>` (API keys do not
   * open it: the page spans every tenant). Default: `false` (not served).
   */
  metrics?: boolean | { bearerToken: string };
  /**
   * Answer only requests addressed to loopback (the `Host` header), and refuse state-changing
   * requests from pages on other sites (`Origin`), except origins listed in `cors`: the guard of
   * an open API on a developer's machine (`waitless dev` turns it on). Default: `false`.
   */
  localOnly?: boolean;
  /**
   * Longest time a `/v1` request may take before it is answered `503` with `Retry-After`
   * (a long-poll gets its `?wait=` on top; event streams are not bounded). Default: `30_000` ms.
   */
  requestTimeoutMs?: number;
  /**
   * Per-tenant limits of this process: submits per second per tenant (`429` with
   * `Retry-After`) and event streams open per API key (`429`). Kept in this process's memory:
   * N processes admit N times as much. Default: see {@link TenantLimits} (1000 submits/s with a
   * burst of 2000, 1000 streams per key).
   */
  tenantLimits?: TenantLimits;
}

/** Event types a job token's stream leaves out. */
const OPERATOR_EVENTS: ReadonlySet<string> = new Set(['log']);

/** Log lines per page of `GET /v1/jobs/:id/logs`. */
const LOG_PAGE = 1000;

/** Builds the Hono app. Use `.fetch` as a `(Request) => Response` handler anywhere. */
export function createHttpApp(waitless: Waitless, options: HttpOptions): Hono<AuthEnv> {
  const auth = checkedAuth(options);
  const base = options.basePath?.replace(/\/$/, '') ?? '';
  const maxBodyBytes = options.maxBodyBytes ?? 1_048_576;
  const maxWait = options.maxWaitSeconds ?? 60;
  const guards = tenantGuards(options.tenantLimits);
  /** Who holds a stream's slot: the API key, or a job token's job, or (no keys) the tenant. */
  const streamHolder = (c: Context<AuthEnv>) => {
    const caller = c.get('caller');
    return caller.kind === 'job-token' ? `job:${caller.jobId}` : caller.keyId ? `key:${caller.keyId}` : `tenant:${c.get('tenant')}`;
  };
  const links = (id: string) => ({
    self: `${base}/v1/jobs/${id}`,
    events: `${base}/v1/jobs/${id}/events`,
    cancel: `${base}/v1/jobs/${id}/cancel`,
  });
  const view = (job: Job) => ({ ...job, links: links(job.id) });
  /** A job without its payloads, for the tenant-wide stream. */
  const summary = ({ input: _input, output: _output, result: _result, fallback: _fallback, ...job }: Job) => ({ ...job, links: links(job.id) });
  const pollHeaders = (job: Job): Record<string, string> =>
    job.done ? {} : { 'retry-after': String(retryAfterSeconds(Date.now() - Date.parse(job.createdAt))) };
  const notFound = (c: Context, id: string) =>
    problem(c, 404, { type: '/problems/job-not-found', title: 'Job not found', detail: `No job with id "${id}" exists for this API key.` });

  const app = base ? new Hono<AuthEnv>().basePath(base) : new Hono<AuthEnv>();
  const { driver, hub, jobTokens, notifier, store } = internals(waitless);
  // This process serves event streams: hear changes from now on, not from the first reader.
  void hub.start();

  // The one place where engine errors become problem+json answers (see PROBLEMS); anything else is a 500.
  app.onError((error, c) => {
    const answer = problemFor(c, error, base);
    if (answer) return answer;
    waitless.logger.error({ err: error, path: c.req.path }, 'request failed');
    return problem(c, 500, { title: 'Internal Server Error', detail: 'The server could not complete the request. It has been logged; try again.' });
  });
  app.notFound((c) => problem(c, 404, { title: 'Not Found', detail: `${c.req.method} ${new URL(c.req.url).pathname} is not part of this API.` }));

  if (options.localOnly) {
    const origins = options.cors ? [options.cors.origin].flat() : [];
    app.use('*', localOnly(origins));
  }
  // On loopback with the local-only guard (waitless dev) an open API is the point; anywhere else it must be heard of.
  if (auth.mode === 'none' && !options.localOnly) {
    waitless.logger.warn({ tenant: auth.tenant }, `the HTTP API runs without authentication: every caller is an admin of tenant "${auth.tenant}"`);
  }

  app.get('/healthz', async (c) => {
    try {
      await driver.query({ text: 'SELECT 1', values: [] });
      return c.json({ status: 'ok', database: driver.kind });
    } catch {
      return problem(c, 503, { title: 'Service Unavailable', detail: 'The database does not answer.' });
    }
  });
  app.route('/', healthRoutes(waitless));

  if (options.metrics) app.get('/metrics', metricsRoute(driver, options.metrics === true ? undefined : options.metrics.bearerToken));

  if (options.dashboard) addDashboardRoutes(app);
  if (options.cors) {
    app.use(
      '/v1/*',
      cors({
        origin: options.cors.origin,
        allowHeaders: ['authorization', 'content-type', 'idempotency-key', 'last-event-id'],
        exposeHeaders: ['location', 'retry-after', 'idempotent-replayed'],
        maxAge: 600,
      }),
    );
  }
  // Public, before the key check: the document holds no tenant data and is the same for every
  // caller, and the tools that generate clients from it fetch it without credentials.
  let document: string | undefined;
  app.get('/v1/openapi.json', (c) => {
    const metrics = options.metrics === true ? 'open' : options.metrics ? 'token' : undefined;
    document ??= JSON.stringify(openApiDocument(waitless, { basePath: base, maxWaitSeconds: maxWait, maxBodyBytes, metrics }));
    return c.body(document, 200, { 'content-type': 'application/json', 'cache-control': 'no-cache' });
  });
  // Every route that reads a body, whoever calls: a body past the limit is refused while it streams in, never read whole.
  app.use(
    '/v1/*',
    bodyLimit({
      maxSize: maxBodyBytes,
      onError: (c) =>
        problem(c, 413, {
          type: '/problems/body-too-large',
          title: 'Content Too Large',
          detail: `The request body is larger than ${maxBodyBytes} bytes. Pass large inputs by reference (a URL or an id).`,
        }),
    }),
  );
  app.use('/v1/*', requestDeadline(options.requestTimeoutMs ?? 30_000, maxWait));
  app.use('/v1/*', authenticate(auth, jobTokens, base, (listener) => notifier.onKeyRevoked(listener)));

  app.get('/v1/whoami', (c) => {
    const caller = c.get('caller');
    // Job tokens never reach here (their routes are listed in auth.ts): a key's role is the answer.
    if (caller.kind !== 'key') return problem(c, 403, { type: '/problems/forbidden', title: 'Forbidden', detail: 'A job token reads its own job only.' });
    return c.json({ tenant: c.get('tenant'), role: caller.role }, 200, { 'cache-control': 'no-store' });
  });

  app.get('/v1/events', (c) => {
    const release = guards.stream(streamHolder(c));
    return streamTenantJobs(c, hub, { tenant: c.get('tenant'), heartbeatMs: options.sseHeartbeatMs ?? 15_000, view: summary, onEnd: release });
  });

  app.post(
    '/v1/jobs/:name',
    async (c, next) => {
      const name = c.req.param('name');
      if (!waitless.jobs.has(name)) {
        return problem(c, 404, {
          type: '/problems/unknown-job',
          title: 'Unknown job',
          detail: `No job named "${name}" is defined. Defined jobs: ${[...waitless.jobs.keys()].join(', ') || '(none)'}.`,
        });
      }
      await next();
    },
    async (c) => {
      // Before the body is read: a tenant over its rate costs the server as little as possible.
      guards.submit(c.get('tenant'));
      const name = c.req.param('name');
      const key = c.req.header('idempotency-key');
      if (key !== undefined && !IDEMPOTENCY_KEY_PATTERN.test(key)) {
        return problem(c, 400, {
          type: '/problems/invalid-idempotency-key',
          title: 'Invalid Idempotency-Key',
          detail: 'The Idempotency-Key header must be 1–255 visible ASCII characters.',
        });
      }
      const envelope = await readJsonBody(c, submitRequestSchema, {
        hint:
          'The body is {"input": …, "webhook"?: {"url", "events"?}, "token"?: {"cancel"?, "ttlSeconds"?}, "priority"?, "runAt"? | "delay"?, "supersede"?: {"key", "policy"?}, "context"?, "concurrencyKey"?}.',
      });
      if (envelope instanceof Response) return envelope;
      const caller = c.get('caller');
      const priority = cappedPriority(envelope.priority, caller.kind === 'key' ? caller.maxPriority : undefined);
      const traceHeaders = { traceparent: c.req.header('traceparent'), tracestate: c.req.header('tracestate') };
      const { job, created } = await withIncomingTrace(traceHeaders, () => waitless.submit(name, envelope.input, {
        tenant: c.get('tenant'),
        idempotencyKey: key,
        webhook: envelope.webhook,
        apiBaseUrl: `${new URL(c.req.url).origin}${base}`,
        priority,
        runAt: envelope.runAt,
        delay: envelope.delay as Duration | undefined,
        supersede: envelope.supersede,
        context: envelope.context,
        concurrencyKey: envelope.concurrencyKey,
      }));
      const headers: Record<string, string> = { location: links(job.id).self, ...pollHeaders(job) };
      if (!created) headers['idempotent-replayed'] = 'true';
      if (!envelope.token) return c.json(view(job), 202, headers);
      const token = await waitless.createJobToken(job.id, { tenant: c.get('tenant'), cancel: envelope.token.cancel, ttl: envelope.token.ttlSeconds * 1000 });
      return c.json({ ...view(job), token: token && { token: token.token, expiresAt: token.expiresAt } }, 202, headers);
    },
  );

  app.get('/v1/jobs', async (c) => {
    const statusParam = c.req.query('status');
    const statuses = statusParam ? statusParam.split(',') : undefined;
    const badStatus = statuses?.find((s) => !(JOB_STATUSES as readonly string[]).includes(s));
    if (badStatus) {
      return problem(c, 400, { type: '/problems/invalid-query', title: 'Invalid query', detail: `Unknown status "${badStatus}". Use: ${JOB_STATUSES.join(', ')}.` });
    }
    const limitParam = c.req.query('limit');
    const limit = limitParam === undefined ? 20 : Number(limitParam);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      return problem(c, 400, { type: '/problems/invalid-query', title: 'Invalid query', detail: '"limit" must be an integer from 1 to 100.' });
    }
    const name = c.req.query('name');
    // Checked here, not by the database: a NUL character cannot even be sent to it.
    if (name !== undefined && !JOB_NAME_PATTERN.test(name)) {
      return problem(c, 400, { type: '/problems/invalid-query', title: 'Invalid query', detail: '"name" must be a job name: letters, digits, ".", "_" and "-", up to 100 characters.' });
    }
    const page = await waitless.list({
      tenant: c.get('tenant'),
      statuses: statuses as JobStatus[] | undefined,
      name,
      cursor: c.req.query('cursor'),
      limit,
    });
    return c.json({ jobs: page.jobs.map(view), ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}) });
  });

  app.get('/v1/jobs/:id', async (c) => {
    const id = c.req.param('id');
    const tenant = c.get('tenant');
    const waitParam = c.req.query('wait');
    const sinceParam = c.req.query('since');
    const wait = waitParam === undefined ? 0 : Number(waitParam);
    const since = sinceParam === undefined ? undefined : Number(sinceParam);
    if (!Number.isFinite(wait) || wait < 0 || wait > maxWait) {
      return problem(c, 400, { type: '/problems/invalid-query', title: 'Invalid query', detail: `"wait" must be a number of seconds from 0 to ${maxWait}.` });
    }
    if (since !== undefined && (!Number.isInteger(since) || since < 0)) {
      return problem(c, 400, { type: '/problems/invalid-query', title: 'Invalid query', detail: '"since" must be a job version (an integer ≥ 0).' });
    }
    const job =
      wait > 0
        ? await waitless.wait(id, { tenant, since, timeoutMs: wait * 1000, signal: c.req.raw.signal })
        : await waitless.get(id, { tenant });
    if (!job) return notFound(c, id);
    return c.json(view(job), 200, { 'cache-control': 'no-store', ...pollHeaders(job) });
  });

  app.get('/v1/jobs/:id/events', async (c) => {
    const id = c.req.param('id');
    const tenant = c.get('tenant');
    const from = c.req.header('last-event-id') ?? c.req.query('after') ?? '0';
    const after = Number(from);
    if (!Number.isInteger(after) || after < 0) {
      return problem(c, 400, { type: '/problems/invalid-query', title: 'Invalid resume point', detail: 'Last-Event-ID / "after" must be an event sequence number (an integer ≥ 0).' });
    }
    const job = await store.head(tenant, id);
    if (!job) return notFound(c, id);
    // The stream already ended for this client: 204 tells EventSource to stop reconnecting.
    if (job.done && after >= job.version) return c.body(null, 204);
    if (after > job.version) {
      return problem(c, 400, {
        type: '/problems/invalid-query',
        title: 'Invalid resume point',
        detail: `Last-Event-ID / "after" is ${after}, but the job's latest event is ${job.version}. Resume from an id this stream sent.`,
      });
    }
    // A job token is the end user's: the job's own log is the operator's, and stays out of its stream.
    const hide = c.get('caller').kind === 'job-token' ? OPERATOR_EVENTS : undefined;
    // A stream opened with a job token ends when the token does, as any request with it would be refused then.
    const endWhen = whileJobTokenValid(c, jobTokens);
    const release = guards.stream(streamHolder(c));
    return streamJobEvents(c, hub, { tenant, jobId: id, after, heartbeatMs: options.sseHeartbeatMs ?? 15_000, hide, endWhen, onEnd: release });
  });

  app.get('/v1/jobs/:id/logs', async (c) => {
    const id = c.req.param('id');
    const tenant = c.get('tenant');
    const afterParam = c.req.query('after') ?? '0';
    const after = Number(afterParam);
    if (!/^\d+$/.test(afterParam) || !Number.isSafeInteger(after)) {
      return problem(c, 400, { type: '/problems/invalid-query', title: 'Invalid query', detail: '"after" must be a log line\'s sequence number (an integer ≥ 0).' });
    }
    if (!(await store.head(tenant, id))) return notFound(c, id);
    const lines = await store.logs(tenant, id, after, LOG_PAGE + 1);
    const page = lines.slice(0, LOG_PAGE);
    const more = lines.length > LOG_PAGE;
    return c.json({ lines: page, ...(more ? { nextAfter: page.at(-1)!.seq } : {}) }, 200, { 'cache-control': 'no-store' });
  });

  addWebhookRoutes(app, waitless);

  app.post('/v1/jobs/:id/tokens', async (c) => {
    const id = c.req.param('id');
    const body = await readJsonBody(c, jobTokenRequestSchema, { allowEmpty: true, hint: 'The body is {"cancel"?: boolean, "ttlSeconds"?: 1–86400}.' });
    if (body instanceof Response) return body;
    const token = await waitless.createJobToken(id, { tenant: c.get('tenant'), cancel: body.cancel, ttl: body.ttlSeconds * 1000 });
    if (!token) return notFound(c, id);
    return c.json(token, 201, { 'cache-control': 'no-store' });
  });

  app.post('/v1/jobs/:id/recover', async (c) => {
    const forbidden = requireAdmin(c, 'recover a job');
    if (forbidden) return forbidden;
    const id = c.req.param('id');
    const job = await waitless.recover(id, { tenant: c.get('tenant') });
    if (!job) return notFound(c, id);
    return c.json(view(job), 200);
  });

  app.post('/v1/jobs/:id/cancel', async (c) => {
    const id = c.req.param('id');
    const job = await waitless.cancel(id, { tenant: c.get('tenant') });
    if (!job) return notFound(c, id);
    return c.json(view(job), 200);
  });

  return app;
}

/**
 * The HTTP API as a Fetch-standard handler: mount it in Hono, Next.js route handlers,
 * Express/Fastify (through an adapter) or serve it with `@hono/node-server`.
 */
export function createHttpHandler(waitless: Waitless, options: HttpOptions): (request: Request) => Promise<Response> {
  const app = createHttpApp(waitless, options);
  return async (request) => app.fetch(request);
}

/** The auth option, which JavaScript callers (no type check) may also have left out. */
function checkedAuth(options: Partial<HttpOptions> | undefined): AuthMode {
  const auth = options?.auth;
  if (auth?.mode === 'api-key' || (auth?.mode === 'none' && typeof auth.tenant === 'string' && auth.tenant !== '')) return auth;
  throw new TypeError(
    'The Waitless HTTP API needs an "auth" option: { mode: \'api-key\', keys: waitless.apiKeys } to ask every request for an API key, ' +
      'or { mode: \'none\', tenant: \'default\' } to run it open, every caller an admin of that tenant (local development only).',
  );
}
