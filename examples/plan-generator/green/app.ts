/**
 * Green: the app a user clicks in. "Generate plan" submits an analyze-repository job to Purple
 * and then has two ways to learn that it finished:
 *
 *   1. the webhook — Purple POSTs the signed result to /webhooks/waitless (the happy path);
 *   2. the reconciler — durable status checks on the seed's front-loaded schedule
 *      (60 s, 60 s, 120 s, 240 s, then 480 s × 8), the safety net for a webhook that never came.
 *
 * Whichever comes first applies the result to the `plans` table, exactly once: `apply` writes
 * through the reconciler's transaction, which also marks the job settled.
 *
 *   PURPLE_API_KEY=wl_… node examples/plan-generator/green/app.ts [--fast]
 *
 * Environment (defaults in brackets):
 *   PURPLE_URL        Purple's API [http://127.0.0.1:3000]
 *   PURPLE_API_KEY    a key from `waitless keys create` (required)
 *   WEBHOOK_SECRET    Purple's whsec_… signing secret(s), comma-separated [asked from Purple at start]
 *   PORT              [4000]; 0 picks a free port
 *   PUBLIC_URL        where Purple reaches this app [http://127.0.0.1:PORT]
 *   GREEN_DATABASE    a PGlite folder or a postgres:// URL [./.green]
 *   GREEN_SCHEMA      schema of the plans and reconciler tables [green]
 *   CADENCE           status-check delays in seconds, comma-separated [60,60,120,240,480×8]
 *   CADENCE_DIVISOR   divides CADENCE, to watch the safety net in seconds instead of minutes;
 *                     `--fast` is CADENCE_DIVISOR=60 [1]
 *   DROP_WEBHOOKS=1   start with the webhook endpoint answering 503 (POST /toggle flips it)
 *
 * (In your own app: `import { WaitlessClient } from 'waitless/client'` and
 * `import { createReconciler } from 'waitless/reconciler'`.)
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import pg from 'pg';
import { WaitlessClient } from '../../../src/client/index.ts';
import type { Job } from '../../../src/job/model.ts';
import { createReconciler, type TrackedJob } from '../../../src/reconciler/index.ts';

const { values: flags } = parseArgs({ options: { fast: { type: 'boolean' } } });
const env = process.env;
const purpleUrl = env.PURPLE_URL ?? 'http://127.0.0.1:3000';
const apiKey = env.PURPLE_API_KEY;
if (!apiKey) throw new Error('Set PURPLE_API_KEY (create one with `node src/cli/main.ts keys create --tenant green`).');
const schema = env.GREEN_SCHEMA ?? 'green';
if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`GREEN_SCHEMA "${schema}": use lower-case letters, digits and _`);
const database = env.GREEN_DATABASE ?? './.green';
const divisor = flags.fast ? 60 : Number(env.CADENCE_DIVISOR ?? 1);
const cadenceSeconds = env.CADENCE?.split(',').map(Number) ?? [60, 60, 120, 240, ...Array<number>(8).fill(480)];
const cadence = cadenceSeconds.map((s) => Math.round((s * 1000) / divisor)); // milliseconds
let dropWebhooks = env.DROP_WEBHOOKS === '1';

const purple = new WaitlessClient({ baseUrl: purpleUrl, apiKey });

// ---------------------------------------------------------------- the database
// One database for the app's plans and the reconciler's bookkeeping, so that applying a result
// and marking its job settled commit together.

interface Db {
  query<Row>(text: string, values?: unknown[]): Promise<Row[]>;
  close(): Promise<void>;
}
const postgres = /^postgres(ql)?:\/\//.test(database);
const pglite = postgres ? undefined : await PGlite.create(database);
const pool = postgres ? new pg.Pool({ connectionString: database, max: 5 }) : undefined;
const db: Db = {
  async query<Row>(text: string, values: unknown[] = []) {
    return pglite ? (await pglite.query<Row>(text, values)).rows : ((await pool!.query(text, values)).rows as Row[]);
  },
  close: () => (pglite ? pglite.close() : pool!.end()),
};

const PLANS = `${schema}.plans`;
await db.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
await db.query(`CREATE TABLE IF NOT EXISTS ${PLANS} (
  id          text PRIMARY KEY,              -- the click's id: one plan per click
  prd         text NOT NULL,
  repository  text NOT NULL,
  minutes     real NOT NULL,
  job_id      text UNIQUE,                   -- Purple's job, once submitted
  tasks       jsonb,                         -- the result, written by apply
  apply_count integer NOT NULL DEFAULT 0,    -- stays at 0 or 1: the proof of "exactly once"
  applied_at  timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now()
)`);

interface PlanRow {
  id: string;
  prd: string;
  repository: string;
  minutes: number;
  job_id: string | null;
  tasks: string[] | null;
  apply_count: number;
  applied_at: Date | null;
  created_at: Date;
}


// ---------------------------------------------------------------- the reconciler

interface PlanContext {
  planId: string;
  prd: string;
}
const secrets = env.WEBHOOK_SECRET?.split(',') ?? (await fetchWebhookSecrets());
const reconciler = await createReconciler({
  source: purple,
  ...(pglite ? { pglite } : { database }),
  schema,
  cadence,
  pollInterval: divisor > 1 ? 200 : 1000,
  webhookSecrets: secrets,
  // Only the newest plan of a PRD is wanted: an older plan's result is stale (the user asked
  // again). Read through `tx`, inside the settle step's transaction.
  isRelevant: async (_job, tracked, tx) => {
    const { planId, prd } = tracked.context as PlanContext;
    const [latest] = await tx.query<{ id: string }>({
      text: `SELECT id FROM ${PLANS} WHERE prd = $1 ORDER BY created_at DESC, id DESC LIMIT 1`,
      values: [prd],
    });
    return latest?.id === planId;
  },
  // Runs once per job, whichever path brought it; `tx` commits with the "settled" mark.
  apply: async (job: Job, tracked, tx) => {
    const { tasks } = job.result as { tasks: string[] };
    await tx.query({
      text: `UPDATE ${PLANS} SET tasks = $2, apply_count = apply_count + 1, applied_at = now() WHERE id = $1`,
      values: [(tracked.context as PlanContext).planId, JSON.stringify(tasks)],
    });
  },
  // Every settlement: applied, stale, failed (the job failed, or the checks ran out: then
  // `message` says how long we waited and to start again). A real UI would push this to the
  // browser so the spinner ends; here it is a log line.
  onStatus: (tracked) => {
    const { planId } = tracked.context as PlanContext;
    console.log(`plan ${planId}: ${tracked.state} by ${tracked.settledBy}${tracked.message ? ` — ${tracked.message}` : ''}`);
  },
});
reconciler.start();

/** Purple's current signing secrets (all of them during a rotation). Restart Green after a rotation. */
async function fetchWebhookSecrets(): Promise<string[]> {
  const response = await fetch(`${purpleUrl}/v1/webhooks/secret`, { headers: { authorization: `Bearer ${apiKey}` } });
  if (!response.ok) throw new Error(`GET ${purpleUrl}/v1/webhooks/secret answered ${response.status}: is Purple up, is the key right?`);
  return ((await response.json()) as { secrets: Array<{ secret: string }> }).secrets.map((s) => s.secret);
}

// ---------------------------------------------------------------- plans

/** A plan as the UI sees it: its row, plus what the reconciler knows of its job. */
async function view(read: PlanRow) {
  const tracked: TrackedJob | undefined = read.job_id ? await reconciler.get(read.job_id) : undefined;
  // The apply step commits the plan's result with the settled mark. The plan was read before
  // the mark, so a plan seen settled is read again: it then shows what was applied.
  const row = tracked && tracked.state !== 'pending' ? ((await db.query<PlanRow>(`SELECT * FROM ${PLANS} WHERE id = $1`, [read.id]))[0] ?? read) : read;
  return {
    id: row.id,
    prd: row.prd,
    repository: row.repository,
    minutes: row.minutes,
    jobId: row.job_id,
    // submitting → pending → applied | stale | failed
    state: tracked?.state ?? 'submitting',
    settledBy: tracked?.settledBy ?? null,
    checks: tracked?.checks ?? 0,
    message: tracked?.message ?? null,
    tasks: row.tasks,
    applyCount: row.apply_count,
    createdAt: row.created_at,
    appliedAt: row.applied_at,
  };
}

/**
 * One click → one plan. The click id doubles as the Idempotency-Key, so a double click or a
 * retried request gets the same plan and the same Purple job, never a second one.
 */
async function createPlan(input: { clickId: string; prd: string; repository: string; minutes: number }) {
  await db.query(`INSERT INTO ${PLANS} (id, prd, repository, minutes) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING RETURNING id`, [
    input.clickId,
    input.prd,
    input.repository,
    input.minutes,
  ]);
  const [plan] = await db.query<PlanRow>(`SELECT * FROM ${PLANS} WHERE id = $1`, [input.clickId]);
  const job = await purple.submit(
    'analyze-repository',
    { repository: plan!.repository, prd: plan!.prd, minutes: plan!.minutes },
    { idempotencyKey: `plan-${plan!.id}`, webhook: { url: `${publicUrl}/webhooks/waitless` } },
  );
  await db.query(`UPDATE ${PLANS} SET job_id = $2 WHERE id = $1`, [plan!.id, job.id]);
  await reconciler.track(job.id, { planId: plan!.id, prd: plan!.prd } satisfies PlanContext);
  const [row] = await db.query<PlanRow>(`SELECT * FROM ${PLANS} WHERE id = $1`, [plan!.id]);
  return view(row!);
}

async function listPlans() {
  const rows = await db.query<PlanRow>(`SELECT * FROM ${PLANS} ORDER BY created_at DESC LIMIT 50`);
  return Promise.all(rows.map(view));
}

// ---------------------------------------------------------------- HTTP

const app = new Hono();

app.post('/webhooks/waitless', async (c) => {
  // The switch that lets you watch the safety net: deliveries "fail" as during a bad deploy.
  if (dropWebhooks) return c.text('webhooks are switched off (POST /toggle)', 503);
  const body = await c.req.text(); // the raw body: the signature is over these exact bytes
  try {
    // Not tracked yet (the webhook beat our own bookkeeping): 409 makes Purple send it again.
    if (!(await reconciler.handleWebhook({ headers: c.req.raw.headers, body }))) return c.text('not tracked yet', 409);
  } catch (error) {
    console.warn(`webhook refused: ${(error as Error).message}`);
    return c.text('bad webhook', 400);
  }
  return c.body(null, 204);
});

app.post('/plans', async (c) => {
  const isForm = (c.req.header('content-type') ?? '').startsWith('application/x-www-form-urlencoded');
  const raw: Record<string, unknown> = isForm ? await c.req.parseBody() : await c.req.json<Record<string, unknown>>().catch(() => ({}));
  const prd = typeof raw.prd === 'string' && raw.prd.trim() ? raw.prd.trim() : undefined;
  if (!prd) return c.json({ error: 'prd is required' }, 400);
  const plan = await createPlan({
    clickId: typeof raw.clickId === 'string' && raw.clickId ? raw.clickId : randomUUID(),
    prd,
    repository: typeof raw.repository === 'string' && raw.repository ? raw.repository : 'acme/shop',
    minutes: Number(raw.minutes ?? 0.5),
  });
  return isForm ? c.redirect('/', 303) : c.json(plan, 202);
});

app.get('/plans', async (c) => c.json({ dropWebhooks, cadenceMs: cadence, plans: await listPlans() }));

app.get('/plans/:id', async (c) => {
  const [row] = await db.query<PlanRow>(`SELECT * FROM ${PLANS} WHERE id = $1`, [c.req.param('id')]);
  return row ? c.json(await view(row)) : c.json({ error: 'no such plan' }, 404);
});

app.post('/toggle', async (c) => {
  dropWebhooks = !dropWebhooks;
  console.log(`webhooks are now ${dropWebhooks ? 'DROPPED (503)' : 'accepted'}`);
  return (c.req.header('accept') ?? '').includes('text/html') ? c.redirect('/', 303) : c.json({ dropWebhooks });
});

const escape = (s: string | number | null) => String(s ?? '').replace(/[&<>"]/g, (ch) => `&#${ch.charCodeAt(0)};`);

app.get('/', async (c) => {
  const rows = (await listPlans())
    .map(
      (p) =>
        `<tr><td>${escape(p.prd)}</td><td>${escape(p.minutes)} min</td><td><b>${escape(p.state)}</b>${p.settledBy ? ` by ${escape(p.settledBy)}` : ''}` +
        ` (${p.checks} checks)</td><td>${p.tasks ? `<ul>${p.tasks.map((t) => `<li>${escape(t)}</li>`).join('')}</ul>` : escape(p.message)}</td></tr>`,
    )
    .join('');
  return c.html(`<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="2"><title>Green</title>
<h1>Plan generator</h1>
<form method="post" action="/plans">
  <input type="hidden" name="clickId" value="${randomUUID()}">
  <input name="prd" placeholder="PRD: what to build" value="Add a wishlist" size="40">
  <input name="minutes" value="0.5" size="4"> minutes
  <button>Generate plan</button>
</form>
<form method="post" action="/toggle"><button>Webhooks: ${dropWebhooks ? 'DROPPED — click to accept' : 'accepted — click to drop'}</button></form>
<p>Status checks after ${cadence.map((ms) => `${ms / 1000}s`).join(', ')}.</p>
<table border="1" cellpadding="4"><tr><th>PRD</th><th>Length</th><th>State</th><th>Plan</th></tr>${rows}</table>`);
});

app.get('/healthz', (c) => c.json({ status: 'ok' }));

const server = await new Promise<ServerType>((resolve) => {
  const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: Number(env.PORT ?? 4000) }, () => resolve(s));
});
const port = (server.address() as AddressInfo).port;
const publicUrl = env.PUBLIC_URL ?? `http://127.0.0.1:${port}`;
console.log(`green listening on http://127.0.0.1:${port} (Purple: ${purpleUrl}; webhooks ${dropWebhooks ? 'dropped' : 'accepted'})`);

async function shutdown(): Promise<void> {
  server.close();
  await reconciler.close();
  await db.close();
  process.exit(0);
}
process.once('SIGINT', () => void shutdown());
process.once('SIGTERM', () => void shutdown());
