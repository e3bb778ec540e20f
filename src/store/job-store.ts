import { createHash } from 'node:crypto';
import { IdempotencyConflictError, InvalidCursorError, SupersedeConflictError } from '../errors.ts';
import type { JobError } from '../job/errors.ts';
import type { Job, JobEvent, JobEventType, JobLogEntry, JobLogLine, JobUsage } from '../job/model.ts';
import type { JobStatus } from '../contract/statuses.ts';
import { isTerminal } from '../contract/statuses.ts';
import type { Driver } from './driver.ts';
import * as q from './queries.ts';
import { GroupCommit } from './group-commit.ts';
import { roundEnd } from './tenant-rounds.ts';
import { uuidv7 } from './uuid.ts';
import { metrics } from '../observability/metrics.ts';

export interface SubmitParams {
  tenant: string;
  name: string;
  input: unknown;
  maxAttempts: number;
  timeoutMs: number;
  idempotencyKey?: string;
  /** The job's own webhook, already checked against the SSRF guard. */
  webhook?: { url: string; events?: string[] };
  /** Absolute base URL of the HTTP API; the job's status URL (for webhook payloads) is built on it. */
  apiBaseUrl?: string;
  /** The definition's instant answer for this input (JSON), shown as provisional until the result lands. */
  fallback?: unknown;
  /** Higher runs first. Default: `0`. */
  priority?: number;
  /** Not claimable before this time. Default: now. */
  runAt?: Date;
  /** Latest wins: what to do with the tenant's in-flight jobs of the same key. */
  supersede?: { key: string; policy: SupersedePolicy };
  /** Stored with the job, for the definition's `relevant(context)` at delivery. */
  context?: unknown;
  /** At most `limit` of the tenant's jobs with this key run at once. */
  concurrency?: { key: string; limit: number };
  /** The submit span's W3C Trace Context, stored so the worker continues the trace. */
  traceContext?: q.InsertJobParams['traceContext'];
}

/**
 * What a new job does to the tenant's in-flight jobs with its key: `supersede` cancels them,
 * `reject` refuses the new one, `queue` runs it after them, one at a time.
 */
export type SupersedePolicy = 'supersede' | 'reject' | 'queue';

/** Rolls back a supersede whose insert lost its idempotency key to a concurrent request. */
class IdempotencyRace extends Error {}

export interface SubmitOutcome {
  job: Job;
  /** False when an idempotency key matched an earlier submit and its job came back. */
  created: boolean;
}

export interface ListParams {
  tenant: string;
  statuses?: JobStatus[];
  name?: string;
  /** Opaque cursor from a previous page's `nextCursor`. */
  cursor?: string;
  /** Page size, 1–100. Default: `20`. */
  limit?: number;
}

export interface JobPage {
  jobs: Job[];
  /** Pass as `cursor` for the next page; absent on the last page. */
  nextCursor?: string;
}

/** A job a worker holds, with the lease token its writes must carry. */
export interface ClaimedJob {
  job: Job;
  tenant: string;
  leaseToken: string;
  timeoutMs: number;
  /** The job's stored trace context (its submit span), for the attempt's span. */
  traceContext?: unknown;
}

type JobHeadRow = { id: string; tenant_id: string; last_seq: number; status: JobStatus };

const iso = (date: Date | null): string | undefined => (date ? date.toISOString() : undefined);

export function toJob(row: q.JobRow): Job {
  const status = row.status as JobStatus;
  const job: Job = {
    id: row.id,
    name: row.name,
    status,
    done: isTerminal(status),
    input: row.input,
    output: row.partial_output,
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    version: row.last_seq,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    runAt: row.run_at.toISOString(),
    priority: row.priority,
  };
  if (row.progress != null) job.progress = row.progress;
  if (row.started_at) job.startedAt = iso(row.started_at);
  if (row.finished_at) job.finishedAt = iso(row.finished_at);
  // A stale job keeps its result for inspection; it is never delivered as completed.
  if (status === 'completed' || status === 'stale') job.result = row.result;
  if (row.steps) {
    job.steps = Object.entries(row.steps)
      .map(([name, step]) => ({ name, ...step }))
      .sort((a, b) => (a.startedAt < b.startedAt ? -1 : a.startedAt > b.startedAt ? 1 : 0));
  }
  if (row.context != null) job.context = row.context;
  if (row.usage != null) job.usage = row.usage as JobUsage;
  if (row.supersede_key) job.supersedeKey = row.supersede_key;
  if (row.concurrency_key && row.concurrency_limit) job.concurrency = { key: row.concurrency_key, limit: row.concurrency_limit };
  // The instant answer stands in until the real one lands; after a failure it is still the best there is.
  if (status !== 'completed' && row.fallback != null) job.fallback = { result: row.fallback, provisional: true };
  // A queued job may carry the error of its previous attempt; it is shown so people see why it retries.
  if (status !== 'completed' && row.error != null) job.error = row.error as JobError;
  return job;
}

export function toEvent(row: q.EventRow): JobEvent {
  return { seq: row.seq, type: row.type as JobEventType, data: row.data, at: row.created_at.toISOString() };
}

/** Stable hash of what a request asked for, to tell a replay from a different request under one key. */
export function fingerprint(name: string, input: unknown): string {
  return createHash('sha256').update(name).update('\0').update(canonicalJson(input)).digest('base64url');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** A page cursor names the last job of the page; the next page starts strictly after it. */
const encodeCursor = (job: Job) => Buffer.from(job.id).toString('base64url');

function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!isJobId(id)) throw new InvalidCursorError();
  return id;
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for strings that can be job ids; anything else is answered 404 without a query. */
export const isJobId = (id: string): boolean => UUID_PATTERN.test(id);

/**
 * The job store: every read and write of jobs and their events, on either driver. All methods
 * that take a tenant scope their SQL by it; worker methods are fenced by the lease token.
 */
export class JobStore {
  readonly driver: Driver;
  private readonly finishes: GroupCommit<q.JobOutcome, boolean>;
  /** Stream openings arriving together (a reconnect storm), checked in one statement. */
  private readonly heads: GroupCommit<string, JobHeadRow | undefined>;
  /** Submits arriving together, inserted in one statement. */
  private readonly inserts: GroupCommit<q.InsertJobParams, q.JobRow | undefined>;

  constructor(driver: Driver) {
    this.driver = driver;
    this.heads = new GroupCommit(async (ids) => {
      const rows = await this.driver.query<JobHeadRow>(q.getJobHeads([...new Set(ids)]));
      const byId = new Map(rows.map((row) => [row.id, row]));
      return ids.map((id) => byId.get(id));
    });
    this.inserts = new GroupCommit(async (jobs) => {
      const rows = new Map((await this.driver.query<q.JobRow>(q.insertJobs(jobs))).map((row) => [row.id, row]));
      return jobs.map((job) => rows.get(job.id));
    }, 200);
    this.finishes = new GroupCommit(async (outcomes) => {
      const written = new Set((await this.driver.query<{ token: string }>(q.finishJobs(outcomes))).map((row) => row.token));
      return outcomes.map((o) => written.has(o.token));
    });
  }

  /** Resolves once the submits and outcomes handed to this store so far were written. */
  async drain(): Promise<void> {
    await Promise.all([this.heads.drain(), this.inserts.drain(), this.finishes.drain()]);
  }

  async submit(params: SubmitParams, tries = 3): Promise<SubmitOutcome> {
    const id = uuidv7();
    // Where the result goes, what it is about and what it replaces are part of the request:
    // under the same key, another webhook, context or supersede key is another request.
    const extras = { webhook: params.webhook, context: params.context, supersede: params.supersede };
    const requested = Object.values(extras).some((v) => v !== undefined) ? { input: params.input, ...extras } : params.input;
    const fp = params.idempotencyKey === undefined ? undefined : fingerprint(params.name, requested);
    const statusUrl = params.apiBaseUrl ? `${params.apiBaseUrl.replace(/\/$/, '')}/v1/jobs/${id}` : undefined;
    const { supersede } = params;
    // `queue` is flow control: one job of the key at a time, oldest first.
    const concurrency = supersede?.policy === 'queue' ? { key: `${q.QUEUE_KEY_PREFIX}${supersede.key}`, limit: 1 } : params.concurrency;
    const insert: q.InsertJobParams = {
      ...params,
      id,
      fingerprint: fp,
      statusUrl,
      supersedeKey: supersede?.key,
      concurrencyKey: concurrency?.key,
      concurrencyLimit: concurrency?.limit,
    };
    let rows: q.JobRow[];
    if (!supersede || supersede.policy === 'queue') {
      const row = await this.inserts.add(insert);
      rows = row ? [row] : [];
    } else {
      // Submits sharing a key take turns, so "the latest" is well defined and two at once never both survive.
      rows = await this.driver.transaction(async (tx) => {
        await tx.query(q.lockSupersedeKey(params.tenant, supersede.key));
        if (params.idempotencyKey !== undefined) {
          // A replay must find its own job, not cancel it or be refused because of it.
          const [replayed] = await tx.query<{ job_id: string }>(q.findIdempotencyKey(params.tenant, params.idempotencyKey));
          if (replayed) return [];
        }
        if (supersede.policy === 'reject') {
          const [inFlight] = await tx.query<{ id: string }>(q.inFlightWithKey(params.tenant, supersede.key));
          if (inFlight) throw new SupersedeConflictError(supersede.key, inFlight.id);
        } else {
          await tx.query(q.supersedeJobs(params.tenant, supersede.key, id));
        }
        const inserted = await tx.query<q.JobRow>(q.insertJobs([insert]));
        // The idempotency key was taken meanwhile (by a request outside this key's lock): undo
        // the cancellations and answer as a replay.
        if (inserted.length === 0) throw new IdempotencyRace();
        return inserted;
      }).catch((error: unknown) => {
        if (error instanceof IdempotencyRace) return [];
        throw error;
      });
    }
    if (rows[0]) {
      metrics.submitted(params.name);
      return { job: toJob(rows[0]), created: true };
    }
    // The key was taken (possibly a moment ago by a concurrent request that has now committed).
    const key = params.idempotencyKey!;
    const [existing] = await this.driver.query<{ fingerprint: string; job_id: string }>(q.findIdempotencyKey(params.tenant, key));
    // Gone between the insert and this read (its job was pruned, or the key expired): the key is
    // free again, so the submit is tried anew and makes a new job.
    if (!existing && tries > 1) return this.submit(params, tries - 1);
    if (!existing) throw new Error(`Idempotency key "${key}" vanished between insert and read; retry the request.`);
    if (existing.fingerprint !== fp) throw new IdempotencyConflictError(key, existing.job_id);
    const job = await this.get(params.tenant, existing.job_id);
    if (!job && tries > 1) return this.submit(params, tries - 1);
    if (!job) throw new Error(`Job ${existing.job_id} of idempotency key "${key}" no longer exists.`);
    return { job, created: false };
  }

  async get(tenant: string, id: string): Promise<Job | undefined> {
    if (!isJobId(id)) return undefined;
    const [row] = await this.driver.query<q.JobRow>(q.getJob(tenant, id));
    return row && toJob(row);
  }

  /** A job's latest event number and whether it is done, without reading its payloads. */
  async head(tenant: string, id: string): Promise<{ version: number; done: boolean } | undefined> {
    if (!isJobId(id)) return undefined;
    const row = await this.heads.add(id.toLowerCase());
    return row && row.tenant_id === tenant ? { version: row.last_seq, done: isTerminal(row.status) } : undefined;
  }

  async list(params: ListParams): Promise<JobPage> {
    const limit = Math.min(Math.max(params.limit ?? 20, 1), 100);
    const rows = await this.driver.query<q.JobRow>(
      q.listJobs({
        tenant: params.tenant,
        statuses: params.statuses,
        name: params.name,
        afterId: params.cursor ? decodeCursor(params.cursor) : undefined,
        limit: limit + 1,
      }),
    );
    const jobs = rows.slice(0, limit).map(toJob);
    const last = jobs.at(-1);
    return rows.length > limit && last ? { jobs, nextCursor: encodeCursor(last) } : { jobs };
  }

  async events(tenant: string, jobId: string, afterSeq: number, limit = 500): Promise<JobEvent[]> {
    if (!isJobId(jobId)) return [];
    return (await this.driver.query<q.EventRow>(q.listEvents(tenant, jobId, afterSeq, limit))).map(toEvent);
  }

  /** The job's own log lines (`ctx.log`) after a sequence number, oldest first. */
  async logs(tenant: string, jobId: string, afterSeq: number, limit: number): Promise<JobLogEntry[]> {
    if (!isJobId(jobId)) return [];
    const rows = await this.driver.query<q.EventRow>(q.listLogLines(tenant, jobId, afterSeq, limit));
    return rows.map((row) => ({ ...(row.data as unknown as JobLogLine), seq: row.seq, at: row.created_at.toISOString() }));
  }

  /** Cancels the job if it is not finished; answers with the job either way (undefined if unknown). */
  async cancel(tenant: string, id: string): Promise<Job | undefined> {
    if (!isJobId(id)) return undefined;
    const cancelled = await this.driver.query<{ id: string; name: string }>(q.cancelJob(tenant, id, 'The job was cancelled before it finished; its result, if any arrives, is discarded.'));
    for (const job of cancelled) metrics.cancelled(job.name);
    return this.get(tenant, id);
  }

  /**
   * Sends a failed, timed-out, cancelled or stuck job back to the queue with `attempts` more
   * attempts. Answers the job, `'not-recoverable'` when its status does not allow it, or
   * undefined when there is no such job.
   */
  async recover(tenant: string, id: string, attempts: number): Promise<Job | 'not-recoverable' | undefined> {
    if (!isJobId(id)) return undefined;
    const [row] = await this.driver.query<q.JobRow>(q.recoverJob(tenant, id, attempts));
    if (row) return toJob(row);
    return (await this.get(tenant, id)) ? 'not-recoverable' : undefined;
  }

  // ---------------------------------------------------------------- worker side

  /** Where this store's next unkeyed claim starts its round of tenants (see `claimJobs`). */
  private claimCursor = '';

  /** Claims up to `limit` due jobs without a concurrency key, round robin across tenants, in one statement. */
  async claim(names: string[], limit: number, workerId: string, leaseMs: number): Promise<ClaimedJob[]> {
    if (limit < 1 || names.length === 0) return [];
    const rows = await this.driver.query<q.ClaimedJobRow>(q.claimJobs(names, limit, workerId, leaseMs, this.claimCursor));
    this.claimCursor = roundEnd(rows.map((row) => row.tenant_id), this.claimCursor) ?? this.claimCursor;
    return rows.map((row) => ({ job: toJob(row), tenant: row.tenant_id, leaseToken: row.lease_token, timeoutMs: row.timeout_ms, traceContext: row.trace_context }));
  }

  /** Where this store's next keyed claim starts its round of tenants (see `dueConcurrencyKeys`). */
  private keyedClaimCursor = '';

  /**
   * Claims up to `limit` due jobs with a concurrency key, key by key, each in a transaction
   * holding the key's lock, so per-key limits hold across every worker process. `more` says
   * some may be left that a second look could take (keys it had no room or no lock for).
   * Tenants take turns: the keys come round robin by tenant, and on a first pass each tenant
   * gets at most its share of the slots; keys that filled their share are visited again with
   * what the others left.
   */
  async claimKeyed(names: string[], limit: number, workerId: string, leaseMs: number): Promise<{ jobs: ClaimedJob[]; more: boolean }> {
    if (limit < 1 || names.length === 0) return { jobs: [], more: false };
    const rows: q.ClaimedJobRow[] = [];
    let left = limit;
    let more = false;
    type Key = { tenant_id: string; concurrency_key: string; concurrency_limit: number };
    const claimKey = (key: Key, want: number) =>
      this.driver.transaction(async (tx) => {
        const [lock] = await tx.query<{ locked: boolean }>(q.tryLockConcurrencyKey(key.tenant_id, key.concurrency_key));
        if (!lock?.locked) {
          more = true; // another worker is at this key now; it may leave some for us
          return [];
        }
        return tx.query<q.ClaimedJobRow>(q.claimKeyedJobs(names, key.tenant_id, key.concurrency_key, key.concurrency_limit, want, workerId, leaseMs));
      });
    try {
      const keys = await this.driver.query<Key>(q.dueConcurrencyKeys(names, left * 4, this.keyedClaimCursor));
      more = keys.length === left * 4;
      const share = Math.ceil(limit / Math.max(1, new Set(keys.map((key) => key.tenant_id)).size));
      const taken = new Map<string, number>();
      const again: Key[] = [];
      for (const key of keys) {
        if (left <= 0) {
          more = true;
          break;
        }
        const want = Math.min(left, share - (taken.get(key.tenant_id) ?? 0));
        if (want <= 0) {
          again.push(key);
          continue;
        }
        const claimed = await claimKey(key, want);
        rows.push(...claimed);
        left -= claimed.length;
        taken.set(key.tenant_id, (taken.get(key.tenant_id) ?? 0) + claimed.length);
        // It may have more free slots and due jobs, unless it just took as many as its limit allows.
        if (claimed.length === want && want < key.concurrency_limit) again.push(key);
      }
      for (const key of again) {
        if (left <= 0) {
          more = true;
          break;
        }
        const claimed = await claimKey(key, left);
        rows.push(...claimed);
        left -= claimed.length;
      }
    } catch (error) {
      // The jobs claimed so far are committed and ours: run them, or they would sit `running`
      // under nobody until their lease ran out. The caller hears of the failure next time.
      if (rows.length === 0) throw error;
      more = true;
    }
    this.keyedClaimCursor = roundEnd(rows.map((row) => row.tenant_id), this.keyedClaimCursor) ?? this.keyedClaimCursor;
    return { jobs: rows.map((row) => ({ job: toJob(row), tenant: row.tenant_id, leaseToken: row.lease_token, timeoutMs: row.timeout_ms, traceContext: row.trace_context })), more };
  }

  /** Returns the set of job ids whose lease is still held and was extended. */
  async extendLeases(leases: Array<{ id: string; token: string }>, leaseMs: number): Promise<Set<string>> {
    if (leases.length === 0) return new Set();
    const rows = await this.driver.query<{ id: string }>(
      q.extendLeases(
        leases.map((l) => l.id),
        leases.map((l) => l.token),
        leaseMs,
      ),
    );
    return new Set(rows.map((row) => row.id));
  }

  /**
   * Writes buffered output and progress of many running jobs in one statement, each fenced by
   * its lease token. Answers the lease tokens whose writes were made; a job missing from it is
   * no longer held by that lease, and nothing of it was written.
   */
  async writeJobs(writes: q.JobWrite[]): Promise<Set<string>> {
    if (writes.length === 0) return new Set();
    return new Set((await this.driver.query<{ token: string }>(q.writeJobs(writes))).map((row) => row.token));
  }

  /**
   * Records a job's terminal status (fenced). Outcomes recorded at the same moment share one
   * statement. Answers false when the lease is no longer held: nothing was written.
   */
  async finish(id: string, token: string, status: 'completed' | 'failed' | 'timed_out' | 'stale', result: unknown, error?: JobError): Promise<boolean> {
    const kept = status === 'completed' || status === 'stale' ? (result ?? null) : undefined;
    return this.finishes.add({ id, token, status, result: kept, error });
  }

  /** Milliseconds (by the database's clock) until the next queued job of these names falls due, if one waits. */
  async nextDueInMs(names: string[]): Promise<number | undefined> {
    const [row] = await this.driver.query<{ in_ms: number | null }>(q.nextDueInMs(names));
    return row?.in_ms ?? undefined;
  }

  /** A step's record from an earlier run of the job, if any. */
  async getStep(jobId: string, name: string): Promise<q.StepRow | undefined> {
    return (await this.driver.query<q.StepRow>(q.getStep(jobId, name)))[0];
  }

  /*
   * The direct writes of a running job carry a `writeId`, new for each write and the same on each
   * try of it: a try after a dropped connection whose first try had in fact committed answers
   * true without applying it again.
   */

  async startStep(id: string, token: string, name: string, writeId: string): Promise<boolean> {
    return (await this.driver.query(q.startStep(id, token, name, writeId))).length > 0;
  }

  async completeStep(id: string, token: string, name: string, result: unknown, startedAt: Date, writeId: string): Promise<boolean> {
    return (await this.driver.query(q.completeStep(id, token, name, result, startedAt, writeId))).length > 0;
  }

  async failStep(id: string, token: string, name: string, message: string, startedAt: Date, writeId: string): Promise<boolean> {
    return (await this.driver.query(q.failStep(id, token, name, message, startedAt, writeId))).length > 0;
  }

  async saveStepCheckpoint(id: string, token: string, name: string, checkpoint: unknown, startedAt: Date): Promise<boolean> {
    return (await this.driver.query(q.saveStepCheckpoint(id, token, name, checkpoint, startedAt))).length > 0;
  }

  async recordUsage(id: string, token: string, usage: { model: string; promptTokens: number; completionTokens: number; totalTokens: number }, writeId: string): Promise<boolean> {
    return (await this.driver.query(q.recordUsage(id, token, usage.model, usage.promptTokens, usage.completionTokens, usage.totalTokens, writeId))).length > 0;
  }

  /** Queues a failed attempt again after `delayMs`; the attempt counts. */
  async retryLater(id: string, token: string, delayMs: number, error: JobError): Promise<boolean> {
    return (await this.driver.query(q.requeueJob(id, token, delayMs, 'retry', error))).length > 0;
  }

  /** Gives a running job back to the queue at once (graceful shutdown); the attempt does not count. */
  async handBack(id: string, token: string): Promise<boolean> {
    return (await this.driver.query(q.requeueJob(id, token, 0, 'worker_shutdown', undefined))).length > 0;
  }

  async reclaimExpiredLeases(limit = 100): Promise<Array<{ id: string; status: string }>> {
    const taken = await this.driver.query<{ id: string; name: string; status: string }>(q.reclaimExpiredLeases(limit));
    for (const job of taken) metrics.leaseExpired(job.name, job.status);
    return taken;
  }
}
