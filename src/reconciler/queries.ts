/** SQL of the reconciler (consumer side). Runs with search_path set to the reconciler's schema. */
import type { Sql } from '../store/driver.ts';
import { toStoredJson } from '../store/json.ts';

export interface TrackedRow {
  job_id: string;
  state: string;
  context: unknown;
  checks: number;
  next_check_at: Date;
  tracked_at: Date;
  settled_at: Date | null;
  settled_by: string | null;
  remote_status: string | null;
  message: string | null;
}

const COLUMNS = 'job_id, state, context, checks, next_check_at, tracked_at, settled_at, settled_by, remote_status, message';

/** Tracking twice keeps the first row (and its schedule). */
export const track = (jobId: string, context: unknown, firstCheckMs: number): Sql => ({
  text: `WITH inserted AS (
      INSERT INTO tracked_jobs (job_id, state, context, next_check_at)
      VALUES ($1, 'pending', $2::jsonb, now() + $3 * interval '1 millisecond')
      ON CONFLICT (job_id) DO NOTHING RETURNING ${COLUMNS}
    )
    SELECT ${COLUMNS} FROM inserted UNION ALL SELECT ${COLUMNS} FROM tracked_jobs WHERE job_id = $1 LIMIT 1`,
  values: [jobId, context === undefined ? null : (toStoredJson(context) ?? null), firstCheckMs],
});

export const getTracked = (jobId: string): Sql => ({
  text: `SELECT ${COLUMNS} FROM tracked_jobs WHERE job_id = $1`,
  values: [jobId],
});

/** The settle step's lock: the row, if it is still pending. A concurrent settle waits, then gets nothing. */
export const lockPending = (jobId: string): Sql => ({
  text: `SELECT ${COLUMNS} FROM tracked_jobs WHERE job_id = $1 AND state = 'pending' FOR UPDATE`,
  values: [jobId],
});

export const markSettled = (jobId: string, state: 'applied' | 'stale' | 'failed', by: string, remoteStatus: string, message: string | null): Sql => ({
  text: `UPDATE tracked_jobs SET state = $2, settled_by = $3, remote_status = $4, message = $5, settled_at = now()
    WHERE job_id = $1 AND state = 'pending' RETURNING ${COLUMNS}`,
  values: [jobId, state, by, remoteStatus, message],
});

/** The give-up path; a job settled meanwhile (a late webhook won the race) is left alone. */
export const markGivenUp = (jobId: string, message: string): Sql => ({
  text: `UPDATE tracked_jobs SET state = 'failed', settled_by = 'give_up', message = $2, settled_at = now()
    WHERE job_id = $1 AND state = 'pending' RETURNING ${COLUMNS}`,
  values: [jobId, message],
});

/** Claims due checks: counts the check and pushes the next one out by `leaseMs` meanwhile. */
export const claimDue = (limit: number, leaseMs: number): Sql => ({
  text: `WITH due AS (
      SELECT job_id FROM tracked_jobs WHERE state = 'pending' AND next_check_at <= now()
      ORDER BY next_check_at LIMIT $1 FOR UPDATE SKIP LOCKED
    )
    UPDATE tracked_jobs t SET checks = t.checks + 1, next_check_at = now() + $2 * interval '1 millisecond'
    FROM due WHERE t.job_id = due.job_id RETURNING t.job_id, t.checks`,
  values: [limit, leaseMs],
});

export const scheduleNext = (jobId: string, delayMs: number): Sql => ({
  text: `UPDATE tracked_jobs SET next_check_at = now() + $2 * interval '1 millisecond' WHERE job_id = $1 AND state = 'pending'`,
  values: [jobId, delayMs],
});

export const findWebhook = (webhookId: string): Sql => ({
  text: `SELECT 1 FROM seen_webhooks WHERE webhook_id = $1`,
  values: [webhookId],
});

export const markWebhookSeen = (webhookId: string): Sql => ({
  text: `INSERT INTO seen_webhooks (webhook_id) VALUES ($1) ON CONFLICT DO NOTHING`,
  values: [webhookId],
});

/** Settled jobs settled more than `keepMs` ago, up to `limit` a statement; pending ones are never touched. */
export const deleteSettled = (keepMs: number, limit: number): Sql => ({
  text: `WITH doomed AS (
      SELECT job_id FROM tracked_jobs WHERE state <> 'pending' AND settled_at < now() - $1 * interval '1 millisecond'
      ORDER BY settled_at LIMIT $2 FOR UPDATE SKIP LOCKED
    )
    DELETE FROM tracked_jobs t USING doomed WHERE t.job_id = doomed.job_id RETURNING 1`,
  values: [keepMs, limit],
});

/** Webhook ids handled more than `keepMs` ago, up to `limit` a statement. */
export const deleteSeenWebhooks = (keepMs: number, limit: number): Sql => ({
  text: `WITH doomed AS (
      SELECT webhook_id FROM seen_webhooks WHERE seen_at < now() - $1 * interval '1 millisecond'
      ORDER BY seen_at LIMIT $2 FOR UPDATE SKIP LOCKED
    )
    DELETE FROM seen_webhooks s USING doomed WHERE s.webhook_id = doomed.webhook_id RETURNING 1`,
  values: [keepMs, limit],
});
