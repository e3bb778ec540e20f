import type { Logger } from 'pino';
import { type Duration, toMs } from '../job/duration.ts';
import type { Notifier } from '../store/notifications.ts';
import type { AttemptOutcome } from '../store/webhook-queries.ts';
import type { ClaimedDelivery, WebhookStore } from '../store/webhook-store.ts';
import { postWebhook } from './deliver.ts';
import { redactUrl } from './redact.ts';
import { signWebhook } from './signing.ts';
import { InvalidOptionError } from '../errors.ts';
import { metrics } from '../observability/metrics.ts';
import { carrierOf, recordHttpStatus, webhookSpan } from '../observability/tracing.ts';
import { type SsrfPolicy, UnsafeUrlError } from './ssrf.ts';

/**
 * Delays between attempts: after the first (immediate) attempt fails, wait 5 s, then 5 min,
 * 30 min, 2 h, 5 h, 10 h, 10 h — eight attempts over about 27 hours, as Svix does.
 */
export const DEFAULT_RETRY_SCHEDULE: readonly Duration[] = ['5s', '5m', '30m', '2h', '5h', '10h', '10h'];

/** How deliveries are made. */
export interface DispatcherOptions {
  /** Delays between attempts; its length + 1 is the number of attempts. Default: {@link DEFAULT_RETRY_SCHEDULE}. */
  retrySchedule?: readonly Duration[];
  /** A receiver must answer with a 2xx within this. Default: `"15s"`. */
  timeout?: Duration;
  /** Deliveries in flight at once. Default: `10`. */
  concurrency?: number;
  /**
   * Deliveries of one tenant in flight at once, at most: the rest of the slots stay free for
   * the other tenants, so one tenant's receivers that never answer (each attempt waits out
   * `timeout`) cannot hold up another tenant's webhooks. Per dispatcher (one per worker
   * process). Slots are also claimed round robin across tenants. Default: half of
   * `concurrency`, rounded up (`5`).
   */
  tenantConcurrency?: number;
  /** Backstop poll for due deliveries; expired delivery leases are taken back as often. Default: `"2s"`. */
  pollInterval?: Duration;
  /** Hosts, addresses or CIDRs exempt from the SSRF guard (local development, tests). Default: none. */
  ssrf?: SsrfPolicy;
  /**
   * Webhook endpoints one tenant may register (disabled ones count until deleted); past it a
   * create is refused with a `too_many_endpoints` error (HTTP 409). Counted in the database,
   * so it holds across processes. Default: `20`.
   */
  endpointsPerTenant?: number;
}

/** Default of {@link DispatcherOptions.endpointsPerTenant}. */
export const DEFAULT_ENDPOINTS_PER_TENANT = 20;

/** The metrics' name for each next state of a delivery after an attempt. */
const ATTEMPT_OUTCOMES = { succeeded: 'delivered', pending: 'retrying', failed: 'failed' } as const;

/** ±10 % so that deliveries failing together do not come back together. */
const jitter = (ms: number) => Math.round(ms * (0.9 + Math.random() * 0.2));

/**
 * Delivers the webhook outbox. Any number of dispatchers may run (one per worker process):
 * each claims due deliveries with `SKIP LOCKED` and a lease, signs each attempt per Standard
 * Webhooks with every active secret of the tenant, and records the attempt and its outcome.
 */
export class WebhookDispatcher {
  private readonly schedule: number[];
  private readonly timeoutMs: number;
  private readonly concurrency: number;
  private readonly tenantConcurrency: number;
  /** Attempts under way, by tenant (see `tenantConcurrency`). */
  private readonly inFlightByTenant = new Map<string, number>();
  /** The backstop poll period, in ms (`pollInterval`). */
  readonly pollMs: number;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly store: WebhookStore;
  private readonly notifier: Notifier;
  private readonly log: Logger;
  private readonly options: DispatcherOptions;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private pumping = false;
  private again = false;
  private stopped = false;

  constructor(store: WebhookStore, notifier: Notifier, log: Logger, options: DispatcherOptions = {}) {
    this.store = store;
    this.notifier = notifier;
    this.log = log;
    this.options = options;
    this.schedule = (options.retrySchedule ?? DEFAULT_RETRY_SCHEDULE).map((d) => toMs(d, 'retrySchedule'));
    this.timeoutMs = toMs(options.timeout ?? '15s', 'timeout');
    this.concurrency = options.concurrency ?? 10;
    this.tenantConcurrency = options.tenantConcurrency ?? Math.ceil(this.concurrency / 2);
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) throw new InvalidOptionError('webhooks.concurrency must be a whole number ≥ 1.');
    if (!Number.isInteger(this.tenantConcurrency) || this.tenantConcurrency < 1) throw new InvalidOptionError('webhooks.tenantConcurrency must be a whole number ≥ 1.');
    this.pollMs = toMs(options.pollInterval ?? '2s', 'pollInterval');
  }

  start(): this {
    this.unsubscribe = this.notifier.onWebhookDue(() => this.pump());
    // Expired delivery leases are taken back by the engine's housekeeping, on the same period.
    this.timer = setInterval(() => this.pump(), this.pollMs);
    this.pump();
    return this;
  }

  /** Stops claiming and waits for attempts in flight (each bounded by the receiver timeout). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.unsubscribe?.();
    await Promise.allSettled([...this.inFlight]);
  }

  private pump(): void {
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    void (async () => {
      try {
        do {
          this.again = false;
          const free = this.concurrency - this.inFlight.size;
          if (free <= 0 || this.stopped) break;
          // The lease outlives one attempt with room to spare; an expired one means we died.
          const claimed = await this.store.claim(free, this.timeoutMs * 4, { tenantRoom: this.tenantConcurrency, inFlight: this.inFlightByTenant });
          for (const delivery of claimed) {
            const { tenant } = delivery;
            this.inFlightByTenant.set(tenant, (this.inFlightByTenant.get(tenant) ?? 0) + 1);
            const attempt = this.attempt(delivery).finally(() => {
              this.inFlight.delete(attempt);
              const left = (this.inFlightByTenant.get(tenant) ?? 1) - 1;
              if (left > 0) this.inFlightByTenant.set(tenant, left);
              else this.inFlightByTenant.delete(tenant);
              this.pump();
            });
            this.inFlight.add(attempt);
          }
          if (claimed.length === free) this.again = true;
        } while (this.again && !this.stopped);
      } catch (error) {
        this.log.error({ err: error }, 'claiming webhook deliveries failed');
      } finally {
        this.pumping = false;
      }
    })();
  }

  private async attempt(delivery: ClaimedDelivery): Promise<void> {
    const log = this.log.child({ deliveryId: delivery.id, jobId: delivery.jobId, url: redactUrl(delivery.url) });
    const startedAt = new Date();
    let outcome: AttemptOutcome;
    try {
      const secrets = (await this.store.secrets(delivery.tenant)).map((s) => s.secret);
      const headers = signWebhook({ id: delivery.id, timestamp: startedAt, body: delivery.payload, secrets });
      // One CLIENT span per attempt, in the job's trace; its context goes along as `traceparent`.
      const traced = { deliveryId: delivery.id, attempt: delivery.attempts + 1, redactedUrl: redactUrl(delivery.url), traceContext: delivery.traceContext };
      const result = await webhookSpan(traced, async (s) => {
        const sent = await postWebhook(delivery.url, {
          headers: { ...headers, 'content-type': 'application/json', 'user-agent': 'waitless-webhooks/1', ...carrierOf(s) },
          body: delivery.payload,
          timeoutMs: this.timeoutMs,
          policy: this.options.ssrf,
        });
        recordHttpStatus(s, sent.status, sent.ok ? undefined : (sent.error ?? `HTTP ${sent.status}`));
        return sent;
      });
      const base = { startedAt, latencyMs: result.latencyMs, statusCode: result.status, responseExcerpt: result.responseExcerpt, error: result.error };
      if (result.ok) {
        outcome = { ...base, next: { status: 'succeeded' } };
      } else if (result.status === 410) {
        // 410 Gone: the receiver asks never to be called again.
        if (delivery.endpointId) await this.store.disableEndpoint(delivery.endpointId, 'The receiver answered 410 Gone.');
        outcome = { ...base, error: 'The receiver answered 410 Gone; it will not be called again.', next: { status: 'failed' } };
      } else {
        outcome = { ...base, next: this.nextAfterFailure(delivery.attempts + 1, result.status, result.retryAfterMs) };
      }
    } catch (error) {
      // An unsafe URL (it may resolve differently now than at submit) is refused for good.
      const message = error instanceof Error ? error.message : String(error);
      const final = error instanceof UnsafeUrlError;
      outcome = { startedAt, latencyMs: Date.now() - startedAt.getTime(), error: message, next: final ? { status: 'failed' } : this.nextAfterFailure(delivery.attempts + 1) };
    }
    try {
      const recorded = await this.store.recordAttempt(delivery.id, delivery.leaseToken, outcome);
      if (recorded) metrics.webhookAttempt(ATTEMPT_OUTCOMES[outcome.next.status], outcome.latencyMs);
      if (!recorded) log.warn('delivery taken over by another dispatcher; this attempt is not recorded');
      else if (outcome.next.status === 'succeeded') log.info({ latencyMs: outcome.latencyMs }, 'webhook delivered');
      else log.warn({ status: outcome.statusCode, error: outcome.error, next: outcome.next }, 'webhook attempt failed');
    } catch (error) {
      log.error({ err: error }, 'could not record the webhook attempt; it will be retried when its lease expires');
    }
  }

  private nextAfterFailure(attemptsMade: number, status?: number, retryAfterMs?: number): AttemptOutcome['next'] {
    const delay = this.schedule[attemptsMade - 1];
    if (delay === undefined) return { status: 'failed' };
    // A receiver that says when to come back (429/503 Retry-After) is taken at its word.
    const asked = (status === 429 || status === 503) && retryAfterMs !== undefined ? retryAfterMs : 0;
    return { status: 'pending', retryInMs: Math.max(jitter(delay), asked) };
  }
}
