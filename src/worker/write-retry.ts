import { LeaseLostError } from '../job/errors.ts';

/** How {@link retryWrite} keeps trying. */
export interface WriteRetryOptions {
  /** Local time (ms) after which no new try starts: the lease would be gone by then. Read before each wait. */
  until: () => number;
  /** Which errors are worth another try. Default: every one (but a lost lease, which never is). */
  retryable?: (error: unknown) => boolean;
  /** Called before each wait, e.g. to log. */
  onRetry?: (error: unknown, delayMs: number) => void;
  /** No new try once it aborts (the handler was stopped). */
  signal?: AbortSignal;
}

/**
 * Runs a fenced write, trying again on a database error with backoff (100 ms doubling to 5 s)
 * for as long as the lease lasts. A write the fence refused ({@link LeaseLostError}) is never
 * tried again: the job is no longer ours. Throws the last error when it gives up. The write
 * must be safe to apply twice (a try whose answer was lost may have committed): each fenced
 * write of a worker is (see the write ids in the job store).
 */
export async function retryWrite<T>(write: () => Promise<T>, options: WriteRetryOptions): Promise<T> {
  for (let delay = 100; ; delay = Math.min(delay * 2, 5000)) {
    try {
      return await write();
    } catch (error) {
      if (error instanceof LeaseLostError || options.signal?.aborted) throw error;
      if (!(options.retryable?.(error) ?? true) || Date.now() + delay > options.until()) throw error;
      options.onRetry?.(error, delay);
      await sleep(delay);
    }
  }
}

const sleep = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms).unref();
  });
