import type { Driver } from './driver.ts';

/** What a queued-work notification says; `name` undefined means "anything may have changed". */
export type QueuedListener = (name: string | undefined, hint?: { keyed: boolean; later: boolean }) => void;

export type JobEventListener = (jobId: string, seq: number, type: string) => void;

/**
 * One LISTEN per process for job events and one for newly queued work, fanned out in memory
 * to every reader (SSE streams, long-polls, workers). NOTIFY is only a wake-up: readers always
 * re-read the rows, and keep a slow poll as a backstop for a notification lost to a reconnect.
 */
export class Notifier {
  private readonly byJob = new Map<string, Set<JobEventListener>>();
  private readonly all = new Set<JobEventListener>();
  private readonly queued = new Set<QueuedListener>();
  private readonly webhooksDue = new Set<() => void>();
  private readonly resyncs = new Set<() => void>();
  private readonly unlisten: Array<() => Promise<void>> = [];

  private constructor() {}

  static async start(driver: Driver, schema: string): Promise<Notifier> {
    const notifier = new Notifier();
    notifier.unlisten.push(
      await driver.listen(`${schema}_events`, (payload) => notifier.dispatchEvent(payload), () => notifier.resync()),
      await driver.listen(`${schema}_queued`, (payload) => {
        // "<job name>[ keyed][ later]": job names have no spaces.
        const [name, ...flags] = payload.split(' ');
        const hint = { keyed: flags.includes('keyed'), later: flags.includes('later') };
        for (const listener of notifier.queued) listener(name, hint);
      }),
      await driver.listen(`${schema}_webhooks`, () => {
        for (const listener of notifier.webhooksDue) listener();
      }),
    );
    return notifier;
  }

  /** A payload lists "<job id> <seq> <type>" entries separated by commas (one NOTIFY per statement). */
  private dispatchEvent(payload: string): void {
    for (const entry of payload.split(',')) {
      const [jobId, seqText, type] = entry.split(' ');
      if (!jobId || !seqText || !type) continue;
      const seq = Number(seqText);
      for (const listener of this.byJob.get(jobId) ?? []) listener(jobId, seq, type);
      for (const listener of this.all) listener(jobId, seq, type);
    }
  }

  /**
   * After a lost LISTEN connection: wake every reader so it re-reads what it may have missed.
   * Job listeners get type `resync` (seq 0); queued listeners get `undefined` (any job name).
   */
  private resync(): void {
    for (const [jobId, listeners] of this.byJob) for (const listener of listeners) listener(jobId, 0, 'resync');
    for (const listener of this.queued) listener(undefined);
    for (const listener of this.webhooksDue) listener();
    for (const listener of this.resyncs) listener();
  }

  /** Calls `listener` after a lost LISTEN connection came back: notifications may have been missed. */
  onResync(listener: () => void): () => void {
    this.resyncs.add(listener);
    return () => this.resyncs.delete(listener);
  }

  /** Calls `listener` whenever a webhook delivery becomes due. */
  onWebhookDue(listener: () => void): () => void {
    this.webhooksDue.add(listener);
    return () => this.webhooksDue.delete(listener);
  }

  /** Calls `listener` for every event of one job. Returns the unsubscribe function. */
  onJob(jobId: string, listener: JobEventListener): () => void {
    let set = this.byJob.get(jobId);
    if (!set) this.byJob.set(jobId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.byJob.delete(jobId);
    };
  }

  /** Calls `listener` for every event of every job. */
  onAnyJob(listener: JobEventListener): () => void {
    this.all.add(listener);
    return () => this.all.delete(listener);
  }

  /**
   * Calls `listener` with the job name whenever a job is queued or a concurrency slot frees
   * (`undefined`: maybe any, after a lost connection). The hint says whether the job has a
   * concurrency key and whether it is due only later.
   */
  onQueued(listener: QueuedListener): () => void {
    this.queued.add(listener);
    return () => this.queued.delete(listener);
  }

  /**
   * Resolves when the job gets a new event, after `timeoutMs`, or when `signal` aborts,
   * whichever comes first. Subscribe before reading the rows to not miss an event in between:
   * call {@link onJob} yourself in that case.
   */
  waitForJob(jobId: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        unsubscribe();
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      const unsubscribe = this.onJob(jobId, done);
      signal?.addEventListener('abort', done, { once: true });
      if (signal?.aborted) done();
    });
  }

  async close(): Promise<void> {
    this.byJob.clear();
    this.all.clear();
    this.queued.clear();
    this.webhooksDue.clear();
    await Promise.all(this.unlisten.splice(0).map((fn) => fn().catch(() => {})));
  }
}
