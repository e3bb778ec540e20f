import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context } from 'hono';
import { METRICS_CONTENT_TYPE, renderMetrics } from '../observability/metrics.ts';
import type { Driver } from '../store/driver.ts';
import { problem } from './problem.ts';

// Digests of equal length, so the comparison tells nothing of the token's length either.
const digest = (text: string) => createHash('sha256').update(text).digest();
const sameText = (a: string, b: string) => timingSafeEqual(digest(a), digest(b));

/**
 * `GET /metrics`: the process's metrics as Prometheus text. With `bearerToken`, only a scraper
 * sending it (`Authorization: Bearer …`) is answered; without, anyone who reaches the port is.
 */
export function metricsRoute(driver: Driver, bearerToken?: string) {
  return async (c: Context) => {
    if (bearerToken !== undefined) {
      const sent = /^Bearer\s+(\S+)$/i.exec(c.req.header('authorization') ?? '')?.[1];
      if (sent === undefined || !sameText(sent, bearerToken)) {
        return problem(
          c,
          401,
          { type: '/problems/unauthorized', title: 'Unauthorized', detail: 'Send the metrics token as "Authorization: Bearer <token>" (WAITLESS_METRICS_TOKEN).' },
          { 'www-authenticate': 'Bearer realm="waitless-metrics"' },
        );
      }
    }
    return c.body(await renderMetrics(driver), 200, { 'content-type': METRICS_CONTENT_TYPE, 'cache-control': 'no-store' });
  };
}
