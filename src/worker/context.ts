import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Span } from '@opentelemetry/api';
import type { ChildContext, JobContext, JobLogLimits, ProgressUpdate, StepContext, TokenUsage } from '../job/definition.ts';
import { createAttemptLog } from './job-log.ts';
import { runAll, runAllSettled } from '../job/structured.ts';
import { LeaseLostError } from '../job/errors.ts';
import type { Job } from '../job/model.ts';
import type { JobStore } from '../store/job-store.ts';
import { storedBytes, toStoredJson } from '../store/json.ts';
import type { AttemptLimits } from './attempt-limits.ts';
import type { JobWriter } from './job-writes.ts';
import { metrics } from '../observability/metrics.ts';
import { ATTR, stepSpan, type TraceContext } from '../observability/tracing.ts';

export interface ContextParams {
  job: Job;
  tenant: string;
  leaseToken: string;
  store: JobStore;
  signal: AbortSignal;
  /** The process's logger, bound to the job; `ctx.log` lines are echoed to it. */
  log: Logger;
  /** How much of `ctx.log` the attempt keeps with the job. */
  logLimits: Required<JobLogLimits>;
  /** Output and progress go through it: buffered, written with every other running job's, fenced. */
  writer: JobWriter;
  /** Called when a fenced write finds the lease gone; aborts the signal with the reason. */
  onLeaseLost: () => Promise<void>;
  /** The attempt's `process` span, parent of the step spans. Default: the active context. */
  trace?: TraceContext;
  /** The attempt's tally against the job's size limits (it fails the job when one is passed). */
  limits: AttemptLimits;
  /**
   * Runs a read or a fenced write again while the database does not answer (a blip), for as
   * long as the lease lasts: a step's side effect is not repeated for want of its record.
   */
  retry: <T>(write: () => Promise<T>) => Promise<T>;
}

/** The handler's context plus what the worker needs to wind it down. */
export interface WorkerJobContext extends JobContext {
  /** Closes the attempt's log (saying how many lines were dropped), then waits until the buffered writes are written with the next round. */
  settle(): Promise<void>;
  /** Closes the attempt's log, saying how many lines were dropped, if any were. */
  endLog(): void;
  /** Drops buffered output (call `flush` or `settle` first to keep it); later writes are ignored. */
  close(): void;
}

export function createJobContext(p: ContextParams): WorkerJobContext {
  // Step, checkpoint and usage writes go one after another, after the output written before
  // them, so events keep the order the handler made them in.
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

  /**
   * A fenced statement of its own, after the output buffered before it; tried again through a
   * blip, under one write id, so a try whose answer was lost is not applied twice.
   */
  const direct = (write: (writeId: string) => Promise<boolean>) =>
    enqueue(async () => {
      const writeId = randomUUID();
      await fenced(() =>
        p.retry(async () => {
          await p.writer.flush();
          return write(writeId);
        }),
      );
    });

  /** Throws the limit the attempt passed (the job is failing with it) unless `ok`. */
  const within = (ok: boolean) => {
    if (!ok) throw p.limits.exceeded!;
  };

  let closed = false;
  const attemptLog = createAttemptLog({
    attempt: p.job.attempt,
    limits: p.logLimits,
    logger: p.log,
    write: (line) => p.writer.log(line),
    droppedByWriter: () => p.writer.droppedLogLines(),
    // A handler whose signal aborted (lease lost, cancelled, timed out) adds nothing more; its
    // lines already buffered are fenced by the lease token when they are written.
    open: () => !closed && !p.signal.aborted,
  });

  /** Steps running in this attempt, so one name cannot run twice at once. */
  const runningSteps = new Set<string>();

  const step = <T>(name: string, fn: (step: StepContext) => Promise<T>, signal: AbortSignal): Promise<T> =>
    stepSpan(name, p.trace, (span) => runStep(name, fn, signal, span));

  const runStep = async <T>(name: string, fn: (step: StepContext) => Promise<T>, signal: AbortSignal, span: Span): Promise<T> => {
    if (typeof name !== 'string' || name.length === 0 || name.length > 200) throw new TypeError('A step name is 1–200 characters.');
    if (runningSteps.has(name)) throw new TypeError(`Step "${name}" is already running in this job: give each step its own name.`);
    signal.throwIfAborted();
    // Taken before the first await, so two siblings of ctx.all cannot both get past the check.
    runningSteps.add(name);
    try {
      const recorded = await p.retry(() => p.store.getStep(p.job.id, name));
      // Done in an earlier run (or earlier in this one): its recorded result, without running it again.
      if (recorded?.status === 'completed') {
        span.setAttribute(ATTR.STEP_REPLAYED, true);
        return recorded.result as T;
      }
      const startedAt = new Date();
      within(p.limits.event());
      await direct((writeId) => p.store.startStep(p.job.id, p.leaseToken, name, writeId));
      let result: T;
      try {
        result = await fn({
          name,
          idempotencyKey: `${p.job.id}:${name}`,
          signal,
          checkpoint: recorded?.checkpoint ?? undefined,
          saveCheckpoint: async (value: unknown) => {
            within(p.limits.value(`The checkpoint of step "${name}"`, storedBytes(toStoredJson(value) ?? 'null')));
            // An upsert of the same value: applying it twice changes nothing.
            await direct(() => p.store.saveStepCheckpoint(p.job.id, p.leaseToken, name, value, startedAt));
          },
        });
      } catch (error) {
        if (!signal.aborted) {
          const message = error instanceof Error ? error.message : String(error);
          if (p.limits.event()) await direct((writeId) => p.store.failStep(p.job.id, p.leaseToken, name, message, startedAt, writeId)).catch(() => {});
        }
        throw error;
      }
      // The result goes through JSON now, so this run returns exactly what a replay would.
      const text = toStoredJson(result) ?? 'null';
      within(p.limits.value(`The result of step "${name}"`, storedBytes(text)) && p.limits.event());
      const stored = JSON.parse(text) as T;
      await direct((writeId) => p.store.completeStep(p.job.id, p.leaseToken, name, stored, startedAt, writeId));
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
    log: attemptLog.log,
    async progress(update: ProgressUpdate) {
      if (update.percent !== undefined && !(update.percent >= 0 && update.percent <= 100)) {
        throw new RangeError(`progress.percent must be between 0 and 100, got ${update.percent}`);
      }
      if (p.signal.aborted) throw p.signal.reason;
      // Queued behind step writes in flight; output written before it is stored before it.
      await enqueue(async () => {
        try {
          // Through a blip the report waits for its round to go again; a stopped handler stops waiting.
          await untilAborted(p.writer.progress(update), p.signal);
        } catch (error) {
          if (error instanceof LeaseLostError) await p.onLeaseLost();
          throw error;
        }
      });
    },
    write(chunk: string) {
      if (!chunk || p.signal.aborted) return;
      p.writer.write(chunk);
    },
    flush: () => p.writer.flush(),
    settle: () => {
      attemptLog.end();
      return p.writer.settle();
    },
    endLog: () => attemptLog.end(),
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
      const model = usage.model ?? 'unknown';
      await direct((writeId) => p.store.recordUsage(p.job.id, p.leaseToken, { model, promptTokens, completionTokens, totalTokens }, writeId));
      // Counted once written: usage a fenced-out attempt reports is not the job's.
      metrics.tokens(model, promptTokens, completionTokens);
    },
    close() {
      closed = true;
      p.writer.close();
    },
  };
}

/** The promise, or the signal's reason once it aborts, whichever comes first. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
