/**
 * RiskScan: the page, its submit endpoint and the Waitless API, in one process.
 *
 *   node examples/risk-scan/server.ts        # then open http://127.0.0.1:3100/
 *
 * Environment (defaults in brackets):
 *   PORT               [3100]; 0 picks a free port
 *   HOST               [127.0.0.1]
 *   DATABASE_URL       postgres://… , or a PGlite folder [./.waitless-risk-scan]
 *   RISK_SCAN_SECONDS  how long the simulated model takes [12]
 *   OPENAI_BASE_URL    an OpenAI-compatible API (…/v1) to use a real model instead; with
 *   OPENAI_API_KEY     its key (if it needs one) and
 *   OPENAI_MODEL       the model [gpt-4o-mini]
 *   LOG_LEVEL          [info]
 *
 * Routes:
 *   GET  /         the page (React, bundled at start-up by esbuild from web/main.tsx)
 *   GET  /app.js   the bundle
 *   POST /scan     the app's own submit: validates, submits `risk-scan` with the request's
 *                  Idempotency-Key, mints a job token (read + cancel) → 202 { job, token, expiresAt }
 *   /api/…         the Waitless HTTP API, behind API keys: the browser reaches it only with its
 *                  job token, which opens GET /api/v1/jobs/:id, …/events and …/cancel of its job.
 */
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve, type ServerType } from '@hono/node-server';
import { build } from 'esbuild';
import { type Context, Hono } from 'hono';
import type { Logger } from 'pino';
import { createHttpApp } from '../../src/http/app.ts';
import { createWaitless, type Duration, IdempotencyConflictError, InputValidationError, type Job, type Waitless } from '../../src/index.ts';
import { createRiskScanJob, type OpenAiConfig, riskScanInput } from './jobs.ts';
import { pageHtml } from './page.ts';

export interface RiskScanServerOptions {
  /** Port to listen on; `0` picks a free one. Default: `PORT`, else 3100. */
  port?: number;
  /** Interface to listen on. Default: `HOST`, else `127.0.0.1`. */
  host?: string;
  /** `postgres://…`, a PGlite folder, or `memory://`. Default: `DATABASE_URL`, else `./.waitless-risk-scan`. */
  database?: string;
  /** Schema of the Waitless tables. Default: `waitless`. */
  schema?: string;
  /** How long the simulated model takes, in seconds. Default: `RISK_SCAN_SECONDS`, else 12. */
  seconds?: number;
  /** A real model; `null` forces the simulated one. Default: from `OPENAI_BASE_URL` & co. */
  openai?: OpenAiConfig | null;
  /** Default: pino at `LOG_LEVEL` (info). */
  logger?: Logger;
  /** Lifetime of the job tokens handed to the page. Default: `'1h'` (a job's budget is 15 minutes; a reload later still reads it). */
  tokenTtl?: Duration;
}

export interface RiskScanServer {
  /** `http://host:port`, without a trailing slash. */
  url: string;
  waitless: Waitless;
  /** Stops the server (dropping open streams), the worker and the database. */
  close(): Promise<void>;
}

const API_BASE = '/api';
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** Bundles the page's React app in memory. */
async function bundle(): Promise<string> {
  const result = await build({
    entryPoints: [fileURLToPath(new URL('./web/main.tsx', import.meta.url))],
    bundle: true,
    format: 'esm',
    jsx: 'automatic',
    platform: 'browser',
    target: 'es2022',
    write: false,
    minify: process.env.NODE_ENV === 'production',
    define: { 'process.env.NODE_ENV': JSON.stringify(process.env.NODE_ENV === 'production' ? 'production' : 'development') },
    logLevel: 'silent',
  });
  return result.outputFiles[0]!.text;
}

function problem(c: Context, status: 400 | 422, body: { type: string; title: string; detail: string; errors?: unknown }): Response {
  return c.body(JSON.stringify({ status, ...body, instance: new URL(c.req.url).pathname }), status, {
    'content-type': 'application/problem+json',
    'cache-control': 'no-store',
  });
}

const view = (job: Job) => ({
  ...job,
  links: { self: `${API_BASE}/v1/jobs/${job.id}`, events: `${API_BASE}/v1/jobs/${job.id}/events`, cancel: `${API_BASE}/v1/jobs/${job.id}/cancel` },
});

/** Starts the example: engine, worker, page, `/scan` and the API. */
export async function startRiskScan(options: RiskScanServerOptions = {}): Promise<RiskScanServer> {
  const env = process.env;
  const [waitless, script] = await Promise.all([
    createWaitless({
      jobs: [createRiskScanJob({ seconds: options.seconds, openai: options.openai })],
      database: options.database ?? env.DATABASE_URL ?? './.waitless-risk-scan',
      ...(options.schema ? { schema: options.schema } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
    }),
    bundle(),
  ]);
  waitless.startWorker({ concurrency: 10 });

  const api = createHttpApp(waitless, { basePath: API_BASE, auth: { mode: 'api-key', keys: waitless.apiKeys } });
  const app = new Hono();
  app.onError((error, c) => {
    waitless.logger.error({ err: error, path: c.req.path }, 'request failed');
    return c.body(JSON.stringify({ type: 'about:blank', status: 500, title: 'Internal Server Error', detail: 'The server could not complete the request. Try again.' }), 500, {
      'content-type': 'application/problem+json',
    });
  });

  app.get('/', (c) => c.html(pageHtml(), 200, { 'cache-control': 'no-store' }));
  app.get('/app.js', (c) => c.body(script, 200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' }));

  // The app's own submit. A real app would check its session here (who may scan what).
  app.post('/scan', async (c) => {
    const idempotencyKey = c.req.header('idempotency-key');
    if (idempotencyKey !== undefined && !IDEMPOTENCY_KEY.test(idempotencyKey)) {
      return problem(c, 400, { type: '/problems/bad-idempotency-key', title: 'Bad Idempotency-Key', detail: 'The Idempotency-Key header must be 1–255 visible ASCII characters.' });
    }
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return problem(c, 400, { type: '/problems/malformed-json', title: 'Malformed JSON', detail: 'The body must be the questionnaire as JSON.' });
    }
    const parsed = riskScanInput.safeParse(body);
    if (!parsed.success) {
      const errors = parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
      return problem(c, 422, {
        type: '/problems/invalid-input',
        title: 'Invalid questionnaire',
        detail: errors.map((e) => `${e.path || '(body)'}: ${e.message}`).join('; '),
        errors,
      });
    }
    try {
      const { job, created } = await waitless.submit('risk-scan', parsed.data, { idempotencyKey });
      const token = await waitless.createJobToken(job.id, { cancel: true, ttl: options.tokenTtl ?? '1h' });
      const headers: Record<string, string> = { location: view(job).links.self, 'cache-control': 'no-store' };
      if (!created) headers['idempotent-replayed'] = 'true';
      return c.json({ job: view(job), token: token?.token, expiresAt: token?.expiresAt }, 202, headers);
    } catch (error) {
      if (error instanceof InputValidationError || error instanceof IdempotencyConflictError) {
        return problem(c, 422, { type: '/problems/invalid-input', title: 'Invalid questionnaire', detail: error.message });
      }
      throw error;
    }
  });

  app.all(`${API_BASE}/*`, (c) => api.fetch(c.req.raw));

  const server = await new Promise<ServerType>((done) => {
    const s = serve({ fetch: app.fetch, port: options.port ?? Number(env.PORT ?? 3100), hostname: options.host ?? env.HOST ?? '127.0.0.1' }, () => done(s));
  });
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}`,
    waitless,
    close() {
      closing ??= (async () => {
        await new Promise<void>((done) => {
          server.close(() => done());
          if ('closeAllConnections' in server) server.closeAllConnections(); // open event streams
        });
        await waitless.close();
      })();
      return closing;
    },
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const riskScan = await startRiskScan();
  console.log(`risk-scan listening on ${riskScan.url}`);
  const stop = () => void riskScan.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
