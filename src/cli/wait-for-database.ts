import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { unreachableReason } from '../store/unreachable.ts';


/** Where a postgres:// URL points, without its credentials. */
export function describeServer(database: string): string {
  try {
    const url = new URL(database);
    return `${url.hostname || 'localhost'}:${url.port || '5432'}`;
  } catch {
    return 'the configured address';
  }
}

/** Options of {@link waitForDatabase}. */
export interface WaitOptions {
  /** First delay between attempts. Default: `1000` ms. */
  initialDelayMs?: number;
  /** Longest delay: the delay doubles up to this. Default: `30_000` ms. */
  maxDelayMs?: number;
  /** Ends the wait: `open` is not tried again and the promise resolves to `undefined`. */
  signal?: AbortSignal;
}

/**
 * Runs `open` until PostgreSQL answers: a process started before its database (a container
 * that comes up first, a database restarting) waits and says so in the log each time, instead
 * of exiting. Any other failure (a wrong password, a schema newer than the code) is thrown.
 *
 * @returns what `open` returned, or `undefined` when `signal` aborted the wait.
 */
export async function waitForDatabase<T>(database: string, open: () => Promise<T>, logger: Logger, options: WaitOptions = {}): Promise<T | undefined> {
  const max = options.maxDelayMs ?? 30_000;
  let delay = options.initialDelayMs ?? 1000;
  for (;;) {
    if (options.signal?.aborted) return undefined;
    try {
      return await open();
    } catch (error) {
      const reason = unreachableReason(error);
      if (!reason) throw error;
      const seconds = delay / 1000;
      logger.warn({ retryInMs: delay, reason }, `PostgreSQL at ${describeServer(database)} is not reachable (${reason}); retrying in ${seconds} s`);
      try {
        await sleep(delay, undefined, { signal: options.signal });
      } catch {
        return undefined;
      }
      delay = Math.min(delay * 2, max);
    }
  }
}
