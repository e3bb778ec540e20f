/**
 * A worker process for the chaos scenario: what `waitless worker` runs (the engine, a worker and
 * its webhook dispatcher, waiting for PostgreSQL while it does not answer), started by
 * test/worker-process.ts with the same flags, plus two settings the CLI does not expose:
 *
 * - WAITLESS_CHAOS_WEBHOOK_TIMEOUT: how long a receiver may take. A dispatcher holds each
 *   delivery it sends under a lease of four times this, so a SIGKILLed worker's delivery in
 *   flight waits that long before another process sends it (the CLI's 15 s: a minute).
 * - WAITLESS_CHAOS_MAX_CONNECTIONS: the pool, small, because several workers and other tests
 *   share one PostgreSQL server.
 *
 * It logs "worker started" (JSON) once it runs, the readiness signal WorkerProcess waits for,
 * whatever LOG_LEVEL says.
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { waitForDatabase } from '../../src/cli/wait-for-database.ts';
import { parseFlags } from '../../src/cli/flags.ts';
import { createWaitless } from '../../src/engine.ts';
import type { Duration } from '../../src/job/duration.ts';
import { MAX_CONNECTIONS_ENV, WEBHOOK_TIMEOUT_ENV } from './env.ts';


// Flags only: the environment of the test that spawned it must not configure it by accident.
const { values } = parseFlags(process.argv.slice(2), {});
const logger = pino({ level: process.env.LOG_LEVEL ?? 'info' });
if (!values.jobs || !values.database) throw new Error('usage: worker.ts worker --jobs MODULE --database URL [--schema NAME] [worker flags]');
const database = values.database;
const jobs = (await import(pathToFileURL(resolve(values.jobs)).href)) as Record<string, unknown>;
const duration = (value: string | undefined) => (value === undefined ? undefined : (value as Duration));

const waitless = await waitForDatabase(
  database,
  () =>
    createWaitless({
      jobs,
      database,
      schema: values.schema,
      logger,
      maxConnections: Number(process.env[MAX_CONNECTIONS_ENV] ?? 10),
      webhooks: {
        ssrf: { allow: (values['webhook-allow'] ?? '').split(',').filter(Boolean) },
        retrySchedule: values['webhook-retry']?.split(',') as Duration[] | undefined,
        timeout: duration(process.env[WEBHOOK_TIMEOUT_ENV]) ?? '15s',
      },
    }),
  logger,
  { initialDelayMs: 200, maxDelayMs: 1000 },
);
if (!waitless) process.exit(1);
const worker = waitless.startWorker({
  concurrency: values.concurrency === undefined ? undefined : Number(values.concurrency),
  lease: duration(values.lease),
  heartbeat: duration(values.heartbeat),
  pollInterval: duration(values['poll-interval']),
});
// At info whatever LOG_LEVEL says: it is the readiness signal, and a chaos run logs at warn.
pino().info({ workerId: worker.id }, 'worker started');
process.once('SIGTERM', () => {
  void waitless.close().then(() => process.exit(0));
});
