import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { LeaseLostError } from '../job/errors.ts';
import type { JobStore } from '../store/job-store.ts';
import { storedBytes, toStoredJson } from '../store/json.ts';
import { unreachableReason } from '../store/unreachable.ts';
import type { JobWrite } from '../store/queries.ts';
import { detached } from '../observability/tracing.ts';
import type { AttemptLimits } from './attempt-limits.ts';

/** A write as the handler made it; it gets its round's id when a round takes it. */
type BufferedWrite = Omit<JobWrite, 'round'>;

/** Above this many buffered characters in one job, its output goes out at once instead of on the timer. */
const OUTPUT_FLUSH_CHARS = 16_384;

interface Waiter {
  resolve: () => void;
  reject: (error: unknown) => void;
  /** A progress report's: it waits through a database blip for its round to be sent again, instead of failing. */
  steady?: boolean;
}

interface JobBuffer {
  id: string;
  token: string;
  /** Writes not yet sent, in the order the handler made them (consecutive output merged). */
  items: BufferedWrite[];
  /**
   * A round the database did not answer (a blip): it goes again first, unchanged and under the
   * same round id, so that if it had in fact been applied it is not applied twice.
   */
  retry?: TakenWrites;
  /** Log lines the database refused (not a blip), dropped rather than sent again every round. */
  droppedLogs: number;
  chars: number;
  /** Settled when the items pending now are written (or refused). */
  waiters: Waiter[];
  /** The round that took this job's last items, while it runs. */
  writing?: Promise<void>;
  closed: boolean;
  onLeaseLost: () => void;
}

/** The writes of one job taken into a round. */
interface TakenWrites {
  buffer: JobBuffer;
  /** The round's id, kept when the round is sent again. */
  round: string;
  items: BufferedWrite[];
  chars: number;
  waiters: Waiter[];
}

/** What a running job's context writes through: output and progress, buffered and fenced. */
export interface JobWriter {
  /** Buffers a chunk of output; it goes out with the next round. */
  write(text: string): void;
  /** Buffers a log line (JSON text); it goes out with the next round, or is lost with the lease. */
  log(line: string): void;
  /** Buffers a progress report; resolves once it is stored, rejects with {@link LeaseLostError} when the lease is gone. */
  progress(update: unknown): Promise<void>;
  /** Writes everything this job buffered now, with every other job's buffered writes, and waits for it. */
  flush(): Promise<void>;
  /**
   * Waits until everything this job buffered is written by the next round on the timer,
   * without starting one: a finishing job's last output goes with every other job's, instead
   * of costing a statement of its own.
   */
  settle(): Promise<void>;
  /** Drops what is still buffered; later writes are ignored. */
  close(reason?: unknown): void;
  /** Log lines dropped because the database refused them. */
  droppedLogLines(): number;
}

/**
 * The output and progress of every job a worker runs, written together: one statement per
 * flush interval carries all of them, each job fenced by its own lease token, so the database
 * sees a few statements a second however many jobs stream and however fast. Rounds run one at
 * a time; writes made during a round go in the next.
 */
export class JobWriteBuffer {
  private readonly buffers = new Map<string, JobBuffer>();
  private readonly store: JobStore;
  private readonly flushMs: number;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;
  /** Another round was asked for while one ran. */
  private again = false;
  private stopped = false;

  constructor(store: JobStore, flushMs: number, log: Logger) {
    this.store = store;
    this.flushMs = flushMs;
    this.log = log;
  }

  /**
   * A writer for one attempt of a job, keyed by its lease token. With `limits`, output, log
   * lines and progress past the job's limits are not buffered (the limits fail the job).
   */
  open(id: string, token: string, onLeaseLost: () => void, limits?: AttemptLimits): JobWriter {
    const buffer: JobBuffer = { id, token, items: [], chars: 0, waiters: [], closed: false, onLeaseLost, droppedLogs: 0 };
    this.buffers.set(token, buffer);
    return {
      write: (text) => {
        if (buffer.closed || !text) return;
        const last = buffer.items.at(-1);
        // Consecutive output goes as one event: only a chunk that starts one counts as an event.
        if (limits && !limits.output(storedBytes(text), last?.kind !== 'output')) return;
        if (last?.kind === 'output') last.body += text;
        else buffer.items.push({ id, token, kind: 'output', body: text });
        buffer.chars += text.length;
        if (buffer.chars >= OUTPUT_FLUSH_CHARS) this.startRound();
        else this.schedule();
      },
      log: (line) => {
        if (buffer.closed || (limits && !limits.event())) return;
        buffer.items.push({ id, token, kind: 'log', body: line });
        this.schedule();
      },
      progress: (update) => {
        if (buffer.closed) return Promise.reject(new LeaseLostError(id));
        const body = toStoredJson(update) ?? 'null';
        if (limits && !limits.progress(storedBytes(body))) return Promise.reject(limits.exceeded!);
        buffer.items.push({ id, token, kind: 'progress', body });
        const written = this.waitFor(buffer, true);
        this.schedule();
        return written;
      },
      flush: () => this.flushJob(buffer, true),
      settle: () => this.flushJob(buffer, false),
      close: (reason) => {
        buffer.closed = true;
        buffer.items = [];
        buffer.chars = 0;
        const waiters = [...buffer.waiters.splice(0), ...(buffer.retry?.waiters ?? [])];
        buffer.retry = undefined;
        for (const waiter of waiters) waiter.reject(reason ?? new LeaseLostError(id));
        this.buffers.delete(token);
      },
      droppedLogLines: () => buffer.droppedLogs,
    };
  }

  /** Stops the timer once the worker has stopped: what is still buffered belongs to jobs that were handed back. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private waitFor(buffer: JobBuffer, steady = false): Promise<void> {
    return new Promise((resolve, reject) => buffer.waiters.push({ resolve, reject, steady }));
  }

  private async flushJob(buffer: JobBuffer, now: boolean): Promise<void> {
    for (;;) {
      if (buffer.items.length > 0 || buffer.retry) {
        const written = this.waitFor(buffer);
        if (now || this.stopped) this.startRound();
        else this.schedule();
        return written;
      }
      if (!buffer.writing) return;
      // Its last items are on their way: wait for them (a failed round puts output back, so look again).
      await buffer.writing.catch(() => {});
      if (buffer.items.length === 0 && !buffer.retry) return;
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.startRound();
    }, this.flushMs);
  }

  private startRound(): void {
    if (this.round) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = undefined;
    // A round (and the timer it may set) writes for every job: it runs outside the trace of the
    // job whose write started it.
    this.round = detached(() => this.writeRound()).finally(() => {
      this.round = undefined;
      if (this.again) {
        this.again = false;
        this.startRound();
      } else if ([...this.buffers.values()].some((b) => b.items.length > 0 || b.retry)) {
        this.schedule();
      }
    });
  }

  private async writeRound(): Promise<void> {
    const taken = [...this.buffers.values()]
      .filter((buffer) => buffer.items.length > 0 || buffer.retry)
      .map((buffer) => {
        const again = buffer.retry;
        if (again) {
          // Alone and unchanged: what came since waits for the next round. Waiters for
          // everything buffered go with it when nothing else is.
          buffer.retry = undefined;
          if (buffer.items.length === 0) again.waiters.push(...buffer.waiters.splice(0));
          return again;
        }
        const part: TakenWrites = { buffer, round: randomUUID(), items: buffer.items, chars: buffer.chars, waiters: buffer.waiters };
        buffer.items = [];
        buffer.chars = 0;
        buffer.waiters = [];
        return part;
      });
    if (taken.length === 0) return;
    let finished: () => void = () => {};
    const done = { promise: new Promise<void>((resolve) => (finished = resolve)) };
    for (const part of taken) part.buffer.writing = done.promise;
    try {
      const outcomes = await this.write(taken);
      taken.forEach((part, i) => {
        const outcome = outcomes[i]!;
        if (outcome === true) for (const waiter of part.waiters) waiter.resolve();
        else if (outcome === false) this.refused(part);
        else this.failed(part, outcome.error);
      });
    } finally {
      for (const part of taken) if (part.buffer.writing === done.promise) part.buffer.writing = undefined;
      finished();
    }
  }

  /**
   * One statement for every job; if it fails, each job again alone, so that one job's bad write
   * (a value the database refuses) cannot hold back the others. Per job: written, refused (the
   * lease is gone), or the error.
   */
  private async write(taken: TakenWrites[]): Promise<Array<boolean | { error: unknown }>> {
    try {
      const written = await this.store.writeJobs(taken.flatMap(roundWrites));
      return taken.map((part) => written.has(part.buffer.token));
    } catch (error) {
      // Each job alone would wait out an unanswering database again: all keep their writes for the next round.
      if (taken.length === 1 || unreachableReason(error) !== undefined) return taken.map(() => ({ error }));
      const outcomes: Array<boolean | { error: unknown }> = [];
      for (const part of taken) {
        try {
          outcomes.push((await this.store.writeJobs(roundWrites(part))).has(part.buffer.token));
        } catch (alone) {
          outcomes.push({ error: alone });
        }
      }
      return outcomes;
    }
  }

  /** The lease is gone: nothing of this job was written, and its handler is told. */
  private refused(part: TakenWrites): void {
    const error = new LeaseLostError(part.buffer.id);
    for (const waiter of part.waiters) waiter.reject(error);
    if (!part.buffer.closed) part.buffer.onLeaseLost();
  }

  /**
   * A database error. The database did not answer (a blip): the round goes again, unchanged,
   * with the next one; its progress reports wait for it, and a flush hears of the error (the
   * step or outcome behind it tries again). The database refused the writes: the output goes
   * back in front of what came since, so none is lost; log lines are dropped (and counted), not
   * refused again every round; a progress report fails to its caller, as a direct write would.
   */
  private failed(part: TakenWrites, error: unknown): void {
    const { buffer } = part;
    const blip = unreachableReason(error) !== undefined;
    if (blip && !buffer.closed) {
      buffer.retry = { ...part, waiters: part.waiters.filter((waiter) => waiter.steady) };
      for (const waiter of part.waiters) if (!waiter.steady) waiter.reject(error);
      this.log.warn({ err: error, jobId: buffer.id }, 'buffered job writes did not reach the database; sending them again with the next round');
      this.schedule();
      return;
    }
    if (!buffer.closed) {
      const output = part.items.filter((item) => item.kind === 'output');
      buffer.droppedLogs += part.items.filter((item) => item.kind === 'log').length;
      if (output.length > 0) {
        buffer.items = [...output, ...buffer.items];
        buffer.chars += part.chars;
        this.schedule();
      }
    }
    this.log.debug({ err: error, jobId: buffer.id }, 'buffered job writes failed; output kept for the next round, log lines dropped');
    for (const waiter of part.waiters) waiter.reject(error);
  }
}

/** A round's writes of one job, each carrying the round's id. */
const roundWrites = (part: TakenWrites): JobWrite[] => part.items.map((item) => ({ ...item, round: part.round }));
