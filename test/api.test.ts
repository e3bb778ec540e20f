import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { defineJob } from '../src/job/definition.ts';
import type { Job, JobEvent } from '../src/job/model.ts';
import { BACKENDS, createGates, eventually, openEngine, readSse, startServer, type TestEngine, type TestServer } from './helpers.ts';

/** Gates by key, so a test decides when a handler may finish (each backend's keys start with its name). */
const { gate, releaseAll } = createGates();

const echo = defineJob({
  name: 'echo',
  input: z.object({ text: z.string().min(1), gate: z.string().optional() }),
  retry: { attempts: 1 },
  async run({ text, gate: key }, ctx) {
    await ctx.progress({ percent: 10, stage: 'start' });
    if (key) await gate(key).promise;
    for (const word of text.split(' ')) ctx.write(`${word} `);
    await ctx.progress({ percent: 90, stage: 'writing' });
    return { echo: text };
  },
});

/** A result full of nulls, to check every reader sees it unchanged. */
const nullish = defineJob({
  name: 'nullish',
  input: z.object({}),
  run: async () => ({ risk: null, items: [{ id: 1, note: null }], summary: 'ok' }),
});

const json = (body: unknown) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
type JobView = Job & { links: { self: string; events: string; cancel: string } };
const parseEvent = (data: string) => JSON.parse(data) as JobEvent;

for (const backend of BACKENDS) {
  describe(`HTTP API on ${backend}`, () => {
    let engine: TestEngine;
    let server: TestServer;
    const post = (name: string, body: unknown, headers: Record<string, string> = {}) => {
      const init = json(body);
      return fetch(`${server.url}/v1/jobs/${name}`, { ...init, headers: { ...init.headers, ...headers } });
    };
    const getJob = async (id: string) => (await (await fetch(`${server.url}/v1/jobs/${id}`)).json()) as JobView;

    before(async () => {
      engine = await openEngine(backend, { jobs: [echo, nullish] });
      engine.waitless.startWorker({ pollInterval: 200, outputFlushInterval: 20 });
      server = await startServer(engine.waitless, { sseHeartbeatMs: 100 });
    });
    after(async () => {
      releaseAll();
      await server.close();
      await engine.close();
    });

    it('answers 202 with Location and Retry-After, then runs the job to completed with its result', async () => {
      const response = await post('echo', { input: { text: 'hello async world' } });
      assert.equal(response.status, 202);
      const body = (await response.json()) as JobView;
      assert.match(body.id, /^[0-9a-f-]{36}$/);
      assert.equal(body.name, 'echo');
      assert.equal(body.status, 'queued');
      assert.equal(response.headers.get('location'), `/v1/jobs/${body.id}`);
      assert.deepEqual(body.links, { self: `/v1/jobs/${body.id}`, events: `/v1/jobs/${body.id}/events`, cancel: `/v1/jobs/${body.id}/cancel` });
      assert.ok(Number(response.headers.get('retry-after')) >= 1);

      const done = await eventually(async () => {
        const job = await getJob(body.id);
        return job.done && job;
      }, 'job done');
      assert.equal(done.status, 'completed');
      assert.deepEqual(done.result, { echo: 'hello async world' });
      assert.equal(done.output, 'hello async world ');
      assert.equal(done.attempt, 1);
      assert.equal(done.error, undefined);
    });

    it('streams every event in order over SSE and ends after the terminal one', async () => {
      const key = `sse-${backend}`;
      const { id } = (await (await post('echo', { input: { text: 'one two three', gate: key } })).json()) as JobView;
      const response = await fetch(`${server.url}/v1/jobs/${id}/events`);
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
      assert.equal(response.headers.get('cache-control'), 'no-cache');
      assert.equal(response.headers.get('x-accel-buffering'), 'no');
      // Let the stream go live (and send a heartbeat) before the job finishes.
      setTimeout(() => gate(key).resolve(), 300);
      const { events, comments } = await readSse(response);
      const seqs = events.map((e) => Number(e.id));
      assert.deepEqual(seqs, seqs.map((_, i) => i + 1), 'ids are 1..N with no gap or repeat');
      const parsed = events.map((e) => parseEvent(e.data));
      assert.deepEqual(parsed[0]?.data, { status: 'queued' });
      assert.equal(parsed[1]?.data.status, 'running');
      const last = parsed.at(-1)!;
      assert.equal(last.type, 'status');
      assert.equal(last.data.status, 'completed');
      assert.deepEqual(last.data.result, { echo: 'one two three' });
      assert.equal(parsed.filter((e) => e.type === 'output').map((e) => e.data.text).join(''), 'one two three ');
      assert.ok(comments.length > 0, 'keep-alive comments arrive while the job runs');
      // A reconnect after the terminal event is told to stop.
      const again = await fetch(`${server.url}/v1/jobs/${id}/events`, { headers: { 'last-event-id': String(last.seq) } });
      assert.equal(again.status, 204);
    });

    it('resumes an SSE stream from Last-Event-ID with nothing lost and nothing repeated', async () => {
      const key = `resume-${backend}`;
      const { id } = (await (await post('echo', { input: { text: 'alpha beta gamma delta', gate: key } })).json()) as JobView;
      const controller = new AbortController();
      const first = await fetch(`${server.url}/v1/jobs/${id}/events`, { signal: controller.signal });
      // Drop the connection mid-job, after the progress event of the running handler.
      const part = await readSse(first, (e) => parseEvent(e.data).type === 'progress');
      controller.abort();
      gate(key).resolve();
      const lastSeen = part.events.at(-1)!.id!;
      const second = await fetch(`${server.url}/v1/jobs/${id}/events`, { headers: { 'last-event-id': lastSeen } });
      assert.equal(second.status, 200);
      const rest = await readSse(second);
      const all = [...part.events, ...rest.events].map((e) => Number(e.id));
      assert.deepEqual(all, all.map((_, i) => i + 1), 'the two connections together hold every event exactly once');
      const job = await getJob(id);
      assert.equal(job.status, 'completed');
      assert.equal(all.at(-1), job.version);
      // ?after= works the same way for clients that cannot set headers.
      const viaQuery = await readSse(await fetch(`${server.url}/v1/jobs/${id}/events?after=${job.version - 1}`));
      assert.deepEqual(viaQuery.events.map((e) => Number(e.id)), [job.version]);
    });

    it('long-polls: answers as soon as the job changes after ?since, or at the timeout with the current state', async () => {
      const key = `poll-${backend}`;
      const { id } = (await (await post('echo', { input: { text: 'wait for me', gate: key } })).json()) as JobView;
      const running = await eventually(async () => {
        const job = await getJob(id);
        return job.progress?.stage === 'start' && job;
      }, 'handler started');
      // Nothing changes: the long-poll returns the same version when its time is up.
      const idle = (await (await fetch(`${server.url}/v1/jobs/${id}?wait=1&since=${running.version}`)).json()) as JobView;
      assert.equal(idle.version, running.version);
      assert.equal(idle.status, 'running');
      // A change wakes the waiting request.
      const waiting = fetch(`${server.url}/v1/jobs/${id}?wait=30&since=${running.version}`);
      setTimeout(() => gate(key).resolve(), 200);
      const response = await waiting;
      const changed = (await response.json()) as JobView;
      assert.ok(changed.version > running.version);
      if (!changed.done) assert.ok(Number(response.headers.get('retry-after')) >= 1);
      const finished = (await (await fetch(`${server.url}/v1/jobs/${id}?wait=30&since=${changed.version}`)).json()) as JobView;
      assert.ok(finished.version > changed.version || finished.done);
    });

    it('turns 50 concurrent POSTs with one Idempotency-Key into exactly one job; another payload gets 422', async () => {
      const key = `idem-${backend}-${Date.now()}`;
      const responses = await Promise.all(
        Array.from({ length: 50 }, () => post('echo', { input: { text: 'only once' } }, { 'idempotency-key': key })),
      );
      const bodies = (await Promise.all(responses.map((r) => r.json()))) as JobView[];
      assert.deepEqual(new Set(responses.map((r) => r.status)), new Set([202]));
      const ids = new Set(bodies.map((b) => b.id));
      assert.equal(ids.size, 1, 'every answer names the same job');
      assert.equal(responses.filter((r) => r.headers.get('idempotent-replayed') === 'true').length, 49);
      const listed = await engine.waitless.list({ name: 'echo', limit: 100 });
      assert.equal(listed.jobs.filter((j) => (j.input as { text: string }).text === 'only once').length, 1);

      const conflict = await post('echo', { input: { text: 'something else' } }, { 'idempotency-key': key });
      assert.equal(conflict.status, 422);
      assert.equal(conflict.headers.get('content-type'), 'application/problem+json');
      const problem = (await conflict.json()) as { type: string; detail: string };
      assert.equal(problem.type, '/problems/idempotency-key-reused');
      assert.match(problem.detail, new RegExp([...ids][0]!));
    });

    it('cancels idempotently and answers with the job; a finished job stays as it finished', async () => {
      const key = `cancel-${backend}`;
      const { id } = (await (await post('echo', { input: { text: 'never finishes', gate: key } })).json()) as JobView;
      const first = await fetch(`${server.url}/v1/jobs/${id}/cancel`, { method: 'POST' });
      assert.equal(first.status, 200);
      const cancelled = (await first.json()) as JobView;
      assert.equal(cancelled.status, 'cancelled');
      assert.equal(cancelled.done, true);
      assert.equal(cancelled.error?.code, 'cancelled');
      const second = (await (await fetch(`${server.url}/v1/jobs/${id}/cancel`, { method: 'POST' })).json()) as JobView;
      assert.equal(second.status, 'cancelled');
      assert.equal(second.version, cancelled.version, 'a second cancel changes nothing');
      gate(key).resolve();

      const { id: doneId } = (await (await post('echo', { input: { text: 'quick' } })).json()) as JobView;
      await eventually(async () => (await getJob(doneId)).done, 'quick job done');
      const afterDone = (await (await fetch(`${server.url}/v1/jobs/${doneId}/cancel`, { method: 'POST' })).json()) as JobView;
      assert.equal(afterDone.status, 'completed');
    });

    it('shows a result with nulls the same in GET and in the terminal SSE event', async () => {
      const { id } = (await (await post('nullish', { input: {} })).json()) as JobView;
      const { events } = await readSse(await fetch(`${server.url}/v1/jobs/${id}/events`));
      const terminal = parseEvent(events.at(-1)!.data);
      const job = await getJob(id);
      assert.deepEqual(job.result, { risk: null, items: [{ id: 1, note: null }], summary: 'ok' });
      assert.deepEqual(terminal.data.result, job.result);
    });

    it('refuses an SSE resume point ahead of the job', async () => {
      const key = `ahead-${backend}`;
      const { id, version } = (await (await post('echo', { input: { text: 'x', gate: key } })).json()) as JobView;
      const response = await fetch(`${server.url}/v1/jobs/${id}/events`, { headers: { 'last-event-id': String(version + 50) } });
      assert.equal(response.status, 400);
      assert.equal(response.headers.get('content-type'), 'application/problem+json');
      gate(key).resolve();
    });

    it('pages through hundreds of jobs created in the same milliseconds without skipping one', async () => {
      const created = await Promise.all(Array.from({ length: 300 }, (_, i) => engine.waitless.submit('nullish', {}, { idempotencyKey: `burst-${backend}-${i}` })));
      const ids = new Set(created.map((c) => c.job.id));
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = (await (await fetch(`${server.url}/v1/jobs?name=nullish&limit=7${cursor ? `&cursor=${cursor}` : ''}`)).json()) as { jobs: JobView[]; nextCursor?: string };
        seen.push(...page.jobs.map((j) => j.id));
        cursor = page.nextCursor;
      } while (cursor);
      assert.equal(new Set(seen).size, seen.length, 'no job twice');
      for (const id of ids) assert.ok(seen.includes(id), `job ${id} is listed`);
    });

    it('lists jobs with status and name filters and cursor pagination', async () => {
      const created = new Set<string>();
      for (let i = 0; i < 7; i++) created.add(((await (await post('echo', { input: { text: `page ${i}` } })).json()) as JobView).id);
      await eventually(async () => {
        const jobs = await Promise.all([...created].map(getJob));
        return jobs.every((j) => j.done);
      }, 'page jobs done');
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const url = `${server.url}/v1/jobs?name=echo&status=completed&limit=3${cursor ? `&cursor=${cursor}` : ''}`;
        const page = (await (await fetch(url)).json()) as { jobs: JobView[]; nextCursor?: string };
        assert.ok(page.jobs.length <= 3);
        for (const job of page.jobs) {
          assert.equal(job.status, 'completed');
          seen.push(job.id);
        }
        cursor = page.nextCursor;
      } while (cursor);
      assert.equal(new Set(seen).size, seen.length, 'no job on two pages');
      for (const id of created) assert.ok(seen.includes(id), 'every completed job is listed');
      const none = (await (await fetch(`${server.url}/v1/jobs?status=failed`)).json()) as { jobs: JobView[] };
      assert.equal(none.jobs.length, 0);
    });

    it('answers every bad request with problem+json and the right status', async () => {
      const cases: Array<[string, Promise<Response>, number]> = [
        ['unknown job name', post('nope', { input: {} }), 404],
        ['malformed JSON', fetch(`${server.url}/v1/jobs/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"input":' }), 400],
        ['not an envelope', post('echo', { text: 'forgot the input key' }), 400],
        ['invalid input', post('echo', { input: { text: 42 } }), 422],
        ['wrong content type', fetch(`${server.url}/v1/jobs/echo`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi' }), 415],
        ['body too large', post('echo', { input: { text: 'x'.repeat(1_100_000) } }), 413],
        ['unknown id (not a uuid)', fetch(`${server.url}/v1/jobs/does-not-exist`), 404],
        ['unknown id (uuid)', fetch(`${server.url}/v1/jobs/00000000-0000-7000-8000-000000000000`), 404],
        ['events of unknown id', fetch(`${server.url}/v1/jobs/00000000-0000-7000-8000-000000000000/events`), 404],
        ['cancel of unknown id', fetch(`${server.url}/v1/jobs/00000000-0000-7000-8000-000000000000/cancel`, { method: 'POST' }), 404],
        ['bad wait', fetch(`${server.url}/v1/jobs/00000000-0000-7000-8000-000000000000?wait=abc`), 400],
        ['bad status filter', fetch(`${server.url}/v1/jobs?status=sleeping`), 400],
        ['bad cursor', fetch(`${server.url}/v1/jobs?cursor=garbage`), 400],
        ['bad Last-Event-ID', fetch(`${server.url}/v1/jobs/00000000-0000-7000-8000-000000000000/events`, { headers: { 'last-event-id': 'x' } }), 400],
        ['bad Idempotency-Key', post('echo', { input: { text: 'a' } }, { 'idempotency-key': 'x'.repeat(300) }), 400],
        ['unknown route', fetch(`${server.url}/v2/anything`), 404],
      ];
      for (const [what, pending, status] of cases) {
        const response = await pending;
        assert.equal(response.status, status, what);
        assert.equal(response.headers.get('content-type'), 'application/problem+json', what);
        const body = (await response.json()) as { status: number; title: string; detail: string };
        assert.equal(body.status, status, what);
        assert.ok(body.title && body.detail, `${what}: title and detail`);
        assert.doesNotMatch(JSON.stringify(body), /at .+\.ts:\d+/, `${what}: no stack trace`);
      }
      const invalid = (await (await post('echo', { input: { text: 42 } })).json()) as { errors: Array<{ path: string; message: string }> };
      assert.deepEqual(invalid.errors.map((e) => e.path), ['input.text']);
    });

    it('reports health', async () => {
      const response = await fetch(`${server.url}/healthz`);
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), { status: 'ok', database: backend });
    });
  });

  describe(`API keys and tenants on ${backend}`, () => {
    let engine: TestEngine;
    let server: TestServer;
    let keyA: string;
    let keyB: string;

    before(async () => {
      engine = await openEngine(backend, { jobs: [echo] });
      server = await startServer(engine.waitless, { auth: { mode: 'api-key', keys: engine.waitless.apiKeys } });
      keyA = (await engine.waitless.apiKeys.create('tenant-a')).token;
      keyB = (await engine.waitless.apiKeys.create('tenant-b')).token;
    });
    after(async () => {
      await server.close();
      await engine.close();
    });

    const call = (path: string, key: string | undefined, init: RequestInit = {}) =>
      fetch(`${server.url}${path}`, { ...init, headers: { ...(init.headers as Record<string, string>), ...(key ? { authorization: `Bearer ${key}` } : {}) } });

    it('refuses a missing, malformed, wrong or revoked key with 401', async () => {
      for (const key of [undefined, 'nonsense', `${keyA.slice(0, -3)}abc`]) {
        const response = await call('/v1/jobs', key);
        assert.equal(response.status, 401);
        assert.equal(response.headers.get('content-type'), 'application/problem+json');
        assert.match(response.headers.get('www-authenticate') ?? '', /^Bearer/);
      }
      const revocable = await engine.waitless.apiKeys.create('tenant-c');
      assert.equal((await call('/v1/jobs', revocable.token)).status, 200);
      await engine.waitless.apiKeys.revoke(revocable.id);
      // Verified keys are cached for a few seconds; a fresh server sees the revocation at once.
      const fresh = await startServer(engine.waitless, { auth: { mode: 'api-key', keys: engine.waitless.apiKeys, cacheMs: 0 } });
      try {
        assert.equal((await fetch(`${fresh.url}/v1/jobs`, { headers: { authorization: `Bearer ${revocable.token}` } })).status, 401);
      } finally {
        await fresh.close();
      }
      // Health checks need no key.
      assert.equal((await call('/healthz', undefined)).status, 200);
    });

    it("never lets one tenant see or touch another tenant's job", async () => {
      const submitted = await call('/v1/jobs/echo', keyA, json({ input: { text: 'secret of A' } }));
      assert.equal(submitted.status, 202);
      const { id } = (await submitted.json()) as JobView;
      assert.equal((await call(`/v1/jobs/${id}`, keyA)).status, 200);
      for (const [path, init] of [
        [`/v1/jobs/${id}`, {}],
        [`/v1/jobs/${id}?wait=1`, {}],
        [`/v1/jobs/${id}/events`, {}],
        [`/v1/jobs/${id}/cancel`, { method: 'POST' }],
      ] as const) {
        const response = await call(path, keyB, init);
        assert.equal(response.status, 404, path);
        assert.equal(response.headers.get('content-type'), 'application/problem+json');
      }
      const listB = (await (await call('/v1/jobs', keyB)).json()) as { jobs: JobView[] };
      assert.equal(listB.jobs.length, 0);
      const listA = (await (await call('/v1/jobs', keyA)).json()) as { jobs: JobView[] };
      assert.deepEqual(listA.jobs.map((j) => j.id), [id]);
      assert.equal((await engine.waitless.get(id, { tenant: 'tenant-a' }))?.status, 'queued', "B's cancel did not touch A's job");
      // The same Idempotency-Key in two tenants names two different jobs.
      const [a, b] = await Promise.all(
        [keyA, keyB].map(async (key) => ((await (await call('/v1/jobs/echo', key, { ...json({ input: { text: 'k' } }), headers: { 'content-type': 'application/json', 'idempotency-key': 'shared' } })).json()) as JobView).id),
      );
      assert.notEqual(a, b);
    });
  });
}
