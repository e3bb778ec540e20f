import { Hono } from 'hono';
import type { z } from 'zod';
import type { livenessSchema, readinessSchema } from '../contract/responses.ts';
import type { Waitless } from '../engine.ts';
import { internals } from '../internals.ts';
import { migrationStatus, type MigrationStatus } from '../store/migrate.ts';
import { problem } from './problem.ts';

/** How long readiness waits for the database before it counts as unreachable. */
const READY_TIMEOUT_MS = 5_000;

/** Where the migrations stand, and why the process is not ready (no `reason` when it is). */
async function notReadyBecause(waitless: Waitless): Promise<{ reason?: string; status?: MigrationStatus }> {
  const { driver, schema } = internals(waitless);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${READY_TIMEOUT_MS / 1000} s`)), READY_TIMEOUT_MS);
  });
  let status: MigrationStatus;
  try {
    status = await Promise.race([migrationStatus(driver, schema), timeout]);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return { reason: `The database does not answer (${typeof code === 'string' ? code : (error as Error).message}).` };
  } finally {
    clearTimeout(timer);
  }
  const pad = (v: number) => String(v).padStart(4, '0');
  if (status.unknown.length) {
    return { status, reason: `The database schema is at migration ${pad(status.database)}, newer than this version (${pad(status.code)}).` };
  }
  if (status.pending.length) {
    return { status, reason: `The database schema is at migration ${pad(status.database)}; this version needs ${pad(status.code)} (run waitless migrate).` };
  }
  return { status };
}

/**
 * `GET /livez`: the process answers (its event loop turns), nothing else is checked, so an
 * orchestrator restarts only a process that is stuck. `GET /readyz`: the database answers and
 * its applied migrations are exactly this code's, so traffic goes only where it can be served;
 * otherwise a `503` problem naming why. (`/healthz`, the older check, asks the database only.)
 */
export function healthRoutes(waitless: Waitless): Hono {
  const app = new Hono();
  app.get('/livez', (c) => c.json({ status: 'ok' } satisfies z.infer<typeof livenessSchema>, 200, { 'cache-control': 'no-store' }));
  app.get('/readyz', async (c) => {
    const answer = await notReadyBecause(waitless);
    const migrations = answer.status && { database: answer.status.database, code: answer.status.code };
    if (answer.reason || !migrations) {
      const detail = answer.reason ?? 'The migrations could not be read.';
      return problem(c, 503, { type: '/problems/not-ready', title: 'Not ready', detail, ...(migrations ? { migrations } : {}) }, { 'retry-after': '5' });
    }
    const ready: z.infer<typeof readinessSchema> = { status: 'ready', database: internals(waitless).driver.kind, migrations };
    return c.json(ready, 200, { 'cache-control': 'no-store' });
  });
  return app;
}
