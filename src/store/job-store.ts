import { createHash } from 'node:crypto';
import type { JobError } from '../job/errors.ts';
import type { Job, JobEvent, JobEventType } from '../job/model.ts';
import type { JobStatus } from '../job/states.ts';
import { isTerminal } from '../job/states.ts';
import type { Driver } from './driver.ts';
import * as q from './queries.ts';
import { uuidv7 } from './uuid.ts';

/** Thrown when an idempotency key is reused with a different request. */
export class IdempotencyConflictError extends Error {
  override name = 'IdempotencyConflictError';
  readonly key: string;
  readonly jobId: string;
  constructor(key: string, jobId: string) {
    super(`Idempotency-Key "${key}" was already used for a different request (job ${jobId}). Use a new key for a new request.`);
    this.key = key;
    this.jobId = jobId;
  }
}

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
}

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
}

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
  };
  if (row.progress != null) job.progress = row.progress;
  if (row.started_at) job.startedAt = iso(row.started_at);
  if (row.finished_at) job.finishedAt = iso(row.finished_at);
  if (status === 'completed') job.result = row.result;
  // The instant answer stands in until the real one lands; after a failure it is still the best there is.
  if (status !== 'completed' && row.fallback != null) job.fallback = { result: row.fallback, provisional: true };
  // A queued job may carry the error of its previous attempt; it is shown so people see why it retries.
  if (status !== 'completed' && row.error != null) job.error = row.error as JobError;
  return job;
}

function toEvent(row: q.EventRow): JobEvent {
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

export class InvalidCursorError extends Error {
  override name = 'InvalidCursorError';
  constructor() {
    super('The cursor is not one this API returned. Start again without it.');
  }
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
  constructor(driver: Driver) {
    this.driver = driver;
  }

  async submit(params: SubmitParams): Promise<SubmitOutcome> {
    const id = uuidv7();
    // Where the result goes is part of the request: another webhook under the same key is another request.
    const requested = params.webhook ? { input: params.input, webhook: params.webhook } : params.input;
    const fp = params.idempotencyKey === undefined ? undefined : fingerprint(params.name, requested);
    const statusUrl = params.apiBaseUrl ? `${params.apiBaseUrl.replace(/\/$/, '')}/v1/jobs/${id}` : undefined;
    const rows = await this.driver.query<q.JobRow>(q.insertJob({ ...params, id, fingerprint: fp, statusUrl }));
    if (rows[0]) return { job: toJob(rows[0]), created: true };
    // The key was taken (possibly a moment ago by a concurrent request that has now committed).
    const key = params.idempotencyKey!;
    const [existing] = await this.driver.query<{ fingerprint: string; job_id: string }>(q.findIdempotencyKey(params.tenant, key));
    if (!existing) throw new Error(`Idempotency key "${key}" vanished between insert and read; retry the request.`);
    if (existing.fingerprint !== fp) throw new IdempotencyConflictError(key, existing.job_id);
    const job = await this.get(params.tenant, existing.job_id);
    if (!job) throw new Error(`Job ${existing.job_id} of idempotency key "${key}" no longer exists.`);
    return { job, created: false };
  }

  async get(tenant: string, id: string): Promise<Job | undefined> {
    if (!isJobId(id)) return undefined;
    const [row] = await this.driver.query<q.JobRow>(q.getJob(tenant, id));
    return row && toJob(row);
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

  /** Cancels the job if it is not finished; answers with the job either way (undefined if unknown). */
  async cancel(tenant: string, id: string): Promise<Job | undefined> {
    if (!isJobId(id)) return undefined;
    await this.driver.query(q.cancelJob(tenant, id, 'The job was cancelled before it finished; its result, if any arrives, is discarded.'));
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

  async claim(names: string[], limit: number, workerId: string, leaseMs: number): Promise<ClaimedJob[]> {
    if (limit < 1 || names.length === 0) return [];
    const rows = await this.driver.query<q.ClaimedJobRow>(q.claimJobs(names, limit, workerId, leaseMs));
    return rows.map((row) => ({ job: toJob(row), tenant: row.tenant_id, leaseToken: row.lease_token, timeoutMs: row.timeout_ms }));
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

  /** Fenced writes answer false when the lease is no longer held: the write did not happen. */
  async recordProgress(id: string, token: string, progress: unknown): Promise<boolean> {
    return (await this.driver.query(q.recordProgress(id, token, progress))).length > 0;
  }

  async appendOutput(id: string, token: string, text: string): Promise<boolean> {
    return (await this.driver.query(q.appendOutput(id, token, text))).length > 0;
  }

  async finish(id: string, token: string, status: 'completed' | 'failed' | 'timed_out', result: unknown, error?: JobError): Promise<boolean> {
    return (await this.driver.query(q.finishJob(id, token, status, status === 'completed' ? (result ?? null) : undefined, error))).length > 0;
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
    return this.driver.query<{ id: string; status: string }>(q.reclaimExpiredLeases(limit));
  }

  async purgeIdempotencyKeys(keepMs: number): Promise<void> {
    await this.driver.query(q.purgeIdempotencyKeys(keepMs));
  }
}
