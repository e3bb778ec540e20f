import { type Duration, toMs } from './duration.ts';

/** When and how often a failed job runs again. */
export interface RetryPolicy {
  /** Total attempts, the first included. `1` means never retry. Default: `3`. */
  attempts?: number;
  /** Delay before the second attempt. Default: `"1s"`. */
  initialDelay?: Duration;
  /** Each further delay is the previous one times this. Default: `2`. */
  factor?: number;
  /** Upper bound for one delay. Default: `"5m"`. */
  maxDelay?: Duration;
}

export interface ResolvedRetryPolicy {
  attempts: number;
  initialDelayMs: number;
  factor: number;
  maxDelayMs: number;
}

export function resolveRetryPolicy(policy: RetryPolicy = {}): ResolvedRetryPolicy {
  const attempts = policy.attempts ?? 3;
  if (!Number.isInteger(attempts) || attempts < 1) throw new TypeError(`retry.attempts must be an integer ≥ 1, got ${attempts}`);
  const factor = policy.factor ?? 2;
  if (!(factor >= 1)) throw new TypeError(`retry.factor must be ≥ 1, got ${factor}`);
  return {
    attempts,
    factor,
    initialDelayMs: toMs(policy.initialDelay ?? '1s', 'retry.initialDelay'),
    maxDelayMs: toMs(policy.maxDelay ?? '5m', 'retry.maxDelay'),
  };
}

/**
 * Delay before the attempt after `attempt` (1-based), with "full jitter" between half and the
 * whole exponential value so that jobs failing together do not come back together.
 */
export function retryDelayMs(policy: ResolvedRetryPolicy, attempt: number, random: () => number = Math.random): number {
  const exponential = Math.min(policy.maxDelayMs, policy.initialDelayMs * policy.factor ** Math.max(0, attempt - 1));
  return Math.round(exponential / 2 + random() * (exponential / 2));
}
