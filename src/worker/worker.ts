import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { LimitExceededError } from '../errors.ts';
import { type AnyJobDefinition, resolveLimits } from '../job/definition.ts';
import { type Duration, formatDuration, toMs } from '../job/duration.ts';
import { JobCancelledError, JobTimeoutError, LeaseLostError, NonRetryableError, WorkerShutdownError, toJobError } from '../job/errors.ts';
import { retryDelayMs } from '../job/retry.ts';
import type { ClaimedJob, JobStore } from '../store/job-store.ts';
import type { Notifier } from '../store/notifications.ts';
import { storedBytes, toStoredJson } from '../store/json.ts';
import { unreachableReason } from '../store/unreachable.ts';
import { AttemptLimits } from './attempt-limits.ts';
import { createJobContext, type WorkerJobContext } from './context.ts';
import { JobWriteBuffer } from './job-writes.ts';
import { retryWrite } from './write-retry.ts';
import { metrics, type RunOutcome } from '../observability/metrics.ts';
import { detached, endProcessSpan, startProcessSpan, withContext } from '../observability/tracing.ts';

/** How a worker runs. */
export interface WorkerOptions {
  /**
   * Handlers run at the same time by this worker. A job whose handler has returned gives its
   * slot to the next job while its outcome is written. Default: `10`.
   */
  concurrency?: number;
  /** How long a claim stays valid without a heartbeat. Default: `"30s"`. */
  lease?: Duration;
  /** How often leases are extended. Default: a third of `lease`. */
  heartbeat?: Duration;
  /**
   * Backstop poll for due jobs when no notification arrives; expired leases are taken back
   * (by the engine's housekeeping) as often. Default: `"2s"`.
   */
  pollInterval?: Duration;
  /** On `stop()`, how long running jobs may take to finish before their leases are handed back. Default: `"10s"`. */
  shutdownGrace?: Duration;
  /**
   * How long output and progress may be buffered before they are written. One statement per
   * interval carries the writes of every job this worker runs. Default: `"200ms"`.
   */
  outputFlushInterval?: Duration;
  /** Only run these job names. Default: every registered job. */
  names?: string[];
  /** Identifies this worker in job rows and logs. Default: `host:pid:random`. */
  workerId?: string;
  /**
   * Named pause points for tests that replay races deterministically (e.g. a worker that stalls
   * before its heartbeat). Each is awaited at the point it names. Leave unset in production.
   */
  debugPoints?: { beforeHeartbeat?: () => Promise<void>; beforeNextDueCheck?: () => Promise<void> };
}

interface RunningJob {
  claimed: ClaimedJob;
  controller: AbortController;
  context: WorkerJobContext;
  /** The event sequence this worker wrote when claiming; later status events come from others. */
  claimSeq: number;
  /** Local-clock time until which the lease is surely ours (renewed by each heartbeat). */
  leaseUntil: number;
  /** Set once the handler has returned; its own terminal write must not look like a takeover. */
  finishing?: boolean;
  /** How the attempt ended once its outcome is written (for its span), with the handler's error. */
  traced?: { outcome: RunOutcome; error?: unknown };
  done: Promise<void>;
}


/**
 * Claims jobs and runs their handlers. Many workers, in one process or many, share a database:
 * claims use `FOR UPDATE SKIP LOCKED`, each claim carries a lease token, and every write the
 * handler causes is fenced by that token, so a worker that lost its job can never write over
 * the job's new owner.
 */
export class Worker {
  readonly id: string;
  private readonly concurrency: number;
  private readonly leaseMs: number;
  private readonly heartbeatMs: number;
  /** The backstop poll period, in ms (`pollInterval`). */
  readonly pollMs: number;
  private readonly graceMs: number;
  private readonly flushMs: number;
  private readonly names: string[];
  /**
   * Keyed by lease token, not job id: after this worker's own lease on a job ran out it may
   * claim the same job again, and the stale attempt must stay visible until it is stopped.
   */
  private readonly running = new Map<string, RunningJob>();
  private pollTimer: NodeJS.Timeout | undefined;
  /** Wakes the worker when the next delayed (or backing-off) job falls due, if that is before the next poll. */
  private dueTimer: NodeJS.Timeout | undefined;
  private dueAt = Infinity;
  /**
   * Whether keyed jobs may be claimable, and whether jobs wait for a later time: set by the
   * wake-ups that say so and by every poll (the backstop), so the keyed claim and the due-time
   * query run only when they can find something. Both start true.
   */
  private keyedWork = true;
  private laterWork = true;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private readonly unsubscribe: Array<() => void> = [];
  private wakeRequested = false;
  /**
   * Whether claimable jobs may be left: the last claim filled every free slot, or a wake-up or
   * poll came since. A finishing job starts another claim only then; otherwise the queue was
   * empty when last looked at, and new work announces itself.
   */
  private backlog = true;
  private claiming = false;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  private heartbeating: Promise<void> | undefined;
  /** When the last heartbeat query failed; cleared by one that succeeds. */
  private heartbeatFailedAt: number | undefined;
  private heartbeatAgain = false;

  private readonly store: JobStore;
  private readonly writes: JobWriteBuffer;
  private readonly notifier: Notifier;
  private readonly jobs: ReadonlyMap<string, AnyJobDefinition>;
  private readonly log: Logger;
  private readonly options: WorkerOptions;

  constructor(store: JobStore, notifier: Notifier, jobs: ReadonlyMap<string, AnyJobDefinition>, log: Logger, options: WorkerOptions = {}) {
    this.store = store;
    this.notifier = notifier;
    this.jobs = jobs;
    this.log = log;
    this.options = options;
    this.id = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.concurrency = options.concurrency ?? 10;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) throw new TypeError('concurrency must be an integer ≥ 1');
    this.leaseMs = toMs(options.lease ?? '30s', 'lease');
    this.heartbeatMs = toMs(options.heartbeat ?? Math.max(50, Math.floor(this.leaseMs / 3)), 'heartbeat');
    this.pollMs = toMs(options.pollInterval ?? '2s', 'pollInterval');
    this.graceMs = toMs(options.shutdownGrace ?? '10s', 'shutdownGrace');
    this.flushMs = toMs(options.outputFlushInterval ?? '200ms', 'outputFlushInterval');
    this.writes = new JobWriteBuffer(store, this.flushMs, log);
    this.names = options.names ?? [...jobs.keys()];
    for (const name of this.names) if (!jobs.has(name)) throw new TypeError(`Worker asked to run unknown job "${name}".`);
  }

  /** Number of jobs this worker holds now: handlers running, and outcomes being written. */
  get busy(): number {
    return this.running.size;
  }

  /**
   * Slots a claim may fill: `concurrency` handlers run at once; a job whose handler returned
   * frees its slot while its outcome is written, up to as many again of those.
   */
  private freeSlots(): number {
    let handlers = 0;
    for (const entry of this.running.values()) if (!entry.finishing) handlers++;
    return Math.min(this.concurrency - handlers, 2 * this.concurrency - this.running.size);
  }

  start(): this {
    const names = new Set(this.names);
    this.unsubscribe.push(
      this.notifier.onQueued((name, hint) => {
        if (name !== undefined && !names.has(name)) return;
        // Unknown (a resync) counts as both: better one query too many than a job left waiting.
        if (!hint || hint.keyed) this.keyedWork = true;
        if (!hint || hint.later) this.laterWork = true;
        this.wake();
      }),
      // A status event this worker did not write (cancel, reclaim) means: check our leases now,
      // so a cancel reaches the handler in well under a second instead of at the next heartbeat.
      this.notifier.onStatus((jobId, seq) => {
        if (seq === 0) return void this.heartbeat(); // notifications were lost: check them all
        for (const entry of this.running.values()) {
          if (entry.claimed.job.id === jobId && !entry.finishing && seq > entry.claimSeq) return void this.heartbeat();
        }
      }),
    );
    this.pollTimer = setInterval(() => this.tick(), this.pollMs);
    // Heartbeats go on through the grace period of a shutdown, so finishing jobs keep their leases.
    let lastTickAt = Date.now();
    this.heartbeatTimer = setInterval(() => {
      // A tick far later than scheduled means this process did not run meanwhile (SIGSTOP, a
      // suspended VM or container, a debugger, a blocked event loop): say so, not "database".
      const now = Date.now();
      const pausedMs = now - lastTickAt > 2 * this.heartbeatMs ? now - lastTickAt : 0;
      lastTickAt = now;
      // Checked on every tick, not only after a heartbeat: a heartbeat query that hangs (a dead
      // connection) must not keep a handler running past a lease another worker may now hold.
      this.abortExpiredLeases(pausedMs);
      void this.heartbeat();
    }, this.heartbeatMs);
    this.tick();
    return this;
  }

  /**
   * Graceful shutdown: stop claiming, give running jobs `shutdownGrace` to finish, then abort
   * the rest and hand their leases back so another worker picks them up at once.
   */
  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    for (const fn of this.unsubscribe.splice(0)) fn();
    clearInterval(this.pollTimer);
    clearTimeout(this.dueTimer);
    const inFlight = () => [...this.running.values()].map((entry) => entry.done);
    await Promise.race([Promise.allSettled(inFlight()), sleep(this.graceMs)]);
    const unfinished = [...this.running.values()].filter((entry) => !entry.finishing);
    await Promise.all(
      unfinished.map(async (entry) => {
        entry.controller.abort(new WorkerShutdownError());
        const { job, leaseToken } = entry.claimed;
        const released = await this.store.handBack(job.id, leaseToken).catch(() => false);
        if (released) this.log.info({ jobId: job.id }, 'job handed back to the queue on shutdown');
      }),
    );
    // A handler that already returned is recording its outcome: let it (persist() is bounded by
    // the lease). Handlers that ignore their signal are not waited for long: they are fenced out.
    const finishing = [...this.running.values()].filter((entry) => entry.finishing).map((entry) => entry.done);
    await Promise.all([Promise.allSettled(finishing), Promise.race([Promise.allSettled(inFlight()), sleep(1000)])]);
    clearInterval(this.heartbeatTimer);
    this.writes.stop();
  }

  /** Backstop for lost notifications: look for due work (expired leases are taken back by the engine's housekeeping). */
  private tick(): void {
    if (this.stopping) return;
    this.keyedWork = true;
    this.laterWork = true;
    this.wake();
  }

  private wake(): void {
    this.backlog = true;
    this.wakeRequested = true;
    if (!this.claiming) void detached(() => this.claimLoop());
  }

  private async claimLoop(): Promise<void> {
    this.claiming = true;
    try {
      // Until a pass ends with no wake-up requested during it: a NOTIFY that lands while the
      // last query runs must start another pass, not wait for the next poll.
      while (this.wakeRequested && !this.stopping) {
        let idle = false;
        while (this.wakeRequested && !this.stopping) {
          this.wakeRequested = false;
          const free = this.freeSlots();
          if (free <= 0) break; // a finishing job wakes us again
          const claimedAt = Date.now();
          const claimed = await this.store.claim(this.names, free, this.id, this.leaseMs);
          // Started before the keyed claim's round trips, so they do not wait on it.
          for (const job of claimed) this.run(job, claimedAt + this.leaseMs);
          let got = claimed.length;
          if (got < free && this.keyedWork) {
            this.keyedWork = false;
            const keyedAt = Date.now();
            const keyed = await this.store.claimKeyed(this.names, free - got, this.id, this.leaseMs);
            for (const job of keyed.jobs) this.run(job, keyedAt + this.leaseMs);
            got += keyed.jobs.length;
            // Keys it had no room or no lock for: look again (with the next free slot, or now).
            if (keyed.more) this.keyedWork = true;
          }
          if (got === free) this.wakeRequested = true; // there may be more
          else if (!this.wakeRequested && !this.keyedWork) this.backlog = false;
          idle = got === 0;
        }
        if (idle && this.laterWork && !this.stopping) {
          this.laterWork = false;
          await this.wakeWhenDue();
        }
      }
    } catch (error) {
      this.log.error({ err: error }, 'claim failed; retrying at the next poll');
    } finally {
      this.claiming = false;
    }
  }

  /**
   * A delayed job (or a retry backing off) queues no NOTIFY when its time comes: without this
   * it would wait for the next poll. Only asked when a claim found nothing, so it costs a
   * worker under load nothing.
   */
  private async wakeWhenDue(): Promise<void> {
    await this.options.debugPoints?.beforeNextDueCheck?.();
    const inMs = await this.store.nextDueInMs(this.names);
    if (inMs === undefined || inMs >= this.pollMs) return; // the poll comes first
    const at = Date.now() + Math.max(0, inMs);
    if (at >= this.dueAt) return; // an earlier wake-up is already set
    clearTimeout(this.dueTimer);
    this.dueAt = at;
    this.dueTimer = setTimeout(
      () => {
        this.dueAt = Infinity;
        this.wake();
      },
      Math.max(0, inMs) + 5,
    );
  }

  /**
   * Extends every lease this worker holds. Single-flight: a call while one is running asks for
   * one more round instead of running beside it, so a burst of notifications costs one query.
   */
  private heartbeat(): Promise<void> {
    if (this.heartbeating) {
      this.heartbeatAgain = true;
      return this.heartbeating;
    }
    this.heartbeating = (async () => {
      try {
        do {
          this.heartbeatAgain = false;
          await this.extendLeases();
        } while (this.heartbeatAgain);
      } finally {
        this.heartbeating = undefined;
      }
    })();
    return this.heartbeating;
  }

  private async extendLeases(): Promise<void> {
    // An aborted handler's lease is not renewed: if its last write failed, the lease runs out
    // and the job is taken back instead of staying `running` under a handler that stopped.
    const held = [...this.running.values()].filter((entry) => entry.finishing || !entry.controller.signal.aborted);
    if (held.length === 0) return;
    // Measured before the query: the lease is at least this fresh if the query succeeds.
    const renewedAt = Date.now();
    let extended: Set<string>;
    try {
      await this.options.debugPoints?.beforeHeartbeat?.();
      extended = await this.store.extendLeases(
        held.map((entry) => ({ id: entry.claimed.job.id, token: entry.claimed.leaseToken })),
        this.leaseMs,
      );
    } catch (error) {
      this.log.error({ err: error }, 'heartbeat failed');
      this.heartbeatFailedAt = Date.now();
      this.abortExpiredLeases();
      return;
    }
    this.heartbeatFailedAt = undefined;
    for (const entry of held) {
      const { job } = entry.claimed;
      if (extended.has(job.id)) {
        entry.leaseUntil = renewedAt + this.leaseMs;
        continue;
      }
      if (entry.finishing || entry.controller.signal.aborted || !this.running.has(entry.claimed.leaseToken)) continue;
      await this.abortTakenAway(entry);
    }
  }

  /** Aborts a handler whose job is no longer ours, with the reason: cancelled, or taken over. */
  private async abortTakenAway(entry: RunningJob): Promise<void> {
    if (entry.controller.signal.aborted) return;
    const { job, tenant } = entry.claimed;
    const current = await this.store.get(tenant, job.id).catch(() => undefined);
    if (entry.controller.signal.aborted) return;
    const reason = current?.status === 'cancelled' ? new JobCancelledError(job.id) : new LeaseLostError(job.id);
    this.log.info({ jobId: job.id, reason: reason.name }, 'job no longer ours; aborting its handler');
    entry.controller.abort(reason);
  }

  /**
   * A worker cut off from the database cannot renew its leases; once they have run out, another
   * worker may already be running the same jobs. Stop the handlers here rather than let them
   * spend tokens on work whose result would be refused anyway.
   */
  private abortExpiredLeases(pausedMs = 0): void {
    const now = Date.now();
    for (const entry of this.running.values()) {
      if (now < entry.leaseUntil || entry.finishing || entry.controller.signal.aborted) continue;
      const why =
        pausedMs > 0
          ? `lease ran out while this process was paused for ${Math.round(pausedMs / 1000)} s (stopped, suspended or its event loop blocked); aborting the handler`
          : this.heartbeatFailedAt !== undefined
            ? 'lease ran out while the database did not answer the heartbeats; aborting the handler'
            : 'lease ran out before a heartbeat could renew it (the database is slow to answer); aborting the handler';
      this.log.warn({ jobId: entry.claimed.job.id, pausedMs: pausedMs || undefined }, why);
      entry.controller.abort(new LeaseLostError(entry.claimed.job.id));
    }
  }

  private run(claimed: ClaimedJob, leaseUntil: number): void {
    const { job, tenant, leaseToken } = claimed;
    const definition = this.jobs.get(job.name)!;
    const controller = new AbortController();
    const log = this.log.child({ jobId: job.id, job: job.name, attempt: job.attempt });
    const traced = startProcessSpan({ jobId: job.id, jobName: job.name, attempt: job.attempt, workerId: this.id, traceContext: claimed.traceContext });
    const startedAt = performance.now();
    const limits = new AttemptLimits(resolveLimits(definition.limits), job.version, (error) => void this.overLimit(entry, error, log, startedAt));
    const context = createJobContext({
      job,
      tenant,
      leaseToken,
      store: this.store,
      signal: controller.signal,
      log,
      logLimits: definition.logs,
      writer: this.writes.open(job.id, leaseToken, () => void this.abortTakenAway(entry), limits),
      onLeaseLost: () => this.abortTakenAway(entry),
      trace: traced.context,
      limits,
      // Only a database that did not answer is worth waiting out; one that refused would refuse again.
      retry: (write) =>
        retryWrite(write, {
          until: () => entry.leaseUntil,
          retryable: (error) => unreachableReason(error) !== undefined,
          signal: controller.signal,
          onRetry: (error, delay) => log.warn({ err: error, retryInMs: delay }, 'the database did not answer while a step or token usage was recorded; retrying within the lease'),
        }),
    });
    const entry: RunningJob = {
      claimed,
      controller,
      context,
      claimSeq: job.version,
      leaseUntil,
      done: Promise.resolve(),
    };
    this.running.set(leaseToken, entry);
    // Both from the database's clock: claimable since (submit, delay or backoff) → claimed (the
    // claim sets updated_at; started_at is the first attempt's). A job taken back from a lost
    // worker, or handed back at shutdown, keeps its place (its run_at is from before its first
    // start): how long it waited since is unknown, so it is left out rather than counted from then.
    // (A first claim starts the job now; a retry is due after its first start.)
    const runAt = Date.parse(job.runAt);
    const firstStartedAt = Date.parse(job.startedAt ?? job.updatedAt);
    const kept = firstStartedAt < Date.parse(job.updatedAt) && runAt <= firstStartedAt;
    metrics.claimed(job.name, kept ? undefined : Date.parse(job.updatedAt) - runAt);
    entry.done = withContext(traced.context, () => this.execute(entry, definition, log)).finally(() => {
      // No outcome written: the job was taken away (cancel, lost lease, timeout, shutdown), or the write failed.
      const { outcome, error } = entry.traced ?? { outcome: controller.signal.aborted ? 'aborted' : 'unrecorded', error: controller.signal.reason as unknown };
      endProcessSpan(traced.span, outcome, error);
      context.close();
      metrics.released(job.name);
      this.running.delete(leaseToken);
      if (this.backlog) this.wake();
    });
  }

  private async execute(entry: RunningJob, definition: AnyJobDefinition, log: Logger): Promise<void> {
    const { job, leaseToken, timeoutMs } = entry.claimed;
    const { controller, context } = entry;
    const startedAt = performance.now();
    const ran = (outcome: RunOutcome, error?: unknown) => {
      entry.traced = { outcome, error };
      metrics.ran(job.name, outcome, (performance.now() - startedAt) / 1000);
    };
    const timer = setTimeout(() => void this.timeOut(entry, definition, log, ran), timeoutMs);
    let outcome: { ok: true; result: unknown; stale: boolean } | { ok: false; thrown: unknown };
    try {
      // Parsed here, where the handler runs, so zod defaults and transforms apply to its input.
      const input = (definition.input as z.ZodType).safeParse(job.input);
      if (!input.success) {
        throw new NonRetryableError(
          `The stored input no longer matches the job's schema (was the schema changed after submit?): ${input.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`,
        );
      }
      const result: unknown = await definition.run(input.data, context);
      const maxResult = resolveLimits(definition.limits).result;
      if (storedBytes(toStoredJson(result) ?? 'null') > maxResult) throw new LimitExceededError("The job's result", 'limits.result', maxResult);
      // Relevance is decided now that the result is ready, not when the job was asked for: the
      // world may have moved on meanwhile (a newer document version, another conversation).
      const stale = definition.relevant !== undefined && job.context !== undefined && !(await definition.relevant(job.context, input.data));
      outcome = { ok: true, result, stale };
    } catch (thrown) {
      outcome = { ok: false, thrown };
    } finally {
      clearTimeout(timer);
    }
    if (controller.signal.aborted) return this.logDiscarded(log, controller.signal.reason);
    // From here on the handler is done; what remains is recording its outcome. A database error
    // now is not the handler's failure: the write is retried, never the handler.
    entry.finishing = true;
    // Its slot is free now: the next claim runs while this outcome is written, not after it.
    if (this.backlog) this.wake();
    if (outcome.ok) {
      const { result, stale } = outcome;
      const written = await this.persist(log, async () => {
        // The last output goes with the next round of writes (at most a flush interval away),
        // not in a statement of its own; the outcome follows it.
        await context.settle();
        if (!stale) return this.store.finish(job.id, leaseToken, 'completed', result);
        return this.store.finish(job.id, leaseToken, 'stale', result, {
          code: 'stale',
          message: 'The result is ready, but the context it was asked about has changed (relevant() said no): it is kept for inspection and not delivered.',
        });
      });
      if (written) {
        ran(stale ? 'stale' : 'completed');
        log.info(stale ? 'job stale: result kept, not delivered' : 'job completed');
      }
      return;
    }
    const { thrown } = outcome;
    // A limit passed would be passed again: no retry.
    const overLimit = thrown instanceof LimitExceededError;
    const error = toJobError(thrown, overLimit ? 'limit_exceeded' : undefined);
    if (!(thrown instanceof NonRetryableError) && !overLimit && job.attempt < job.maxAttempts) {
      const delay = retryDelayMs(definition.retry, job.attempt);
      const written = await this.persist(log, async () => {
        await context.settle().catch(() => {});
        return this.store.retryLater(job.id, leaseToken, delay, error);
      });
      if (written) {
        ran('retried', thrown);
        log.warn({ err: thrown, retryInMs: delay }, 'job failed; retrying');
      }
    } else {
      const written = await this.persist(log, async () => {
        await context.settle().catch(() => {});
        return this.store.finish(job.id, leaseToken, 'failed', undefined, error);
      });
      if (written) {
        ran('failed', thrown);
        log.warn({ err: thrown }, 'job failed');
      }
    }
  }

  /**
   * Runs a fenced write, retrying database errors with backoff for as long as the lease would
   * last. Answers false when the write was refused (the lease is gone: the outcome is discarded)
   * or could not be made at all (the lease then expires and the job runs again elsewhere).
   */
  private async persist(log: Logger, write: () => Promise<boolean>): Promise<boolean> {
    const giveUpAt = Date.now() + this.leaseMs;
    try {
      const written = await retryWrite(write, {
        until: () => giveUpAt,
        onRetry: (error, delay) => log.warn({ err: error, retryInMs: delay }, 'recording the outcome failed; retrying'),
      });
      if (!written) log.info('outcome discarded: this worker no longer holds the job');
      return written;
    } catch (error) {
      if (error instanceof LeaseLostError) {
        log.info('outcome discarded: this worker no longer holds the job');
        return false;
      }
      log.error({ err: error }, 'could not record the outcome; the job will run again when its lease expires');
      return false;
    }
  }

  /**
   * The running handler passed one of its job's size limits (output, progress, events, a
   * step's result): it is stopped, and the job fails now, without retries (another attempt
   * would pass the limit again), with the error that names the limit.
   */
  private async overLimit(entry: RunningJob, error: LimitExceededError, log: Logger, startedAt: number): Promise<void> {
    const { job, leaseToken } = entry.claimed;
    if (entry.controller.signal.aborted || entry.finishing) return;
    entry.controller.abort(error);
    const written = await this.persist(log, async () => {
      entry.context.endLog();
      await entry.context.flush().catch(() => {});
      return this.store.finish(job.id, leaseToken, 'failed', undefined, toJobError(error, 'limit_exceeded'));
    });
    if (written) {
      metrics.ran(job.name, 'failed', (performance.now() - startedAt) / 1000);
      log.warn({ limit: error.limit, max: error.max }, 'job failed: it passed a size limit');
    }
  }

  private async timeOut(entry: RunningJob, definition: AnyJobDefinition, log: Logger, ran: (outcome: RunOutcome) => void): Promise<void> {
    const { job, leaseToken } = entry.claimed;
    if (entry.controller.signal.aborted || entry.finishing) return;
    const budget = formatDuration(definition.timeoutMs);
    const message =
      `The job ran past its time budget of ${budget} on attempt ${job.attempt} of ${job.maxAttempts} and was stopped. ` +
      `Give the job a larger timeout, or split the work into smaller jobs, then submit it again.`;
    entry.controller.abort(new JobTimeoutError(message));
    const written = await this.persist(log, async () => {
      entry.context.endLog();
      await entry.context.flush().catch(() => {});
      return this.store.finish(job.id, leaseToken, 'timed_out', undefined, { code: 'timed_out', message });
    });
    if (written) {
      ran('timed_out');
      log.warn({ budget }, 'job timed out');
    }
  }

  private logDiscarded(log: Logger, reason: unknown): void {
    const name = reason instanceof Error ? reason.name : 'unknown';
    log.info({ reason: name }, 'handler settled after its job was taken away; its outcome is discarded');
  }
}

const sleep = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms).unref();
  });
