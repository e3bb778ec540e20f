/**
 * The person's side of the API: instant fallback answers, job-scoped browser tokens, the
 * admin's recovery, the tenant-wide stream dashboards follow, and CORS.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { WaitlessApiError, WaitlessClient } from '../src/client/index.ts';
import { defineJob } from '../src/job/definition.ts';
import type { Job, JobEvent } from '../src/job/model.ts';
import { BACKENDS, createGates, eventually, finished, openEngine, readSse, startServer, type TestEngine, type TestServer } from './helpers.ts';

/** Gates by key, so a test decides when a handler may finish (each backend's keys start with its name). */
const { gate, releaseAll } = createGates();

/** Scores answers by rule at once; the "AI" answer comes when the test opens the gate. */
const assess = defineJob({
  name: 'assess',
  input: z.object({ answers: z.array(z.boolean()), gate: z.string().optional() }),
  retry: { attempts: 1 },
  fallback: ({ answers }) => ({ score: answers.filter(Boolean).length, source: 'rules' }),
  async run({ answers, gate: key }, ctx) {
    await ctx.progress({ percent: 20, stage: 'thinking' });
    if (key) await gate(key).promise;
    return { score: answers.filter(Boolean).length * 10, source: 'ai' };
  },
});

const brokenFallback = defineJob({
  name: 'broken-fallback',
  input: z.object({}),
  fallback: () => {
    throw new Error('rules table missing');
  },
  run: async () => ({ ok: true }),
});

/** Fails while `failing` holds, succeeds after: the admin recovers it in between. */
const failing = new Set<string>();
const flaky = defineJob({
  name: 'flaky',
  input: z.object({ key: z.string() }),
  retry: { attempts: 1 },
  async run({ key }) {
    if (failing.has(key)) throw new Error(`upstream refused ${key}`);
    return { key, ok: true };
  },
});

type JobView = Job & { links: { self: string }; token?: { token: string; expiresAt: string } };
const jsonPost = (body: unknown, headers: Record<string, string> = {}) => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});

for (const backend of BACKENDS) {
  describe(`the person's side of the API on ${backend}`, () => {
    let engine: TestEngine;
    let server: TestServer;
    let serviceKey: string;
    let adminKey: string;
    let otherTenantKey: string;
    const auth = (key: string) => ({ authorization: `Bearer ${key}` });
    const submit = async (name: string, input: unknown, key = serviceKey, extra: Record<string, unknown> = {}) => {
      const response = await fetch(`${server.url}/v1/jobs/${name}`, jsonPost({ input, ...extra }, auth(key)));
      assert.equal(response.status, 202, await response.clone().text());
      return (await response.json()) as JobView;
    };

    before(async () => {
      engine = await openEngine(backend, { jobs: [assess, brokenFallback, flaky] });
      engine.waitless.startWorker({ pollInterval: 200 });
      server = await startServer(engine.waitless, { auth: { mode: 'api-key', keys: engine.waitless.apiKeys }, sseHeartbeatMs: 200, cors: { origin: 'http://app.test' } });
      serviceKey = (await engine.waitless.apiKeys.create('acme')).token;
      adminKey = (await engine.waitless.apiKeys.create('acme', { admin: true })).token;
      otherTenantKey = (await engine.waitless.apiKeys.create('globex', { admin: true })).token;
    });
    after(async () => {
      releaseAll();
      await server.close();
      await engine.close();
    });

    it('returns the fallback in the 202 and the status while the job runs, then the real result in its place', async () => {
      const accepted = await submit('assess', { answers: [true, true, false], gate: `${backend}-fallback` });
      assert.deepEqual(accepted.fallback, { result: { score: 2, source: 'rules' }, provisional: true });
      assert.equal(accepted.result, undefined);

      const running = await eventually(async () => {
        const job = (await (await fetch(`${server.url}/v1/jobs/${accepted.id}`, { headers: auth(serviceKey) })).json()) as JobView;
        return job.status === 'running' && job.progress && job;
      }, 'job running');
      assert.deepEqual(running.fallback, accepted.fallback);

      gate(`${backend}-fallback`).resolve();
      const done = await finished(engine.waitless, accepted.id, 15_000, 'acme').then(() =>
        fetch(`${server.url}/v1/jobs/${accepted.id}`, { headers: auth(serviceKey) }).then((r) => r.json() as Promise<JobView>),
      );
      assert.equal(done.status, 'completed');
      assert.deepEqual(done.result, { score: 20, source: 'ai' });
      assert.equal(done.fallback, undefined, 'the real result replaces the fallback');

      // A replayed submit shows the stored fallback, computed once.
      const key = { 'idempotency-key': 'fallback-replay' };
      const first = (await (await fetch(`${server.url}/v1/jobs/assess`, jsonPost({ input: { answers: [true], gate: `${backend}-replay` } }, { ...auth(serviceKey), ...key }))).json()) as JobView;
      const replay = await fetch(`${server.url}/v1/jobs/assess`, jsonPost({ input: { answers: [true], gate: `${backend}-replay` } }, { ...auth(serviceKey), ...key }));
      assert.equal(replay.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(((await replay.json()) as JobView).fallback, first.fallback);
      gate(`${backend}-replay`).resolve();
    });

    it('submits the job without a fallback when the fallback throws', async () => {
      const job = await submit('broken-fallback', {});
      assert.equal(job.fallback, undefined);
      assert.equal((await finished(engine.waitless, job.id, 15_000, 'acme')).status, 'completed');
    });

    it('lets a job token read its own job and nothing else: 404 for another job, 403 elsewhere, 401 expired or forged', async () => {
      const mine = await submit('assess', { answers: [true], gate: `${backend}-tokens` }, serviceKey, { token: {} });
      const theirs = await submit('assess', { answers: [false], gate: `${backend}-tokens` });
      assert.ok(mine.token?.token.startsWith('wlt_'));
      const token = mine.token!.token;

      const own = await fetch(`${server.url}/v1/jobs/${mine.id}`, { headers: auth(token) });
      assert.equal(own.status, 200);
      assert.equal(((await own.json()) as JobView).id, mine.id);

      // EventSource cannot send headers: the token also works as ?access_token=.
      const stream = await fetch(`${server.url}/v1/jobs/${mine.id}/events?access_token=${token}`);
      assert.equal(stream.status, 200);
      const { events } = await readSse(stream, (e) => e.event === 'progress');
      assert.ok(events.some((e) => (JSON.parse(e.data) as JobEvent).type === 'progress'));

      const other = await fetch(`${server.url}/v1/jobs/${theirs.id}`, { headers: auth(token) });
      assert.equal(other.status, 404);
      assert.equal(other.headers.get('content-type'), 'application/problem+json');
      const otherEvents = await fetch(`${server.url}/v1/jobs/${theirs.id}/events`, { headers: auth(token) });
      assert.equal(otherEvents.status, 404);

      for (const [method, path] of [
        ['GET', '/v1/jobs'],
        ['GET', '/v1/events'],
        ['GET', '/v1/webhooks/secret'],
        ['POST', `/v1/jobs/${mine.id}/tokens`],
        ['GET', `/v1/jobs/${mine.id}/deliveries`],
        ['POST', `/v1/jobs/${mine.id}/cancel`],
      ] as const) {
        const response = await fetch(`${server.url}${path}`, { method, headers: auth(token) });
        assert.equal(response.status, 403, `${method} ${path}`);
        assert.equal(response.headers.get('content-type'), 'application/problem+json');
      }

      const forged = token.slice(0, -2) + (token.endsWith('AA') ? 'BB' : 'AA');
      const forgedResponse = await fetch(`${server.url}/v1/jobs/${mine.id}`, { headers: auth(forged) });
      assert.equal(forgedResponse.status, 401);

      const shortLived = await engine.waitless.createJobToken(mine.id, { tenant: 'acme', ttl: '1s' });
      assert.ok(shortLived);
      await eventually(() => Date.now() > Date.parse(shortLived.expiresAt), 'token expiry', 3000);
      const expired = await fetch(`${server.url}/v1/jobs/${mine.id}`, { headers: auth(shortLived.token) });
      assert.equal(expired.status, 401);
      assert.match(((await expired.json()) as { detail: string }).detail, /expired/);

      // A key of another tenant cannot mint a token for this job.
      const foreign = await fetch(`${server.url}/v1/jobs/${mine.id}/tokens`, jsonPost({}, auth(otherTenantKey)));
      assert.equal(foreign.status, 404);
      gate(`${backend}-tokens`).resolve();
    });

    it('lets a token minted with cancel cancel its job', async () => {
      const job = await submit('assess', { answers: [true], gate: `${backend}-cancel-token` });
      const minted = await fetch(`${server.url}/v1/jobs/${job.id}/tokens`, jsonPost({ cancel: true, ttlSeconds: 60 }, auth(serviceKey)));
      assert.equal(minted.status, 201);
      const { token, scopes } = (await minted.json()) as { token: string; scopes: string[] };
      assert.deepEqual(scopes, ['read', 'cancel']);
      const cancelled = await fetch(`${server.url}/v1/jobs/${job.id}/cancel`, { method: 'POST', headers: auth(token) });
      assert.equal(cancelled.status, 200);
      assert.equal(((await cancelled.json()) as JobView).status, 'cancelled');
      gate(`${backend}-cancel-token`).resolve();
    });

    it('recovers a failed job to queued with its history kept, and it completes; only admins may', async () => {
      failing.add(`${backend}-r1`);
      const job = await submit('flaky', { key: `${backend}-r1` });
      assert.equal((await finished(engine.waitless, job.id, 15_000, 'acme')).status, 'failed');

      const asService = await fetch(`${server.url}/v1/jobs/${job.id}/recover`, { method: 'POST', headers: auth(serviceKey) });
      assert.equal(asService.status, 403);
      const asOtherTenant = await fetch(`${server.url}/v1/jobs/${job.id}/recover`, { method: 'POST', headers: auth(otherTenantKey) });
      assert.equal(asOtherTenant.status, 404);

      failing.delete(`${backend}-r1`);
      const recovered = await fetch(`${server.url}/v1/jobs/${job.id}/recover`, { method: 'POST', headers: auth(adminKey) });
      assert.equal(recovered.status, 200);
      const view = (await recovered.json()) as JobView;
      assert.equal(view.status, 'queued');
      assert.equal(view.maxAttempts, 2, 'a fresh attempt budget on top of the attempt already spent');

      const done = await finished(engine.waitless, job.id, 15_000, 'acme');
      assert.equal(done.status, 'completed');
      assert.deepEqual(done.result, { key: `${backend}-r1`, ok: true });
      const events = await engine.waitless.events(job.id, 0, { tenant: 'acme' });
      const statuses = events.filter((e) => e.type === 'status').map((e) => e.data.status);
      assert.deepEqual(statuses, ['queued', 'running', 'failed', 'queued', 'running', 'completed']);
      assert.deepEqual(
        events.find((e) => e.data.recovered === true)?.data,
        { status: 'queued', reason: 'recovered', recovered: true, from: 'failed', attempt: 1, maxAttempts: 2 },
      );

      const again = await fetch(`${server.url}/v1/jobs/${job.id}/recover`, { method: 'POST', headers: auth(adminKey) });
      assert.equal(again.status, 409);
      assert.equal(((await again.json()) as { type: string }).type, '/problems/not-recoverable');
    });

    it('recovers a stuck running job: the worker holding it is fenced out and a new attempt finishes it', async () => {
      const job = await submit('assess', { answers: [true, true], gate: `${backend}-stuck` });
      await eventually(async () => (await engine.waitless.get(job.id, { tenant: 'acme' }))?.status === 'running', 'job running');
      const recovered = await engine.waitless.recover(job.id, { tenant: 'acme' });
      assert.equal(recovered?.status, 'queued');
      // The stuck attempt is released only now; its result must not land over the recovery.
      gate(`${backend}-stuck`).resolve();
      const done = await finished(engine.waitless, job.id, 15_000, 'acme');
      assert.equal(done.status, 'completed');
      assert.equal(done.attempt, 2);
      const completions = (await engine.waitless.events(job.id, 0, { tenant: 'acme' })).filter((e) => e.data.status === 'completed');
      assert.equal(completions.length, 1);
    });

    it('lets a service mint a token with the client SDK, and a page watch its job to the end with it', async () => {
      const service = new WaitlessClient({ baseUrl: server.url, apiKey: serviceKey });
      const job = await service.submit('assess', { answers: [true, false, true], gate: `${backend}-sdk` });
      const { token } = await service.createJobToken(job.id, { ttlSeconds: 60 });
      const page = new WaitlessClient({ baseUrl: server.url, apiKey: token });
      const seen: string[] = [];
      const watching = (async () => {
        for await (const event of page.watch(job.id)) seen.push(event.type === 'status' ? String(event.data.status) : event.type);
      })();
      await eventually(() => seen.includes('progress'), 'progress seen through the token');
      gate(`${backend}-sdk`).resolve();
      await watching;
      assert.deepEqual(seen.filter((s) => s !== 'progress'), ['queued', 'running', 'completed']);
      await assert.rejects(page.cancel(job.id), (e: unknown) => e instanceof WaitlessApiError && e.status === 403);
      await assert.rejects(page.list(), (e: unknown) => e instanceof WaitlessApiError && e.status === 403);

      failing.add(`${backend}-sdk`);
      const failed = await service.submit('flaky', { key: `${backend}-sdk` });
      await finished(engine.waitless, failed.id, 15_000, 'acme');
      failing.delete(`${backend}-sdk`);
      await assert.rejects(service.recover(failed.id), (e: unknown) => e instanceof WaitlessApiError && e.status === 403);
      const admin = new WaitlessClient({ baseUrl: server.url, apiKey: adminKey });
      assert.equal((await admin.recover(failed.id)).status, 'queued');
      assert.deepEqual(await admin.result(failed.id), { key: `${backend}-sdk`, ok: true });
    });

    it('streams every change of the tenant’s jobs, and no other tenant’s, on GET /v1/events', async () => {
      const response = await fetch(`${server.url}/v1/events`, { headers: auth(adminKey) });
      assert.equal(response.status, 200);
      const foreign = await submit('assess', { answers: [false] }, otherTenantKey);
      const own = await submit('assess', { answers: [true] });
      const { events } = await readSse(response, (e) => e.event === 'job' && (JSON.parse(e.data) as Job).id === own.id && (JSON.parse(e.data) as Job).status === 'completed');
      const jobs = events.filter((e) => e.event === 'job').map((e) => JSON.parse(e.data) as Job);
      assert.ok(jobs.every((j) => j.id !== foreign.id), 'another tenant’s job leaked into the stream');
      const last = jobs.filter((j) => j.id === own.id).at(-1)!;
      assert.equal(last.status, 'completed');
      assert.equal(last.input, undefined, 'the stream carries summaries, not payloads');
    });

    it('tells a key its tenant and role on GET /v1/whoami; a job token and a missing key are refused', async () => {
      assert.deepEqual(await new WaitlessClient({ baseUrl: server.url, apiKey: serviceKey }).whoami(), { tenant: 'acme', role: 'service' });
      assert.deepEqual(await new WaitlessClient({ baseUrl: server.url, apiKey: otherTenantKey }).whoami(), { tenant: 'globex', role: 'admin' });
      const job = await submit('assess', { answers: [true] });
      const { token } = (await (await fetch(`${server.url}/v1/jobs/${job.id}/tokens`, jsonPost({}, auth(serviceKey)))).json()) as { token: string };
      const asToken = await fetch(`${server.url}/v1/whoami`, { headers: auth(token) });
      assert.equal(asToken.status, 403);
      assert.equal(asToken.headers.get('content-type'), 'application/problem+json');
      assert.equal((await fetch(`${server.url}/v1/whoami`)).status, 401);
    });

    it('answers CORS preflights for the configured origin only', async () => {
      const preflight = (origin: string) =>
        fetch(`${server.url}/v1/jobs/x/events`, {
          method: 'OPTIONS',
          headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
        });
      const allowed = await preflight('http://app.test');
      assert.equal(allowed.headers.get('access-control-allow-origin'), 'http://app.test');
      const refused = await preflight('http://evil.test');
      assert.notEqual(refused.headers.get('access-control-allow-origin'), 'http://evil.test');
    });
  });
}
