import type { Logger } from 'pino';
import type { Span } from '@opentelemetry/api';
import type { ChildContext, JobContext, JobLogLimits, ProgressUpdate, StepContext, TokenUsage } from '../job/definition.ts';
import { createAttemptLog } from './job-log.ts';
import { runAll, runAllSettled } from '../job/structured.ts';
import { LeaseLostError } from '../job/errors.ts';
import type { Job } from '../job/model.ts';
import type { JobStore } from '../store/job-store.ts';
import { toStoredValue } from '../store/json.ts';
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

  /** A fenced statement of its own, after the output buffered before it. */
  const direct = (write: () => Promise<boolean>) =>
    enqueue(async () => {
      await p.writer.flush();
      await fenced(write);
    });

  let closed = false;
  const attemptLog = createAttemptLog({
    attempt: p.job.attempt,
    limits: p.logLimits,
    logger: p.log,
    write: (line) => p.writer.log(line),
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
      const recorded = await p.store.getStep(p.job.id, name);
      // Done in an earlier run (or earlier in this one): its recorded result, without running it again.
      if (recorded?.status === 'completed') {
        span.setAttribute(ATTR.STEP_REPLAYED, true);
        return recorded.result as T;
      }
      const startedAt = new Date();
      await direct(() => p.store.startStep(p.job.id, p.leaseToken, name));
      let result: T;
      try {
        result = await fn({
          name,
          idempotencyKey: `${p.job.id}:${name}`,
          signal,
          checkpoint: recorded?.checkpoint ?? undefined,
          saveCheckpoint: (value: unknown) => direct(() => p.store.saveStepCheckpoint(p.job.id, p.leaseToken, name, value, startedAt)),
        });
      } catch (error) {
        if (!signal.aborted) {
          const message = error instanceof Error ? error.message : String(error);
          await direct(() => p.store.failStep(p.job.id, p.leaseToken, name, message, startedAt)).catch(() => {});
        }
        throw error;
      }
      // The result goes through JSON now, so this run returns exactly what a replay would.
      const stored = toStoredValue(result) as T;
      await direct(() => p.store.completeStep(p.job.id, p.leaseToken, name, stored, startedAt));
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
          await p.writer.progress(update);
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
      await direct(() => p.store.recordUsage(p.job.id, p.leaseToken, { model, promptTokens, completionTokens, totalTokens }));
      // Counted once written: usage a fenced-out attempt reports is not the job's.
      metrics.tokens(model, promptTokens, completionTokens);
    },
    close() {
      closed = true;
      p.writer.close();
    },
  };
}
