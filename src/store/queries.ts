/**
 * Every SQL statement Waitless runs, as pure functions returning `{ text, values }`.
 * Table names are unqualified: connections run with `search_path` set to the Waitless schema.
 *
 * Each state change is one statement that updates the job row, bumps its `last_seq` and
 * inserts the matching event (data-modifying CTEs), so the row and its event log can never
 * disagree, and the event's NOTIFY (a trigger) fires only if the statement commits.
 */
import type { JobStep } from '../job/model.ts';
import type { TraceCarrier } from '../observability/tracing.ts';
import type { Sql } from './driver.ts';
import { toStoredJson } from './json.ts';
import { RECOVERABLE_STATUSES, TERMINAL_STATUSES } from '../contract/statuses.ts';

const json = (value: unknown): string | null => (value === undefined ? null : (toStoredJson(value) ?? null));

/** Columns every job reader gets. The lease token is left out on purpose: it is the worker's secret. */
const JOB_COLUMN_NAMES = [
  'id', 'tenant_id', 'name', 'status', 'input', 'result', 'error', 'progress', 'partial_output', 'attempt',
  'max_attempts', 'timeout_ms', 'priority', 'run_at', 'last_seq', 'created_at', 'started_at', 'finished_at', 'updated_at',
  'fallback', 'steps', 'context', 'usage', 'supersede_key', 'concurrency_key', 'concurrency_limit',
  'trace_context',
] as const;
type JobColumn = (typeof JOB_COLUMN_NAMES)[number];

/**
 * The current attempt's output: its `output` events joined in order (appending one costs the
 * chunk, not the whole output). `partial_output` itself holds only what rows written before
 * migration 0005 had; `output_from_seq` is NULL on those.
 */
const outputOf = (table: string) => `${table}.partial_output || coalesce((SELECT string_agg(e.data->>'text', '' ORDER BY e.seq)
    FROM job_events e WHERE e.job_id = ${table}.id AND e.type = 'output' AND e.seq > ${table}.output_from_seq), '')`;

/** The job columns of `table` (a name or alias), some replaced by expressions (e.g. the values a CTE just wrote). */
const jobColumnsOf = (table: string, overrides: Partial<Record<JobColumn, string>> = {}) =>
  JOB_COLUMN_NAMES.map((name) => {
    const expression = overrides[name] ?? (name === 'partial_output' ? outputOf(table) : undefined);
    return expression ? `${expression} AS ${name}` : `${table}.${name}`;
  }).join(', ');

const JOB_COLUMNS = jobColumnsOf('jobs');

/** A job as submit returns it: it has no output yet. */
const INSERTED_JOB_COLUMNS = jobColumnsOf('jobs', { partial_output: `''` });

/** A job's state without its payloads (input, result, fallback, output), for the tenant-wide stream. */
const JOB_SUMMARY_COLUMNS = jobColumnsOf('jobs', { input: 'NULL::jsonb', result: 'NULL::jsonb', fallback: 'NULL::jsonb', partial_output: `''` });

/** A job row as the store reads it. */
export interface JobRow {
  id: string;
  tenant_id: string;
  name: string;
  status: string;
  input: unknown;
  result: unknown;
  error: unknown;
  progress: unknown;
  partial_output: string;
  attempt: number;
  max_attempts: number;
  timeout_ms: number;
  priority: number;
  run_at: Date;
  last_seq: number;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  updated_at: Date;
  fallback: unknown;
  steps: Record<string, StepSummary> | null;
  context: unknown;
  usage: unknown;
  supersede_key: string | null;
  concurrency_key: string | null;
  concurrency_limit: number | null;
  /** The submit span's W3C Trace Context (`{ traceparent, tracestate? }`); null when submitted untraced. */
  trace_context: unknown;
}

/** What the job row keeps of each step, for readers (keyed by the step's name). */
export type StepSummary = Omit<JobStep, 'name'>;

/** A job row as a worker claims it, with its lease. */
export interface ClaimedJobRow extends JobRow {
  lease_token: string;
}

export interface EventRow {
  seq: number;
  type: string;
  data: Record<string, unknown>;
  created_at: Date;
}

/** Appends one event to the job(s) returned by the CTE named `changed` (which must return id, tenant_id, last_seq). */
const appendEvent = (type: string, dataSql: string) => `
  appended AS (
    INSERT INTO job_events (job_id, seq, tenant_id, type, data)
    SELECT id, last_seq, tenant_id, '${type}', ${dataSql} FROM changed
  )`;

export { TERMINAL_WEBHOOK_EVENTS, WEBHOOK_EVENTS } from '../contract/webhook-events.ts';

/** The terminal statuses as an SQL list, from their one definition. */
const TERMINAL_SQL = [...TERMINAL_STATUSES].map((status) => `'${status}'`).join(', ');

/** Results larger than this go by link (the status URL) instead of inside the webhook payload. */
const WEBHOOK_RESULT_MAX_BYTES = 16_384;

/**
 * The webhook outbox, as a CTE over the job rows in `changed` (which must return id, tenant_id,
 * name, status, result, error, attempt, webhook, status_url). For every job that reached a
 * terminal status it inserts one delivery to the job's own webhook (if it asked for this event)
 * and one to each of the tenant's endpoints subscribed to it — in the same statement as the
 * status change, so there is no terminal state without its deliveries and no delivery for a
 * change that rolled back.
 */
const outbox = () => `
  outbox AS (
    INSERT INTO webhook_deliveries (id, tenant_id, job_id, endpoint_id, url, event_type, payload)
    SELECT gen_random_uuid(), target.tenant_id, target.id, target.endpoint_id, target.url, target.event_type,
      jsonb_build_object(
        'type', target.event_type,
        'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'data', jsonb_build_object('id', target.id, 'name', target.name, 'status', target.status,
            'attempt', target.attempt, 'statusUrl', target.status_url)
          || CASE WHEN target.status <> 'completed' THEN jsonb_build_object('error', target.error)
                  WHEN octet_length(target.result::text) <= ${WEBHOOK_RESULT_MAX_BYTES} THEN jsonb_build_object('result', target.result)
                  ELSE jsonb_build_object('resultOmitted', true) END
      )::text
    FROM (
      SELECT c.*, NULL::uuid AS endpoint_id, c.webhook->>'url' AS url, 'job.' || c.status AS event_type
      FROM changed c
      WHERE c.status IN (${TERMINAL_SQL}) AND c.webhook IS NOT NULL
        AND (NOT (c.webhook ? 'events') OR (c.webhook->'events') ? ('job.' || c.status))
      UNION ALL
      SELECT c.*, e.id, e.url, 'job.' || c.status
      FROM changed c JOIN webhook_endpoints e
        ON e.tenant_id = c.tenant_id AND e.disabled_at IS NULL AND ('job.' || c.status) = ANY (e.events)
      WHERE c.status IN (${TERMINAL_SQL})
    ) target
  )`;

/**
 * The opt-in progress webhooks, as a CTE over `reports` (a relation of id, tenant_id, name,
 * attempt, progress, webhook, status_url: one row per progress report): one delivery per report
 * to the job's own webhook if its `events` name `job.progress`, and to each endpoint subscribed to it.
 */
const progressOutbox = (reports: string) => `
  outbox AS (
    INSERT INTO webhook_deliveries (id, tenant_id, job_id, endpoint_id, url, event_type, payload)
    SELECT gen_random_uuid(), target.tenant_id, target.id, target.endpoint_id, target.url, 'job.progress',
      jsonb_build_object(
        'type', 'job.progress',
        'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'data', jsonb_build_object('id', target.id, 'name', target.name, 'status', 'running',
          'attempt', target.attempt, 'progress', target.progress, 'statusUrl', target.status_url)
      )::text
    FROM (
      SELECT r.*, NULL::uuid AS endpoint_id, r.webhook->>'url' AS url FROM ${reports} r
      WHERE r.webhook IS NOT NULL AND (r.webhook->'events') ? 'job.progress'
      UNION ALL
      SELECT r.*, e.id, e.url FROM ${reports} r JOIN webhook_endpoints e
        ON e.tenant_id = r.tenant_id AND e.disabled_at IS NULL AND 'job.progress' = ANY (e.events)
    ) target
  )`;

/** What the outbox needs from a changed job row. */
const OUTBOX_COLUMNS = 'name, status, result, error, attempt, webhook, status_url';

// ---------------------------------------------------------------- migrations

export const migrationQueries = (schema: string) => ({
  /** Transaction-scoped lock, so concurrent migrators take turns. Key: hash of the schema name. */
  lock: (): Sql => ({ text: `SELECT pg_advisory_xact_lock(hashtext('waitless.migrate.' || $1))`, values: [schema] }),
  createSchema: (): Sql => ({ text: `CREATE SCHEMA IF NOT EXISTS ${schema}`, values: [] }),
  createTable: (): Sql => ({
    text: `CREATE TABLE IF NOT EXISTS ${schema}.migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    values: [],
  }),
  applied: (): Sql => ({ text: `SELECT version FROM ${schema}.migrations ORDER BY version`, values: [] }),
  tableExists: (): Sql => ({ text: `SELECT to_regclass($1) IS NOT NULL AS found`, values: [`${schema}.migrations`] }),
  /** Bounds every lock wait of the migrating transaction. SET takes no parameters: ms is a number. */
  lockTimeout: (ms: number): Sql => ({ text: `SET LOCAL lock_timeout = ${Math.max(1, Math.trunc(ms))}`, values: [] }),
  /** Other sessions holding a lock on one of the schema's tables or on its migration lock. */
  lockHolders: (): Sql => ({
    text: `SELECT DISTINCT a.pid, a.application_name, a.state,
        coalesce(extract(epoch FROM now() - a.xact_start), 0)::int AS seconds, a.query
      FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.granted AND l.pid <> pg_backend_pid() AND (
        (l.locktype = 'relation' AND l.relation IN (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1))
        OR (l.locktype = 'advisory' AND l.objsubid = 1 AND l.objid::bigint = (hashtext('waitless.migrate.' || $1)::bigint & 4294967295)))`,
    values: [schema],
  }),
  record: (version: number, name: string): Sql => ({
    text: `INSERT INTO ${schema}.migrations (version, name) VALUES ($1, $2)`,
    values: [version, name],
  }),
});

// ---------------------------------------------------------------- submit

export interface InsertJobParams {
  id: string;
  tenant: string;
  name: string;
  input: unknown;
  maxAttempts: number;
  timeoutMs: number;
  /** The job's own webhook: `{ url, events? }`. */
  webhook?: { url: string; events?: string[] };
  /** Absolute URL of the job's status, for webhook payloads. */
  statusUrl?: string;
  idempotencyKey?: string;
  fingerprint?: string;
  /** The definition's instant answer, shown as provisional while the job runs. */
  fallback?: unknown;
  /** Higher runs first. Default 0. */
  priority?: number;
  /** Not claimable before this time. Default: now. */
  runAt?: Date;
  supersedeKey?: string;
  context?: unknown;
  concurrencyKey?: string;
  concurrencyLimit?: number;
  /** The submit span's W3C Trace Context, so the worker continues its trace. */
  traceContext?: TraceCarrier;
}

/**
 * Inserts jobs, each with its first event, in one statement (submits arriving together share
 * it). A job with an idempotency key has its key row inserted first, with `ON CONFLICT DO
 * NOTHING`: a concurrent request with the same key waits on the unique index until the first
 * commits, then inserts nothing and returns no row for it (nor does a second job with the same
 * key in the same batch); the caller then reads the existing key with {@link findIdempotencyKey}.
 * Answers the inserted jobs.
 */
export function insertJobs(jobs: InsertJobParams[]): Sql {
  const column = <T,>(pick: (p: InsertJobParams) => T) => jobs.map(pick);
  return {
    text: `WITH input AS (
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::integer[], $7::text[], $8::text[],
          $9::text[], $10::text[], $11::integer[], $12::timestamptz[], $13::text[], $14::text[], $15::text[], $16::integer[], $17::text[],
          $18::text[])
          WITH ORDINALITY AS i(id, tenant_id, name, input, max_attempts, timeout_ms, idempotency_key, webhook, status_url, fallback,
            priority, run_at, supersede_key, context, concurrency_key, concurrency_limit, fingerprint,
            trace_context, ord)
      ), claimed_key AS (
        INSERT INTO idempotency_keys (tenant_id, key, fingerprint, job_id)
        SELECT tenant_id, idempotency_key, fingerprint, id FROM input WHERE idempotency_key IS NOT NULL ORDER BY ord
        ON CONFLICT (tenant_id, key) DO NOTHING RETURNING job_id
      ), changed AS (
        INSERT INTO jobs (id, tenant_id, name, status, input, max_attempts, timeout_ms, idempotency_key, webhook, status_url, fallback,
          priority, run_at, supersede_key, context, concurrency_key, concurrency_limit,
          trace_context)
        SELECT id, tenant_id, name, 'queued', input::jsonb, max_attempts, timeout_ms, idempotency_key, webhook::jsonb, status_url, fallback::jsonb,
          priority, coalesce(run_at, now()), supersede_key, context::jsonb, concurrency_key, concurrency_limit,
          trace_context::jsonb
        FROM input WHERE idempotency_key IS NULL OR id IN (SELECT job_id FROM claimed_key) ORDER BY ord
        RETURNING ${INSERTED_JOB_COLUMNS}
      ), appended AS (
        INSERT INTO job_events (job_id, seq, tenant_id, type, data)
        SELECT id, 1, tenant_id, 'status', jsonb_build_object('status', 'queued') FROM changed
      )
      SELECT * FROM changed`,
    values: [
      column((p) => p.id),
      column((p) => p.tenant),
      column((p) => p.name),
      column((p) => json(p.input)),
      column((p) => p.maxAttempts),
      column((p) => p.timeoutMs),
      column((p) => p.idempotencyKey ?? null),
      column((p) => json(p.webhook)),
      column((p) => p.statusUrl ?? null),
      column((p) => json(p.fallback)),
      column((p) => p.priority ?? 0),
      column((p) => p.runAt?.toISOString() ?? null),
      column((p) => p.supersedeKey ?? null),
      column((p) => json(p.context)),
      column((p) => p.concurrencyKey ?? null),
      column((p) => p.concurrencyLimit ?? null),
      column((p) => p.fingerprint ?? ''),
      column((p) => json(p.traceContext)),
    ],
  };
}

export const findIdempotencyKey = (tenant: string, key: string): Sql => ({
  text: `SELECT fingerprint, job_id FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`,
  values: [tenant, key],
});

// ---------------------------------------------------------------- reads

export const getJob = (tenant: string, id: string): Sql => ({
  text: `SELECT ${JOB_COLUMNS} FROM jobs WHERE tenant_id = $1 AND id = $2`,
  values: [tenant, id],
});

export interface ListJobsParams {
  tenant: string;
  statuses?: string[];
  name?: string;
  /** Exclusive: rows strictly older (by created_at, then id) than the job with this id. */
  afterId?: string;
  limit: number;
}

export function listJobs(p: ListJobsParams): Sql {
  const values: unknown[] = [p.tenant];
  const where = ['tenant_id = $1'];
  if (p.statuses?.length) {
    values.push(p.statuses);
    where.push(`status = ANY($${values.length}::text[])`);
  }
  if (p.name) {
    values.push(p.name);
    where.push(`name = $${values.length}`);
  }
  if (p.afterId) {
    // Compared with the row's own timestamp, at full precision (a cursor carrying a rounded
    // timestamp would skip rows created in the same millisecond).
    values.push(p.afterId);
    where.push(`(created_at, id) < (SELECT created_at, id FROM jobs WHERE tenant_id = $1 AND id = $${values.length}::uuid)`);
  }
  values.push(p.limit);
  return {
    text: `SELECT ${JOB_COLUMNS} FROM jobs WHERE ${where.join(' AND ')}
      ORDER BY created_at DESC, id DESC LIMIT $${values.length}`,
    values,
  };
}

export const listEvents = (tenant: string, jobId: string, afterSeq: number, limit: number): Sql => ({
  text: `SELECT seq, type, data, created_at FROM job_events
    WHERE tenant_id = $1 AND job_id = $2 AND seq > $3 ORDER BY seq LIMIT $4`,
  values: [tenant, jobId, afterSeq, limit],
});

/** A job's `log` events after a sequence number (the primary key's job_id prefix finds them). */
export const listLogLines = (tenant: string, jobId: string, afterSeq: number, limit: number): Sql => ({
  text: `SELECT seq, type, data, created_at FROM job_events
    WHERE tenant_id = $1 AND job_id = $2 AND seq > $3 AND type = 'log' ORDER BY seq LIMIT $4`,
  values: [tenant, jobId, afterSeq, limit],
});

/** What readers need to decide whether to open jobs' event streams: each one's latest event and status (any tenant; callers match it). */
export const getJobHeads = (ids: string[]): Sql => ({
  text: `SELECT id, tenant_id, last_seq, status FROM jobs WHERE id = ANY($1::uuid[])`,
  values: [ids],
});

/**
 * The events of many jobs at once, each after its own sequence number and scoped by its own
 * tenant, at most `perJobLimit` per job: the event hub's one read per wake-up, however many
 * jobs changed and however many readers follow each.
 */
export const listEventsOfJobs = (jobs: Array<{ id: string; tenant: string; after: number }>, perJobLimit: number): Sql => ({
  text: `SELECT c.job_id, c.tenant_id, e.seq, e.type, e.data, e.created_at
    FROM unnest($1::uuid[], $2::text[], $3::integer[]) AS c(job_id, tenant_id, after)
    CROSS JOIN LATERAL (
      SELECT seq, type, data, created_at FROM job_events
      WHERE job_id = c.job_id AND tenant_id = c.tenant_id AND seq > c.after ORDER BY seq LIMIT $4
    ) e`,
  values: [jobs.map((j) => j.id), jobs.map((j) => j.tenant), jobs.map((j) => j.after), perJobLimit],
});

/** Many jobs by id, whole (with output), whatever their tenant: callers hand each only to its own tenant's readers. */
export const getJobsById = (ids: string[]): Sql => ({
  text: `SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ANY($1::uuid[])`,
  values: [ids],
});

/** Many jobs by id without their payloads (input, result, fallback and output read as empty), for the tenant-wide stream. */
export const getJobSummariesById = (ids: string[]): Sql => ({
  text: `SELECT ${JOB_SUMMARY_COLUMNS} FROM jobs WHERE id = ANY($1::uuid[])`,
  values: [ids],
});

// ---------------------------------------------------------------- API-side changes

/** Cancels a job that is not finished. Returns no row when it was already terminal (or unknown). */
export const cancelJob = (tenant: string, id: string, message: string): Sql => ({
  text: cancelWhere('id = $2', `jsonb_build_object('code', 'cancelled', 'message', $3::text)`, `'{}'::jsonb`),
  values: [tenant, id, message],
});

/**
 * Cancels the tenant's unfinished jobs matching `where` (which follows `tenant_id = $1`): the
 * status, `error`, the event (with `eventExtra` merged in) and the webhook outbox, in one
 * statement. Clearing the lease fences out a worker still running one.
 */
const cancelWhere = (where: string, error: string, eventExtra: string) => `WITH changed AS (
      UPDATE jobs SET status = 'cancelled', error = ${error},
        finished_at = now(), updated_at = now(), lease_token = NULL, lease_expires_at = NULL, last_seq = last_seq + 1
      WHERE tenant_id = $1 AND ${where} AND status IN ('queued', 'running')
      RETURNING id, tenant_id, last_seq, ${OUTBOX_COLUMNS}
    ), ${appendEvent('status', `jsonb_build_object('status', 'cancelled', 'error', error) || ${eventExtra}`)}, ${outbox()}
    SELECT id, name FROM changed`;

/** Statuses an admin may send back to the queue: ended without a result, or running but stuck. */

/**
 * The admin's recovery: a failed, timed-out, cancelled or stuck (running) job goes back to
 * `queued` with a fresh budget of `attempts`, its event log kept. Clearing the lease token
 * fences out a worker that still holds a stuck job: its next write or heartbeat finds the
 * lease gone and stops. Returns the status it was recovered from, or no row.
 */
export const recoverJob = (tenant: string, id: string, attempts: number): Sql => ({
  text: `WITH previous AS (
      SELECT id AS previous_id, status AS from_status FROM jobs
      WHERE tenant_id = $1 AND id = $2 AND status = ANY($4::text[])
        -- A superseded job stays cancelled: its replacement is the live one.
        AND coalesce(error->>'code', '') <> 'superseded'
      FOR UPDATE
    ), changed AS (
      UPDATE jobs SET status = 'queued', run_at = now(), finished_at = NULL, result = NULL,
        max_attempts = attempt + $3, lease_token = NULL, lease_expires_at = NULL, worker_id = NULL,
        updated_at = now(), last_seq = last_seq + 1
      FROM previous WHERE id = previous_id
      RETURNING ${JOB_COLUMNS}, from_status
    ), ${appendEvent('status', `jsonb_build_object('status', 'queued', 'reason', 'recovered', 'recovered', true, 'from', from_status, 'attempt', attempt, 'maxAttempts', max_attempts)`)}
    SELECT * FROM changed`,
  values: [tenant, id, attempts, RECOVERABLE_STATUSES],
});

// ---------------------------------------------------------------- worker: claim, lease, fencing

/** Marks the jobs in `next` running under fresh leases, appends their events, and answers them. */
const claimFrom = (nextCte: string, leaseParam: string, workerParam: string) => `WITH RECURSIVE ${nextCte}, changed AS (
      UPDATE jobs j SET status = 'running', attempt = j.attempt + 1, lease_token = gen_random_uuid(), partial_output = '', output_from_seq = j.last_seq + 1,
        lease_expires_at = now() + ${leaseParam} * interval '1 millisecond', worker_id = ${workerParam},
        started_at = coalesce(j.started_at, now()), updated_at = now(), last_seq = j.last_seq + 1
      -- An id list, not a join: the plan probes the primary key for each claimed job, even as a
      -- prepared statement's generic plan, which cannot see how few rows next holds (a join
      -- there was planned as a hash over the whole table).
      WHERE j.id = ANY (ARRAY(SELECT id FROM next))
      RETURNING j.id, j.tenant_id, j.last_seq, j.attempt, j.lease_token
    ), ${appendEvent('status', `jsonb_build_object('status', 'running', 'attempt', attempt)`)}
    SELECT ${jobColumnsOf('j', {
      status: `'running'`,
      partial_output: `''`,
      attempt: 'c.attempt',
      last_seq: 'c.last_seq',
      started_at: 'coalesce(j.started_at, now())',
      updated_at: 'now()',
    })}, c.lease_token
    FROM changed c JOIN jobs j ON j.id = c.id`;

/** Queued jobs without a concurrency key (the predicate of the `jobs_claimable_by_tenant` index). */
const unkeyedQueued = (table: string) => `${table}.status = 'queued' AND ${table}.concurrency_key IS NULL`;

/**
 * Claims up to `limit` due jobs of the given names that have no concurrency key, taking them
 * round robin across the tenants with due work: each tenant's first job (by priority, then due
 * time), then each one's second, and so on. Priority orders a tenant's own jobs only, so a
 * tenant with a deep backlog or high priorities delays another tenant's next job by at most one
 * turn per tenant ahead of it in the round. A round starts after `afterTenant` (byte order; the
 * tenant the caller's previous claim ended on) and wraps around, so that when there are more
 * tenants with due work than free slots, each claim serves the ones the last one did not.
 *
 * One statement, cost bounded by the slots, not the backlog: the walk over the tenants is one
 * index probe per tenant and stops at `limit` tenants with due work; each of those is counted
 * as far as its share could reach; the shares are dealt round robin; then each tenant's share is locked with
 * `SKIP LOCKED` (a row another worker holds is passed over for the tenant's next one), so many
 * workers claim at once without waiting on each other. Each claim gets a fresh lease token that
 * every later write must present.
 */
export const claimJobs = (names: string[], limit: number, workerId: string, leaseMs: number, afterTenant = ''): Sql => ({
  text: claimFrom(
    `after_cursor(tenant_id) AS (
      SELECT (SELECT min(tenant_id COLLATE "C") FROM jobs WHERE ${unkeyedQueued('jobs')} AND tenant_id COLLATE "C" > $5)
      UNION ALL
      SELECT (SELECT min(j.tenant_id COLLATE "C") FROM jobs j WHERE ${unkeyedQueued('j')} AND j.tenant_id COLLATE "C" > w.tenant_id)
      FROM after_cursor w WHERE w.tenant_id IS NOT NULL
    ), up_to_cursor(tenant_id) AS (
      SELECT (SELECT min(tenant_id COLLATE "C") FROM jobs WHERE ${unkeyedQueued('jobs')} AND tenant_id COLLATE "C" <= $5)
      UNION ALL
      SELECT (SELECT min(j.tenant_id COLLATE "C") FROM jobs j WHERE ${unkeyedQueued('j')} AND j.tenant_id COLLATE "C" > w.tenant_id AND j.tenant_id COLLATE "C" <= $5)
      FROM up_to_cursor w WHERE w.tenant_id IS NOT NULL
    ), due_tenants AS (
      -- The walk is lazy: it stops at the first $2 tenants (in round order) with due jobs of these names.
      SELECT w.tenant_id, w.lap FROM (
        SELECT tenant_id, 0 AS lap FROM after_cursor UNION ALL SELECT tenant_id, 1 FROM up_to_cursor
      ) w
      WHERE w.tenant_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM jobs d WHERE d.tenant_id COLLATE "C" = w.tenant_id AND ${unkeyedQueued('d')}
          AND d.run_at <= now() AND d.name = ANY($1::text[]))
      LIMIT $2
    ), due AS (
      -- Each tenant's due jobs, counted only as far as its share could reach: with D tenants
      -- each having one, no tenant gets more than $2 - D + 1.
      SELECT t.tenant_id, t.lap, c.available FROM due_tenants t CROSS JOIN LATERAL (
        SELECT count(*) AS available FROM (
          SELECT 1 FROM jobs d WHERE d.tenant_id COLLATE "C" = t.tenant_id AND ${unkeyedQueued('d')}
            AND d.run_at <= now() AND d.name = ANY($1::text[])
          ORDER BY d.priority DESC, d.run_at, d.id LIMIT $2::integer - (SELECT count(*) FROM due_tenants)::integer + 1) up_to_share
      ) c
    ), shares AS (
      SELECT tenant_id, count(*) AS share FROM (
        SELECT due.tenant_id FROM due CROSS JOIN generate_series(1, due.available) AS turn
        ORDER BY turn, due.lap, due.tenant_id LIMIT $2
      ) dealt GROUP BY tenant_id
    ), next AS (
      SELECT p.id FROM shares s CROSS JOIN LATERAL (
        SELECT id FROM jobs j WHERE j.tenant_id COLLATE "C" = s.tenant_id AND ${unkeyedQueued('j')}
          AND j.run_at <= now() AND j.name = ANY($1::text[])
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT s.share FOR UPDATE SKIP LOCKED
      ) p
      -- Never more than $2 (the shares add up to it); said here so the plan expects a few rows, not a scan's worth.
      LIMIT $2
    )`,
    '$3',
    '$4',
  ),
  values: [names, limit, leaseMs, workerId, afterTenant],
});

/** How long until the next queued job of these names falls due (by the database's clock, so app clocks may drift). */
export const nextDueInMs = (names: string[]): Sql => ({
  text: `SELECT (extract(epoch FROM min(run_at) - now()) * 1000)::float8 AS in_ms FROM jobs
    WHERE status = 'queued' AND run_at > now() AND name = ANY($1::text[])`,
  values: [names],
});

/**
 * Keys with due work and a free slot: each is claimed on its own, under its lock (see
 * {@link claimKeyedJobs}). Full keys are left out here, so they cannot crowd out the keys
 * behind them. (The count is re-checked under the lock: this one may be stale.) The keys come
 * round robin across tenants, as in {@link claimJobs}: each tenant's first key (by its best
 * priority, then its longest-due job), then each one's second, a round starting after
 * `afterTenant` (byte order) — so one tenant's many keys cannot push another's out of the list.
 */
export const dueConcurrencyKeys = (names: string[], limit: number, afterTenant = ''): Sql => ({
  text: `SELECT tenant_id, concurrency_key, concurrency_limit FROM (
      SELECT q.tenant_id, q.concurrency_key, min(q.concurrency_limit) AS concurrency_limit,
        row_number() OVER (PARTITION BY q.tenant_id ORDER BY max(q.priority) DESC, min(q.run_at), q.concurrency_key) AS turn
      FROM jobs q
      WHERE q.status = 'queued' AND q.run_at <= now() AND q.name = ANY($1::text[]) AND q.concurrency_key IS NOT NULL
      GROUP BY q.tenant_id, q.concurrency_key
      HAVING (SELECT count(*) FROM jobs r
        WHERE r.tenant_id = q.tenant_id AND r.concurrency_key = q.concurrency_key AND r.status = 'running') < min(q.concurrency_limit)
    ) keyed
    ORDER BY turn, tenant_id COLLATE "C" <= $3, tenant_id COLLATE "C" LIMIT $2`,
  values: [names, limit, afterTenant],
});

/**
 * Prefix of the concurrency keys of the `queue` policy (first in, first out, one at a time).
 * Its control character cannot occur in a key a caller gives, so the two never meet.
 */
export const QUEUE_KEY_PREFIX = 'queue\u0001';

/**
 * Takes the per-key lock for the rest of the transaction, without waiting: `false` means
 * another worker is claiming this key's jobs right now (it will take what is free).
 */
export const tryLockConcurrencyKey = (tenant: string, key: string): Sql => ({
  text: `SELECT pg_try_advisory_xact_lock(hashtext('waitless.concurrency'), hashtext(current_schema() || '/' || $1 || '/' || $2)) AS locked`,
  values: [tenant, key],
});

/**
 * Claims jobs of one concurrency key, as many as its limit leaves free. Run in the
 * transaction that holds the key's lock, as a later statement: its snapshot then sees every
 * claim committed before the lock was taken, so two workers can never both fill the last slot.
 * A `queue` key runs its jobs strictly in submit order: only its oldest queued job, once due
 * (a retry backing off keeps its place instead of letting a newer job pass).
 */
export const claimKeyedJobs = (names: string[], tenant: string, key: string, keyLimit: number, want: number, workerId: string, leaseMs: number): Sql => ({
  text: claimFrom(
    `next AS (
      SELECT id FROM jobs
      WHERE tenant_id = $5 AND concurrency_key = $6 AND status = 'queued' AND run_at <= now() AND name = ANY($1::text[])
        AND (NOT starts_with($6, $8) OR id = (SELECT o.id FROM jobs o
          WHERE o.tenant_id = $5 AND o.concurrency_key = $6 AND o.status = 'queued' ORDER BY o.created_at, o.id LIMIT 1))
      ORDER BY priority DESC, run_at, id
      LIMIT LEAST($2::integer, GREATEST(0, $7::integer - (
        SELECT count(*) FROM jobs WHERE tenant_id = $5 AND concurrency_key = $6 AND status = 'running')::integer))
      FOR UPDATE SKIP LOCKED
    )`,
    '$3',
    '$4',
  ),
  values: [names, want, leaseMs, workerId, tenant, key, keyLimit, QUEUE_KEY_PREFIX],
});

/**
 * Extends the leases a worker still holds, all in one statement. Returns the ids whose lease
 * was extended; a job missing from the answer was cancelled, finished or taken over.
 */
export const extendLeases = (ids: string[], tokens: string[], leaseMs: number): Sql => ({
  // Rows are locked in id order, so two heartbeats over overlapping jobs can never deadlock.
  text: `WITH held AS (
      SELECT j.id FROM jobs j JOIN unnest($1::uuid[], $2::uuid[]) AS h(id, token) ON j.id = h.id AND j.lease_token = h.token
      WHERE j.status = 'running' ORDER BY j.id FOR UPDATE OF j
    )
    UPDATE jobs j SET lease_expires_at = now() + $3 * interval '1 millisecond'
    FROM held WHERE j.id = held.id
    RETURNING j.id`,
  values: [ids, tokens, leaseMs],
});

/** The fence every worker write carries: the job is still running under this lease. */
const FENCE = `id = $1 AND lease_token = $2 AND status = 'running'`;

/**
 * A direct write (a step's start, result or failure, token usage), fenced and applied once: it
 * carries an id (`$n`) the job row keeps, and a try whose id the row already holds (an earlier
 * try committed, but its answer was lost with the connection) changes nothing. The row is locked
 * first (`held`), so a try that starts while an earlier one is still committing waits for it and
 * then sees its id (not the row as it was when the statement began): it answers "written".
 */
const HELD = (n: string) => `held AS (SELECT id, last_write_id IS NOT DISTINCT FROM ${n} AS applied FROM jobs WHERE ${FENCE} FOR UPDATE)`;

/** The update's condition: fenced, held, and not applied by an earlier try. */
const ONCE = (n: string) => `${FENCE} AND last_write_id IS DISTINCT FROM ${n} AND id IN (SELECT id FROM held WHERE NOT applied)`;

/** Answers a row when the direct write is applied, now or by an earlier try: the job was held under its lease. */
const APPLIED = `SELECT 1 FROM held`;

/** One buffered write of a running job: a chunk of output, or a progress report (JSON). */
export interface JobWrite {
  id: string;
  token: string;
  kind: 'output' | 'progress' | 'log';
  /** The output text, or the progress report or log line as JSON text. */
  body: string;
  /**
   * The round this write goes in (one id for all of a job's writes in one round): a round sent
   * again after a dropped connection, that had in fact been applied, is not applied twice.
   */
  round: string;
}

/**
 * Writes the buffered output, progress and log lines of many running jobs in one statement, each job
 * fenced by its own lease token: a job whose lease is gone gets nothing written and is missing
 * from the answer (the lease tokens written). A job's writes become consecutive events in the order
 * given; its last progress report becomes the job's `progress`.
 */
export const writeJobs = (writes: JobWrite[]): Sql => ({
  text: `WITH batch AS (
      SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[]) WITH ORDINALITY AS b(id, token, kind, body, round, ord)
    ), per_job AS (
      SELECT id, token, round, count(*)::integer AS n,
        (array_agg(body ORDER BY ord DESC) FILTER (WHERE kind = 'progress'))[1]::jsonb AS progress
      FROM batch GROUP BY id, token, round
    ), held AS (
      -- Rows are locked in id order, so two statements over overlapping jobs can never deadlock.
      -- A round the row already holds was applied by an earlier try whose answer was lost.
      SELECT j.id, j.lease_token AS token, j.last_round_id IS NOT DISTINCT FROM p.round AS applied
      FROM jobs j JOIN per_job p ON j.id = p.id AND j.lease_token = p.token
      WHERE j.status = 'running' ORDER BY j.id FOR UPDATE OF j
    ), changed AS (
      UPDATE jobs j SET last_seq = j.last_seq + p.n, progress = coalesce(p.progress, j.progress), updated_at = now(), last_round_id = p.round
      FROM per_job p JOIN held h ON h.id = p.id AND h.token = p.token AND NOT h.applied WHERE j.id = p.id
      RETURNING j.id, p.token, j.tenant_id, j.last_seq, p.n, j.name, j.attempt, j.webhook, j.status_url
    ), appended AS (
      INSERT INTO job_events (job_id, seq, tenant_id, type, data)
      SELECT b.id, c.last_seq - c.n + (row_number() OVER (PARTITION BY b.id ORDER BY b.ord))::integer, c.tenant_id, b.kind,
        CASE b.kind WHEN 'output' THEN jsonb_build_object('text', b.body) ELSE b.body::jsonb END
      FROM batch b JOIN changed c ON c.id = b.id AND c.token = b.token
    ), ${progressOutbox(`(SELECT c.id, c.tenant_id, c.name, c.attempt, b.body::jsonb AS progress, c.webhook, c.status_url
        FROM changed c JOIN batch b ON b.id = c.id AND b.token = c.token AND b.kind = 'progress')`)}
    SELECT token FROM held`,
  values: [writes.map((w) => w.id), writes.map((w) => w.token), writes.map((w) => w.kind), writes.map((w) => w.body), writes.map((w) => w.round)],
});

/** A terminal outcome to record: the status with its result (completed, stale) or error. */
export interface JobOutcome {
  id: string;
  token: string;
  status: 'completed' | 'failed' | 'timed_out' | 'stale';
  result?: unknown;
  error?: unknown;
}

/**
 * Writes the terminal status of many jobs in one statement (each fenced by its lease token),
 * with each one's event and webhook outbox rows. Terminal states are written once. Answers the
 * lease tokens written; a job missing from it was no longer held.
 */
export const finishJobs = (outcomes: JobOutcome[]): Sql => ({
  text: `WITH batch AS (
      SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[]) AS b(id, token, status, result, error)
    ), held AS (
      SELECT j.id, j.lease_token AS token FROM jobs j JOIN batch b ON j.id = b.id AND j.lease_token = b.token
      WHERE j.status = 'running' ORDER BY j.id FOR UPDATE OF j
    ), changed AS (
      UPDATE jobs j SET status = b.status, result = b.result::jsonb, error = b.error::jsonb, finished_at = now(), updated_at = now(),
        lease_token = NULL, lease_expires_at = NULL, last_seq = j.last_seq + 1
      FROM batch b JOIN held h ON h.id = b.id AND h.token = b.token WHERE j.id = b.id
      RETURNING j.id, h.token, j.tenant_id, j.last_seq, j.name, j.status, j.result, j.error, j.attempt, j.webhook, j.status_url
    ), ${appendEvent('status', `jsonb_build_object('status', status, 'attempt', attempt) || CASE WHEN status = 'completed' THEN jsonb_build_object('result', result) ELSE jsonb_build_object('error', error) END`)},
    ${outbox()}
    SELECT token FROM changed`,
  values: [
    outcomes.map((o) => o.id),
    outcomes.map((o) => o.token),
    outcomes.map((o) => o.status),
    outcomes.map((o) => json(o.result)),
    outcomes.map((o) => json(o.error)),
  ],
});

/**
 * Hands a running job back to the queue (fenced): for a retry after `delayMs`, or at once on
 * graceful shutdown. A retry has used its attempt (the next claim counts the next one); a
 * shutdown hand-back has not, so deploys never eat into a job's retries.
 */
export const requeueJob = (
  id: string,
  token: string,
  delayMs: number,
  reason: 'retry' | 'worker_shutdown',
  error: unknown,
): Sql => ({
  text: `WITH changed AS (
      UPDATE jobs SET status = 'queued', error = $5::jsonb,
        -- A retry waits out its backoff; a shutdown hand-back keeps its place in the queue.
        run_at = CASE WHEN $4 = 'worker_shutdown' THEN run_at ELSE now() + $3 * interval '1 millisecond' END,
        attempt = CASE WHEN $4 = 'worker_shutdown' THEN attempt - 1 ELSE attempt END,
        updated_at = now(), lease_token = NULL, lease_expires_at = NULL, worker_id = NULL, last_seq = last_seq + 1
      WHERE ${FENCE} RETURNING id, tenant_id, last_seq, attempt, run_at, error
    ), ${appendEvent('status', `jsonb_build_object('status', 'queued', 'reason', $4::text, 'attempt', attempt, 'runAt', run_at) || CASE WHEN error IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('error', error) END`)}
    SELECT last_seq FROM changed`,
  values: [id, token, delayMs, reason, json(error)],
});

/**
 * Takes back jobs whose lease ran out (their worker crashed, hung or lost the database).
 * A job with attempts left goes back to the queue; one without fails with `worker_lost`.
 */
export const reclaimExpiredLeases = (limit: number): Sql => ({
  text: `WITH expired AS (
      SELECT id FROM jobs WHERE status = 'running' AND lease_expires_at < now()
      ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
    ), changed AS (
      UPDATE jobs j SET
        status = CASE WHEN j.attempt < j.max_attempts THEN 'queued' ELSE 'failed' END,
        error = jsonb_build_object('code', 'worker_lost', 'message',
          'Attempt ' || j.attempt || ' stopped reporting (its worker crashed or lost the database) and its lease expired'
          || CASE WHEN j.attempt < j.max_attempts THEN '; the job was queued again.'
             ELSE '; no attempts are left. Retry the job, or raise its retry.attempts.' END),
        finished_at = CASE WHEN j.attempt < j.max_attempts THEN NULL ELSE now() END,
        -- run_at is left as it was: the job keeps its place in the queue, ahead of jobs
        -- submitted while it ran (its worker's crash is no reason to serve them first).
        updated_at = now(), lease_token = NULL, lease_expires_at = NULL, worker_id = NULL,
        last_seq = j.last_seq + 1
      FROM expired WHERE j.id = expired.id
      RETURNING j.id, j.tenant_id, j.last_seq, j.name, j.status, j.result, j.error, j.attempt, j.webhook, j.status_url
    ), ${appendEvent('status', `jsonb_build_object('status', status, 'reason', 'lease_expired', 'attempt', attempt, 'error', error)`)},
    ${outbox()}
    SELECT id, name, status FROM changed`,
  values: [limit],
});

export type QueueStatsRow = { name: string; queued: string | number; oldest_due_seconds: number | null };

/**
 * Queued jobs by name, and how long the longest-waiting due one has been claimable: read at
 * metrics scrapes, so it only touches queued rows (the `jobs_queued_by_run_at` partial index).
 * A job taken back from a lost worker keeps its early run_at (its place in the queue) but has
 * been claimable only since it was taken back (its updated_at); for every other queued job,
 * updated_at is not after run_at.
 */
export const queueStats = (): Sql => ({
  text: `SELECT name, count(*) AS queued,
      EXTRACT(EPOCH FROM now() - min(greatest(run_at, updated_at)) FILTER (WHERE run_at <= now()))::float8 AS oldest_due_seconds
    FROM jobs WHERE status = 'queued' GROUP BY name`,
  values: [],
});

// ---------------------------------------------------------------- steps

export interface StepRow {
  status: 'running' | 'completed';
  result: unknown;
  checkpoint: unknown;
}

/** A step's record from any earlier run of the job: its result once completed, else its checkpoint. */
export const getStep = (jobId: string, name: string): Sql => ({
  text: `SELECT status, result, checkpoint FROM job_steps WHERE job_id = $1 AND name = $2`,
  values: [jobId, name],
});

/** The step's entry in the job row's summary, replaced whole. */
const stepSummary = (name: string, summary: string) => `steps = coalesce(steps, '{}'::jsonb) || jsonb_build_object(${name}::text, ${summary})`;

/** Records that a step started (fenced): the summary and a `step` event. */
export const startStep = (id: string, token: string, name: string, writeId: string): Sql => ({
  text: `WITH ${HELD('$4')}, changed AS (
      UPDATE jobs SET ${stepSummary('$3', `jsonb_build_object('status', 'running', 'attempt', attempt, 'startedAt', now())`)},
        updated_at = now(), last_seq = last_seq + 1, last_write_id = $4
      WHERE ${ONCE('$4')} RETURNING id, tenant_id, last_seq, attempt
    ), ${appendEvent('step', `jsonb_build_object('name', $3::text, 'status', 'started', 'attempt', attempt)`)}
    ${APPLIED}`,
  values: [id, token, name, writeId],
});

/** Records a step's result (fenced), with its summary and `step` event, in one statement. */
export const completeStep = (id: string, token: string, name: string, result: unknown, startedAt: Date, writeId: string): Sql => ({
  text: `WITH ${HELD('$6')}, changed AS (
      UPDATE jobs SET ${stepSummary(
        '$3',
        `jsonb_build_object('status', 'completed', 'attempt', attempt, 'startedAt', $5::timestamptz, 'finishedAt', now(),
          'durationMs', round(extract(epoch FROM now() - $5::timestamptz) * 1000))`,
      )}, updated_at = now(), last_seq = last_seq + 1, last_write_id = $6
      WHERE ${ONCE('$6')} RETURNING id, tenant_id, last_seq, attempt
    ), recorded AS (
      INSERT INTO job_steps (job_id, name, tenant_id, status, result, attempt, started_at, finished_at)
      SELECT id, $3, tenant_id, 'completed', $4::jsonb, attempt, $5::timestamptz, now() FROM changed
      ON CONFLICT (job_id, name) DO UPDATE SET status = 'completed', result = EXCLUDED.result, checkpoint = NULL,
        attempt = EXCLUDED.attempt, started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at
    ), ${appendEvent('step', `jsonb_build_object('name', $3::text, 'status', 'completed', 'attempt', attempt, 'durationMs', round(extract(epoch FROM now() - $5::timestamptz) * 1000))`)}
    ${APPLIED}`,
  values: [id, token, name, json(result) ?? 'null', startedAt, writeId],
});

/** Records that a step threw (fenced); nothing of it is kept but its checkpoint. */
export const failStep = (id: string, token: string, name: string, message: string, startedAt: Date, writeId: string): Sql => ({
  text: `WITH ${HELD('$6')}, changed AS (
      UPDATE jobs SET ${stepSummary(
        '$3',
        `jsonb_build_object('status', 'failed', 'attempt', attempt, 'startedAt', $5::timestamptz, 'finishedAt', now(),
          'durationMs', round(extract(epoch FROM now() - $5::timestamptz) * 1000), 'error', $4::text)`,
      )}, updated_at = now(), last_seq = last_seq + 1, last_write_id = $6
      WHERE ${ONCE('$6')} RETURNING id, tenant_id, last_seq, attempt
    ), ${appendEvent('step', `jsonb_build_object('name', $3::text, 'status', 'failed', 'attempt', attempt, 'error', $4::text)`)}
    ${APPLIED}`,
  values: [id, token, name, message, startedAt, writeId],
});

/** Saves how far an unfinished step got (fenced: the job row is locked and checked first). */
export const saveStepCheckpoint = (id: string, token: string, name: string, checkpoint: unknown, startedAt: Date): Sql => ({
  text: `WITH held AS (
      SELECT id, tenant_id, attempt FROM jobs WHERE ${FENCE} FOR SHARE
    )
    INSERT INTO job_steps (job_id, name, tenant_id, status, checkpoint, attempt, started_at)
    SELECT id, $3, tenant_id, 'running', $4::jsonb, attempt, $5::timestamptz FROM held
    ON CONFLICT (job_id, name) DO UPDATE SET checkpoint = EXCLUDED.checkpoint, attempt = EXCLUDED.attempt
      WHERE job_steps.status = 'running'
    RETURNING job_id`,
  values: [id, token, name, json(checkpoint) ?? 'null', startedAt],
});

// ---------------------------------------------------------------- token usage

/** Adds a model call's token counts to the job's totals and to its model's (fenced). */
export const recordUsage = (id: string, token: string, model: string, prompt: number, completion: number, total: number, writeId: string): Sql => ({
  text: `WITH ${HELD('$7')}, changed AS (UPDATE jobs SET usage = jsonb_build_object(
      'promptTokens', coalesce((usage->>'promptTokens')::bigint, 0) + $4,
      'completionTokens', coalesce((usage->>'completionTokens')::bigint, 0) + $5,
      'totalTokens', coalesce((usage->>'totalTokens')::bigint, 0) + $6,
      'byModel', coalesce(usage->'byModel', '{}'::jsonb) || jsonb_build_object($3::text, jsonb_build_object(
        'promptTokens', coalesce((usage->'byModel'->$3->>'promptTokens')::bigint, 0) + $4,
        'completionTokens', coalesce((usage->'byModel'->$3->>'completionTokens')::bigint, 0) + $5,
        'totalTokens', coalesce((usage->'byModel'->$3->>'totalTokens')::bigint, 0) + $6,
        'calls', coalesce((usage->'byModel'->$3->>'calls')::bigint, 0) + 1))),
      updated_at = now(), last_write_id = $7
    WHERE ${ONCE('$7')} RETURNING id)
    ${APPLIED}`,
  values: [id, token, model, prompt, completion, total, writeId],
});

// ---------------------------------------------------------------- latest wins

/** Serializes submits sharing a supersede key, for the rest of the transaction. (Tenants have no "/": the pair is unambiguous.) */
export const lockSupersedeKey = (tenant: string, key: string): Sql => ({
  text: `SELECT pg_advisory_xact_lock(hashtext('waitless.supersede'), hashtext(current_schema() || '/' || $1 || '/' || $2))`,
  values: [tenant, key],
});

/** The tenant's in-flight (queued or running) jobs with this key, oldest first. */
export const inFlightWithKey = (tenant: string, key: string): Sql => ({
  text: `SELECT id, status FROM jobs WHERE tenant_id = $1 AND supersede_key = $2 AND status IN ('queued', 'running') ORDER BY created_at, id`,
  values: [tenant, key],
});

/**
 * Cancels every in-flight job of the tenant with this key in favour of `newerId`: each ends
 * `cancelled` with code `superseded`, its worker hears of it and stops, and whatever it
 * returns later is fenced out, so it can never complete.
 */
export const supersedeJobs = (tenant: string, key: string, newerId: string): Sql => ({
  text: cancelWhere(
    'supersede_key = $2',
    `jsonb_build_object('code', 'superseded', 'supersededBy', $3::text,
      'message', 'A newer job with the same key (' || $3::text || ') replaced this one; its result, if any arrives, is discarded.')`,
    `jsonb_build_object('reason', 'superseded')`,
  ),
  values: [tenant, key, newerId],
});

// ---------------------------------------------------------------- API keys

export const insertApiKey = (id: string, tenant: string, secretHash: string, label: string | null, role: string, maxPriority: number | null = null): Sql => ({
  text: `INSERT INTO api_keys (id, tenant_id, secret_hash, label, role, max_priority) VALUES ($1, $2, $3, $4, $5, $6)`,
  values: [id, tenant, secretHash, label, role, maxPriority],
});

export const findApiKey = (id: string): Sql => ({
  text: `SELECT tenant_id, secret_hash, role, max_priority FROM api_keys WHERE id = $1 AND revoked_at IS NULL`,
  values: [id],
});

/** Revokes a key and tells every process (`<schema>_keys`), in the same statement, to forget it at once. */
export const revokeApiKey = (id: string): Sql => ({
  text: `WITH revoked AS (UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING id)
    SELECT id, pg_notify(current_schema() || '_keys', id) FROM revoked`,
  values: [id],
});

export const listApiKeys = (): Sql => ({
  text: `SELECT id, tenant_id, label, role, max_priority, created_at, revoked_at FROM api_keys ORDER BY created_at`,
  values: [],
});

// ---------------------------------------------------------------- server secrets

/** Stores a secret unless one of that name exists (the first process to get there wins). */
export const insertServerSecret = (name: string, secret: string): Sql => ({
  text: `INSERT INTO server_secrets (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
  values: [name, secret],
});

/**
 * Replaces a server secret with `secret`, keeping the old one under `previousName` as JSON
 * `{"secret", "until"}` (until: ms since the epoch, `overlapMs` from now), and tells every
 * process (`<schema>_keys`, payload `name`) to read them again. One statement.
 */
export const rotateServerSecret = (name: string, previousName: string, secret: string, overlapMs: number): Sql => ({
  // FOR UPDATE: a rotation running at the same time waits, then keeps the secret that one made
  // current (not the one both read first, which would end the other's tokens at once). Both
  // writes read `old`, so it is read (and locked) before `fresh` replaces the row.
  text: `WITH old AS (SELECT secret FROM server_secrets WHERE name = $1 FOR UPDATE),
    kept AS (
      INSERT INTO server_secrets (name, secret)
      SELECT $2, json_build_object('secret', old.secret, 'until', floor(extract(epoch FROM now()) * 1000) + $4::bigint)::text FROM old
      ON CONFLICT (name) DO UPDATE SET secret = EXCLUDED.secret, created_at = now()),
    fresh AS (
      INSERT INTO server_secrets (name, secret) SELECT $1, $3 FROM (SELECT count(*) FROM old) AS read_first
      ON CONFLICT (name) DO UPDATE SET secret = EXCLUDED.secret, created_at = now())
    SELECT pg_notify(current_schema() || '_keys', $1)`,
  values: [name, previousName, secret, overlapMs],
});

export const getServerSecret = (name: string): Sql => ({
  text: `SELECT secret FROM server_secrets WHERE name = $1`,
  values: [name],
});
