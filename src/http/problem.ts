import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';

/** An RFC 9457 problem detail. Extra members carry machine-readable specifics. */
export interface Problem {
  /** A URI naming the problem type; relative URIs point into the API docs. */
  type?: string;
  title: string;
  detail?: string;
  [extension: string]: unknown;
}

/** Answers with `application/problem+json`; never an HTML page, never a stack trace. */
export function problem(c: Context, status: ContentfulStatusCode, body: Problem, headers: Record<string, string> = {}): Response {
  const payload = { type: body.type ?? 'about:blank', status, ...body, instance: new URL(c.req.url).pathname };
  return new Response(JSON.stringify(payload), {
    status,
    headers: { 'content-type': 'application/problem+json', 'cache-control': 'no-store', ...headers },
  });
}
