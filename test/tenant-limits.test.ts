/**
 * Per-tenant limits over real HTTP: the priority cap of an API key, submits per second per
 * tenant (429 with Retry-After), event streams per key (429, the slot freed when a client
 * leaves), webhook endpoints per tenant, and the dispatcher's share of delivery slots per
 * tenant (one tenant's receiver held on a gate does not hold another tenant's webhooks back).
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { InvalidOptionError } from '../src/errors.ts';
import { Slots, TokenBuckets, type TenantLimits } from '../src/http/rate-limit.ts';
import { defineJob } from '../src/job/definition.ts';
import { BACKENDS, deferred, eventually, openEngine, startServer, type TestEngine, type TestServer } from './helpers.ts';

const note = defineJob({ name: 'note', input: z.object({ text: z.string() }), run: async ({ text }) => text });

/** A webhook receiver on loopback; `hold` keeps each request open until the gate opens. */
async function startReceiver(hold?: Promise<void>) {
  const received: string[] = [];
  const held = new Set<ServerResponse>();
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      received.push(body);
      if (!hold) return void res.writeHead(200).end('ok');
      held.add(res);
      void hold.then(() => {
        held.delete(res);
        res.writeHead(200).end('ok');
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    received,
    held,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('token buckets and slots', () => {
  it('refills a tenant’s bucket at its rate, says how long until the next token, and keeps tenants apart', () => {
    let now = 0;
    const buckets = new TokenBuckets(2, 3, () => now); // 2 a second, 3 at once
    assert.deepEqual([buckets.take('a'), buckets.take('a'), buckets.take('a')], [0, 0, 0]);
    assert.equal(buckets.take('a'), 500, 'the next token comes in 500 ms');
    assert.equal(buckets.take('b'), 0, 'another tenant has its own bucket');
    now += 500;
    assert.equal(buckets.take('a'), 0);
    now += 60_000;
    // A long pause fills the bucket to its size, no more.
    assert.deepEqual([buckets.take('a'), buckets.take('a'), buckets.take('a')], [0, 0, 0]);
    assert.ok(buckets.take('a') > 0);
  });

  it('counts slots per key and frees each once, however often its release is called', () => {
    const slots = new Slots(1);
    const release = slots.acquire('k');
    assert.ok(release);
    assert.equal(slots.acquire('k'), undefined);
    assert.ok(slots.acquire('other'));
    release();
    release();
    assert.equal(slots.count('k'), 0);
    assert.ok(slots.acquire('k'));
    assert.equal(slots.acquire('k'), undefined, 'a second release did not free a slot it no longer held');
  });

  it('sweeps the full buckets of many tenants at most once a refill period', () => {
    let now = 0;
    const buckets = new TokenBuckets(1, 2, () => now);
    // 10 000 tenants fill the map; each new one after that may sweep, but only once a refill period (2 s).
    for (let i = 0; i < 10_000; i++) buckets.take(`t${i}`);
    now = 1_000;
    assert.equal(buckets.take('late-1'), 0);
    assert.equal(buckets.take('t0'), 0, 'a tenant not swept keeps its bucket (one token left, refilled by one)');
    assert.equal(buckets.take('t0'), 0);
    assert.notEqual(buckets.take('t0'), 0, 'and it runs dry');
    now = 3_500;
    assert.equal(buckets.take('late-2'), 0, 'a sweep frees the tenants whose buckets are full again');
    assert.equal(buckets.take('t1'), 0);
    assert.equal(buckets.take('t1'), 0, 'a swept tenant starts with a full bucket');
  });

  it('refuses a webhook endpoint limit under 1', async () => {
    await assert.rejects(openEngine('pglite', { jobs: [], webhooks: { endpointsPerTenant: 0 } }), InvalidOptionError);
  });
});

// One backend: the submit rate and the stream slots are kept in memory, and the statements these
// tests reach run on PGlite in other files too (API keys in api.test.ts; endpoints and the
// delivery claim in webhooks.test.ts). PostgreSQL when it is among the backends, as production runs it.
const backends = BACKENDS.includes('postgres') ? (['postgres'] as const) : BACKENDS;

for (const backend of backends) {
  describe(`per-tenant limits on ${backend}`, () => {
    let engine: TestEngine;
    const servers: TestServer[] = [];
    const closers: Array<() => Promise<void> | void> = [];

    before(async () => {
      engine = await openEngine(backend, {
        jobs: [note],
        webhooks: { endpointsPerTenant: 2, concurrency: 2, tenantConcurrency: 1, retrySchedule: [], ssrf: { allow: ['127.0.0.1'] } },
      });
      engine.waitless.startWorker({ pollInterval: 50 });
    });
    after(async () => {
      for (const close of closers.splice(0)) await close();
      await Promise.all(servers.splice(0).map((s) => s.close()));
      await engine.close();
    });

    /** An API server asking for keys, with these limits. */
    async function keyedServer(tenantLimits?: TenantLimits) {
      const server = await startServer(engine.waitless, { auth: { mode: 'api-key', keys: engine.waitless.apiKeys }, tenantLimits });
      servers.push(server);
      return server;
    }
    const submit = (server: TestServer, token: string, body: unknown) =>
      fetch(`${server.url}/v1/jobs/note`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

    it('refuses a priority above the key’s cap with 403 naming the cap; a key capped below 0 submits at its cap', async () => {
      const server = await keyedServer();
      const capped = await engine.waitless.apiKeys.create('capped', { maxPriority: 5 });
      assert.equal(capped.maxPriority, 5);
      const over = await submit(server, capped.token, { input: { text: 'x' }, priority: 6 });
      assert.equal(over.status, 403);
      assert.match(over.headers.get('content-type') ?? '', /application\/problem\+json/);
      const problem = (await over.json()) as { type: string; maxPriority: number; priority: number; detail: string };
      assert.equal(problem.type, '/problems/priority-above-cap');
      assert.equal(problem.maxPriority, 5);
      assert.equal(problem.priority, 6);
      assert.match(problem.detail, /at most 5/);
      const atCap = await submit(server, capped.token, { input: { text: 'x' }, priority: 5 });
      assert.equal(atCap.status, 202);
      assert.equal(((await atCap.json()) as { priority: number }).priority, 5);

      // An admin key is capped like any other when given a cap; a key without one may set any priority.
      const admin = await engine.waitless.apiKeys.create('capped', { admin: true, maxPriority: 0 });
      assert.equal((await submit(server, admin.token, { input: { text: 'x' }, priority: 1 })).status, 403);
      const free = await engine.waitless.apiKeys.create('capped');
      assert.equal((await submit(server, free.token, { input: { text: 'x' }, priority: 1000 })).status, 202);

      const low = await engine.waitless.apiKeys.create('batch', { maxPriority: -10 });
      const lowJob = await submit(server, low.token, { input: { text: 'x' } });
      assert.equal(lowJob.status, 202);
      assert.equal(((await lowJob.json()) as { priority: number }).priority, -10);
      assert.equal((await engine.waitless.apiKeys.list()).find((k) => k.id === low.id)?.maxPriority, -10);

      await assert.rejects(engine.waitless.apiKeys.create('capped', { maxPriority: 1001 }), InvalidOptionError);
    });

    it('answers 429 with Retry-After once a tenant is over its submit rate, and only that tenant', async () => {
      // One token per 1000 s after a burst of 2: the third submit is over, however slow the machine.
      const server = await keyedServer({ submitsPerSecond: 0.001, submitBurst: 2 });
      const busy = await engine.waitless.apiKeys.create('busy');
      const calm = await engine.waitless.apiKeys.create('calm');
      assert.equal((await submit(server, busy.token, { input: { text: '1' } })).status, 202);
      assert.equal((await submit(server, busy.token, { input: { text: '2' } })).status, 202);
      const refused = await submit(server, busy.token, { input: { text: '3' } });
      assert.equal(refused.status, 429);
      assert.ok(Number(refused.headers.get('retry-after')) >= 1, `Retry-After: ${refused.headers.get('retry-after')}`);
      const problem = (await refused.json()) as { type: string; limit: number };
      assert.equal(problem.type, '/problems/rate-limited');
      assert.equal(problem.limit, 0.001);
      // Another tenant has its own bucket.
      assert.equal((await submit(server, calm.token, { input: { text: '1' } })).status, 202);
    });

    it('answers 429 past the open streams of a key, and frees a slot when a client disconnects', async () => {
      const server = await keyedServer({ streamsPerKey: 2 });
      const key = await engine.waitless.apiKeys.create('streamer');
      const other = await engine.waitless.apiKeys.create('streamer');
      const { job } = await engine.waitless.submit(note, { text: 'x' }, { tenant: 'streamer' });
      const open = async (token: string, path = '/v1/events') => {
        const controller = new AbortController();
        closers.push(() => controller.abort());
        const response = await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal });
        if (response.status === 200) await response.body!.getReader().read(); // the stream is open on the server
        return { response, controller };
      };
      const first = await open(key.token);
      assert.equal(first.response.status, 200);
      const second = await open(key.token);
      assert.equal(second.response.status, 200);
      const third = await open(key.token);
      assert.equal(third.response.status, 429);
      const problem = (await third.response.json()) as { type: string; limit: number };
      assert.equal(problem.type, '/problems/too-many-streams');
      assert.equal(problem.limit, 2);
      // A job's stream counts against the same key's slots.
      assert.equal((await open(key.token, `/v1/jobs/${job.id}/events`)).response.status, 429);
      // Another key of the same tenant has its own slots.
      assert.equal((await open(other.token)).response.status, 200);

      // The client goes away: its slot comes free.
      first.controller.abort();
      const reopened = await eventually(async () => {
        const attempt = await open(key.token);
        if (attempt.response.status === 200) return attempt;
        await attempt.response.body?.cancel();
        return undefined;
      }, 'a stream slot freed by the disconnect');
      assert.equal(reopened.response.status, 200);
    });

    it('refuses a webhook endpoint past the tenant’s limit with 409, and takes one again after a delete', async () => {
      const server = await keyedServer();
      const key = await engine.waitless.apiKeys.create('hooks');
      const create = (url: string) =>
        fetch(`${server.url}/v1/webhooks/endpoints`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ url }),
        });
      const first = await create('http://127.0.0.1:9/one');
      assert.equal(first.status, 201);
      assert.equal((await create('http://127.0.0.1:9/two')).status, 201);
      const refused = await create('http://127.0.0.1:9/three');
      assert.equal(refused.status, 409);
      const problem = (await refused.json()) as { type: string; limit: number; detail: string };
      assert.equal(problem.type, '/problems/too-many-endpoints');
      assert.equal(problem.limit, 2);
      assert.match(problem.detail, /already has 2 webhook endpoints/);
      // Another tenant is not affected.
      const elsewhere = await engine.waitless.webhooks.createEndpoint('hooks-other', 'http://127.0.0.1:9/one', ['job.completed']);
      assert.ok(elsewhere);
      const { id } = (await first.json()) as { id: string };
      const deleted = await fetch(`${server.url}/v1/webhooks/endpoints/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${key.token}` } });
      assert.equal(deleted.status, 204);
      assert.equal((await create('http://127.0.0.1:9/three')).status, 201);
    });

    it('delivers tenant B’s webhooks while tenant A’s receiver holds every request it gets', async () => {
      const gate = deferred();
      const hanging = await startReceiver(gate.promise);
      const prompt = await startReceiver();
      closers.push(async () => {
        gate.resolve();
        await hanging.close();
        await prompt.close();
      });
      // A's jobs finish first: their deliveries are due before B's, and more than the dispatcher's slots.
      for (let i = 0; i < 4; i++) await engine.waitless.submit(note, { text: `a${i}` }, { tenant: 'tenant-a', webhook: { url: hanging.url } });
      await eventually(() => hanging.held.size > 0, 'tenant A’s receiver holding a delivery');
      const { job } = await engine.waitless.submit(note, { text: 'b' }, { tenant: 'tenant-b', webhook: { url: prompt.url } });

      await eventually(() => prompt.received.some((body) => body.includes(job.id)), 'tenant B’s webhook delivered');
      // ...while A's receiver still holds what it got: A never had more than its one slot.
      assert.equal(hanging.held.size, 1, 'tenant A holds one delivery slot (tenantConcurrency 1), not both');
      gate.resolve();
      await eventually(() => hanging.received.length === 4, 'tenant A’s webhooks delivered once its receiver answers');
    });
  });
}
