import type { IncomingMessage, ServerResponse } from 'node:http';
import { getRequestListener } from '@hono/node-server';

/** A Node request as frameworks hand it over: Express adds `originalUrl` and may add `body`. */
type FrameworkRequest = IncomingMessage & { originalUrl?: string; body?: unknown };

/** Options of {@link createNodeListener}. */
export interface NodeListenerOptions {
  /**
   * The handler's `basePath`. Requests outside it are passed to `next` (Express), so the
   * listener may be mounted app-wide; without `next` they get the handler's 404. Default: `''`
   * (every request is the handler's).
   */
  basePath?: string;
}

/**
 * Turns a Waitless handler (from `createHttpHandler`) into a Node `(req, res, next?)` listener for
 * Express, Fastify (`reply.raw`) or `node:http`. Compared to `getRequestListener` from
 * `@hono/node-server`, it routes on the URL as the client sent it (Express's `originalUrl`, so
 * `app.use('/jobs-api', listener)` works). A body a parser in front of it already read arrives
 * empty, and the handler answers a clear 400 naming the parser (with its CORS headers, as every
 * answer of the handler), instead of "Malformed JSON".
 */
export function createNodeListener(
  handler: (request: Request) => Response | Promise<Response>,
  options: NodeListenerOptions = {},
): (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void) => void {
  const listener = getRequestListener(handler);
  const base = options.basePath?.replace(/\/$/, '') ?? '';
  return (incoming, res, next) => {
    const req = incoming as FrameworkRequest;
    const url = req.originalUrl ?? req.url ?? '/';
    if (base && url !== base && !url.startsWith(`${base}/`) && !url.startsWith(`${base}?`)) {
      if (next) return next();
    }
    req.url = url;
    void listener(req, res);
  };
}
