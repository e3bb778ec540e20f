import type { Logger } from 'pino';
import type { Job, JobEvent } from '../job/model.ts';
import { toEvent, toJob } from '../store/job-store.ts';
import type { Driver } from '../store/driver.ts';
import type { AnnouncedEvent, Notifier } from '../store/notifications.ts';
import * as q from '../store/queries.ts';

/** Options of the {@link EventHub}. */
export interface EventHubOptions {
  /** Notifications arriving within this window are read together. Default: `10` ms. */
  coalesceMs?: number;
  /** How often the tenant-wide streams get their changes (each job once, at its latest state). Default: `100` ms. */
  tenantCoalesceMs?: number;
  /** A re-read of every followed job, as a backstop for a notification lost to a reconnect. Default: `5000` ms. */
  backstopMs?: number;
  /** Events one read fetches per job; a job with more is read again at once. Default: `500`. */
  perJobLimit?: number;
  /**
   * Events a job stream may have waiting for its client. A stream whose client reads slower
   * stops being fed from memory and catches up from the database when it has drained. Default: `1000`.
   */
  maxQueuedEvents?: number;
  /** Changed jobs a tenant stream may have waiting; past it the stream is told to resync. Default: `10000`. */
  maxQueuedJobs?: number;
}

/** A job stream's view of the hub: its events, in order, from where it started. */
export interface EventSubscription {
  /** Resolves with the next events (at least one), or with `[]` once closed. */
  next(): Promise<JobEvent[]>;
  close(): void;
}

/** A tenant-wide stream's view of the hub. */
export interface TenantSubscription {
  /**
   * Resolves with the tenant's jobs that changed since the last call, each once at its latest
   * state and without payloads; `resync` when notifications may have been lost (a reconnect) or
   * the stream fell too far behind: the client should list again. `closed` once closed.
   */
  next(): Promise<{ jobs: Job[]; resync: boolean; closed: boolean }>;
  close(): void;
}

interface TenantSubscriber {
  pending: Map<string, Job>;
  resync: boolean;
  closed: boolean;
  wake: (() => void) | undefined;
}

interface EventSubscriber {
  tenant: string;
  /** The last sequence number handed to this subscriber. */
  last: number;
  queue: JobEvent[];
  /** Stopped being fed for falling behind; reads from `last` again once drained. */
  lagging: boolean;
  wake: (() => void) | undefined;
  closed: boolean;
}

interface JobWatcher {
  tenant: string;
  listener: (job: Job) => void;
}

interface Followed {
  events: Set<EventSubscriber>;
  watchers: Set<JobWatcher>;
}

/**
 * One per process: every reader of job events — SSE streams of one job, tenant-wide streams,
 * long-polls — is fed from here. The hub holds the process's one LISTEN (through the
 * {@link Notifier}). A statement that appends events announces them in its notification; the
 * hub hands each to the job's readers from memory, without a read. It reads only for what an
 * announcement cannot carry — a new reader's history, a reader catching up, an event too large
 * to announce, a long-poll's job row — and then once per wake-up for every reader of every job
 * that needs it, in one statement. The database work grows with the jobs that change, not with
 * the readers. A reader that cannot keep up is bounded, not buffered without limit.
 */
export class EventHub {
  private readonly followed = new Map<string, Followed>();
  private readonly tenants = new Map<string, Set<TenantSubscriber>>();
  /** Followed jobs whose event readers need a read: new readers, a catch-up, an event not announced whole. */
  private readonly dirty = new Set<string>();
  /** Followed jobs whose long-polls need the job row again. */
  private readonly dirtyRows = new Set<string>();
  /** Jobs that changed since the tenant streams were last fed. */
  private readonly changedForTenants = new Set<string>();
  private readonly driver: Driver;
  private readonly log: Logger;
  private readonly coalesceMs: number;
  private readonly tenantCoalesceMs: number;
  private readonly perJobLimit: number;
  private readonly maxQueuedEvents: number;
  private readonly maxQueuedJobs: number;
  private readTimer: NodeJS.Timeout | undefined;
  private tenantTimer: NodeJS.Timeout | undefined;
  private reading: Promise<void> | undefined;
  private readAgain = false;
  private readonly backstop: NodeJS.Timeout;
  private readonly notifier: Notifier;
  /** Set once someone reads: a process without readers does not listen to every job's changes. */
  private unsubscribe: (() => void) | undefined;

  constructor(driver: Driver, notifier: Notifier, log: Logger, options: EventHubOptions = {}) {
    this.driver = driver;
    this.log = log;
    this.coalesceMs = options.coalesceMs ?? 10;
    this.tenantCoalesceMs = options.tenantCoalesceMs ?? 100;
    this.perJobLimit = options.perJobLimit ?? 500;
    this.maxQueuedEvents = options.maxQueuedEvents ?? 1000;
    this.maxQueuedJobs = options.maxQueuedJobs ?? 10_000;
    this.notifier = notifier;
    this.backstop = setInterval(() => this.readAll(), options.backstopMs ?? 5000);
    this.backstop.unref();
  }

  /** Follows a job's events after `after`: the log from there first, then each new event as it lands. */
  subscribe(tenant: string, jobId: string, after: number): EventSubscription {
    const subscriber: EventSubscriber = { tenant, last: after, queue: [], lagging: false, wake: undefined, closed: false };
    const entry = this.follow(jobId);
    entry.events.add(subscriber);
    this.markDirty(jobId);
    return {
      next: async () => {
        while (subscriber.queue.length === 0 && !subscriber.closed) {
          await new Promise<void>((resolve) => (subscriber.wake = resolve));
          subscriber.wake = undefined;
        }
        const events = subscriber.queue.splice(0);
        if (subscriber.lagging && !subscriber.closed) {
          // Drained: catch up from the database, where the events it was not fed still are.
          subscriber.lagging = false;
          this.markDirty(jobId);
        }
        return events;
      },
      close: () => {
        subscriber.closed = true;
        subscriber.wake?.();
        entry.events.delete(subscriber);
        this.unfollow(jobId, entry);
      },
    };
  }

  /** Calls `listener` with the whole job (output included) each time it changes, until unsubscribed. */
  watch(tenant: string, jobId: string, listener: (job: Job) => void): () => void {
    const watcher: JobWatcher = { tenant, listener };
    const entry = this.follow(jobId);
    entry.watchers.add(watcher);
    return () => {
      entry.watchers.delete(watcher);
      this.unfollow(jobId, entry);
    };
  }

  /** Follows every change to the tenant's jobs (summaries, coalesced), until closed. */
  subscribeTenant(tenant: string): TenantSubscription {
    const subscriber: TenantSubscriber = { pending: new Map(), resync: false, closed: false, wake: undefined };
    this.listen();
    let set = this.tenants.get(tenant);
    if (!set) this.tenants.set(tenant, (set = new Set()));
    set.add(subscriber);
    return {
      next: async () => {
        while (subscriber.pending.size === 0 && !subscriber.resync && !subscriber.closed) {
          await new Promise<void>((resolve) => (subscriber.wake = resolve));
          subscriber.wake = undefined;
        }
        const batch = { jobs: [...subscriber.pending.values()], resync: subscriber.resync, closed: subscriber.closed };
        subscriber.pending.clear();
        subscriber.resync = false;
        return batch;
      },
      close: () => {
        subscriber.closed = true;
        subscriber.wake?.();
        set.delete(subscriber);
        if (set.size === 0 && this.tenants.get(tenant) === set) this.tenants.delete(tenant);
      },
    };
  }

  close(): void {
    clearInterval(this.backstop);
    clearTimeout(this.readTimer);
    clearTimeout(this.tenantTimer);
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    for (const entry of this.followed.values()) {
      for (const subscriber of entry.events) {
        subscriber.closed = true;
        subscriber.wake?.();
      }
    }
    for (const set of this.tenants.values()) {
      for (const subscriber of set) {
        subscriber.closed = true;
        subscriber.wake?.();
      }
    }
    this.followed.clear();
    this.tenants.clear();
  }

  /**
   * Starts listening for changes now rather than at the first reader, so that readers find it
   * in place (the HTTP app calls this). Resolves once the LISTEN is in place.
   */
  start(): Promise<void> {
    this.listen();
    return this.notifier.listenToChanges();
  }

  private listen(): void {
    // `undefined`: the LISTEN just started or came back after a lost connection; what changed
    // meanwhile was not heard, so everything followed is read again.
    this.unsubscribe ??= this.notifier.onChange((change) => (change === undefined ? this.resync() : this.changed(change)));
  }

  private follow(jobId: string): Followed {
    this.listen();
    let entry = this.followed.get(jobId);
    if (!entry) this.followed.set(jobId, (entry = { events: new Set(), watchers: new Set() }));
    return entry;
  }

  private unfollow(jobId: string, entry: Followed): void {
    if (entry.events.size === 0 && entry.watchers.size === 0 && this.followed.get(jobId) === entry) this.followed.delete(jobId);
  }

  private changed(change: AnnouncedEvent): void {
    const entry = this.followed.get(change.jobId);
    if (entry) {
      if (entry.watchers.size > 0) {
        this.dirtyRows.add(change.jobId);
        this.scheduleRead();
      }
      if (!this.push(entry, change)) this.markDirty(change.jobId);
    }
    if (this.tenants.size > 0) {
      this.changedForTenants.add(change.jobId);
      this.tenantTimer ??= setTimeout(() => void this.feedTenants(), this.tenantCoalesceMs);
    }
  }

  /**
   * Hands an announced event straight to the job's readers that are exactly one event behind
   * it: no read at all in the steady state of a stream. Answers false when some reader needs a
   * read instead (it is further behind, or the event came without its data).
   */
  private push(entry: Followed, change: AnnouncedEvent): boolean {
    let complete = true;
    for (const subscriber of entry.events) {
      if (subscriber.closed || subscriber.lagging || subscriber.tenant !== change.tenant || subscriber.last >= change.seq) continue;
      if (change.event && subscriber.last === change.seq - 1) this.feed(subscriber, [change.event]);
      else complete = false;
    }
    return complete;
  }

  /** Queues events for a reader, in order, up to its bound; past it the reader lags and catches up later. */
  private feed(subscriber: EventSubscriber, events: JobEvent[]): void {
    for (const event of events) {
      if (event.seq <= subscriber.last) continue;
      if (subscriber.queue.length >= this.maxQueuedEvents) {
        subscriber.lagging = true;
        break;
      }
      subscriber.queue.push(event);
      subscriber.last = event.seq;
    }
    if (subscriber.queue.length > 0) subscriber.wake?.();
  }

  /** Every followed job read again: after a lost connection, and now and then as a backstop. */
  private readAll(): void {
    for (const [jobId, entry] of this.followed) {
      if (entry.events.size > 0) this.dirty.add(jobId);
      if (entry.watchers.size > 0) this.dirtyRows.add(jobId);
    }
    if (this.dirty.size > 0 || this.dirtyRows.size > 0) this.scheduleRead();
  }

  private resync(): void {
    this.readAll();
    this.resyncTenants();
  }

  private resyncTenants(): void {
    for (const set of this.tenants.values()) {
      for (const subscriber of set) {
        subscriber.pending.clear();
        subscriber.resync = true;
        subscriber.wake?.();
      }
    }
  }

  private markDirty(jobId: string): void {
    this.dirty.add(jobId);
    this.scheduleRead();
  }

  private scheduleRead(): void {
    if (this.reading) {
      this.readAgain = true;
      return;
    }
    this.readTimer ??= setTimeout(() => {
      this.readTimer = undefined;
      this.reading = this.read().finally(() => {
        this.reading = undefined;
        if (this.readAgain || this.dirty.size > 0 || this.dirtyRows.size > 0) {
          this.readAgain = false;
          if (this.dirty.size > 0 || this.dirtyRows.size > 0) this.scheduleRead();
        }
      });
    }, this.coalesceMs);
  }

  /** One read for every followed job that needs one: their events, and the whole job for long-polls. */
  private async read(): Promise<void> {
    const ids = [...this.dirty];
    this.dirty.clear();
    const rowIds = [...this.dirtyRows];
    this.dirtyRows.clear();
    const wanted: Array<{ id: string; tenant: string; after: number }> = [];
    const watched = rowIds.filter((id) => (this.followed.get(id)?.watchers.size ?? 0) > 0);
    for (const id of ids) {
      const entry = this.followed.get(id);
      if (!entry) continue;
      // Per tenant on the job (normally one): from the earliest point any fed subscriber needs.
      const from = new Map<string, number>();
      for (const s of entry.events) {
        if (s.lagging || s.closed) continue;
        from.set(s.tenant, Math.min(from.get(s.tenant) ?? Infinity, s.last));
      }
      for (const [tenant, after] of from) wanted.push({ id, tenant, after });
    }
    try {
      const [eventRows, jobRows] = await Promise.all([
        wanted.length > 0 ? this.driver.query<q.EventRow & { job_id: string; tenant_id: string }>(q.listEventsOfJobs(wanted, this.perJobLimit)) : [],
        watched.length > 0 ? this.driver.query<q.JobRow>(q.getJobsById(watched)) : [],
      ]);
      this.deliverEvents(wanted, eventRows);
      for (const row of jobRows) {
        const entry = this.followed.get(row.id);
        if (!entry) continue;
        const job = toJob(row);
        for (const watcher of [...entry.watchers]) if (watcher.tenant === row.tenant_id) watcher.listener(job);
      }
    } catch (error) {
      // The readers keep their place; the backstop (or the next notification) reads again.
      this.log.warn({ err: error }, 'event hub read failed; retrying with the next wake-up');
      for (const id of ids) if (this.followed.has(id)) this.dirty.add(id);
      for (const id of watched) this.dirtyRows.add(id);
    }
  }

  private deliverEvents(wanted: Array<{ id: string; tenant: string; after: number }>, rows: Array<q.EventRow & { job_id: string; tenant_id: string }>): void {
    const byJob = new Map<string, JobEvent[]>();
    for (const row of rows) {
      const key = `${row.job_id}/${row.tenant_id}`;
      let list = byJob.get(key);
      if (!list) byJob.set(key, (list = []));
      list.push(toEvent(row));
    }
    for (const { id, tenant } of wanted) {
      const events = byJob.get(`${id}/${tenant}`) ?? [];
      if (events.length >= this.perJobLimit) this.markDirty(id); // there may be more
      if (events.length === 0) continue;
      const entry = this.followed.get(id);
      if (!entry) continue;
      for (const subscriber of entry.events) {
        if (subscriber.tenant !== tenant || subscriber.lagging || subscriber.closed) continue;
        this.feed(subscriber, events);
      }
    }
  }

  /** The tenant streams' share: one read of the changed jobs (without payloads) for all of them. */
  private async feedTenants(): Promise<void> {
    const ids = [...this.changedForTenants];
    this.changedForTenants.clear();
    try {
      if (ids.length > 0 && this.tenants.size > 0) {
        const rows = await this.driver.query<q.JobRow>(q.getJobSummariesById(ids));
        const byTenant = new Map<string, Job[]>();
        for (const row of rows) {
          if (!this.tenants.has(row.tenant_id)) continue;
          let list = byTenant.get(row.tenant_id);
          if (!list) byTenant.set(row.tenant_id, (list = []));
          list.push(toJob(row));
        }
        for (const [tenant, jobs] of byTenant) {
          for (const subscriber of this.tenants.get(tenant) ?? []) {
            for (const job of jobs) subscriber.pending.set(job.id, job);
            // A stream that cannot keep up lists again instead of holding every job in memory.
            if (subscriber.pending.size > this.maxQueuedJobs) {
              subscriber.pending.clear();
              subscriber.resync = true;
            }
            subscriber.wake?.();
          }
        }
      }
    } catch (error) {
      this.log.warn({ err: error }, 'tenant stream read failed; telling the streams to resync');
      this.resyncTenants();
    } finally {
      this.tenantTimer = undefined;
      if (this.changedForTenants.size > 0) this.tenantTimer = setTimeout(() => void this.feedTenants(), this.tenantCoalesceMs);
    }
  }
}
