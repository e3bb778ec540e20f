import type { Hono } from 'hono';
import { z } from 'zod';
import type { Waitless } from '../engine.ts';
import { TERMINAL_WEBHOOK_EVENTS, WEBHOOK_EVENTS } from '../store/queries.ts';
import { isJobId } from '../store/job-store.ts';
import type { AuthEnv } from './auth.ts';
import { problem } from './problem.ts';
import { readJsonBody } from './body.ts';

/** Body of `POST /v1/webhooks/endpoints`. */
export const endpointRequestSchema = z.strictObject({
  url: z.string().min(1).max(2048),
  events: z.array(z.enum(WEBHOOK_EVENTS)).min(1).default([...TERMINAL_WEBHOOK_EVENTS]),
});
/** Body of `POST /v1/webhooks/secret/rotate`. */
export const rotateRequestSchema = z.strictObject({ overlapSeconds: z.number().int().min(0).max(7 * 86_400).default(86_400) });

/**
 * Webhook management: the tenant's signing secrets (with rotation), registered endpoints, and
 * every delivery of a job with each of its attempts, which can be sent again on demand.
 */
export function addWebhookRoutes(app: Hono<AuthEnv>, waitless: Waitless): void {
  const store = waitless.webhooks;

  app.get('/v1/webhooks/secret', async (c) => c.json({ secrets: await store.secrets(c.get('tenant')) }));

  app.post('/v1/webhooks/secret/rotate', async (c) => {
    const body = await readJsonBody(c, rotateRequestSchema, { allowEmpty: true });
    if (body instanceof Response) return body;
    const rotated = await store.rotateSecret(c.get('tenant'), body.overlapSeconds * 1000);
    return c.json(rotated, 201);
  });

  app.get('/v1/webhooks/endpoints', async (c) => c.json({ endpoints: await store.listEndpoints(c.get('tenant')) }));

  app.post('/v1/webhooks/endpoints', async (c) => {
    const body = await readJsonBody(c, endpointRequestSchema);
    if (body instanceof Response) return body;
    return c.json(await store.createEndpoint(c.get('tenant'), body.url, body.events), 201);
  });

  app.delete('/v1/webhooks/endpoints/:id', async (c) => {
    const id = c.req.param('id');
    if (!isJobId(id) || !(await store.deleteEndpoint(c.get('tenant'), id))) {
      return problem(c, 404, { type: '/problems/endpoint-not-found', title: 'Endpoint not found', detail: `No webhook endpoint with id "${id}".` });
    }
    return c.body(null, 204);
  });

  app.get('/v1/jobs/:id/deliveries', async (c) => {
    const id = c.req.param('id');
    const job = await waitless.get(id, { tenant: c.get('tenant') });
    if (!job) return problem(c, 404, { type: '/problems/job-not-found', title: 'Job not found', detail: `No job with id "${id}" exists for this API key.` });
    return c.json({ deliveries: await store.listForJob(c.get('tenant'), id) });
  });

  app.post('/v1/deliveries/:id/redeliver', async (c) => {
    const id = c.req.param('id');
    const delivery = isJobId(id) ? await store.redeliver(c.get('tenant'), id) : undefined;
    if (!delivery) return problem(c, 404, { type: '/problems/delivery-not-found', title: 'Delivery not found', detail: `No webhook delivery with id "${id}".` });
    return c.json(delivery, 202);
  });
}
