#!/usr/bin/env node
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import { pino } from 'pino';
import { analyzeDocument, demoModelProblem } from '../demo/analyze-document.ts';
import { createWaitless, DEFAULT_TENANT, type Waitless, type WaitlessOptions } from '../engine.ts';
import { createHttpApp } from '../http/app.ts';
import type { TenantLimits } from '../http/rate-limit.ts';
import { healthRoutes } from '../http/health.ts';
import { metricsRoute } from '../http/metrics-route.ts';
import { internals } from '../internals.ts';
import { problem } from '../http/problem.ts';
import { type AnyJobDefinition, isJobDefinition } from '../job/definition.ts';
import { type Duration, formatDuration, toMs } from '../job/duration.ts';
import { MigrationError } from '../store/migrate.ts';
import type { PruneReport, RetentionOptions } from '../maintenance/retention.ts';
import type { WorkerOptions } from '../worker/worker.ts';
import type { DispatcherOptions } from '../webhooks/dispatcher.ts';
import { flagsHelp, type FlagName, type ParsedFlags, parseFlags } from './flags.ts';
import { prettyDestination } from './log-format.ts';
import { waitForDatabase } from './wait-for-database.ts';
import { resolveOwnNameToSource } from './source-entries.ts';
import { flushTraces } from '../observability/tracing.ts';

// Run from the source (a clone, however started): a jobs module's `import … from 'waitless'`
// gets these same files, one copy of every class, no build needed. Installed, this is dist/,
// and the package's own name already resolves to dist/.
if (import.meta.url.endsWith('.ts')) resolveOwnNameToSource(new URL('../../', import.meta.url));

const USAGE = `waitless — long-running AI jobs behind a 202 Accepted API

Usage:
  waitless dev      [--port 3000] [--jobs ./jobs.ts] [--data ./.waitless]
      API + worker + dashboard in one process on embedded PGlite, open on 127.0.0.1, with the demo job.
  waitless serve    [--port 3000] [--host 0.0.0.0] [--jobs ./jobs.ts] [--demo] [--no-worker] [--cors-origin LIST]
      The job service on PostgreSQL (DATABASE_URL); every request needs an API key; the
      dashboard (/dashboard) asks for an admin key.
  waitless worker   [--jobs ./jobs.ts] [--demo] [--concurrency 10] [--port N] [--lease 30s] [--heartbeat D]
                    [--poll-interval 2s] [--shutdown-grace 10s] [--flush-interval 200ms]
      Only run jobs, on PostgreSQL (DATABASE_URL); with --port, answers GET /livez, /readyz, /healthz and /metrics.
  waitless migrate  Apply database migrations and exit.
  waitless prune    [--dry-run] [--older-than D] [--jobs ./jobs.ts] [--retention D] [--retention-failed D]
                    [--retention-tenants LIST]
      Delete now the finished jobs past their retention (with their events, steps and webhook
      deliveries), expired idempotency keys and signing secrets; print the rows per table.
      Workers do this on their own every 10 minutes unless --no-prune; --jobs applies the
      definitions' own retention.
  waitless keys create --tenant NAME [--label TEXT] [--admin] [--max-priority N] | keys list | keys revoke ID
      --admin keys may also recover jobs and open the dashboard; --max-priority caps the priority a key may set.
  waitless keys rotate-job-tokens [OVERLAP]
      A new secret for job tokens; those signed before stay valid for OVERLAP (default 24h), 0 ends them all now.

 Metrics (Prometheus text) are at /metrics: open on dev and on a worker's --port; on serve only
 when WAITLESS_METRICS_TOKEN is set, and then (everywhere) for "Authorization: Bearer <token>".

 Logs are JSON lines (pino); in a terminal they are formatted for reading. LOG_FORMAT=json or
 LOG_FORMAT=pretty chooses; LOG_LEVEL (default info) filters.

Options (each also read from the variable named; a flag given wins over its variable):
${flagsHelp()}
  D is a duration: milliseconds (500) or e.g. 500ms, 2s, 1m, 1h, 30d.
`;

function fail(message: string): never {
  process.stderr.write(`waitless: ${message}\n`);
  process.exit(2);
}

let flags: ParsedFlags;
try {
  flags = parseFlags(process.argv.slice(2), process.env);
} catch (error) {
  fail((error as Error).message);
}
const { values, positionals, origin } = flags;

// JSON when piped or collected (one object a line, for machines); readable in a terminal.
const prettyLogs = process.env.LOG_FORMAT ? process.env.LOG_FORMAT === 'pretty' : process.stdout.isTTY === true;
const logger = pino({ level: process.env.LOG_LEVEL ?? 'info' }, prettyLogs ? prettyDestination(process.stdout, process.stdout.hasColors?.() ?? false) : undefined);

function intOption(value: string | undefined, label: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) fail(`${label} must be a whole number, got "${value}"`);
  return n;
}

/** A duration flag's value in ms; `label` names the flag or the variable it came from. */
function durationOption(value: string | undefined, label: string): number | undefined {
  if (value === undefined) return undefined;
  // A bare number is milliseconds, as in the library's options.
  const duration: Duration = /^\d+(\.\d+)?$/.test(value) ? Number(value) : (value as Duration);
  let ms: number;
  try {
    ms = toMs(duration, label);
  } catch {
    fail(`${label} must be a duration such as 500ms, 2s or 1m (or a number of milliseconds), got "${value}"`);
  }
  return ms;
}

/**
 * Worker tuning shared by every command that runs a worker; unset flags keep the library
 * defaults. Read before the database is opened, so a typo exits without touching it.
 */
function workerOptions(): WorkerOptions {
  const duration = (name: FlagName) => durationOption(values[name] as string | undefined, origin(name));
  const lease = duration('lease');
  const heartbeat = duration('heartbeat');
  const pollInterval = duration('poll-interval');
  const outputFlushInterval = duration('flush-interval');
  const zero = (['lease', 'heartbeat', 'poll-interval', 'flush-interval'] as const).find((name, i) => [lease, heartbeat, pollInterval, outputFlushInterval][i] === 0);
  if (zero) fail(`${origin(zero)} must be longer than 0`);
  // A heartbeat as slow as the lease lets the lease run out under a healthy worker.
  if (heartbeat !== undefined && heartbeat >= (lease ?? 30_000)) fail(`${origin('heartbeat')} (${heartbeat}ms) must be shorter than the lease (${lease ?? 30_000}ms)`);
  return {
    concurrency: intOption(values.concurrency, origin('concurrency'), 10),
    lease,
    heartbeat,
    pollInterval,
    outputFlushInterval,
    shutdownGrace: duration('shutdown-grace'),
  };
}

/** Webhook settings shared by every command that runs a dispatcher. */
function webhookOptions(): DispatcherOptions {
  const allow = (values['webhook-allow'] ?? '').split(',').map((a) => a.trim()).filter(Boolean);
  const retryFlag = values['webhook-retry'];
  // "none": one attempt and no retry (a receiver that misses it is left to its reconciler).
  const retry = retryFlag === 'none' ? [] : retryFlag?.split(',').map((d, i) => durationOption(d.trim(), `${origin('webhook-retry')}[${i}]`)!);
  const endpointsPerTenant = countOption('webhook-endpoints');
  const tenantConcurrency = countOption('webhook-tenant-concurrency');
  if (tenantConcurrency === 0) fail(`${origin('webhook-tenant-concurrency')} must be at least 1`);
  if (endpointsPerTenant === 0) fail(`${origin('webhook-endpoints')} must be at least 1`);
  const timeout = durationOption(values['webhook-timeout'], origin('webhook-timeout'));
  return {
    ...(allow.length ? { ssrf: { allow } } : {}),
    ...(timeout !== undefined ? { timeout } : {}),
    ...(retry ? { retrySchedule: retry } : {}),
    ...(endpointsPerTenant !== undefined ? { endpointsPerTenant } : {}),
    ...(tenantConcurrency !== undefined ? { tenantConcurrency } : {}),
  };
}

/** A whole-number flag, or undefined when not given (the library's default applies). */
function countOption(name: FlagName): number | undefined {
  const value = values[name] as string | undefined;
  return value === undefined ? undefined : intOption(value, origin(name), 0);
}

/** The per-tenant limits of the HTTP API (serve, dev). */
function tenantLimitsOption(): TenantLimits {
  const submitsPerSecond = countOption('submit-rate');
  const submitBurst = countOption('submit-burst');
  const streamsPerKey = countOption('streams-per-key');
  return {
    ...(submitsPerSecond !== undefined ? { submitsPerSecond } : {}),
    ...(submitBurst !== undefined ? { submitBurst } : {}),
    ...(streamsPerKey !== undefined ? { streamsPerKey } : {}),
  };
}

/** The engine's retention from --retention, --retention-failed and --retention-tenants; false with --no-prune (for workers). */
function retentionOption(forWorkers: boolean): RetentionOptions | false {
  if (forWorkers && values['no-prune']) return false;
  const duration = (name: FlagName) => {
    const ms = durationOption(values[name] as string | undefined, origin(name));
    if (ms !== undefined && ms < 1000) fail(`${origin(name)} must be at least 1s`);
    return ms;
  };
  const retention = duration('retention');
  const failed = duration('retention-failed');
  const tenants: Record<string, { default: number; failed?: number }> = {};
  for (const entry of (values['retention-tenants'] ?? '').split(',').map((e) => e.trim()).filter(Boolean)) {
    const match = /^(.+)=([^=/]+)(?:\/([^=/]+))?$/.exec(entry);
    if (!match) fail(`${origin('retention-tenants')} takes tenant=D or tenant=D/F entries, e.g. acme=365d,trial=1d/7d; got "${entry}"`);
    const [, tenant, base, failedOfTenant] = match;
    const ms = (value: string) => {
      const n = durationOption(value, `${origin('retention-tenants')} (${tenant})`)!;
      if (n < 1000) fail(`${origin('retention-tenants')} (${tenant}) must be at least 1s`);
      return n;
    };
    tenants[tenant!] = { default: ms(base!), ...(failedOfTenant !== undefined ? { failed: ms(failedOfTenant) } : {}) };
  }
  return {
    ...(retention !== undefined ? { default: retention } : {}),
    ...(failed !== undefined ? { failed } : {}),
    ...(Object.keys(tenants).length ? { tenants } : {}),
  };
}

/** Origins allowed to call the API from a browser, or undefined for same-origin only. */
function corsOption(): { origin: string[] } | undefined {
  const origins = (values['cors-origin'] ?? '').split(',').map((o) => o.trim()).filter(Boolean);
  const bad = origins.find((o) => !/^https?:\/\/[^/]+$/.test(o));
  if (bad) fail(`${origin('cors-origin')} takes origins such as https://app.example.com (scheme and host, no path), got "${bad}"`);
  return origins.length ? { origin: origins } : undefined;
}

async function loadJobs(modulePath: string | undefined, withDemo: boolean): Promise<AnyJobDefinition[]> {
  const jobs: AnyJobDefinition[] = withDemo ? [analyzeDocument] : [];
  if (withDemo) {
    // The demo's model is configured by environment: a missing `openai` package is told now,
    // not by every job that runs.
    const reason = await demoModelProblem();
    if (reason) fail(reason);
  }
  if (modulePath) {
    let module: Record<string, unknown>;
    try {
      module = (await import(pathToFileURL(resolve(modulePath)).href)) as Record<string, unknown>;
    } catch (error) {
      // Node's own message for a syntax error leaves out the file; the stack's first line has
      // it with the line number when Node knows it.
      fail(`the jobs module ${modulePath} failed to load: ${describeLoadError(error)}`);
    }
    const found = Object.values(module).filter(isJobDefinition);
    if (found.length === 0) fail(`${modulePath} exports no job definitions (use defineJob).`);
    jobs.push(...found);
  }
  return jobs;
}

function describeLoadError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const where = error.stack?.split('\n')[0];
  const located = where && /^file:\/\/\S+:\d+$/.test(where) ? ` (${where})` : '';
  return `${error.name}: ${error.message}${located}`;
}

function serverDatabase(): string {
  const url = values.database;
  if (!url) fail('set DATABASE_URL (postgres://…) or pass --database');
  return url;
}

/**
 * Opens the engine for serve, worker and migrate, waiting for PostgreSQL while it does not
 * answer yet; SIGINT or SIGTERM during that wait exits 0 (nothing was started).
 */
async function openServerEngine(options: Omit<WaitlessOptions, 'database' | 'schema' | 'logger'>): Promise<Waitless> {
  const database = serverDatabase();
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const maxConnections = countOption('max-connections');
    if (maxConnections === 0) fail(`${origin('max-connections')} must be at least 1`);
    const waitless = await waitForDatabase(database, () => createWaitless({ ...options, maxConnections, database, schema: values.schema, logger }), logger, {
      signal: stop.signal,
    });
    if (!waitless || stop.signal.aborted) {
      // A signal that came while a connection attempt was under way is honoured all the same.
      await waitless?.close();
      logger.info('stopped while waiting for PostgreSQL');
      process.exit(0);
    }
    return waitless;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Stops on SIGINT/SIGTERM: running jobs get their grace period; a second signal exits at once. */
function onShutdown(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) process.exit(130);
    stopping = true;
    logger.info({ signal }, 'shutting down; press Ctrl-C again to force');
    // The spans of the last jobs are sent before exiting: process.exit skips the SDK's own hooks.
    stop().then(
      () => flushTraces().then(() => process.exit(0)),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        void flushTraces().then(() => process.exit(1));
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/** A bound HTTP server that answers 503 until {@link Bound.serve} hands it the app. */
interface Bound {
  server: ServerType;
  url: string;
  serve(fetch: (request: Request) => Response | Promise<Response>): void;
}

/**
 * Takes the port before anything else is opened, so a port in use is told at once and leaves
 * no database opened or migrated behind. Requests that come before the app is ready get a 503.
 */
function bind(host: string): Promise<Bound> {
  // PORT is the platforms' convention for the one port a service answers on; WAITLESS_PORT wins.
  const port = intOption(values.port ?? process.env.PORT, values.port === undefined ? 'PORT' : origin('port'), 3000);
  // Live while starting (waiting for PostgreSQL is not a reason to restart), ready later.
  const starting = new Hono().get('/livez', (c) => c.json({ status: 'ok' })).all('*', (c) =>
    problem(c, 503, { type: '/problems/starting', title: 'Starting', detail: 'The server is still starting; try again in a moment.' }, { 'retry-after': '1' }),
  );
  let fetch: (request: Request) => Response | Promise<Response> = starting.fetch;
  return new Promise((resolvePromise) => {
    const server = serve({ fetch: (request) => fetch(request), port, hostname: host }, (info) => {
      resolvePromise({ server, url: `http://${host}:${info.port}`, serve: (app) => (fetch = app) });
    });
    server.once('error', (error: NodeJS.ErrnoException) => {
      fail(error.code === 'EADDRINUSE' ? `port ${port} on ${host} is already in use (pick another with --port)` : error.message);
    });
  });
}

/** The dashboard is the page for a person; `/` sends them there instead of a JSON 404. */
function withRootRedirect(app: { fetch: (request: Request) => Response | Promise<Response> }): (request: Request) => Response | Promise<Response> {
  return (request) =>
    new URL(request.url).pathname === '/' && (request.method === 'GET' || request.method === 'HEAD')
      ? new Response(null, { status: 302, headers: { location: '/dashboard' } })
      : app.fetch(request);
}

/**
 * `/metrics` asks for this bearer token when WAITLESS_METRICS_TOKEN is set. Without it, `serve`
 * does not serve metrics (its port is public); `dev` (loopback) and a worker's `--port` (a
 * private health port) serve them open.
 */
function metricsOption(): { bearerToken: string } | undefined {
  const token = process.env.WAITLESS_METRICS_TOKEN;
  return token ? { bearerToken: token } : undefined;
}

async function closeServer(server: ServerType): Promise<void> {
  await new Promise<void>((done) => {
    server.close(() => done());
    // Open SSE streams would keep the server alive; they reconnect elsewhere with Last-Event-ID.
    if ('closeAllConnections' in server) server.closeAllConnections();
  });
}

async function dev(): Promise<void> {
  const options = workerOptions();
  // dev is the embedded database: a DATABASE_URL in the shell does not move it to a server.
  const devDatabase = (flags.fromCommandLine('database') ? values.database : undefined) ?? values.data ?? './.waitless';
  const cors = corsOption();
  if (values.host !== undefined && values.host !== '127.0.0.1') {
    logger.warn({ host: values.host }, 'waitless dev listens on 127.0.0.1 only, whatever --host says: it runs without keys. To listen elsewhere, use waitless serve');
  }
  const bound = await bind('127.0.0.1');
  const jobs = await loadJobs(values.jobs, true);
  const waitless = await createWaitless({
    jobs,
    database: devDatabase,
    schema: values.schema,
    migrate: !values['no-migrate'],
    logger,
    webhooks: webhookOptions(),
    retention: retentionOption(true),
  });
  waitless.startWorker(options);
  // Open, so guarded: only loopback Host names, and no state changes from pages on other sites.
  const app = createHttpApp(waitless, {
    auth: { mode: 'none', tenant: DEFAULT_TENANT },
    dashboard: true,
    cors,
    localOnly: true,
    metrics: metricsOption() ?? true,
    tenantLimits: tenantLimitsOption(),
  });
  bound.serve(withRootRedirect(app));
  const { server, url: base } = bound;
  waitless.logger.info({ url: base }, 'listening');
  const yours = jobs.filter((j) => j !== analyzeDocument).map((j) => j.name);
  const own = values.jobs
    ? `  Jobs:      ${yours.join(', ')} (from ${values.jobs}), and the demo analyze-document\n`
    : `  Jobs:      analyze-document, the demo (pass --jobs ./jobs.ts for your own)\n`;
  process.stdout.write(
    `\nWaitless dev is running on embedded PGlite (${devDatabase}).\n` +
      `  API:       ${base}/v1/jobs\n  Dashboard: ${base}/dashboard\n  Ready:     ${base}/readyz\n${own}\n` +
      `Try it:\n  curl -i -X POST ${base}/v1/jobs/analyze-document -H 'content-type: application/json' \\\n` +
      `       -d '{"input": {"text": "Quarterly security review of the payment service", "seconds": 20}}'\n\n`,
  );
  onShutdown(async () => {
    await closeServer(server);
    await waitless.close();
  });
}

async function serveCommand(): Promise<void> {
  if (!values.jobs && !values.demo) fail('no jobs: pass --jobs ./your-jobs.ts (or --demo)');
  const options = workerOptions();
  const cors = corsOption();
  serverDatabase(); // a missing URL is told before the port is taken
  const bound = await bind(values.host ?? '0.0.0.0');
  const jobs = await loadJobs(values.jobs, values.demo ?? false);
  if (jobs.length === 0) fail('no jobs: pass --jobs ./your-jobs.ts (or --demo)');
  const waitless = await openServerEngine({ jobs, migrate: !values['no-migrate'], webhooks: webhookOptions(), retention: retentionOption(true) });
  if (!values['no-worker']) waitless.startWorker(options);
  const app = createHttpApp(waitless, {
    auth: { mode: 'api-key', keys: waitless.apiKeys },
    dashboard: true,
    cors,
    metrics: metricsOption() ?? false,
    tenantLimits: tenantLimitsOption(),
  });
  bound.serve(withRootRedirect(app));
  const { server } = bound;
  waitless.logger.info({ url: bound.url }, 'listening');
  onShutdown(async () => {
    await closeServer(server);
    await waitless.close();
  });
}

async function worker(): Promise<void> {
  if (!values.jobs && !values.demo) fail('no jobs: pass --jobs ./your-jobs.ts (or --demo)');
  const options = workerOptions();
  serverDatabase(); // a missing URL is told before the port is taken
  // With --port, a worker answers health checks for its orchestrator, and nothing else. (Not
  // PORT: a worker started beside a server in the same environment must not fight it for it.)
  const bound = values.port === undefined ? undefined : await bind(values.host ?? '0.0.0.0');
  const jobs = await loadJobs(values.jobs, values.demo ?? false);
  if (jobs.length === 0) fail('no jobs: pass --jobs ./your-jobs.ts (or --demo)');
  const waitless = await openServerEngine({ jobs, migrate: !values['no-migrate'], webhooks: webhookOptions(), retention: retentionOption(true) });
  const running = waitless.startWorker(options);
  logger.info({ workerId: running.id, jobs: [...waitless.jobs.keys()] }, 'worker started');
  const health = new Hono()
    .get('/healthz', (c) => c.json({ status: 'ok', workerId: running.id, busy: running.busy }))
    .get('/metrics', metricsRoute(internals(waitless).driver, metricsOption()?.bearerToken));
  health.route('/', healthRoutes(waitless));
  bound?.serve(health.fetch);
  if (bound) waitless.logger.info({ url: bound.url }, 'listening');
  const server = bound?.server;
  onShutdown(async () => {
    if (server) await closeServer(server);
    await waitless.close();
  });
}

async function migrateCommand(): Promise<void> {
  const waitless = await openServerEngine({ jobs: [] });
  await waitless.close();
  process.stdout.write('migrations applied\n');
}

/** `waitless prune`: one pruning run now, by the same rules (and lock) as the workers'. */
async function pruneCommand(): Promise<void> {
  const retention = retentionOption(false);
  const olderThan = durationOption(values['older-than'], '--older-than');
  if (olderThan !== undefined && olderThan < 1000) fail('--older-than must be at least 1s');
  const jobs = values.jobs ? await loadJobs(values.jobs, false) : [];
  const waitless = await createWaitless({ jobs, database: serverDatabase(), schema: values.schema, logger, migrate: !values['no-migrate'], retention });
  try {
    const report = await waitless.prune({ dryRun: values['dry-run'] ?? false, ...(olderThan !== undefined ? { olderThan } : {}) });
    process.stdout.write(pruneSummary(report, olderThan));
  } finally {
    await waitless.close();
  }
}

function pruneSummary(report: PruneReport, olderThanMs: number | undefined): string {
  if (report.skipped) return 'another process is pruning this database right now; nothing was deleted (try again later)\n';
  const rule = olderThanMs === undefined ? 'past their retention' : `finished more than ${formatDuration(olderThanMs)} ago`;
  const head = report.dryRun ? `dry run: would delete, ${rule}:` : `deleted, ${rule}:`;
  const rows = Object.entries(report.deleted).map(([table, n]) => `  ${table.padEnd(20)}${String(n).padStart(10)}`);
  const tail = report.dryRun ? '' : `  (${report.statements} statements, the longest ${Math.round(report.longestStatementMs)} ms)\n`;
  return `${head}\n${rows.join('\n')}\n${tail}`;
}

async function keys(action: string | undefined): Promise<void> {
  const waitless = await createWaitless({ jobs: [], database: serverDatabase(), schema: values.schema, logger, migrate: !values['no-migrate'] });
  try {
    const store = waitless.apiKeys;
    if (action === 'create') {
      if (!values.tenant) fail('keys create needs --tenant NAME');
      const cap = values['max-priority'];
      if (cap !== undefined && !(/^-?\d+$/.test(cap) && Math.abs(Number(cap)) <= 1000)) fail(`--max-priority must be a whole number from -1000 to 1000, got "${cap}"`);
      const key = await store.create(values.tenant, { label: values.label, admin: values.admin ?? false, ...(cap !== undefined ? { maxPriority: Number(cap) } : {}) });
      const capped = key.maxPriority !== undefined ? `, priority at most ${key.maxPriority}` : '';
      process.stdout.write(`${key.role === 'admin' ? 'Admin key' : 'API key'} for tenant "${key.tenant}"${capped} (shown once, store it now):\n${key.token}\n`);
    } else if (action === 'list') {
      for (const key of await store.list()) {
        const cap = key.maxPriority !== undefined ? `  max-priority ${key.maxPriority}` : '';
        process.stdout.write(`${key.id}  ${key.tenant}  ${key.label ?? ''}  ${key.role}  ${key.createdAt}${cap}${key.revokedAt ? `  revoked ${key.revokedAt}` : ''}\n`);
      }
    } else if (action === 'revoke') {
      const id = positionals[2];
      if (!id) fail('keys revoke needs the key id');
      if (await store.revoke(id)) {
        process.stdout.write(`revoked ${id}\n`);
      } else {
        // Not found, or revoked before: a script that meant to revoke a key must know it did not.
        process.stderr.write(`waitless: no active key ${id} (see keys list)\n`);
        process.exitCode = 1;
      }
    } else if (action === 'rotate-job-tokens') {
      const given = positionals[2] ?? '24h';
      const overlap = /^\d+$/.test(given) ? Number(given) : given;
      try {
        await waitless.rotateJobTokenSecret({ overlap: overlap as Duration });
      } catch (error) {
        // Not fail(): the engine is closed below, and the message must reach a pipe before the exit.
        process.stderr.write(`waitless: keys rotate-job-tokens: ${(error as Error).message}\n`);
        process.exitCode = 2;
        return;
      }
      process.stdout.write(overlap === 0 ? 'job-token secret rotated: every earlier token is refused now\n' : `job-token secret rotated: earlier tokens are accepted for ${given} more\n`);
    } else {
      fail('keys: use create, list, revoke or rotate-job-tokens');
    }
  } finally {
    await waitless.close();
  }
}

const command = positionals[0];
if (values.help || !command) {
  process.stdout.write(USAGE);
  process.exit(command || values.help ? 0 : 2);
}
const commands: Record<string, () => Promise<void>> = {
  dev,
  serve: serveCommand,
  worker,
  migrate: migrateCommand,
  prune: pruneCommand,
  keys: () => keys(positionals[1]),
};
const run = commands[command];
if (!run) fail(`unknown command "${command}"\n\n${USAGE}`);
run().catch((error: unknown) => {
  // Said plainly: the schema and the code disagree, which the person must settle.
  if (error instanceof MigrationError) process.stderr.write(`waitless: ${error.message}\n`);
  logger.error({ err: error }, `${command} failed`);
  process.exit(1);
});
