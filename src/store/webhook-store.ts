import { generateWebhookSecret } from '../webhooks/signing.ts';
import type { Driver } from './driver.ts';
import { roundEnd } from './tenant-rounds.ts';
import { uuidv7 } from './uuid.ts';
import * as q from './webhook-queries.ts';

/** A registered endpoint: every job of the tenant reaching one of `events` is sent to `url`. */
export interface WebhookEndpoint {
  id: string;
  url: string;
  events: string[];
  createdAt: string;
  disabledAt?: string;
  disabledReason?: string;
}

export interface WebhookAttempt {
  n: number;
  startedAt: string;
  statusCode?: number;
  latencyMs: number;
  responseExcerpt?: string;
  error?: string;
}

/** One message to one destination, with every attempt made so far. */
export interface WebhookDelivery {
  /** Also the `webhook-id` header: the same on every attempt. */
  id: string;
  jobId: string;
  endpointId?: string;
  url: string;
  eventType: string;
  status: 'pending' | 'delivering' | 'succeeded' | 'failed';
  attempts: WebhookAttempt[];
  nextAttemptAt?: string;
  lastError?: string;
  createdAt: string;
  deliveredAt?: string;
}

/** A delivery a dispatcher holds for one attempt. */
export interface ClaimedDelivery {
  id: string;
  tenant: string;
  jobId: string;
  endpointId?: string;
  url: string;
  payload: string;
  /** Attempts made before this one. */
  attempts: number;
  leaseToken: string;
  /** The job's stored trace context, so each attempt's span joins the job's trace. */
  traceContext?: unknown;
}

export interface WebhookSecretInfo {
  secret: string;
  createdAt: string;
  expiresAt?: string;
}

const iso = (d: Date | null) => (d ? d.toISOString() : undefined);

function toEndpoint(row: { id: string; url: string; events: string[]; created_at: Date; disabled_at: Date | null; disabled_reason: string | null }): WebhookEndpoint {
  return {
    id: row.id,
    url: row.url,
    events: row.events,
    createdAt: row.created_at.toISOString(),
    ...(row.disabled_at ? { disabledAt: row.disabled_at.toISOString(), disabledReason: row.disabled_reason ?? undefined } : {}),
  };
}

/** Reads and writes of webhook secrets, endpoints and deliveries, scoped by tenant. */
export class WebhookStore {
  readonly driver: Driver;
  constructor(driver: Driver) {
    this.driver = driver;
  }

  /** The secrets that sign this tenant's deliveries, newest first; one is created on first use. */
  async secrets(tenant: string): Promise<WebhookSecretInfo[]> {
    let rows = await this.driver.query<{ secret: string; created_at: Date; expires_at: Date | null }>(q.activeSecrets(tenant));
    if (rows.length === 0) {
      await this.driver.query(q.insertSecret(uuidv7(), tenant, generateWebhookSecret()));
      rows = await this.driver.query(q.activeSecrets(tenant));
    }
    return rows.map((r) => ({ secret: r.secret, createdAt: r.created_at.toISOString(), ...(r.expires_at ? { expiresAt: r.expires_at.toISOString() } : {}) }));
  }

  /**
   * Rotates the tenant's signing secret: a new one signs from now on, the current ones keep
   * signing beside it for `overlapMs`, so receivers can switch without losing a message.
   */
  async rotateSecret(tenant: string, overlapMs: number): Promise<{ secret: string; previousExpireAt?: string }> {
    const secret = generateWebhookSecret();
    const expired = await this.driver.transaction(async (tx) => {
      const rows = await tx.query<{ expires_at: Date }>(q.expireSecrets(tenant, overlapMs));
      await tx.query(q.insertSecret(uuidv7(), tenant, secret));
      return rows;
    });
    return { secret, ...(expired[0] ? { previousExpireAt: expired[0].expires_at.toISOString() } : {}) };
  }

  /** Registers an endpoint; undefined when the tenant already has `max` of them. */
  async createEndpoint(tenant: string, url: string, events: string[], max: number): Promise<WebhookEndpoint | undefined> {
    const [row] = await this.driver.transaction(async (tx) => {
      await tx.query(q.lockTenantEndpoints(tenant));
      return tx.query<Parameters<typeof toEndpoint>[0]>(q.insertEndpoint(uuidv7(), tenant, url, events, max));
    });
    return row && toEndpoint(row);
  }

  async listEndpoints(tenant: string): Promise<WebhookEndpoint[]> {
    return (await this.driver.query<Parameters<typeof toEndpoint>[0]>(q.listEndpoints(tenant))).map(toEndpoint);
  }

  async deleteEndpoint(tenant: string, id: string): Promise<boolean> {
    return (await this.driver.query(q.deleteEndpoint(tenant, id))).length > 0;
  }

  async disableEndpoint(id: string, reason: string): Promise<void> {
    await this.driver.query(q.disableEndpoint(id, reason));
  }

  /** Where the next delivery claim starts its round of tenants (see `claimDeliveries`). */
  private claimCursor = '';

  /**
   * Claims up to `limit` due deliveries, round robin across tenants, none for a tenant beyond
   * `tenantRoom` minus its deliveries in `inFlight` (the caller's attempts under way, by tenant).
   */
  async claim(limit: number, leaseMs: number, fairness: { tenantRoom?: number; inFlight?: ReadonlyMap<string, number> } = {}): Promise<ClaimedDelivery[]> {
    const rows = await this.driver.query<q.ClaimedDeliveryRow>(q.claimDeliveries(limit, leaseMs, { ...fairness, afterTenant: this.claimCursor }));
    this.claimCursor = roundEnd(rows.map((row) => row.tenant_id), this.claimCursor) ?? this.claimCursor;
    return rows.map((r) => ({
      id: r.id,
      tenant: r.tenant_id,
      jobId: r.job_id,
      endpointId: r.endpoint_id ?? undefined,
      url: r.url,
      payload: r.payload,
      attempts: r.attempts,
      leaseToken: r.lease_token,
      traceContext: r.trace_context,
    }));
  }

  async reclaimExpired(): Promise<number> {
    return (await this.driver.query(q.reclaimDeliveries())).length;
  }

  /** Answers false when the lease was lost (another dispatcher took the delivery over). */
  async recordAttempt(id: string, token: string, outcome: q.AttemptOutcome): Promise<boolean> {
    return (await this.driver.query(q.recordAttempt(id, token, outcome))).length > 0;
  }

  async listForJob(tenant: string, jobId: string): Promise<WebhookDelivery[]> {
    const rows = await this.driver.query<q.DeliveryRow>(q.listDeliveries(tenant, jobId));
    return this.withAttempts(tenant, rows);
  }

  async get(tenant: string, id: string): Promise<WebhookDelivery | undefined> {
    const rows = await this.driver.query<q.DeliveryRow>(q.getDelivery(tenant, id));
    return (await this.withAttempts(tenant, rows))[0];
  }

  /** Queues the delivery again, now. Answers undefined for an unknown id. */
  async redeliver(tenant: string, id: string): Promise<WebhookDelivery | undefined> {
    await this.driver.query(q.redeliver(tenant, id));
    return this.get(tenant, id);
  }

  private async withAttempts(tenant: string, rows: q.DeliveryRow[]): Promise<WebhookDelivery[]> {
    if (rows.length === 0) return [];
    const attempts = await this.driver.query<q.AttemptRow>(
      q.listAttempts(
        tenant,
        rows.map((r) => r.id),
      ),
    );
    return rows.map((r) => ({
      id: r.id,
      jobId: r.job_id,
      ...(r.endpoint_id ? { endpointId: r.endpoint_id } : {}),
      url: r.url,
      eventType: r.event_type,
      status: r.status as WebhookDelivery['status'],
      attempts: attempts
        .filter((a) => a.delivery_id === r.id)
        .map((a) => ({
          n: a.n,
          startedAt: a.started_at.toISOString(),
          latencyMs: a.latency_ms,
          ...(a.status_code !== null ? { statusCode: a.status_code } : {}),
          ...(a.response_excerpt !== null ? { responseExcerpt: a.response_excerpt } : {}),
          ...(a.error !== null ? { error: a.error } : {}),
        })),
      ...(r.status === 'pending' ? { nextAttemptAt: r.next_attempt_at.toISOString() } : {}),
      ...(r.last_error ? { lastError: r.last_error } : {}),
      createdAt: r.created_at.toISOString(),
      ...(iso(r.delivered_at) ? { deliveredAt: iso(r.delivered_at) } : {}),
    }));
  }
}
