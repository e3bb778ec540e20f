import type { JobEvent, JobEventType } from '../job/model.ts';
import type { Driver } from './driver.ts';

/** What a queued-work notification says; `name` undefined means "anything may have changed". */
export type QueuedListener = (name: string | undefined, hint?: { keyed: boolean; later: boolean }) => void;

/** A job got a status event with this sequence number (`seq` 0: maybe, after a lost connection). */
export type StatusListener = (jobId: string, seq: number) => void;

/**
 * A new event of a job, as its statement announced it: `event` is undefined when the event was
 * too large to carry (read it from the table).
 */
export interface AnnouncedEvent {
  jobId: string;
  tenant: string;
  seq: number;
  event: JobEvent | undefined;
}

/** An API key was revoked (`undefined`: maybe any was, after a lost connection). */
export type KeyRevokedListener = (keyId: string | undefined) => void;

/** A job has a new event (or jobs may have, after a lost connection: `undefined`). */
export type ChangeListener = (change: AnnouncedEvent | undefined) => void;

/**
 * One LISTEN connection per process, fanned out in memory to every reader: event readers
 * (through the event hub), workers, the webhook dispatcher. NOTIFY is only a wake-up: readers
 * always re-read the rows, and keep a slow poll as a backstop for a notification lost to a
 * reconnect. The channel of changed jobs is listened to only once someone reads events, so a
 * worker process is not woken by every output write of every job.
 */
export class Notifier {
  private readonly changes = new Set<ChangeListener>();
  private readonly statuses = new Set<StatusListener>();
  private readonly queued = new Set<QueuedListener>();
  private readonly webhooksDue = new Set<() => void>();
  private readonly keysRevoked = new Set<KeyRevokedListener>();
  private readonly secretsRotated = new Set<(name: string | undefined) => void>();
  private readonly unlisten: Array<() => Promise<void>> = [];
  private listeningToChanges: Promise<void> | undefined;
  private readonly driver: Driver;
  private readonly schema: string;

  private constructor(driver: Driver, schema: string) {
    this.driver = driver;
    this.schema = schema;
  }

  static async start(driver: Driver, schema: string): Promise<Notifier> {
    const notifier = new Notifier(driver, schema);
    notifier.unlisten.push(
      await driver.listen(`${schema}_status`, (payload) => notifier.dispatchStatus(payload), () => notifier.resync()),
      await driver.listen(`${schema}_queued`, (payload) => {
        // "<job name>[ keyed][ later]": job names have no spaces.
        const [name, ...flags] = payload.split(' ');
        const hint = { keyed: flags.includes('keyed'), later: flags.includes('later') };
        for (const listener of notifier.queued) listener(name, hint);
      }),
      await driver.listen(`${schema}_webhooks`, () => {
        for (const listener of notifier.webhooksDue) listener();
      }),
      await driver.listen(
        `${schema}_keys`,
        // An API key's id (16 hex digits), or the name of a rotated server secret (e.g. "job-tokens").
        (payload) => {
          if (/^[0-9a-f]{16}$/.test(payload)) for (const listener of notifier.keysRevoked) listener(payload);
          else for (const listener of notifier.secretsRotated) listener(payload);
        },
        () => {
          for (const listener of notifier.keysRevoked) listener(undefined);
          for (const listener of notifier.secretsRotated) listener(undefined);
        },
      ),
    );
    return notifier;
  }

  /** "<job id> <seq>" entries separated by commas: one notification per statement. */
  private dispatchStatus(payload: string): void {
    for (const entry of payload.split(',')) {
      const [jobId, seqText] = entry.split(' ');
      if (!jobId || !seqText) continue;
      const seq = Number(seqText);
      for (const listener of this.statuses) listener(jobId, seq);
    }
  }

  /** A JSON array of [job id, tenant, seq, type, data | null, at] entries (see migration 0005). */
  private dispatchChanges(payload: string): void {
    let entries: unknown;
    try {
      entries = JSON.parse(payload);
    } catch {
      entries = undefined;
    }
    if (!Array.isArray(entries)) {
      // Not ours to read: treat it as "something changed", so readers look again.
      for (const listener of this.changes) listener(undefined);
      return;
    }
    for (const entry of entries as Array<[string, string, number, JobEventType, Record<string, unknown> | null, string]>) {
      const [jobId, tenant, seq, type, data, at] = entry;
      const change: AnnouncedEvent = { jobId, tenant, seq, event: data === null ? undefined : { seq, type, data, at } };
      for (const listener of this.changes) listener(change);
    }
  }

  /**
   * After a lost LISTEN connection (notifications sent meanwhile are gone): wake every listener
   * so it re-reads what it may have missed. Status listeners get seq 0, queued listeners
   * `undefined`. (Change listeners hear of it through their own channel's resync.)
   */
  private resync(): void {
    for (const listener of this.statuses) listener('', 0);
    for (const listener of this.queued) listener(undefined);
    for (const listener of this.webhooksDue) listener();
  }

  /**
   * Calls `listener` with every new event of every job. The first subscriber starts
   * the LISTEN; a listener that subscribed before it was in place then gets `undefined`, since
   * changes made before that were not heard: re-read what you follow. (So it does after a lost
   * connection.)
   */
  onChange(listener: ChangeListener): () => void {
    this.changes.add(listener);
    const early = this.listeningToChanges === undefined;
    void this.listenToChanges().then(() => {
      if (early && this.changes.has(listener)) listener(undefined);
    });
    return () => this.changes.delete(listener);
  }

  /** Starts listening to the changed-jobs channel (once); resolves when the LISTEN is in place. */
  listenToChanges(): Promise<void> {
    const resync = () => {
      for (const each of this.changes) each(undefined);
    };
    this.listeningToChanges ??= this.driver.listen(`${this.schema}_events`, (payload) => this.dispatchChanges(payload), resync).then(
      (unlisten) => {
        this.unlisten.push(unlisten);
      },
      () => {
        // Tried again by the next subscriber; meanwhile readers fall back on their backstop.
        this.listeningToChanges = undefined;
      },
    );
    return this.listeningToChanges;
  }

  /** Calls `listener` for every status event of every job (cancels, takeovers, finishes). */
  onStatus(listener: StatusListener): () => void {
    this.statuses.add(listener);
    return () => this.statuses.delete(listener);
  }

  /** Calls `listener` whenever a webhook delivery becomes due. */
  onWebhookDue(listener: () => void): () => void {
    this.webhooksDue.add(listener);
    return () => this.webhooksDue.delete(listener);
  }

  /** Calls `listener` with the id of every API key revoked, in any process (`undefined` after a lost connection: forget them all). */
  onKeyRevoked(listener: KeyRevokedListener): () => void {
    this.keysRevoked.add(listener);
    return () => this.keysRevoked.delete(listener);
  }

  /** Calls `listener` with the name of every server secret rotated, in any process (`undefined` after a lost connection: any may have been). */
  onSecretRotated(listener: (name: string | undefined) => void): () => void {
    this.secretsRotated.add(listener);
    return () => this.secretsRotated.delete(listener);
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

  async close(): Promise<void> {
    this.changes.clear();
    this.statuses.clear();
    this.queued.clear();
    this.webhooksDue.clear();
    this.keysRevoked.clear();
    this.secretsRotated.clear();
    await this.listeningToChanges?.catch(() => {});
    await Promise.all(this.unlisten.splice(0).map((fn) => fn().catch(() => {})));
  }
}
