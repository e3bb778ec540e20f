/**
 * SQL of retention: deleting finished jobs (with their events, steps, webhook deliveries and
 * attempts, and their idempotency key) past their retention, expired idempotency keys and
 * expired webhook signing secrets. Every delete takes a bounded batch of rows with
 * `FOR UPDATE SKIP LOCKED` and runs as one short statement of its own: it never waits on a row
 * another transaction holds, and never holds a table for long.
 */
import type { Sql } from './driver.ts';

/**
 * Finished jobs by how they ended: `failed` (failed, timed out) may be kept longer than the
 * `other` ends (completed, cancelled, stale). The lists are written into the SQL text, not
 * passed as parameters, so that the planner can prove every query implies the predicate of the
 * partial index `jobs_finished` even in a generic plan of a prepared statement.
 */
export const RETENTION_KINDS = {
  failed: ['failed', 'timed_out'],
  other: ['completed', 'cancelled', 'stale'],
} as const;

export type RetentionKind = keyof typeof RETENTION_KINDS;

/**
 * One retention rule as SQL sees it: jobs of `kind` finished more than `retentionMs` ago,
 * narrowed to one tenant and/or one job name, and leaving out the tenants and names another
 * rule speaks for.
 */
export interface RetentionGroup {
  kind: RetentionKind;
  retentionMs: number;
  tenant?: string;
  name?: string;
  notTenants: string[];
  notNames: string[];
}

/** Where a group's batches have got to: the last job a batch deleted, by `(finished_at, id)`. */
export interface PruneCursor {
  /** `finished_at` as PostgreSQL prints it (text keeps its microseconds). */
  finishedAt: string;
  id: string;
}

/** Before every job. */
export const PRUNE_START: PruneCursor = { finishedAt: '-infinity', id: '00000000-0000-0000-0000-000000000000' };

/** The tables a job's deletion counts rows of. */
export const JOB_TABLES = ['jobs', 'job_events', 'job_steps', 'webhook_deliveries', 'webhook_attempts', 'idempotency_keys'] as const;

/** Rows deleted from each table (or, in a dry run, that would be). */
export type PruneCountsRow = Record<(typeof JOB_TABLES)[number], number>;

const statusList = (kind: RetentionKind) => RETENTION_KINDS[kind].map((s) => `'${s}'`).join(', ');

/**
 * The expired jobs of a group, found through `jobs_finished` (a range of `finished_at`), never
 * a scan of the table. A job with a webhook delivery still due or under way is kept: its
 * attempt records against the delivery, and the payload links to the job.
 */
const expiredJobs = (kind: RetentionKind) => `SELECT j.id, j.tenant_id, j.idempotency_key, j.finished_at FROM jobs j
    WHERE j.status IN (${statusList(kind)}) AND j.finished_at < now() - $1 * interval '1 millisecond'
      AND ($2::text IS NULL OR j.tenant_id = $2) AND ($3::text IS NULL OR j.name = $3)
      AND j.tenant_id <> ALL ($4::text[]) AND j.name <> ALL ($5::text[])
      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.job_id = j.id AND d.status IN ('pending', 'delivering'))`;

const groupValues = (g: RetentionGroup) => [g.retentionMs, g.tenant ?? null, g.name ?? null, g.notTenants, g.notNames];

/**
 * Deletes up to `limit` expired jobs of the group after `after`, oldest first, with every row
 * that belongs to them, in one statement. The children are deleted explicitly (the foreign keys
 * would cascade anyway, and still do for tables added later) so that each table's count can be
 * told. A job locked by someone else (a recovery under way) is skipped, and looked at again
 * next round. The next batch starts after this one's last job (`last_finished_at`, `last_id`):
 * the finished jobs another rule keeps, older than the cutoff, are stepped over once a run, not
 * once a batch.
 */
export const deleteExpiredJobs = (g: RetentionGroup, limit: number, after: PruneCursor): Sql => ({
  text: `WITH doomed AS (
      ${expiredJobs(g.kind)}
        AND j.finished_at >= $7::timestamptz AND (j.finished_at, j.id) > ($7::timestamptz, $8::uuid)
      ORDER BY j.finished_at, j.id LIMIT $6 FOR UPDATE OF j SKIP LOCKED
    ), last AS (
      SELECT finished_at::text AS finished_at, id::text AS id FROM doomed ORDER BY finished_at DESC, id DESC LIMIT 1
    ), deliveries AS (
      DELETE FROM webhook_deliveries d USING doomed WHERE d.job_id = doomed.id RETURNING d.id
    ), attempts AS (
      DELETE FROM webhook_attempts a USING deliveries WHERE a.delivery_id = deliveries.id RETURNING 1
    ), events AS (
      DELETE FROM job_events e USING doomed WHERE e.job_id = doomed.id RETURNING 1
    ), steps AS (
      DELETE FROM job_steps s USING doomed WHERE s.job_id = doomed.id RETURNING 1
    ), keys AS (
      -- The job's own idempotency key goes with it: a key must never name a job that is gone.
      DELETE FROM idempotency_keys k USING doomed
      WHERE k.tenant_id = doomed.tenant_id AND k.key = doomed.idempotency_key AND k.job_id = doomed.id RETURNING 1
    ), gone AS (
      DELETE FROM jobs j USING doomed WHERE j.id = doomed.id RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone)::int AS jobs, (SELECT count(*) FROM events)::int AS job_events,
      (SELECT count(*) FROM steps)::int AS job_steps, (SELECT count(*) FROM deliveries)::int AS webhook_deliveries,
      (SELECT count(*) FROM attempts)::int AS webhook_attempts, (SELECT count(*) FROM keys)::int AS idempotency_keys,
      (SELECT finished_at FROM last) AS last_finished_at, (SELECT id FROM last) AS last_id`,
  values: [...groupValues(g), limit, after.finishedAt, after.id],
});

/** What {@link deleteExpiredJobs} answers: the counts, and where its batch ended (null: it deleted nothing). */
export interface DeletedJobsRow extends PruneCountsRow {
  last_finished_at: string | null;
  last_id: string | null;
}

/**
 * What {@link deleteExpiredJobs} would delete for the group, all batches together (a dry run).
 * Idempotency keys are counted here only while younger than `keyTtlMs`: older ones are counted
 * by {@link countExpiredIdempotencyKeys}.
 */
export const countExpiredJobs = (g: RetentionGroup, keyTtlMs: number): Sql => ({
  text: `WITH doomed AS (
      ${expiredJobs(g.kind)}
    ), deliveries AS (
      SELECT d.id FROM webhook_deliveries d JOIN doomed ON d.job_id = doomed.id
    )
    SELECT (SELECT count(*) FROM doomed)::int AS jobs,
      (SELECT count(*) FROM job_events e JOIN doomed ON e.job_id = doomed.id)::int AS job_events,
      (SELECT count(*) FROM job_steps s JOIN doomed ON s.job_id = doomed.id)::int AS job_steps,
      (SELECT count(*) FROM deliveries)::int AS webhook_deliveries,
      (SELECT count(*) FROM webhook_attempts a JOIN deliveries ON a.delivery_id = deliveries.id)::int AS webhook_attempts,
      (SELECT count(*) FROM idempotency_keys k JOIN doomed
        ON k.tenant_id = doomed.tenant_id AND k.key = doomed.idempotency_key AND k.job_id = doomed.id
        WHERE k.created_at >= now() - $6 * interval '1 millisecond')::int AS idempotency_keys`,
  values: [...groupValues(g), keyTtlMs],
});

/** Idempotency keys older than `keepMs` are forgotten, up to `limit` a statement (index `idempotency_keys_age`). */
export const deleteExpiredIdempotencyKeys = (keepMs: number, limit: number): Sql => ({
  text: `WITH doomed AS (
      SELECT tenant_id, key FROM idempotency_keys WHERE created_at < now() - $1 * interval '1 millisecond'
      ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED
    )
    DELETE FROM idempotency_keys k USING doomed WHERE k.tenant_id = doomed.tenant_id AND k.key = doomed.key RETURNING 1`,
  values: [keepMs, limit],
});

export const countExpiredIdempotencyKeys = (keepMs: number): Sql => ({
  text: `SELECT count(*)::int AS n FROM idempotency_keys WHERE created_at < now() - $1 * interval '1 millisecond'`,
  values: [keepMs],
});

/**
 * Webhook signing secrets whose overlap after a rotation has ended: they sign nothing any more
 * (only unexpired secrets sign). A few rows per tenant, so no index is needed to find them.
 */
export const deleteExpiredSecrets = (limit: number): Sql => ({
  text: `WITH doomed AS (
      SELECT id FROM webhook_secrets WHERE expires_at < now() LIMIT $1 FOR UPDATE SKIP LOCKED
    )
    DELETE FROM webhook_secrets s USING doomed WHERE s.id = doomed.id RETURNING 1`,
  values: [limit],
});

export const countExpiredSecrets = (): Sql => ({
  text: `SELECT count(*)::int AS n FROM webhook_secrets WHERE expires_at < now()`,
  values: [],
});

/**
 * Held for a whole pruning run, in a transaction of its own that does nothing else, so that one
 * process at a time prunes a schema. Named like the other advisory locks (`waitless.<what>`,
 * then the schema). `false`: another process is pruning now.
 */
export const tryLockPruning = (): Sql => ({
  text: `SELECT pg_try_advisory_xact_lock(hashtext('waitless.retention'), hashtext(current_schema())) AS locked`,
  values: [],
});
