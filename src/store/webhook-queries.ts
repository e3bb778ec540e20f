/**
 * SQL of outbound webhooks: secrets, endpoints, the delivery outbox and its attempts.
 * (Deliveries are created by the job transitions themselves: see `outbox` in queries.ts.)
 */
import type { Sql } from './driver.ts';

export interface DeliveryRow {
  id: string;
  tenant_id: string;
  job_id: string;
  endpoint_id: string | null;
  url: string;
  event_type: string;
  payload: string;
  status: string;
  attempts: number;
  next_attempt_at: Date;
  last_error: string | null;
  created_at: Date;
  updated_at: Date;
  delivered_at: Date | null;
}

export interface ClaimedDeliveryRow extends DeliveryRow {
  lease_token: string;
  /** The job's trace context (read from the job: deliveries keep none of their own). */
  trace_context: unknown;
}

export interface AttemptRow {
  delivery_id: string;
  n: number;
  started_at: Date;
  status_code: number | null;
  latency_ms: number;
  response_excerpt: string | null;
  error: string | null;
}

const DELIVERY_COLUMNS = `id, tenant_id, job_id, endpoint_id, url, event_type, payload, status, attempts, next_attempt_at,
  last_error, created_at, updated_at, delivered_at`;

// ---------------------------------------------------------------- secrets

export const activeSecrets = (tenant: string): Sql => ({
  text: `SELECT id, secret, created_at, expires_at FROM webhook_secrets
    WHERE tenant_id = $1 AND (expires_at IS NULL OR expires_at > now()) ORDER BY created_at DESC`,
  values: [tenant],
});

export const insertSecret = (id: string, tenant: string, secret: string): Sql => ({
  text: `INSERT INTO webhook_secrets (id, tenant_id, secret) VALUES ($1, $2, $3)`,
  values: [id, tenant, secret],
});

/** Starts the overlap: current secrets stay valid (and keep signing) for `overlapMs` more. */
export const expireSecrets = (tenant: string, overlapMs: number): Sql => ({
  text: `UPDATE webhook_secrets SET expires_at = now() + $2 * interval '1 millisecond'
    WHERE tenant_id = $1 AND (expires_at IS NULL OR expires_at > now() + $2 * interval '1 millisecond')
    RETURNING expires_at`,
  values: [tenant, overlapMs],
});

// ---------------------------------------------------------------- endpoints

/** Serializes the endpoint creations of one tenant for the rest of the transaction, so its count cannot be raced past. */
export const lockTenantEndpoints = (tenant: string): Sql => ({
  text: `SELECT pg_advisory_xact_lock(hashtext('waitless.endpoints'), hashtext(current_schema() || '/' || $1))`,
  values: [tenant],
});

/** Registers an endpoint unless the tenant already has `max` (disabled ones count: delete one to make room). No row: refused. */
export const insertEndpoint = (id: string, tenant: string, url: string, events: string[], max: number): Sql => ({
  text: `INSERT INTO webhook_endpoints (id, tenant_id, url, events)
    SELECT $1, $2, $3, $4::text[] WHERE (SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $2) < $5
    RETURNING id, url, events, created_at, disabled_at, disabled_reason`,
  values: [id, tenant, url, events, max],
});

export const listEndpoints = (tenant: string): Sql => ({
  text: `SELECT id, url, events, created_at, disabled_at, disabled_reason FROM webhook_endpoints
    WHERE tenant_id = $1 ORDER BY created_at`,
  values: [tenant],
});

export const deleteEndpoint = (tenant: string, id: string): Sql => ({
  text: `DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 RETURNING id`,
  values: [tenant, id],
});

/** A receiver that answers 410 Gone asks not to be called again. */
export const disableEndpoint = (id: string, reason: string): Sql => ({
  text: `UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = $2 WHERE id = $1 AND disabled_at IS NULL`,
  values: [id, reason],
});

// ---------------------------------------------------------------- deliveries

/**
 * Claims up to `limit` due deliveries for one attempt each, with a lease so a crashed
 * dispatcher's are retried. Tenants take turns, as jobs do (see `claimJobs`): each tenant's
 * longest-due delivery, then each one's second, a round starting after `afterTenant` (byte
 * order) and wrapping around. A tenant gets no more than `tenantRoom` minus what the caller
 * already has in flight for it (`inFlightTenants` / `inFlightCounts`), so one tenant's
 * receivers that never answer hold a bounded part of the dispatcher's slots, never all of them.
 */
export const claimDeliveries = (
  limit: number,
  leaseMs: number,
  options: { afterTenant?: string; tenantRoom?: number; inFlight?: ReadonlyMap<string, number> } = {},
): Sql => ({
  text: `WITH RECURSIVE after_cursor(tenant_id) AS (
      SELECT (SELECT min(tenant_id COLLATE "C") FROM webhook_deliveries WHERE status = 'pending' AND tenant_id COLLATE "C" > $3)
      UNION ALL
      SELECT (SELECT min(d.tenant_id COLLATE "C") FROM webhook_deliveries d WHERE d.status = 'pending' AND d.tenant_id COLLATE "C" > w.tenant_id)
      FROM after_cursor w WHERE w.tenant_id IS NOT NULL
    ), up_to_cursor(tenant_id) AS (
      SELECT (SELECT min(tenant_id COLLATE "C") FROM webhook_deliveries WHERE status = 'pending' AND tenant_id COLLATE "C" <= $3)
      UNION ALL
      SELECT (SELECT min(d.tenant_id COLLATE "C") FROM webhook_deliveries d
        WHERE d.status = 'pending' AND d.tenant_id COLLATE "C" > w.tenant_id AND d.tenant_id COLLATE "C" <= $3)
      FROM up_to_cursor w WHERE w.tenant_id IS NOT NULL
    ), in_flight AS (
      SELECT * FROM unnest($5::text[], $6::integer[]) AS f(tenant_id, n)
    ), walked AS (
      SELECT w.tenant_id, w.lap,
        GREATEST(0, $4::integer - coalesce((SELECT sum(f.n) FROM in_flight f WHERE f.tenant_id = w.tenant_id), 0)::integer) AS room
      FROM (SELECT tenant_id, 0 AS lap FROM after_cursor UNION ALL SELECT tenant_id, 1 FROM up_to_cursor) w
      WHERE w.tenant_id IS NOT NULL
    ), due_tenants AS (
      -- Lazy: the walk stops at the first $1 tenants (in round order) with due deliveries and room.
      SELECT w.tenant_id, w.lap, w.room FROM walked w
      WHERE w.room > 0 AND EXISTS (
        SELECT 1 FROM webhook_deliveries d WHERE d.tenant_id COLLATE "C" = w.tenant_id AND d.status = 'pending' AND d.next_attempt_at <= now())
      LIMIT $1
    ), due AS (
      -- Counted only as far as a share could reach: its room, and $1 - D + 1 with D tenants due.
      SELECT t.tenant_id, t.lap, c.available FROM due_tenants t CROSS JOIN LATERAL (
        SELECT count(*) AS available FROM (
          SELECT 1 FROM webhook_deliveries d
          WHERE d.tenant_id COLLATE "C" = t.tenant_id AND d.status = 'pending' AND d.next_attempt_at <= now()
          ORDER BY d.next_attempt_at
          LIMIT LEAST(t.room, $1::integer - (SELECT count(*) FROM due_tenants)::integer + 1)
        ) up_to_share
      ) c
    ), shares AS (
      SELECT tenant_id, count(*) AS share FROM (
        SELECT due.tenant_id FROM due CROSS JOIN generate_series(1, due.available) AS turn
        ORDER BY turn, due.lap, due.tenant_id LIMIT $1
      ) dealt GROUP BY tenant_id
    ), next AS (
      SELECT p.id FROM shares s CROSS JOIN LATERAL (
        SELECT d.id FROM webhook_deliveries d
        WHERE d.tenant_id COLLATE "C" = s.tenant_id AND d.status = 'pending' AND d.next_attempt_at <= now()
        ORDER BY d.next_attempt_at LIMIT s.share FOR UPDATE SKIP LOCKED
      ) p
      LIMIT $1
    )
    UPDATE webhook_deliveries d SET status = 'delivering', lease_token = gen_random_uuid(),
      lease_expires_at = now() + $2 * interval '1 millisecond', updated_at = now()
    -- An id list, not a join: a prepared statement's generic plan cannot see how few rows next holds.
    WHERE d.id = ANY (ARRAY(SELECT id FROM next))
    RETURNING d.id, d.tenant_id, d.job_id, d.endpoint_id, d.url, d.event_type, d.payload, d.status, d.attempts,
      d.next_attempt_at, d.last_error, d.created_at, d.updated_at, d.delivered_at, d.lease_token,
      (SELECT j.trace_context FROM jobs j WHERE j.id = d.job_id) AS trace_context`,
  values: [
    limit,
    leaseMs,
    options.afterTenant ?? '',
    options.tenantRoom ?? limit,
    [...(options.inFlight?.keys() ?? [])],
    [...(options.inFlight?.values() ?? [])],
  ],
});

/** A dispatcher that died mid-attempt leaves its deliveries `delivering`; they become due again. */
export const reclaimDeliveries = (): Sql => ({
  text: `UPDATE webhook_deliveries SET status = 'pending', lease_token = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE status = 'delivering' AND lease_expires_at < now() RETURNING id`,
  values: [],
});

export interface AttemptOutcome {
  startedAt: Date;
  statusCode?: number;
  latencyMs: number;
  responseExcerpt?: string;
  error?: string;
  /** What the delivery becomes: delivered, due again after `retryInMs`, or given up. */
  next: { status: 'succeeded' } | { status: 'pending'; retryInMs: number } | { status: 'failed' };
}

/** Records one attempt and its consequence (fenced by the delivery's lease). */
export const recordAttempt = (id: string, token: string, o: AttemptOutcome): Sql => ({
  text: `WITH changed AS (
      UPDATE webhook_deliveries SET attempts = attempts + 1,
        status = CASE WHEN redeliver_requested THEN 'pending' ELSE $3 END,
        next_attempt_at = CASE WHEN redeliver_requested THEN now()
          WHEN $3 = 'pending' THEN now() + $4 * interval '1 millisecond' ELSE next_attempt_at END,
        redeliver_requested = false,
        delivered_at = CASE WHEN $3 = 'succeeded' THEN now() ELSE delivered_at END,
        last_error = $5, lease_token = NULL, lease_expires_at = NULL, updated_at = now()
      WHERE id = $1 AND lease_token = $2 AND status = 'delivering'
      RETURNING id, tenant_id, attempts
    )
    INSERT INTO webhook_attempts (delivery_id, n, tenant_id, started_at, status_code, latency_ms, response_excerpt, error)
    SELECT id, attempts, tenant_id, $6, $7, $8, $9, $10 FROM changed
    RETURNING n`,
  values: [
    id,
    token,
    o.next.status,
    o.next.status === 'pending' ? o.next.retryInMs : 0,
    o.error ?? (o.statusCode !== undefined && o.next.status !== 'succeeded' ? `HTTP ${o.statusCode}` : null),
    o.startedAt,
    o.statusCode ?? null,
    Math.round(o.latencyMs),
    o.responseExcerpt ?? null,
    o.error ?? null,
  ],
});

export const listDeliveries = (tenant: string, jobId: string): Sql => ({
  text: `SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = $1 AND job_id = $2 ORDER BY created_at, id`,
  values: [tenant, jobId],
});

export const listAttempts = (tenant: string, deliveryIds: string[]): Sql => ({
  text: `SELECT delivery_id, n, started_at, status_code, latency_ms, response_excerpt, error FROM webhook_attempts
    WHERE tenant_id = $1 AND delivery_id = ANY($2::uuid[]) ORDER BY delivery_id, n`,
  values: [tenant, deliveryIds],
});

export const getDelivery = (tenant: string, id: string): Sql => ({
  text: `SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = $1 AND id = $2`,
  values: [tenant, id],
});

/**
 * Sends a delivery again now, whatever became of it. One in flight is left to finish and sent
 * again right after (see {@link recordAttempt}), so the request is never lost to the race.
 */
export const redeliver = (tenant: string, id: string): Sql => ({
  text: `UPDATE webhook_deliveries SET
      status = CASE WHEN status = 'delivering' THEN status ELSE 'pending' END,
      redeliver_requested = (status = 'delivering'),
      next_attempt_at = now(), updated_at = now()
    WHERE tenant_id = $1 AND id = $2 RETURNING id`,
  values: [tenant, id],
});
