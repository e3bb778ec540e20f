import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { z } from 'zod';
import { jobViewSchema, submitResponseSchema } from '../src/contract/responses.ts';
import { createHttpApp, type HttpOptions } from '../src/http/app.ts';
import { defineJob } from '../src/job/definition.ts';
import type { Job } from '../src/job/model.ts';
import { eventually, openEngine, startServer, type TestEngine, type TestServer } from './helpers.ts';

const greet = defineJob({
  name: 'greet',
  input: z.object({ name: z.string().min(1), times: z.number().int().min(1).default(1) }),
  run: async ({ name }) => ({ greeting: `hello ${name}` }),
});
const noop = defineJob({ name: 'noop.v2', input: z.object({}), run: async () => null });

type Operation = { operationId: string; parameters?: Array<{ name: string; in: string }>; requestBody?: unknown };
type Document = {
  openapi: string;
  servers: Array<{ url: string }>;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, { properties?: Record<string, unknown>; required?: string[] }> };
};

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];
/** The documented operations, as [METHOD, path template]. */
const operationsOf = (doc: Document) =>
  Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).filter((m) => METHODS.includes(m)).map((m) => [m.toUpperCase(), path] as const));

describe('the OpenAPI document', () => {
  let engine: TestEngine;
  let server: TestServer;
  const options: HttpOptions = { auth: { mode: 'none', tenant: 'default' }, dashboard: true, metrics: { bearerToken: 'scrape' } };
  before(async () => {
    engine = await openEngine('pglite', { jobs: [greet, noop], webhooks: { pollInterval: '50ms', ssrf: { allow: ['127.0.0.1'] } } });
    engine.waitless.startWorker({ pollInterval: 50 });
    server = await startServer(engine.waitless, options);
  });
  after(async () => {
    await server?.close();
    await engine?.close();
  });

  const fetchDocument = async (url = server.url) => {
    const response = await fetch(`${url}/v1/openapi.json`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type')!, /^application\/json/);
    return (await response.json()) as Document;
  };

  it('is a valid OpenAPI 3.1 document', async () => {
    const doc = await fetchDocument();
    const validator = new Validator();
    const result = await validator.validate(doc);
    assert.deepEqual(result.errors, undefined, JSON.stringify(result.errors, null, 2));
    assert.equal(result.valid, true);
    assert.equal(validator.version, '3.1');
  });

  it('documents every route of the app', async () => {
    const doc = await fetchDocument();
    const documented = operationsOf(doc).map(([method, path]) => `${method} ${path.replace(/\{[^}]+\}/g, 'x')}`);
    const app = createHttpApp(engine.waitless, options);
    // Middleware (`use`) is registered as method ALL; the dashboard is a page beside the API, not part of it.
    const routes = app.routes.filter((r) => r.method !== 'ALL' && !r.path.startsWith('/dashboard'));
    assert.ok(routes.length >= 15, `only ${routes.length} routes found`);
    for (const route of routes) {
      const pattern = new RegExp(`^${route.method} ${route.path.replace(/:[^/]+/g, '[^/]+')}$`);
      assert.ok(
        documented.some((op) => pattern.test(op)),
        `${route.method} ${route.path} is not documented`,
      );
    }
    // Each job has its own submit operation, whose body carries that job's input schema.
    const body = doc.components.schemas['Submit_greet']!;
    assert.deepEqual(body.required, ['input']);
    const input = body.properties!['input'] as { properties: Record<string, unknown>; required: string[] };
    assert.deepEqual(Object.keys(input.properties), ['name', 'times']);
    assert.deepEqual(input.required, ['name']);
    assert.ok(doc.paths['/v1/jobs/noop.v2']?.['post']);
  });

  it('answers every documented operation on a real server', async () => {
    const doc = await fetchDocument();
    const post = (path: string, body: unknown) =>
      fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    // Real resources for every id the paths take: a job (done, with a webhook delivery), an endpoint.
    const endpoint = (await (await post('/v1/webhooks/endpoints', { url: `${server.url}/healthz` })).json()) as { id: string };
    const submitted = await post('/v1/jobs/greet', { input: { name: 'Ada' } });
    assert.equal(submitted.status, 202);
    const job = submitResponseSchema.strict().parse(await submitted.json());
    const delivery = await eventually(async () => (await engine.waitless.webhooks.listForJob('default', job.id))[0], 'delivery written');

    const bodies: Record<string, unknown> = {
      submit_greet: { input: { name: 'Ada' } },
      submit_noop_v2: { input: {} },
      createWebhookEndpoint: { url: `${server.url}/healthz` },
    };
    const ids: Record<string, string> = { deleteWebhookEndpoint: endpoint.id, redeliver: delivery.id };
    // Deleting goes last, so the operations before it find what they name.
    const operations = operationsOf(doc).sort(([a], [b]) => Number(a === 'DELETE') - Number(b === 'DELETE'));
    assert.ok(operations.length >= 18);
    for (const [method, template] of operations) {
      const operation = doc.paths[template]![method.toLowerCase()]!;
      const path = template.replace('{id}', ids[operation.operationId] ?? job.id);
      const controller = new AbortController();
      const init: RequestInit = { method, signal: controller.signal };
      if (operation.requestBody) {
        init.headers = { 'content-type': 'application/json' };
        init.body = JSON.stringify(bodies[operation.operationId] ?? {});
      }
      const response = await fetch(`${server.url}${path}`, init);
      const type = response.headers.get('content-type') ?? '';
      // A stream that stays open (the tenant's) is answered once its headers arrive.
      const text = type.startsWith('text/event-stream') && template === '/v1/events' ? '' : await response.text();
      controller.abort();
      assert.notEqual(response.status, 405, `${method} ${path}`);
      assert.ok(response.status < 500, `${method} ${path} answered ${response.status}: ${text}`);
      if (response.status === 404) {
        // A resource that is not there is an answer; the router not knowing the path is not.
        assert.notEqual((JSON.parse(text) as { type: string }).type, 'about:blank', `${method} ${path} is not routed`);
      }
    }
  });

  it('describes the job exactly as the API sends it', async () => {
    const submitted = await fetch(`${server.url}/v1/jobs/greet`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input: { name: 'Lin' } }) });
    const { id } = (await submitted.json()) as Job;
    const done = await eventually(async () => {
      const job = (await (await fetch(`${server.url}/v1/jobs/${id}`)).json()) as Job;
      return job.done && job;
    }, 'job done');
    // strict(): a member the schema does not name fails, so the document cannot miss one.
    assert.deepEqual(jobViewSchema.strict().parse(done).result, { greeting: 'hello Lin' });
  });

  it('is public under API keys, and names the base path as its server', async () => {
    const secured = await startServer(engine.waitless, { basePath: '/jobs-api', auth: { mode: 'api-key', keys: engine.waitless.apiKeys } });
    try {
      const doc = await fetchDocument(`${secured.url}/jobs-api`);
      assert.deepEqual(doc.servers, [{ url: '/jobs-api' }]);
      assert.equal((await fetch(`${secured.url}/jobs-api/v1/jobs`)).status, 401);
    } finally {
      await secured.close();
    }
  });
});
