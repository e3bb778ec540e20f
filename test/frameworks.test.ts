/**
 * Waitless mounted in Express and Fastify as the README shows, over real HTTP on loopback:
 * behind a body parser it says what went wrong instead of "Malformed JSON".
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { getRequestListener } from '@hono/node-server';
import express from 'express';
import Fastify from 'fastify';
import { z } from 'zod';
import { createHttpHandler, createNodeListener, createWaitless, defineJob, type Waitless } from '../src/index.ts';
import { silentLogger } from './helpers.ts';

const echo = defineJob({ name: 'echo', input: z.object({ text: z.string() }), run: async ({ text }) => ({ text }) });

let waitless: Waitless;
before(async () => {
  waitless = await createWaitless({ jobs: [echo], database: 'memory://', logger: silentLogger });
});
after(async () => {
  await waitless.close();
});

async function listen(server: Server): Promise<{ url: string; close: () => Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const submit = (url: string) =>
  fetch(`${url}/jobs-api/v1/jobs/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input: { text: 'hi' } }) });

describe('Express', () => {
  it('with express.json() in front, a submit answers 400 naming the body parser, with its CORS headers', async () => {
    const handler = createHttpHandler(waitless, { auth: { mode: 'none', tenant: 'default' }, basePath: '/jobs-api', cors: { origin: 'https://app.example' } });
    const app = express();
    app.use(express.json());
    app.use('/jobs-api', createNodeListener(handler));
    const server = await listen(createServer(app));
    try {
      const response = await fetch(`${server.url}/jobs-api/v1/jobs/echo`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', origin: 'https://app.example' },
        body: JSON.stringify({ input: { text: 'hi' } }),
      });
      assert.equal(response.status, 400);
      assert.equal(response.headers.get('content-type'), 'application/problem+json');
      assert.equal(response.headers.get('access-control-allow-origin'), 'https://app.example', 'the page that sent it can read the answer');
      const problem = (await response.json()) as { type: string; detail: string };
      assert.equal(problem.type, '/problems/body-already-read');
      assert.match(problem.detail, /body parser .*express\.json\(\).*Mount Waitless before the body parser/);
    } finally {
      await server.close();
    }
  });

  it('through getRequestListener alone, the emptied body is told apart from malformed JSON too', async () => {
    const handler = createHttpHandler(waitless, { auth: { mode: 'none', tenant: 'default' }, basePath: '/jobs-api' });
    const listener = getRequestListener(handler);
    const app = express();
    app.use(express.json());
    app.use((req, res, next) => (req.originalUrl.startsWith('/jobs-api/') ? void listener(req, res) : next()));
    const server = await listen(createServer(app));
    try {
      const response = await submit(server.url);
      assert.equal(response.status, 400);
      assert.equal(((await response.json()) as { type: string }).type, '/problems/body-already-read');
    } finally {
      await server.close();
    }
  });

  it('mounted before the body parser, as the README shows, submits and reads jobs; the app keeps its own JSON routes', async () => {
    // The README's snippet.
    const handler = createHttpHandler(waitless, { auth: { mode: 'none', tenant: 'default' }, basePath: '/jobs-api' });
    const app = express();
    app.use('/jobs-api', createNodeListener(handler)); // before express.json()
    app.use(express.json());
    app.post('/echo', (req, res) => void res.json(req.body as unknown));

    const server = await listen(createServer(app));
    try {
      const response = await submit(server.url);
      assert.equal(response.status, 202, await response.clone().text());
      const { id } = (await response.json()) as { id: string };
      const job = await fetch(`${server.url}/jobs-api/v1/jobs/${id}`);
      assert.equal(job.status, 200);
      const own = await fetch(`${server.url}/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' });
      assert.deepEqual(await own.json(), { a: 1 });
    } finally {
      await server.close();
    }
  });
});

describe('createNodeListener', () => {
  it('mounted app-wide with basePath, hands every other request to next', async () => {
    const handler = createHttpHandler(waitless, { auth: { mode: 'none', tenant: 'default' }, basePath: '/jobs-api' });
    const app = express();
    app.use(createNodeListener(handler, { basePath: '/jobs-api' }));
    app.get('/jobs-api-docs', (_req, res) => void res.send('docs'));
    const server = await listen(createServer(app));
    try {
      assert.equal((await submit(server.url)).status, 202);
      assert.equal(await (await fetch(`${server.url}/jobs-api-docs`)).text(), 'docs', 'a path that only starts like basePath is not Waitless');
    } finally {
      await server.close();
    }
  });

  it('on plain node:http, without a framework', async () => {
    const server = await listen(createServer(createNodeListener(createHttpHandler(waitless, { auth: { mode: 'none', tenant: 'default' }, basePath: '/jobs-api' }))));
    try {
      assert.equal((await submit(server.url)).status, 202);
      const unknown = await fetch(`${server.url}/elsewhere`);
      assert.equal(unknown.status, 404);
      assert.equal(unknown.headers.get('content-type'), 'application/problem+json');
    } finally {
      await server.close();
    }
  });
});

describe('Fastify', () => {
  it('the README snippet: Waitless in a scope of its own reads its own bodies; the app keeps its JSON routes', async () => {
    const handler = createHttpHandler(waitless, { auth: { mode: 'none', tenant: 'default' }, basePath: '/jobs-api' });
    const fastify = Fastify();
    // The README's snippet.
    const listener = createNodeListener(handler);
    await fastify.register(async (scope) => {
      // Waitless reads its own bodies: no Fastify parser may touch them in this scope.
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
      scope.all('/jobs-api/*', (request, reply) => {
        reply.hijack();
        listener(request.raw, reply.raw);
      });
    });
    fastify.post('/echo', async (request) => request.body);

    await fastify.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(fastify.server.address() as AddressInfo).port}`;
    try {
      const response = await submit(url);
      assert.equal(response.status, 202, await response.clone().text());
      const { id } = (await response.json()) as { id: string };
      const job = await fetch(`${url}/jobs-api/v1/jobs/${id}`);
      assert.equal(job.status, 200);
      // Every method reaches Waitless: its own 404 for an endpoint it does not have.
      const removed = await fetch(`${url}/jobs-api/v1/webhooks/endpoints/00000000-0000-0000-0000-000000000000`, { method: 'DELETE' });
      assert.equal(removed.status, 404);
      assert.equal(removed.headers.get('content-type'), 'application/problem+json');
      const own = await fetch(`${url}/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' });
      assert.deepEqual(await own.json(), { a: 1 });
    } finally {
      await fastify.close();
    }
  });
});
