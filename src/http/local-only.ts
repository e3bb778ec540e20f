import type { MiddlewareHandler } from 'hono';
import { problem } from './problem.ts';

/** The names a loopback server is reached by. */
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** The host of a `Host` header or an origin's URL, without its port, or undefined when it is not one. */
function hostnameOf(host: string): string | undefined {
  try {
    return new URL(`http://${host}`).hostname;
  } catch {
    return undefined;
  }
}

/** Whether `origin` is this server's own (the page the dashboard is served from): same host and port as `host`. */
const isOwnOrigin = (origin: string, host: string) => {
  try {
    const url = new URL(origin);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.host === new URL(`http://${host}`).host;
  } catch {
    return false;
  }
};

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * For an open API on loopback (`waitless dev`), which trusts whoever can reach it:
 * - the `Host` header must name loopback (`127.0.0.1`, `localhost`, `[::1]`, any port), else
 *   `421`: a page on another site whose name was rebound to 127.0.0.1 (DNS rebinding) reaches
 *   the port but cannot send a loopback Host;
 * - a state-changing request from a browser must come from this server's own pages (same host
 *   and port) or an origin in `allowedOrigins`, else `403`: without this a page elsewhere (on
 *   another site, or another local app on another port) can send a "simple" cross-origin
 *   request (a form, a `text/plain` POST), which CORS does not stop, e.g. to rotate the webhook
 *   secret. Clients that are not browsers send no `Origin` and pass.
 */
export function localOnly(allowedOrigins: readonly string[] = []): MiddlewareHandler {
  const allowed = new Set(allowedOrigins);
  return async (c, next) => {
    const host = c.req.header('host') ?? '';
    const hostname = hostnameOf(host);
    if (!hostname || !LOOPBACK_HOSTS.has(hostname)) {
      return problem(c, 421, {
        type: '/problems/not-local',
        title: 'Misdirected Request',
        detail: `This server answers only requests addressed to 127.0.0.1, localhost or [::1] (the Host header was "${host}").`,
      });
    }
    if (STATE_CHANGING.has(c.req.method)) {
      const origin = c.req.header('origin');
      const site = c.req.header('sec-fetch-site');
      const crossSite = origin !== undefined ? !isOwnOrigin(origin, host) && !allowed.has(origin) : site === 'cross-site';
      if (crossSite) {
        return problem(c, 403, {
          type: '/problems/cross-site',
          title: 'Forbidden',
          detail: `A page of another origin (${origin ?? 'another site'}) may not change anything here. Allow its origin with --cors-origin if it is yours.`,
        });
      }
    }
    await next();
  };
}
