import type { Logger } from 'pino';
import { InvalidOptionError } from '../errors.ts';
import { type Duration, formatDuration, toMs } from '../job/duration.ts';
import type { Driver } from '../store/driver.ts';
import * as q from '../store/retention-queries.ts';
import type { HousekeepingTask } from './housekeeping.ts';

/**
 * How long finished jobs are kept. `default` covers every end; `failed` (if given) covers jobs
 * that ended `failed` or `timed_out` instead, e.g. to keep them longer for investigation.
 */
export interface RetentionRule {
  /** Jobs that ended `completed`, `cancelled` or `stale`, and failed ones unless `failed` is given. */
  default?: Duration;
  /** Jobs that ended `failed` or `timed_out`. Default: this rule's `default`. */
  failed?: Duration;
}

/**
 * The engine's `retention` option. A job's retention comes from the first of these that speaks
 * for it: its tenant's rule in `tenants`, then its definition's `retention` (when the pruning
 * process loads that definition), then `default` / `failed` here. A rule "speaks" for a failed
 * job when it gives `failed` or `default`, for any other end when it gives `default`.
 */
export interface RetentionOptions extends RetentionRule {
  /** Every finished job not covered by a tenant's or its definition's rule. Default: `'30d'` (30 days). */
  default?: Duration;
  /** Failed and timed-out jobs not covered by a tenant's or definition's rule. Default: `default`. */
  failed?: Duration;
  /** Rules per tenant; they win over the job definitions' own. Default: none. */
  tenants?: Record<string, RetentionRule>;
  /** How often a process with a worker prunes (one process at a time across all). Default: `'10m'`. */
  interval?: Duration;
  /** Jobs deleted per statement (each with its events, steps and deliveries). Default: `500`. */
  batchSize?: number;
}

/** A {@link RetentionRule} in milliseconds. */
export interface ResolvedRetentionRule {
  defaultMs?: number;
  failedMs?: number;
}

/** Retention when nothing is configured: 30 days. */
export const DEFAULT_RETENTION_MS = 30 * 86_400_000;
/** Shortest retention accepted: a shorter one would be a unit mistake (ms for days). */
export const MIN_RETENTION_MS = 1000;
/** Longest retention accepted: 100 years (further is "forever", and overflows an interval). */
export const MAX_RETENTION_MS = 100 * 365 * 86_400_000;
/** How long a used idempotency key still finds its job (at most: it goes with its job). */
export const IDEMPOTENCY_KEY_TTL_MS = 24 * 3_600_000;
const DEFAULT_INTERVAL_MS = 10 * 60_000;
const DEFAULT_BATCH_SIZE = 500;
/**
 * Longest a worker's pruning round deletes before it leaves the rest to the next round, so a
 * backlog (the first round after an upgrade, a retention just shortened) is worked off in
 * steps rather than by one process deleting for an hour.
 */
const ROUND_BUDGET_MS = 60_000;

/** Rows deleted per table by one pruning run (or, in a dry run, that would be). */
export type PruneCounts = q.PruneCountsRow & { webhook_secrets: number };

/** What {@link Retention.run} did. */
export interface PruneReport {
  /** True when another process was pruning: nothing was done. */
  skipped: boolean;
  /** True when nothing was deleted, only counted. */
  dryRun: boolean;
  deleted: PruneCounts;
  /** Delete statements run. */
  statements: number;
  /** The longest single delete statement, in ms. */
  longestStatementMs: number;
  /** The whole run, in ms (the lock included). */
  durationMs: number;
  /** False when the run was stopped (its signal) before it was done: the rest waits for the next one. */
  complete: boolean;
}

/** Options of one pruning run. */
export interface PruneOptions {
  /** Count what would be deleted, delete nothing. Default: `false`. */
  dryRun?: boolean;
  /** One retention for every finished job this run, whatever the rules say. Default: the rules. */
  olderThan?: Duration;
  /** Stops between statements. */
  signal?: AbortSignal;
}

const emptyCounts = (): PruneCounts => ({ jobs: 0, job_events: 0, job_steps: 0, webhook_deliveries: 0, webhook_attempts: 0, idempotency_keys: 0, webhook_secrets: 0 });

/** Reads a retention duration, refusing one under {@link MIN_RETENTION_MS}; `fail` builds the error. */
function retentionMs(value: Duration, what: string, fail: (message: string) => Error): number {
  let ms: number;
  try {
    ms = toMs(value, what);
  } catch {
    throw fail(`${what} must be a duration such as 24h or 30d, or a number of milliseconds.`);
  }
  if (ms < MIN_RETENTION_MS) throw fail(`${what} must be at least 1s, got ${JSON.stringify(value)}.`);
  if (ms > MAX_RETENTION_MS) throw fail(`${what} must be at most 100 years (876000h), got ${JSON.stringify(value)}.`);
  return ms;
}

/** A rule (or a bare duration, meaning `{ default }`) in ms; `fail` builds the error for a bad value. */
export function resolveRetentionRule(rule: RetentionRule | Duration, what: string, fail: (message: string) => Error = (m) => new TypeError(m)): ResolvedRetentionRule {
  if (typeof rule === 'number' || typeof rule === 'string') return { defaultMs: retentionMs(rule, what, fail) };
  if (typeof rule !== 'object' || rule === null) throw fail(`${what} must be a duration or { default?, failed? }.`);
  return {
    ...(rule.default !== undefined ? { defaultMs: retentionMs(rule.default, `${what}.default`, fail) } : {}),
    ...(rule.failed !== undefined ? { failedMs: retentionMs(rule.failed, `${what}.failed`, fail) } : {}),
  };
}

/** The engine's retention, resolved. */
export interface RetentionPolicy {
  defaultMs: number;
  failedMs: number;
  tenants: ReadonlyMap<string, ResolvedRetentionRule>;
  intervalMs: number;
  batchSize: number;
}

export function resolveRetentionOptions(options: RetentionOptions | undefined, fail: (message: string) => Error): RetentionPolicy {
  const o = options ?? {};
  const defaultMs = o.default === undefined ? DEFAULT_RETENTION_MS : retentionMs(o.default, 'retention.default', fail);
  const failedMs = o.failed === undefined ? defaultMs : retentionMs(o.failed, 'retention.failed', fail);
  const tenants = new Map<string, ResolvedRetentionRule>();
  for (const [tenant, rule] of Object.entries(o.tenants ?? {})) tenants.set(tenant, resolveRetentionRule(rule, `retention.tenants["${tenant}"]`, fail));
  let intervalMs = DEFAULT_INTERVAL_MS;
  if (o.interval !== undefined) {
    try {
      intervalMs = toMs(o.interval, 'retention.interval');
    } catch {
      throw fail('retention.interval must be a duration such as 10m, or a number of milliseconds.');
    }
    if (intervalMs < 100) throw fail('retention.interval must be at least 100ms.');
  }
  const batchSize = o.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) throw fail('retention.batchSize must be a whole number from 1 to 10000.');
  return { defaultMs, failedMs, tenants, intervalMs, batchSize };
}

/** The retention a rule gives a kind of end, if it speaks for it. */
const speaks = (rule: ResolvedRetentionRule | undefined, kind: q.RetentionKind): number | undefined =>
  kind === 'failed' ? (rule?.failedMs ?? rule?.defaultMs) : rule?.defaultMs;

/**
 * The rules as disjoint groups of jobs, one delete query each: per kind of end, a group per
 * tenant whose rule speaks for it, a group per loaded definition whose rule does (minus those
 * tenants), and the engine's rule for everything else — which is also how jobs of a definition
 * this process does not load are treated.
 */
export function retentionGroups(policy: RetentionPolicy, definitions: ReadonlyMap<string, ResolvedRetentionRule | undefined>): q.RetentionGroup[] {
  const groups: q.RetentionGroup[] = [];
  for (const kind of Object.keys(q.RETENTION_KINDS) as q.RetentionKind[]) {
    const tenants = [...policy.tenants].flatMap(([tenant, rule]) => {
      const ms = speaks(rule, kind);
      return ms === undefined ? [] : [{ tenant, ms }];
    });
    const names = [...definitions].flatMap(([name, rule]) => {
      const ms = speaks(rule, kind);
      return ms === undefined ? [] : [{ name, ms }];
    });
    const notTenants = tenants.map((t) => t.tenant);
    for (const { tenant, ms } of tenants) groups.push({ kind, retentionMs: ms, tenant, notTenants: [], notNames: [] });
    for (const { name, ms } of names) groups.push({ kind, retentionMs: ms, name, notTenants, notNames: [] });
    groups.push({ kind, retentionMs: kind === 'failed' ? policy.failedMs : policy.defaultMs, notTenants, notNames: names.map((n) => n.name) });
  }
  return groups;
}

/** Drivers pruning in this process: PGlite has one session, where an advisory lock excludes nothing. */
const pruningHere = new WeakSet<Driver>();

/**
 * Deletes what is past its retention: finished jobs with everything that belongs to them,
 * expired idempotency keys and expired webhook signing secrets, in batches of short statements.
 * One process at a time prunes a database: a run first takes an advisory lock, held by a
 * transaction of its own for the whole run, and skips when another process holds it.
 */
export class Retention {
  private readonly driver: Driver;
  private readonly policy: RetentionPolicy;
  private readonly definitions: ReadonlyMap<string, ResolvedRetentionRule | undefined>;
  private readonly log: Logger;

  constructor(driver: Driver, policy: RetentionPolicy, definitions: ReadonlyMap<string, ResolvedRetentionRule | undefined>, log: Logger) {
    this.driver = driver;
    this.policy = policy;
    this.definitions = definitions;
    this.log = log;
  }

  /** One pruning run. See {@link PruneOptions}. */
  async run(options: PruneOptions = {}): Promise<PruneReport> {
    const olderThanMs = options.olderThan === undefined ? undefined : retentionMs(options.olderThan, 'olderThan', (m) => new InvalidOptionError(m));
    const groups =
      olderThanMs === undefined
        ? retentionGroups(this.policy, this.definitions)
        : (Object.keys(q.RETENTION_KINDS) as q.RetentionKind[]).map((kind) => ({ kind, retentionMs: olderThanMs, notTenants: [], notNames: [] }));
    const started = performance.now();
    const report: PruneReport = { skipped: false, dryRun: options.dryRun === true, deleted: emptyCounts(), statements: 0, longestStatementMs: 0, durationMs: 0, complete: true };
    if (options.dryRun) {
      await this.count(groups, report.deleted);
      return { ...report, durationMs: performance.now() - started };
    }
    const ran = await this.exclusively(async () => {
      report.complete = await this.delete(groups, report, options.signal);
    });
    report.durationMs = performance.now() - started;
    if (!ran) return { ...report, skipped: true };
    if (report.deleted.jobs + report.deleted.idempotency_keys + report.deleted.webhook_secrets > 0) {
      const { deleted, statements, longestStatementMs, durationMs } = report;
      this.log.info(
        { deleted, statements, longestStatementMs: Math.round(longestStatementMs), durationMs: Math.round(durationMs), complete: report.complete },
        report.complete ? 'pruned rows past their retention' : 'pruned rows past their retention; the rest in the next round',
      );
    }
    return report;
  }

  /** The housekeeping task of a process with a worker. */
  task(): HousekeepingTask {
    return {
      name: 'retention',
      everyMs: this.policy.intervalMs,
      run: async (signal) => {
        await this.run({ signal: AbortSignal.any([signal, AbortSignal.timeout(ROUND_BUDGET_MS)]) });
      },
    };
  }

  /** Runs `fn` holding the pruning lock; false when another process (or round) holds it. */
  private async exclusively(fn: () => Promise<void>): Promise<boolean> {
    if (pruningHere.has(this.driver)) return false;
    pruningHere.add(this.driver);
    try {
      // PGlite is one session in one process: the in-process mark above is the whole lock (the
      // lock's transaction would also hold the only connection the deletes need). So is a pool
      // of one connection: the lock is only there so processes do not all prune at once (the
      // deletes skip what another holds, so two runs delete nothing twice), not for correctness.
      if (this.driver.kind === 'pglite' || this.driver.maxConnections < 2) {
        await fn();
        return true;
      }
      // The transaction does nothing but hold the lock; the deletes run on other connections,
      // each its own short transaction, so no delete waits for the run to end to commit. Idle in
      // its transaction with no snapshot and no transaction id, it holds back no vacuum.
      return await this.driver.transaction(async (tx) => {
        const [row] = await tx.query<{ locked: boolean }>(q.tryLockPruning());
        if (!row?.locked) return false;
        await fn();
        return true;
      });
    } finally {
      pruningHere.delete(this.driver);
    }
  }

  /** Deletes batch by batch; false when the signal stopped it first. */
  private async delete(groups: q.RetentionGroup[], report: PruneReport, signal: AbortSignal | undefined): Promise<boolean> {
    const { batchSize } = this.policy;
    const timed = async <Row,>(sql: Parameters<Driver['query']>[0]): Promise<Row[]> => {
      const started = performance.now();
      const rows = await this.driver.query<Row>(sql);
      report.statements++;
      report.longestStatementMs = Math.max(report.longestStatementMs, performance.now() - started);
      return rows;
    };
    const counts = report.deleted;
    // Keys and secrets first: few and cheap, they are forgotten on time even while a backlog of
    // jobs takes rounds to work off.
    for (;;) {
      if (signal?.aborted) return false;
      const n = (await timed(q.deleteExpiredIdempotencyKeys(IDEMPOTENCY_KEY_TTL_MS, batchSize))).length;
      counts.idempotency_keys += n;
      if (n < batchSize) break;
    }
    for (;;) {
      if (signal?.aborted) return false;
      const n = (await timed(q.deleteExpiredSecrets(batchSize))).length;
      counts.webhook_secrets += n;
      if (n < batchSize) break;
    }
    for (const group of groups) {
      let after = q.PRUNE_START;
      for (;;) {
        if (signal?.aborted) return false;
        const [row] = await timed<q.DeletedJobsRow>(q.deleteExpiredJobs(group, batchSize, after));
        if (!row) break;
        for (const key of q.JOB_TABLES) counts[key] += row[key];
        if (row.jobs < batchSize || row.last_finished_at === null || row.last_id === null) break;
        after = { finishedAt: row.last_finished_at, id: row.last_id };
      }
    }
    return true;
  }

  private async count(groups: q.RetentionGroup[], counts: PruneCounts): Promise<void> {
    for (const group of groups) {
      const [row] = await this.driver.query<q.PruneCountsRow>(q.countExpiredJobs(group, IDEMPOTENCY_KEY_TTL_MS));
      if (row) for (const key of q.JOB_TABLES) counts[key] += row[key];
    }
    const [keys] = await this.driver.query<{ n: number }>(q.countExpiredIdempotencyKeys(IDEMPOTENCY_KEY_TTL_MS));
    counts.idempotency_keys += keys?.n ?? 0;
    const [secrets] = await this.driver.query<{ n: number }>(q.countExpiredSecrets());
    counts.webhook_secrets += secrets?.n ?? 0;
  }

  /** The rules in words, for logs and `waitless prune`. */
  describe(): string {
    const rule = (defaultMs: number | undefined, failedMs: number | undefined) =>
      [defaultMs !== undefined && formatDuration(defaultMs), failedMs !== undefined && failedMs !== defaultMs && `failed ${formatDuration(failedMs)}`].filter(Boolean).join(', ');
    const parts = [`default ${rule(this.policy.defaultMs, this.policy.failedMs)}`];
    for (const [tenant, r] of this.policy.tenants) parts.push(`tenant ${tenant}: ${rule(r.defaultMs, r.failedMs)}`);
    for (const [name, r] of this.definitions) if (r) parts.push(`job ${name}: ${rule(r.defaultMs, r.failedMs)}`);
    return parts.join('; ');
  }
}
