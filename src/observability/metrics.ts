/**
 * The process's metrics, in one home: every counter, gauge and histogram Waitless records is
 * declared here and written through the helpers below, and {@link renderMetrics} serves them in
 * the Prometheus text format (`/metrics`).
 *
 * Counters, gauges of this process's work and histograms are per process: each process (serve,
 * each worker) exposes its own, and Prometheus sums them across instances. The queue gauges
 * (`waitless_jobs_queued`, `waitless_queue_oldest_age_seconds`) are the exception: they describe
 * the whole database, are read from it at scrape time, and are the same on every process — take
 * `max` across instances, not `sum`.
 *
 * The registry is Waitless's own (not prom-client's global one), so an application using
 * prom-client for its own metrics can expose both without name clashes.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Driver } from '../store/driver.ts';
import * as q from '../store/queries.ts';

const registry = new Registry();
/** Node's own metrics (CPU, memory, event loop, GC) join at the first scrape: an engine whose metrics are never served watches nothing. */
let nodeMetrics = false;

/** Seconds, from sub-second pickups to hour-long agent runs. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
const DURATION_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200];
const WEBHOOK_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30];

const submitted = new Counter({
  name: 'waitless_jobs_submitted_total',
  help: 'Jobs created by submits in this process (idempotent replays are not counted).',
  labelNames: ['name'] as const,
  registers: [registry],
});
const finished = new Counter({
  name: 'waitless_jobs_finished_total',
  help: 'Jobs that reached a final status in this process: completed, failed, timed_out, stale (by its worker); failed (lease expired with no attempts left, by the housekeeping that took it back); cancelled (by a cancel request).',
  labelNames: ['name', 'status'] as const,
  registers: [registry],
});
const retries = new Counter({
  name: 'waitless_job_retries_total',
  help: 'Failed attempts queued again to retry after their backoff, in this process.',
  labelNames: ['name'] as const,
  registers: [registry],
});
const leaseExpiries = new Counter({
  name: 'waitless_lease_expiries_total',
  help: 'Running jobs taken back because their lease expired (their worker crashed, stalled or lost the database), by this process; outcome: requeued or failed.',
  labelNames: ['name', 'outcome'] as const,
  registers: [registry],
});
const running = new Gauge({
  name: 'waitless_jobs_running',
  help: 'Jobs held by the workers of this process (handlers running, and outcomes being written).',
  labelNames: ['name'] as const,
  registers: [registry],
});
const pickupLatency = new Histogram({
  name: 'waitless_job_pickup_latency_seconds',
  help: 'Time from when a job became claimable (submitted, or due after a delay or retry backoff) to its claim by a worker of this process. A job taken back from a lost worker is not counted.',
  labelNames: ['name'] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});
const runDuration = new Histogram({
  name: 'waitless_job_run_duration_seconds',
  help: "Time an attempt's handler ran in this process, by the attempt's outcome: completed, stale, failed, retried, timed_out.",
  labelNames: ['name', 'outcome'] as const,
  buckets: DURATION_BUCKETS,
  registers: [registry],
});
const queued = new Gauge({
  name: 'waitless_jobs_queued',
  help: 'Jobs queued in the whole database (due now or later), by name; read from the database at scrape time, the same on every process.',
  labelNames: ['name'] as const,
  registers: [registry],
});
const oldestQueued = new Gauge({
  name: 'waitless_queue_oldest_age_seconds',
  help: 'How long the longest-waiting due job has been claimable (a job taken back from a lost worker: since then), by name (0: none due); whole database, read at scrape time (at most once a second).',
  labelNames: ['name'] as const,
  registers: [registry],
});
const webhookDeliveries = new Counter({
  name: 'waitless_webhook_deliveries_total',
  help: 'Webhook delivery attempts made by this process, by outcome: delivered, retrying (a later attempt is scheduled), failed (given up).',
  labelNames: ['outcome'] as const,
  registers: [registry],
});
const webhookLatency = new Histogram({
  name: 'waitless_webhook_delivery_duration_seconds',
  help: 'Time from sending a webhook to its answer (or error), by outcome.',
  labelNames: ['outcome'] as const,
  buckets: WEBHOOK_BUCKETS,
  registers: [registry],
});
const sseConnections = new Gauge({
  name: 'waitless_sse_connections',
  help: "Open SSE streams in this process: stream=job (one job's events) or tenant (a tenant's job changes).",
  labelNames: ['stream'] as const,
  registers: [registry],
});
const tokens = new Counter({
  name: 'waitless_llm_tokens_total',
  help: 'LLM tokens recorded by jobs in this process (ctx.recordUsage), by model and kind: prompt or completion.',
  labelNames: ['model', 'kind'] as const,
  registers: [registry],
});

/** Outcomes of one handler run, as the worker records them. */
export type RunOutcome = 'completed' | 'stale' | 'failed' | 'retried' | 'timed_out';

/** The recording side: what the engine's modules call as things happen. */
export const metrics = {
  submitted(name: string): void {
    submitted.inc({ name });
  },
  /** A job was claimed; `waitedMs` since it became claimable (undefined: not known, not observed). */
  claimed(name: string, waitedMs: number | undefined): void {
    if (waitedMs !== undefined) pickupLatency.observe({ name }, Math.max(0, waitedMs) / 1000);
    running.inc({ name });
  },
  /** The worker let go of a job (outcome written, discarded or handed back). */
  released(name: string): void {
    running.dec({ name });
  },
  /** An attempt's outcome was written; a final status also counts as the job finishing. */
  ran(name: string, outcome: RunOutcome, seconds: number): void {
    runDuration.observe({ name, outcome }, seconds);
    if (outcome === 'retried') retries.inc({ name });
    else finished.inc({ name, status: outcome });
  },
  /** A cancel request ended the job. */
  cancelled(name: string): void {
    finished.inc({ name, status: 'cancelled' });
  },
  /** Housekeeping took a job back; `status` is where it went (`queued` or `failed`). */
  leaseExpired(name: string, status: string): void {
    const outcome = status === 'queued' ? 'requeued' : 'failed';
    leaseExpiries.inc({ name, outcome });
    if (outcome === 'failed') finished.inc({ name, status: 'failed' });
  },
  webhookAttempt(outcome: 'delivered' | 'retrying' | 'failed', latencyMs: number): void {
    webhookDeliveries.inc({ outcome });
    webhookLatency.observe({ outcome }, Math.max(0, latencyMs) / 1000);
  },
  /** An SSE stream opened; call the answer when it closes. */
  sseOpened(stream: 'job' | 'tenant'): () => void {
    sseConnections.inc({ stream });
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      sseConnections.dec({ stream });
    };
  },
  tokens(model: string, promptTokens: number, completionTokens: number): void {
    if (promptTokens > 0) tokens.inc({ model, kind: 'prompt' }, promptTokens);
    if (completionTokens > 0) tokens.inc({ model, kind: 'completion' }, completionTokens);
  },
};

/** The content type of {@link renderMetrics}' text. */
export const METRICS_CONTENT_TYPE = registry.contentType;

/**
 * The metrics as Prometheus text. Reads the queue gauges from the database first (one query
 * over the queued jobs' partial index); if the database does not answer, the process's own
 * metrics are still served and the queue gauges are left out.
 */
export async function renderMetrics(driver: Driver): Promise<string> {
  if (!nodeMetrics) {
    nodeMetrics = true;
    collectDefaultMetrics({ register: registry });
  }
  queued.reset();
  oldestQueued.reset();
  try {
    for (const row of await queueStatsOf(driver)) {
      queued.set({ name: row.name }, Number(row.queued));
      oldestQueued.set({ name: row.name }, Number(row.oldest_due_seconds ?? 0));
    }
  } catch {
    // The rest of the page is this process's own and still true; the gap in the queue series
    // (and /readyz) tell that the database is unreachable.
  }
  return registry.metrics();
}

/** How long one reading of the queue gauges serves scrapes: several scrapers (or one in a hurry) cost one query. */
const QUEUE_STATS_MAX_AGE_MS = 1_000;
const queueStatsRead = new WeakMap<Driver, { at: number; rows: Promise<q.QueueStatsRow[]> }>();

/** The queue gauges' rows, read at most every {@link QUEUE_STATS_MAX_AGE_MS} per database (a failed read is not kept). */
function queueStatsOf(driver: Driver): Promise<q.QueueStatsRow[]> {
  const now = Date.now();
  const last = queueStatsRead.get(driver);
  if (last && now - last.at < QUEUE_STATS_MAX_AGE_MS) return last.rows;
  const rows = driver.query<q.QueueStatsRow>(q.queueStats());
  queueStatsRead.set(driver, { at: now, rows });
  rows.catch(() => queueStatsRead.delete(driver));
  return rows;
}
