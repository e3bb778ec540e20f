/**
 * Bounded under load: a request that cannot get a database connection within the pool's wait,
 * or that outlives its deadline, is answered 503 with Retry-After instead of queueing on
 * behind callers that have long given up.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { internals } from '../src/internals.ts';
import { defineJob } from '../src/job/definition.ts';
import { BACKENDS, deferred, openEngine, startServer, type TestEngine, type TestServer } from './helpers.ts';

/** Each backend's submit holds on a gate of its own. */
const gates = new Map(BACKENDS.map((backend) => [backend, deferred()]));
const gated = defineJob({
  name: 'gated-fallback',
  input: z.object({ gate: z.string() }),
  // The fallback runs inside the submit request: held, it holds the request.
  fallback: async ({ gate }) => {
    await gates.get(gate as (typeof BACKENDS)[number])?.promise;
    return 'provisional';
  },
  run: async () => 'done',
});
const plain = defineJob({ name: 'plain', input: z.object({}), run: async () => 'done' });

describe('a request that cannot get a database connection in time, on postgres', () => {
  let engine: TestEngine;
  let server: TestServer;
  before(async () => {
    engine = await openEngine('postgres', { jobs: [plain], maxConnections: 1, connectionTimeoutMs: 200 });
    server = await startServer(engine.waitless);
  });
  after(async () => {
    await server.close();
    await engine.close();
  });

  it('is answered 503 with Retry-After while every pooled connection is held, and served once one is free', async () => {
    const held = deferred();
    const holding = deferred();
    // The pool's only connection, held by a transaction until the test lets go.
    const transaction = internals(engine.waitless).driver.transaction(async () => {
      holding.resolve();
      await held.promise;
    });
    await holding.promise;
    try {
      const response = await fetch(`${server.url}/v1/jobs`);
      assert.equal(response.status, 503);
      assert.equal(response.headers.get('content-type'), 'application/problem+json');
      assert.equal(response.headers.get('retry-after'), '5');
      const problem = (await response.json()) as { type: string; detail: string };
      assert.equal(problem.type, '/problems/database-unavailable');
      assert.match(problem.detail, /no database connection came free in time/);
    } finally {
      held.resolve();
      await transaction;
    }
    assert.equal((await fetch(`${server.url}/v1/jobs`)).status, 200);
  });
});

for (const backend of BACKENDS) {
  describe(`a request past its deadline on ${backend}`, () => {
    let engine: TestEngine;
    let server: TestServer;
    before(async () => {
      engine = await openEngine(backend, { jobs: [gated, plain] });
      server = await startServer(engine.waitless, { requestTimeoutMs: 200 });
    });
    after(async () => {
      gates.get(backend)!.resolve();
      await server.close();
      await engine.close();
    });

    it('is answered 503 with Retry-After; a long-poll gets its wait on top; a repeat with the same Idempotency-Key finds the one job', async () => {
      const submit = () =>
        fetch(`${server.url}/v1/jobs/gated-fallback`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': `deadline-${backend}` }, body: JSON.stringify({ input: { gate: backend } }) });
      const late = await submit();
      assert.equal(late.status, 503);
      assert.equal(late.headers.get('retry-after'), '5');
      assert.equal(((await late.json()) as { type: string }).type, '/problems/request-deadline');

      // A long-poll that waits longer than the deadline is answered by its wait, not cut short.
      const { job } = await engine.waitless.submit(plain, {});
      const polled = await fetch(`${server.url}/v1/jobs/${job.id}?wait=1`);
      assert.equal(polled.status, 200);

      // The submit went on after its 503; the retry the 503 asks for gets the same job.
      gates.get(backend)!.resolve();
      const again = await submit();
      assert.equal(again.status, 202);
      const { jobs } = await engine.waitless.list({ name: 'gated-fallback' });
      assert.equal(jobs.length, 1);
      assert.equal(jobs[0]!.id, ((await again.json()) as { id: string }).id);
    });
  });
}
