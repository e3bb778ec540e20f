import type { Logger } from 'pino';
import type { ChildContext, JobContext, ProgressUpdate, StepContext, TokenUsage } from '../job/definition.ts';
import { runAll, runAllSettled } from '../job/structured.ts';
import { LeaseLostError } from '../job/errors.ts';
import type { Job } from '../job/model.ts';
import type { JobStore } from '../store/job-store.ts';

/** Above this many buffered characters, partial output is written at once instead of on the timer. */
const OUTPUT_FLUSH_CHARS = 16_384;

export interface ContextParams {
  job: Job;
  tenant: string;
  leaseToken: string;
  store: JobStore;
  signal: AbortSignal;
  log: Logger;
  /** How long partial output may sit in memory before it is written. */
  outputFlushMs: number;
  /** Called when a fenced write finds the lease gone; aborts the signal with the reason. */
  onLeaseLost: () => Promise<void>;
}

/** The handler's context plus what the worker needs to wind it down. */
export interface WorkerJobContext extends JobContext {
  /** Stops the output timer; buffered output is dropped (call `flush` first to keep it). */
  close(): void;
}

export function createJobContext(p: ContextParams): WorkerJobContext {
  let buffer = '';
  let timer: NodeJS.Timeout | undefined;
  // Writes go one after another so events keep the order the handler made them in.
  let chain: Promise<void> = Promise.resolve();

  const fenced = async (write: () => Promise<boolean>) => {
    if (!(await write())) {
      // Abort first, so a handler that catches this error finds the real reason on its signal.
      await p.onLeaseLost();
      throw new LeaseLostError(p.job.id);
    }
  };

  const enqueue = (step: () => Promise<void>): Promise<void> => {
    const next = chain.then(step);
    // The chain itself must keep going after a failed step; the caller still sees the error.
    chain = next.catch(() => {});
    return next;
  };

  const flush = (): Promise<void> => {
    clearTimeout(timer);
    timer = undefined;
    return enqueue(async () => {
      if (!buffer) return;
      const text = buffer;
      buffer = '';
      try {
        await fenced(() => p.store.appendOutput(p.job.id, p.leaseToken, text));
      } catch (error) {
        // A database error must not lose output: it goes back in front of what came since.
        if (!(error instanceof LeaseLostError)) buffer = text + buffer;
        throw error;
      }
    });
  };

  const flushInBackground = () => {
    flush().catch((error: unknown) => p.log.debug({ err: error }, 'partial output not written'));
  };

  /** Steps running in this attempt, so one name cannot run twice at once. */
  const runningSteps = new Set<string>();

  const step = async <T>(name: string, fn: (step: StepContext) => Promise<T>, signal: AbortSignal): Promise<T> => {
    if (typeof name !== 'string' || name.length === 0 || name.length > 200) throw new TypeError('A step name is 1–200 characters.');
    if (runningSteps.has(name)) throw new TypeError(`Step "${name}" is already running in this job: give each step its own name.`);
    signal.throwIfAborted();
    // Taken before the first await, so two siblings of ctx.all cannot both get past the check.
    runningSteps.add(name);
    try {
      const recorded = await p.store.getStep(p.job.id, name);
      // Done in an earlier run (or earlier in this one): its recorded result, without running it again.
      if (recorded?.status === 'completed') return recorded.result as T;
      const startedAt = new Date();
      await enqueue(() => fenced(() => p.store.startStep(p.job.id, p.leaseToken, name)));
      let result: T;
      try {
        result = await fn({
          name,
          idempotencyKey: `${p.job.id}:${name}`,
          signal,
          checkpoint: recorded?.checkpoint ?? undefined,
          saveCheckpoint: (value: unknown) => enqueue(() => fenced(() => p.store.saveStepCheckpoint(p.job.id, p.leaseToken, name, value, startedAt))),
        });
      } catch (error) {
        if (!signal.aborted) {
          const message = error instanceof Error ? error.message : String(error);
          await enqueue(() => fenced(() => p.store.failStep(p.job.id, p.leaseToken, name, message, startedAt))).catch(() => {});
        }
        throw error;
      }
      // The result goes through JSON now, so this run returns exactly what a replay would.
      const stored = (result === undefined ? null : JSON.parse(JSON.stringify(result))) as T;
      await enqueue(() => fenced(() => p.store.completeStep(p.job.id, p.leaseToken, name, stored, startedAt)));
      return stored;
    } finally {
      runningSteps.delete(name);
    }
  };

  const childOf = (signal: AbortSignal): ChildContext => ({
    signal,
    step: (name, fn) => step(name, fn, signal),
  });

  return {
    jobId: p.job.id,
    tenant: p.tenant,
    attempt: p.job.attempt,
    signal: p.signal,
    log: p.log,
    async progress(update: ProgressUpdate) {
      if (update.percent !== undefined && !(update.percent >= 0 && update.percent <= 100)) {
        throw new RangeError(`progress.percent must be between 0 and 100, got ${update.percent}`);
      }
      if (p.signal.aborted) throw p.signal.reason;
      // Output written before this progress report is stored before it, too.
      void flush().catch(() => {});
      await enqueue(() => fenced(() => p.store.recordProgress(p.job.id, p.leaseToken, update)));
    },
    write(chunk: string) {
      if (!chunk || p.signal.aborted) return;
      buffer += chunk;
      if (buffer.length >= OUTPUT_FLUSH_CHARS) flushInBackground();
      else timer ??= setTimeout(flushInBackground, p.outputFlushMs);
    },
    flush,
    step: (name, fn) => step(name, fn, p.signal),
    all: (tasks) => runAll(tasks, p.signal, childOf),
    allSettled: (tasks) => runAllSettled(tasks, p.signal, childOf),
    async recordUsage(usage: TokenUsage) {
      const count = (n: number | undefined, what: string) => {
        if (n !== undefined && !(Number.isSafeInteger(n) && n >= 0)) throw new RangeError(`usage.${what} must be a whole number ≥ 0, got ${n}`);
        return n ?? 0;
      };
      const promptTokens = count(usage.promptTokens, 'promptTokens');
      const completionTokens = count(usage.completionTokens, 'completionTokens');
      const totalTokens = count(usage.totalTokens, 'totalTokens') || promptTokens + completionTokens;
      await enqueue(() => fenced(() => p.store.recordUsage(p.job.id, p.leaseToken, { model: usage.model ?? 'unknown', promptTokens, completionTokens, totalTokens })));
    },
    close() {
      clearTimeout(timer);
      timer = undefined;
      buffer = '';
    },
  };
}
