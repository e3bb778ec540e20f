import type { MiddlewareHandler } from 'hono';
import { problem } from './problem.ts';

/**
 * Answers `503` with `Retry-After` when a request outlives its deadline, so a burst after an
 * outage does not keep the server answering requests whose callers have long given up. A
 * long-poll's deadline starts after its `?wait=`; an event stream answers at once and is not
 * bounded (it ends with its job or its client). The work already under way is not undone: a
 * submit may still land, which its `Idempotency-Key` makes safe to send again.
 */
export function requestDeadline(deadlineMs: number, maxWaitSeconds: number): MiddlewareHandler {
  return async (c, next) => {
    const wait = Number(c.req.query('wait') ?? 0);
    const budget = deadlineMs + (Number.isFinite(wait) && wait > 0 ? Math.min(wait, maxWaitSeconds) * 1000 : 0);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<true>((resolve) => {
      timer = setTimeout(() => resolve(true), budget);
    });
    try {
      const late = await Promise.race([next().then(() => false as const), expired]);
      if (!late) return;
    } finally {
      clearTimeout(timer);
    }
    return problem(
      c,
      503,
      {
        type: '/problems/request-deadline',
        title: 'Service Unavailable',
        detail:
          c.req.method === 'POST' && !c.req.header('idempotency-key')
            ? `The request took longer than ${budget} ms and may still take effect: send an Idempotency-Key to repeat such a request safely.`
            : `The request took longer than ${budget} ms; try again shortly (a request with the same Idempotency-Key is safe to repeat).`,
      },
      { 'retry-after': '5' },
    );
  };
}
