import type { Context } from 'hono';
import type { z } from 'zod';
import { type Problem, problem } from './problem.ts';

/**
 * The answer when another middleware (a body parser such as `express.json()`, or Fastify's own)
 * read the request body before Waitless could: the body arrives empty, and without this it
 * would look like malformed JSON.
 */
export const BODY_ALREADY_READ: Problem = {
  type: '/problems/body-already-read',
  title: 'Request body already read',
  detail:
    'The request has a body but it reached Waitless empty: a body parser in front of it (e.g. express.json()) read it first. ' +
    'Mount Waitless before the body parser, or leave its path out of the parser.',
};

/**
 * Reads a JSON body and checks it against `schema`. Answers the problem response to send
 * instead when the content type is wrong (415), the JSON is malformed (400) or the body does
 * not match (400, listing each issue).
 */
export async function readJsonBody<S extends z.ZodType>(
  c: Context,
  schema: S,
  options: { allowEmpty?: boolean; hint?: string } = {},
): Promise<z.output<S> | Response> {
  const text = await c.req.text();
  // Only a declared length is proof here: an empty chunked body is a legitimate empty body.
  if (text === '' && Number(c.req.header('content-length') ?? 0) > 0) return problem(c, 400, BODY_ALREADY_READ);
  let value: unknown = {};
  if (text.trim() !== '' || !options.allowEmpty) {
    const type = c.req.header('content-type') ?? '';
    if (!/^application\/json\s*(;|$)/i.test(type)) {
      return problem(c, 415, {
        type: '/problems/unsupported-media-type',
        title: 'Unsupported Media Type',
        detail: `Send the body as JSON with "Content-Type: application/json" (got "${type || 'none'}").`,
      });
    }
    try {
      value = JSON.parse(text);
    } catch (error) {
      return problem(c, 400, { type: '/problems/malformed-json', title: 'Malformed JSON', detail: `The body is not valid JSON: ${(error as Error).message}` });
    }
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    return problem(c, 400, {
      type: '/problems/invalid-request',
      title: 'Invalid request body',
      detail: [parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; '), options.hint].filter(Boolean).join('. '),
      errors: parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
    });
  }
  return parsed.data;
}
