/**
 * The submit contract: what `POST /v1/jobs/:name` accepts. The HTTP route validates with these
 * schemas, the OpenAPI document is generated from them, and the client's submit options are
 * checked against them at compile time. Browser-safe: nothing here imports a Node module.
 */
import { z } from 'zod';
import { DURATION_PATTERN } from '../job/duration.ts';

/** Body of `POST /v1/jobs/:id/tokens`, and the `token` member of a submit. */
export const jobTokenRequestSchema = z.strictObject({
  cancel: z.boolean().default(false),
  ttlSeconds: z.number().int().min(1).max(86_400).default(900),
});

/** Body of `POST /v1/jobs/:name`. */
export const submitRequestSchema = z.strictObject({
  input: z.unknown(),
  webhook: z.strictObject({ url: z.string().min(1).max(2048), events: z.array(z.string()).min(1).optional() }).optional(),
  token: jobTokenRequestSchema.optional(),
  priority: z.number().int().min(-1000).max(1000).optional(),
  runAt: z.iso.datetime({ offset: true }).optional(),
  delay: z.union([z.number().int().min(0), z.string().regex(DURATION_PATTERN)]).optional(),
  supersede: z.strictObject({ key: z.string().min(1).max(255), policy: z.enum(['supersede', 'reject', 'queue']).default('supersede') }).optional(),
  context: z.unknown().optional(),
  concurrencyKey: z.string().min(1).max(255).optional(),
});

/** A submit body as a caller writes it (defaults not yet applied). */
export type SubmitRequest = z.input<typeof submitRequestSchema>;

/** The `Idempotency-Key` header: 1–255 visible ASCII characters. */
export const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;
