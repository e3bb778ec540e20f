import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Hono } from 'hono';
import { z } from 'zod';
import { createHttpHandler } from '../src/http/app.ts';
import { defineJob } from '../src/job/definition.ts';
import type { Job } from '../src/job/model.ts';
import { BACKENDS, eventually, openEngine, type TestEngine } from './helpers.ts';

const greet = defineJob({
  name: 'greet',
  input: z.object({ name: z.string() }),
  run: async ({ name }) => ({ greeting: `hello ${name}` }),
});

for (const backend of BACKENDS) {
  describe(`embedding the handler in another app on ${backend}`, () => {
    let engine: TestEngine;
    before(async () => {
      engine = await openEngine(backend, { jobs: [greet] });
      engine.waitless.startWorker({ pollInterval: 50 });
    });
    after(() => engine.close());

    it('serves the API under a path prefix, with links that include it', async () => {
      const handler = createHttpHandler(engine.waitless, { auth: { mode: 'none', tenant: 'default' }, basePath: '/jobs-api' });
      const outer = new Hono();
      outer.get('/', (c) => c.text('the host app'));
      outer.all('/jobs-api/*', (c) => handler(c.req.raw));

      const submitted = await outer.request('/jobs-api/v1/jobs/greet', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input: { name: 'Ada' } }),
      });
      assert.equal(submitted.status, 202);
      const location = submitted.headers.get('location')!;
      assert.match(location, /^\/jobs-api\/v1\/jobs\/[0-9a-f-]{36}$/);
      const done = await eventually(async () => {
        const job = (await (await outer.request(location)).json()) as Job;
        return job.done && job;
      }, 'job done');
      assert.deepEqual(done.result, { greeting: 'hello Ada' });
      assert.equal(await (await outer.request('/')).text(), 'the host app');
      assert.equal((await outer.request('/jobs-api/nothing-here')).headers.get('content-type'), 'application/problem+json');
    });
  });
}
