import type { PGlite } from '@electric-sql/pglite';
import { verifyWebhook } from '../client/verify.ts';
import { type Duration, formatDuration, toMs } from '../job/duration.ts';
import type { Job } from '../job/model.ts';
import { DEFAULT_RETENTION_MS, MAX_RETENTION_MS, MIN_RETENTION_MS } from '../maintenance/retention.ts';
import { assertSchemaName, type Driver, type Queryable } from '../store/driver.ts';
import { migrate } from '../store/migrate.ts';
import { createPgDriver } from '../store/pg-driver.ts';
import { createPgliteDriver } from '../store/pglite-driver.ts';
import * as q from './queries.ts';

/**
 * The seeds' front-loaded schedule: first check a minute after submit, a tight cluster in the
 * first five minutes (when every kind of webhook failure shows itself), calm at the tail —
 * 60, 60, 120, 240, then 480 × 8 seconds: about 72 minutes in all.
 */
export const DEFAULT_CADENCE: readonly Duration[] = ['60s', '60s', '120s', '240s', ...Array<Duration>(8).fill('480s')];

const PRUNE_EVERY_MS = 10 * 60_000;
const PRUNE_BATCH = 500;

/** What the reconciler knows of one remote job. */
export interface TrackedJob {
  jobId: string;
  /** `pending` until settled; then `applied`, `stale` (not wanted any more) or `failed`. */
  state: 'pending' | 'applied' | 'stale' | 'failed';
  /** Whatever the app stored with `track()` (e.g. the plan id and the document version). */
  context: unknown;
  checks: number;
  trackedAt: string;
  nextCheckAt?: string;
  settledAt?: string;
  settledBy?: 'webhook' | 'poll' | 'give_up';
  /** The remote job's final status, when it reached one. */
  remoteStatus?: string;
  /** For `failed`: what happened and what the user can do. */
  message?: string;
}

/** The part of the client the reconciler uses: reading a job's status. */
export interface JobSource {
  get(id: string): Promise<Job>;
}

/** Options of {@link createReconciler}. */
export interface ReconcilerOptions {
  /** Reads remote job status (a `WaitlessClient`). */
  source: JobSource;
  /**
   * Applies a finished job to the app. Runs exactly once per tracked job, whichever path
   * (webhook or poll) brings it. Writes made through `tx` commit atomically with the mark that
   * the job was applied; if `apply` throws, nothing is marked and a later check tries again.
   */
  apply: (job: Job, tracked: TrackedJob, tx: Queryable) => Promise<void>;
  /**
   * The delivery-time relevance gate: return false when the result is no longer wanted (the
   * user moved on); the job is recorded `stale` and not applied. Default: always relevant.
   */
  isRelevant?: (job: Job, tracked: TrackedJob, tx: Queryable) => boolean | Promise<boolean>;
  /** Called once when the cadence is spent without a final answer. */
  onGiveUp?: (tracked: TrackedJob) => void | Promise<void>;
  /** Called after every settlement (applied, stale, failed) — publish it so the UI leaves its spinner. */
  onStatus?: (tracked: TrackedJob) => void;
  /** Delays between status checks; the first is counted from `track()`. Default: {@link DEFAULT_CADENCE}. */
  cadence?: readonly Duration[];
  /** Webhook secrets for {@link Reconciler.handleWebhook}. */
  webhookSecrets?: string[];
  /** `postgres://…`, a PGlite folder, or `memory://`. Default: `"./.waitless-reconciler"`. */
  database?: string;
  /** An open PGlite instance to use instead. */
  pglite?: PGlite;
  /** Schema of the reconciler's tables. Default: `"waitless_reconciler"`. */
  schema?: string;
  /** How often due checks are looked for. Default: `"1s"`. */
  pollInterval?: Duration;
  /**
   * How long a settled job and a handled webhook's id are remembered; then they are deleted
   * (every 10 minutes while started, in small batches, or on demand with `prune()`). Pending
   * jobs are never deleted. A webhook redelivered for a job forgotten by then is answered as
   * for a job not tracked. Default: `"30d"` (30 days).
   */
  retention?: Duration;
}

/** Rows deleted by {@link Reconciler.prune}, per table. */
export interface ReconcilerPruneCounts {
  tracked_jobs: number;
  seen_webhooks: number;
}

/** The consumer-side safety net. */
export interface Reconciler {
  /** Records a submitted remote job durably and schedules its status checks. Idempotent. */
  track(jobId: string, context?: unknown): Promise<TrackedJob>;
  /**
   * Verifies a Standard Webhooks request, then settles its job. Throws on a bad signature.
   * Answers undefined for a job not (yet) tracked: reply with a non-2xx status (409) so the
   * sender retries after `track()` has run — the message is not recorded as seen.
   */
  handleWebhook(request: { headers: Headers | Record<string, string | string[] | undefined>; body: string }): Promise<TrackedJob | undefined>;
  /** Settles a job from a status the app obtained itself. No-op unless it is done and pending. */
  settle(job: Job, by?: 'webhook' | 'poll'): Promise<TrackedJob | undefined>;
  get(jobId: string): Promise<TrackedJob | undefined>;
  /** Deletes now the settled jobs and webhook ids older than `retention` (also done every 10 minutes while started). */
  prune(): Promise<ReconcilerPruneCounts>;
  /** Starts the status checks (resuming those of earlier runs). */
  start(): this;
  /** Stops the checks and closes the database (unless it was passed in). */
  close(): Promise<void>;
}

function toTracked(row: q.TrackedRow): TrackedJob {
  return {
    jobId: row.job_id,
    state: row.state as TrackedJob['state'],
    context: row.context,
    checks: row.checks,
    trackedAt: row.tracked_at.toISOString(),
    ...(row.state === 'pending' ? { nextCheckAt: row.next_check_at.toISOString() } : {}),
    ...(row.settled_at ? { settledAt: row.settled_at.toISOString() } : {}),
    ...(row.settled_by ? { settledBy: row.settled_by as TrackedJob['settledBy'] } : {}),
    ...(row.remote_status ? { remoteStatus: row.remote_status } : {}),
    ...(row.message ? { message: row.message } : {}),
  };
}

/**
 * Creates the reconciler: the webhook path and the polling path settle through one
 * idempotent step (a row lock on the tracked job), so `apply` runs exactly once per job even
 * when a webhook and a poll arrive at the same moment in different processes.
 */
export async function createReconciler(options: ReconcilerOptions): Promise<Reconciler> {
  const schema = assertSchemaName(options.schema ?? 'waitless_reconciler');
  const cadenceMs = (options.cadence ?? DEFAULT_CADENCE).map((d) => toMs(d, 'cadence'));
  if (cadenceMs.length === 0) throw new TypeError('cadence needs at least one delay');
  const pollMs = toMs(options.pollInterval ?? '1s', 'pollInterval');
  const retentionMs = options.retention === undefined ? DEFAULT_RETENTION_MS : toMs(options.retention, 'retention');
  if (retentionMs < MIN_RETENTION_MS || retentionMs > MAX_RETENTION_MS) throw new TypeError(`retention must be from 1s to 100 years, got ${JSON.stringify(options.retention)}.`);
  const database = options.database ?? './.waitless-reconciler';
  const driver: Driver = options.pglite
    ? await createPgliteDriver({ instance: options.pglite, schema })
    : /^postgres(ql)?:\/\//.test(database)
      ? createPgDriver({ connectionString: database, schema, maxConnections: 5 })
      : await createPgliteDriver({ dataDir: database, schema });
  await migrate(driver, schema, new URL('./migrations/', import.meta.url));
  const totalWaitMs = cadenceMs.reduce((a, b) => a + b, 0);
  let timer: NodeJS.Timeout | undefined;
  let checking = false;
  let prunedAt = 0;
  const inFlight = new Set<Promise<unknown>>();

  const publish = (tracked: TrackedJob | undefined) => {
    if (tracked && tracked.state !== 'pending') options.onStatus?.(tracked);
    return tracked;
  };

  async function settle(job: Job, by: 'webhook' | 'poll'): Promise<TrackedJob | undefined> {
    if (!job.done) return undefined;
    const settled = await driver.transaction(async (tx) => {
      // The lock makes this the one place a job is settled: a concurrent settle waits here,
      // then finds the job no longer pending and does nothing.
      const [row] = await tx.query<q.TrackedRow>(q.lockPending(job.id));
      if (!row) return undefined;
      const tracked = toTracked(row);
      // The service judged the result irrelevant (its context moved on): never applied here either.
      if (job.status === 'stale') {
        return tx.query<q.TrackedRow>(q.markSettled(job.id, 'stale', by, job.status, job.error?.message ?? 'The service marked the result stale; it was not applied.'));
      }
      if (job.status !== 'completed') {
        const message = job.error?.message ?? `The job ended ${job.status}.`;
        return tx.query<q.TrackedRow>(q.markSettled(job.id, 'failed', by, job.status, message));
      }
      if (options.isRelevant && !(await options.isRelevant(job, tracked, tx))) {
        return tx.query<q.TrackedRow>(q.markSettled(job.id, 'stale', by, job.status, 'The result arrived after it stopped being wanted; it was not applied.'));
      }
      await options.apply(job, tracked, tx);
      return tx.query<q.TrackedRow>(q.markSettled(job.id, 'applied', by, job.status, null));
    });
    return publish(settled?.[0] && toTracked(settled[0]));
  }

  async function giveUp(jobId: string): Promise<TrackedJob | undefined> {
    const waited = formatDuration(totalWaitMs);
    const message =
      `No result after waiting ${waited} (${cadenceMs.length} status checks) and no webhook arrived. ` +
      `The job may still be running or may have been lost; start it again to retry.`;
    const [row] = await driver.query<q.TrackedRow>(q.markGivenUp(jobId, message));
    if (!row) return undefined; // settled meanwhile (a late webhook won): nothing to give up
    const tracked = toTracked(row);
    await options.onGiveUp?.(tracked);
    return publish(tracked);
  }

  async function check(jobId: string, checks: number): Promise<void> {
    let job: Job | undefined;
    try {
      job = await options.source.get(jobId);
    } catch {
      job = undefined; // the service is down or the network dropped: treat as "not done yet"
    }
    if (job?.done) {
      await settle(job, 'poll');
      return;
    }
    const next = cadenceMs[checks];
    if (next === undefined) await giveUp(jobId);
    else await driver.query(q.scheduleNext(jobId, next));
  }

  async function runDueChecks(): Promise<void> {
    if (checking) return;
    checking = true;
    try {
      // Claimed rows get their next check pushed out first, so another process skips them.
      const due = await driver.query<{ job_id: string; checks: number }>(q.claimDue(50, Math.max(30_000, pollMs * 10)));
      await Promise.all(
        due.map((row) => {
          const p = check(row.job_id, row.checks).catch(() => {});
          inFlight.add(p);
          return p.finally(() => inFlight.delete(p));
        }),
      );
    } finally {
      checking = false;
    }
  }

  /** Batches of short statements (safe in many processes at once: SKIP LOCKED); pending rows are never touched. */
  async function prune(): Promise<ReconcilerPruneCounts> {
    const counts: ReconcilerPruneCounts = { tracked_jobs: 0, seen_webhooks: 0 };
    for (const [table, sql] of [['tracked_jobs', q.deleteSettled], ['seen_webhooks', q.deleteSeenWebhooks]] as const) {
      for (;;) {
        const n = (await driver.query(sql(retentionMs, PRUNE_BATCH))).length;
        counts[table] += n;
        if (n < PRUNE_BATCH) break;
      }
    }
    return counts;
  }

  function pruneWhenDue(): void {
    if (Date.now() - prunedAt < PRUNE_EVERY_MS) return;
    prunedAt = Date.now();
    const p = prune().catch(() => {});
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  }

  const reconciler: Reconciler = {
    async track(jobId, context) {
      const [row] = await driver.query<q.TrackedRow>(q.track(jobId, context, cadenceMs[0]!));
      if (row) return toTracked(row);
      // A concurrent track of the same job committed while this insert waited on it: the
      // statement's snapshot predates that row, so it is read again in a new statement.
      const [existing] = await driver.query<q.TrackedRow>(q.getTracked(jobId));
      if (!existing) throw new Error(`Job ${jobId} could not be tracked; try again.`);
      return toTracked(existing);
    },
    async handleWebhook(request) {
      const verified = await verifyWebhook(request, options.webhookSecrets ?? []);
      const payload = verified.payload as { data?: Partial<Job> & { id?: string; statusUrl?: string } };
      const id = payload.data?.id;
      if (!id) return undefined;
      // A redelivered message (same webhook-id) is a no-op, across restarts too.
      if ((await driver.query(q.findWebhook(verified.id))).length > 0) return reconciler.get(id);
      if (!(await reconciler.get(id))) return undefined;
      // The payload may omit a large result: read the job itself then.
      const data = payload.data!;
      const job: Job =
        data.status === 'completed' && !('result' in data) ? await options.source.get(id) : ({ ...data, done: true } as Job);
      const settled = await settle(job, 'webhook');
      // Recorded only once handled: if apply failed, the sender's retry must get through.
      await driver.query(q.markWebhookSeen(verified.id));
      return settled ?? reconciler.get(id);
    },
    settle: (job, by = 'poll') => settle(job, by),
    async get(jobId) {
      const [row] = await driver.query<q.TrackedRow>(q.getTracked(jobId));
      return row && toTracked(row);
    },
    prune,
    start() {
      timer ??= setInterval(() => {
        void runDueChecks().catch(() => {});
        pruneWhenDue();
      }, pollMs);
      void runDueChecks().catch(() => {});
      pruneWhenDue();
      return reconciler;
    },
    async close() {
      clearInterval(timer);
      timer = undefined;
      await Promise.allSettled([...inFlight]);
      await driver.close();
    },
  };
  return reconciler;
}
