import type { Logger } from 'pino';
import type { JobStore } from '../store/job-store.ts';
import type { WebhookStore } from '../store/webhook-store.ts';

/**
 * One periodic chore. Each process with a worker runs every task on its own schedule; a task
 * must therefore be safe to run in many processes at once (`SKIP LOCKED`, idempotent updates),
 * or take a cross-process lock inside `run` for work only one process should do at a time.
 */
export interface HousekeepingTask {
  /** Names the task in logs and for {@link Housekeeping.runNow}. */
  name: string;
  /** Run at most this often, in ms. */
  everyMs: number;
  /** Does one round of the chore; `signal` aborts when housekeeping stops. */
  run(signal: AbortSignal): Promise<void>;
}

interface Entry {
  task: HousekeepingTask;
  /** When its last round started (0: never). */
  lastAt: number;
  running?: Promise<void>;
}

/**
 * Periodic maintenance of a Waitless database, one home and one schedule for all of it: taking
 * back expired job leases and webhook-delivery leases, and pruning rows past their retention
 * (finished jobs, idempotency keys, signing secrets: see `retention.ts`). One
 * timer ticks at the shortest period; each task runs when it is due, never overlapping itself.
 */
export class Housekeeping {
  private readonly tasks = new Map<string, Entry>();
  private readonly log: Logger;
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private tickMs = Infinity;

  constructor(log: Logger) {
    this.log = log;
  }

  /**
   * Adds a task, or shortens the period of one already added (the shortest asked for wins: a
   * worker polling every 100 ms wants leases taken back that often). It first runs at once.
   */
  schedule(task: HousekeepingTask): this {
    const existing = this.tasks.get(task.name);
    if (existing) {
      if (task.everyMs < existing.task.everyMs) existing.task = task;
    } else {
      this.tasks.set(task.name, { task, lastAt: 0 });
    }
    if (task.everyMs < this.tickMs && !this.controller.signal.aborted) {
      this.tickMs = task.everyMs;
      clearInterval(this.timer);
      this.timer = setInterval(() => this.tick(), this.tickMs);
      this.timer.unref();
    }
    this.tick();
    return this;
  }

  /** Runs one task now, whatever its schedule (e.g. on an operator's demand); waits for a round already under way first. */
  async runNow(name: string): Promise<void> {
    const entry = this.tasks.get(name);
    if (!entry) throw new TypeError(`No housekeeping task named "${name}".`);
    while (entry.running) await entry.running;
    await this.runEntry(entry);
  }

  /** Stops the schedule and waits for rounds under way. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.controller.abort();
    await Promise.allSettled([...this.tasks.values()].flatMap((entry) => (entry.running ? [entry.running] : [])));
  }

  private tick(): void {
    if (this.controller.signal.aborted) return;
    // Half a tick of slack: a timer may fire a little early by the wall clock, and a task due
    // every tick must not wait for the next one (taking leases back half as often).
    const now = Date.now() + this.tickMs / 2;
    for (const entry of this.tasks.values()) {
      if (!entry.running && now >= entry.lastAt + entry.task.everyMs) void this.runEntry(entry);
    }
  }

  private runEntry(entry: Entry): Promise<void> {
    entry.lastAt = Date.now();
    const round = entry.task
      .run(this.controller.signal)
      .catch((error: unknown) => this.log.error({ err: error, task: entry.task.name }, 'housekeeping task failed'))
      .finally(() => {
        if (entry.running === round) entry.running = undefined;
      });
    entry.running = round;
    return round;
  }
}

/** Jobs whose worker stopped reporting go back to the queue (or fail, with no attempts left). */
export const reclaimJobLeases = (store: JobStore, log: Logger, everyMs: number): HousekeepingTask => ({
  name: 'reclaim-job-leases',
  everyMs,
  async run() {
    const reclaimed = await store.reclaimExpiredLeases();
    for (const job of reclaimed) log.warn({ jobId: job.id, status: job.status }, 'lease expired; job taken back');
  },
});

/** Webhook deliveries whose dispatcher died mid-attempt become due again. */
export const reclaimDeliveryLeases = (webhooks: WebhookStore, everyMs: number): HousekeepingTask => ({
  name: 'reclaim-delivery-leases',
  everyMs,
  async run() {
    await webhooks.reclaimExpired();
  },
});
