/**
 * Durable execution inside a job, in one process on each backend: steps that survive a retry,
 * ctx.all cancelling siblings, latest-wins keys, relevance at delivery, token usage, and the
 * submit options that schedule a job. (Real kills and several worker processes:
 * durable-processes.test.ts.)
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { z } from 'zod';
import { defineJob } from '../src/job/definition.ts';
import type { Worker } from '../src/worker/worker.ts';
import { internals } from '../src/internals.ts';
import type { Driver } from '../src/store/driver.ts';
import { JobStore } from '../src/store/job-store.ts';
import type { Job, JobEvent } from '../src/job/model.ts';
import { BACKENDS, createGates, deferred, eventually, finished, openEngine, POSTGRES_URL, startServer, type TestEngine, type TestServer } from './helpers.ts';

/** Gates by key, so a test decides when a handler may finish (each backend's keys start with its name). */
const { gate, releaseAll } = createGates();
const counters = new Map<string, number>();
const count = (key: string) => counters.set(key, (counters.get(key) ?? 0) + 1);

/** Step 1 charges (a side effect), then the first attempt fails; the retry must not charge again. */
const checkout = defineJob({
  name: 'checkout',
  input: z.object({ key: z.string() }),
  retry: { attempts: 3, initialDelay: 10 },
  async run({ key }, ctx) {
    const receipt = await ctx.step('charge', async (step) => {
      count(`${key}:charge`);
      return { receipt: step.idempotencyKey, attempt: ctx.attempt };
    });
    const progress = await ctx.step('draft', async (step) => {
      // Saves how far it got; the next run of this step resumes from there.
      const from = (step.checkpoint as { pages?: number } | undefined)?.pages ?? 0;
      await step.saveCheckpoint({ pages: from + 1 });
      if (ctx.attempt === 1) throw new Error('model overloaded');
      return { pages: from + 1 };
    });
    count(`${key}:email`);
    return { ...receipt, ...progress };
  },
});

/** Three children; the second fails fast; the others would run long (a timer, a request that never gets an answer). */
let hangingUrl = '';
const fanOut = defineJob({
  name: 'fan-out',
  input: z.object({ failAfterMs: z.number() }),
  retry: { attempts: 1 },
  async run({ failAfterMs }, ctx) {
    return ctx.all([
      async ({ signal }) => sleep(30_000, 'slow', { signal }),
      async () => {
        await sleep(failAfterMs);
        throw new Error('search tool is down');
      },
      async ({ signal }) => (await fetch(hangingUrl, { signal })).text(),
    ]);
  },
});

/** Runs until the test opens its gate; `relevant` compares the context with the document's current version. */
const versions = new Map<string, number>();
const summarize = defineJob({
  name: 'summarize',
  input: z.object({ doc: z.string(), gate: z.string() }),
  retry: { attempts: 1 },
  relevant: (context) => {
    const { doc, version } = context as { doc: string; version: number };
    return versions.get(doc) === version;
  },
  async run({ doc, gate: key }, ctx) {
    await ctx.progress({ percent: 10 });
    await gate(key).promise;
    await ctx.recordUsage({ model: 'small', promptTokens: 100, completionTokens: 20 });
    await ctx.recordUsage({ model: 'large', promptTokens: 1000, completionTokens: 300, totalTokens: 1300 });
    return { summary: `summary of ${doc}` };
  },
});

/** At most one per user runs; each waits for its gate. */
const perUser = defineJob({
  name: 'per-user',
  input: z.object({ user: z.string(), gate: z.string() }),
  retry: { attempts: 1 },
  concurrency: { limit: 1, key: (input) => input.user },
  async run({ gate: key }) {
    await gate(key).promise;
    return { ok: true };
  },
});

/** Fails its first attempt (retried 300 ms later), then succeeds. */
const flakyOnce = defineJob({
  name: 'flaky-once',
  input: z.object({ tag: z.string() }),
  retry: { attempts: 2, initialDelay: 300 },
  async run({ tag }, ctx) {
    if (ctx.attempt === 1) throw new Error(`first try of ${tag} fails`);
    return { tag };
  },
});

/** Keyed, and served by no worker: a test claims it through the store itself. */
const claimProbe = defineJob({
  name: 'claim-probe',
  input: z.object({ user: z.string() }),
  concurrency: { limit: 1, key: (input) => input.user },
  run: async () => ({}),
});

/** Served only by the worker a test starts for it. */
const betweenClaims = defineJob({ name: 'between-claims', input: z.object({ tag: z.string() }), run: async ({ tag }) => ({ tag }) });

/** Two siblings of ctx.all that (wrongly) share a step name. */
const sharedStep = defineJob({
  name: 'shared-step',
  input: z.object({ key: z.string() }),
  retry: { attempts: 1 },
  async run({ key }, ctx) {
    const body = async () => {
      count(`${key}:body`);
      await sleep(50);
      return 1;
    };
    return ctx.allSettled([({ step }) => step('fetch', body), ({ step }) => step('fetch', body)]);
  },
});

const json = (body: unknown) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

for (const backend of BACKENDS) {
  describe(`durable execution on ${backend}`, () => {
    let engine: TestEngine;
    let server: TestServer;
    let worker: Worker;
    let hanging: Server;
    const hangingRequests: Array<{ req: IncomingMessage; closedAt?: number }> = [];
    const received: Array<{ type: string; id: string }> = [];
    let receiver: Server;
    let receiverUrl = '';
    const k = (name: string) => `${backend}-${name}`;
    const submit = async (name: string, body: Record<string, unknown>) => {
      const response = await fetch(`${server.url}/v1/jobs/${name}`, json(body));
      return { status: response.status, body: (await response.json()) as Job & { runningJobId?: string; detail?: string } };
    };

    before(async () => {
      hanging = createServer((req) => {
        const entry: { req: IncomingMessage; closedAt?: number } = { req };
        hangingRequests.push(entry);
        req.on('close', () => (entry.closedAt = Date.now()));
      });
      await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
      hangingUrl = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/`;
      receiver = createServer((req, res) => {
        let body = '';
        req.on('data', (chunk: Buffer) => (body += chunk.toString()));
        req.on('end', () => {
          const payload = JSON.parse(body) as { type: string; data: { id: string } };
          received.push({ type: payload.type, id: payload.data.id });
          res.writeHead(204).end();
        });
      });
      await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
      receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
      engine = await openEngine(backend, {
        jobs: [checkout, fanOut, summarize, perUser, flakyOnce, sharedStep, betweenClaims, claimProbe],
        webhooks: { retrySchedule: ['100ms'], timeout: '1s', pollInterval: '50ms', ssrf: { allow: ['127.0.0.1'] } },
      });
      // A slow poll: delayed jobs and retries must start on time without it (the worker's due timer).
      worker = engine.waitless.startWorker({ pollInterval: 5000, names: ['checkout', 'fan-out', 'summarize', 'flaky-once', 'shared-step'] });
      // Few slots for the per-user jobs, so full keys could crowd out the others.
      engine.waitless.startWorker({ pollInterval: 5000, names: ['per-user'], concurrency: 6 });
      server = await startServer(engine.waitless);
    });
    after(async () => {
      releaseAll();
      await server.close();
      await engine.close();
      hanging.closeAllConnections();
      await new Promise<void>((resolve) => hanging.close(() => resolve()));
      receiver.closeAllConnections();
      await new Promise<void>((resolve) => receiver.close(() => resolve()));
    });

    it('runs a completed step once: the retry gets its recorded result, and resumes an unfinished one from its checkpoint', async () => {
      const { body: job } = await submit('checkout', { input: { key: k('checkout') } });
      const done = await finished(engine.waitless, job.id);
      assert.equal(done.status, 'completed');
      assert.equal(done.attempt, 2);
      assert.equal(counters.get(`${k('checkout')}:charge`), 1, 'the charge ran once');
      assert.equal(counters.get(`${k('checkout')}:email`), 1);
      // The charge's result is the one recorded on attempt 1, with the step's stable key.
      assert.deepEqual(done.result, { receipt: `${job.id}:charge`, attempt: 1, pages: 2 });
      assert.deepEqual(
        done.steps?.map((s) => [s.name, s.status, s.attempt]),
        [
          ['charge', 'completed', 1],
          ['draft', 'completed', 2],
        ],
      );
      assert.ok(done.steps.every((s) => typeof s.durationMs === 'number' && s.finishedAt));
      const steps = (await engine.waitless.events(job.id)).filter((e) => e.type === 'step').map((e) => `${String(e.data.name)}:${String(e.data.status)}`);
      assert.deepEqual(steps, ['charge:started', 'charge:completed', 'draft:started', 'draft:failed', 'draft:started', 'draft:completed']);
    });

    it('aborts every sibling at once when one fails in ctx.all, and the job fails with that error', async () => {
      const before = hangingRequests.length;
      const { body: job } = await submit('fan-out', { input: { failAfterMs: 150 } });
      const done = await finished(engine.waitless, job.id);
      assert.equal(done.status, 'failed');
      assert.match(done.error!.message, /search tool is down/);
      // The hanging server never answers nor closes a request: only the sibling's aborted
      // signal can close it. (The other sibling sleeps 30 s unless aborted; the job could not
      // have failed before that without the abort, as ctx.all waits for every sibling.)
      await eventually(() => hangingRequests[before]?.closedAt, 'the sibling request aborted');
    });

    it('cancels the older in-flight job of a supersede key, whose late result never completes', async () => {
      const older = await submit('summarize', { input: { doc: 'a', gate: k('older') }, supersede: { key: k('doc:a') } });
      await eventually(async () => (await engine.waitless.get(older.body.id))?.status === 'running', 'older running');
      const newer = await submit('summarize', { input: { doc: 'a', gate: k('newer') }, supersede: { key: k('doc:a') } });
      assert.equal(newer.status, 202);
      const superseded = await engine.waitless.get(older.body.id);
      assert.equal(superseded?.status, 'cancelled');
      assert.equal(superseded?.error?.code, 'superseded');
      assert.equal((superseded?.error as { supersededBy?: string }).supersededBy, newer.body.id);
      gate(k('newer')).resolve();
      assert.equal((await finished(engine.waitless, newer.body.id)).status, 'completed');
      // The older one finishes after the newer one: its result is fenced out.
      gate(k('older')).resolve();
      // Its handler has returned and the worker has dealt with the outcome (discarded it).
      await eventually(() => worker.busy === 0, 'the superseded handler settled');
      const events = await engine.waitless.events(older.body.id);
      assert.ok(!events.some((e: JobEvent) => e.data.status === 'completed'), 'no completed event for the superseded job');
      assert.equal((await engine.waitless.get(older.body.id))?.status, 'cancelled');
    });

    it('refuses a job whose key is in flight with 409 naming the running job, under the reject policy', async () => {
      const first = await submit('summarize', { input: { doc: 'b', gate: k('reject') }, supersede: { key: k('doc:b'), policy: 'reject' } });
      const second = await submit('summarize', { input: { doc: 'b', gate: k('reject-2') }, supersede: { key: k('doc:b'), policy: 'reject' } });
      assert.equal(second.status, 409);
      assert.equal(second.body.runningJobId, first.body.id);
      assert.match(second.body.detail!, new RegExp(first.body.id));
      gate(k('reject')).resolve();
      await finished(engine.waitless, first.body.id);
      const third = await submit('summarize', { input: { doc: 'b', gate: k('reject-3') }, supersede: { key: k('doc:b'), policy: 'reject' } });
      assert.equal(third.status, 202);
      gate(k('reject-3')).resolve();
      await finished(engine.waitless, third.body.id);
    });

    it('runs jobs of one key one after another under the queue policy', async () => {
      const first = await submit('summarize', { input: { doc: 'c', gate: k('queue-1') }, supersede: { key: k('doc:c'), policy: 'queue' } });
      const second = await submit('summarize', { input: { doc: 'c', gate: k('queue-2') }, supersede: { key: k('doc:c'), policy: 'queue' } });
      await eventually(async () => (await engine.waitless.get(first.body.id))?.status === 'running', 'first running');
      await sleep(300);
      assert.equal((await engine.waitless.get(second.body.id))?.status, 'queued', 'the second waits for the first');
      gate(k('queue-2')).resolve();
      gate(k('queue-1')).resolve();
      const a = await finished(engine.waitless, first.body.id);
      const b = await finished(engine.waitless, second.body.id);
      assert.equal(b.status, 'completed');
      assert.ok(Date.parse(b.startedAt!) >= Date.parse(a.finishedAt!), 'the second started after the first finished');
    });

    it('ends a job stale when its context no longer matches: result kept, job.stale sent, job.completed never', async () => {
      const doc = k('doc-d');
      versions.set(doc, 1);
      const webhook = { url: receiverUrl };
      const stale = await submit('summarize', { input: { doc, gate: k('stale') }, context: { doc, version: 1 }, webhook });
      await eventually(async () => (await engine.waitless.get(stale.body.id))?.status === 'running', 'running');
      versions.set(doc, 2); // the user edited the document meanwhile
      gate(k('stale')).resolve();
      const done = await finished(engine.waitless, stale.body.id);
      assert.equal(done.status, 'stale');
      assert.deepEqual(done.result, { summary: `summary of ${doc}` }, 'the result is kept for inspection');
      assert.equal(done.error?.code, 'stale');
      assert.deepEqual(done.context, { doc, version: 1 });

      const fresh = await submit('summarize', { input: { doc, gate: k('fresh') }, context: { doc, version: 2 }, webhook });
      gate(k('fresh')).resolve();
      assert.equal((await finished(engine.waitless, fresh.body.id)).status, 'completed');
      await eventually(() => received.some((r) => r.id === fresh.body.id), 'the fresh job delivered');
      await eventually(() => received.some((r) => r.id === stale.body.id), 'the stale job delivered');
      assert.deepEqual(received.filter((r) => r.id === stale.body.id).map((r) => r.type), ['job.stale']);
      assert.deepEqual(received.filter((r) => r.id === fresh.body.id).map((r) => r.type), ['job.completed']);
    });

    it('sums token usage per job and per model', async () => {
      const { body: job } = await submit('summarize', { input: { doc: 'e', gate: k('usage') } });
      gate(k('usage')).resolve();
      const done = await finished(engine.waitless, job.id);
      assert.deepEqual(done.usage, {
        promptTokens: 1100,
        completionTokens: 320,
        totalTokens: 1420,
        byModel: {
          small: { promptTokens: 100, completionTokens: 20, totalTokens: 120, calls: 1 },
          large: { promptTokens: 1000, completionTokens: 300, totalTokens: 1300, calls: 1 },
        },
      });
    });

    it('runs a job whose key has a free slot even when many keys ahead of it are full', async () => {
      const users = ['u1', 'u2', 'u3', 'u4', 'u5'];
      const first = await Promise.all(users.map((user) => submit('per-user', { input: { user, gate: k(`${user}-1`) } })));
      await eventually(async () => (await Promise.all(first.map((j) => engine.waitless.get(j.body.id)))).every((j) => j?.status === 'running'), 'one running per user');
      const second = await Promise.all(users.map((user) => submit('per-user', { input: { user, gate: k(`${user}-2`) } })));
      // Five keys are full, each with a job waiting; one slot of six is free.
      const other = await submit('per-user', { input: { user: 'u6', gate: k('u6') } });
      await eventually(async () => (await engine.waitless.get(other.body.id))?.status === 'running', 'u6 runs in the free slot');
      for (const j of second) assert.equal((await engine.waitless.get(j.body.id))?.status, 'queued', 'the full keys stay at their limit');
      for (const user of [...users, 'u6']) {
        gate(k(`${user}-1`)).resolve();
        gate(k(`${user}-2`)).resolve();
      }
      gate(k('u6')).resolve();
      for (const j of [...first, ...second, other]) assert.equal((await finished(engine.waitless, j.body.id)).status, 'completed');
    });

    it('keeps submit order under the queue policy even when the first job backs off for a retry', async () => {
      const a = await submit('flaky-once', { input: { tag: 'a' }, supersede: { key: k('q'), policy: 'queue' } });
      const b = await submit('flaky-once', { input: { tag: 'b' }, supersede: { key: k('q'), policy: 'queue' } });
      const doneA = await finished(engine.waitless, a.body.id);
      const doneB = await finished(engine.waitless, b.body.id);
      assert.equal(doneA.attempt, 2);
      assert.ok(Date.parse(doneB.startedAt!) >= Date.parse(doneA.finishedAt!), 'b waited for a, retry included');
      const limited = await submit('per-user', { input: { user: 'u7', gate: 'x' }, supersede: { key: k('q2'), policy: 'queue' } });
      assert.equal(limited.status, 422, 'a job with its own concurrency limit cannot also take the queue policy');
    });

    it('never runs one step name twice at once inside ctx.all', async () => {
      const { body: job } = await submit('shared-step', { input: { key: k('shared') } });
      const done = await finished(engine.waitless, job.id);
      assert.equal(counters.get(`${k('shared')}:body`), 1, 'the body ran once');
      const outcomes = done.result as Array<{ status: string; reason?: { message?: string } }>;
      assert.deepEqual(outcomes.map((o) => o.status).sort(), ['fulfilled', 'rejected']);
    });

    // PostgreSQL only: it takes a second connection holding a transaction open (PGlite runs one at a time).
    if (backend === 'postgres') it('undoes a supersede whose idempotency key a concurrent request took meanwhile: the older job keeps running', async () => {
      const older = await submit('summarize', { input: { doc: 'h', gate: k('race-old') }, supersede: { key: k('doc:h') } });
      await eventually(async () => (await engine.waitless.get(older.body.id))?.status === 'running', 'older running');
      // Another request (outside this key's lock) holds the idempotency key, not yet committed.
      const other = new pg.Client({ connectionString: POSTGRES_URL });
      await other.connect();
      try {
        await other.query(`SET search_path TO ${engine.schema}`);
        await other.query('BEGIN');
        await other.query(`INSERT INTO idempotency_keys (tenant_id, key, fingerprint, job_id) VALUES ('default', $1, 'another request', gen_random_uuid())`, [k('race-key')]);
        const racing = engine.waitless.submit('summarize', { doc: 'h', gate: k('race-new') }, { supersede: { key: k('doc:h') }, idempotencyKey: k('race-key') });
        await eventually(async () => {
          const { rows } = await other.query<{ waiting: number }>(`SELECT count(*)::int AS waiting FROM pg_locks WHERE NOT granted`);
          return rows[0]!.waiting > 0;
        }, 'the supersede waiting on the key');
        await other.query('COMMIT');
        await assert.rejects(racing, /already used for a different request/);
      } finally {
        await other.end();
      }
      const kept = await engine.waitless.get(older.body.id);
      assert.equal(kept?.status, 'running', 'the cancellation was rolled back with the failed insert');
      gate(k('race-old')).resolve();
      assert.equal((await finished(engine.waitless, older.body.id)).status, 'completed');
    });

    it('hands back the keyed jobs it claimed when a later key fails, instead of losing them', async () => {
      // Two users' jobs wait; no worker serves this name, so only the store below claims them.
      const a = await engine.waitless.submit(claimProbe, { user: k('fault-a') }, { priority: 1000 });
      const b = await engine.waitless.submit(claimProbe, { user: k('fault-b') }, { priority: 999 });
      // The database stays real; the second key's transaction fails as a dropped connection would.
      const real = internals(engine.waitless).driver;
      let transactions = 0;
      const faulty: Driver = {
        ...real,
        query: (sql) => real.query(sql),
        exec: (text) => real.exec(text),
        transaction: (fn) => (++transactions === 2 ? Promise.reject(new Error('connection terminated')) : real.transaction(fn)),
        listen: (channel, onPayload, onResync) => real.listen(channel, onPayload, onResync),
        close: () => real.close(),
      };
      const claimed = await new JobStore(faulty).claimKeyed(['claim-probe'], 10, 'test-worker', 30_000);
      assert.deepEqual(claimed.jobs.map((c) => c.job.id), [a.job.id], "the first key's job comes back to be run");
      assert.equal(claimed.more, true, 'and the caller is told to look again');
      assert.equal((await engine.waitless.get(b.job.id))?.status, 'queued', "the failed key's job is still queued");
    });

    it('does not recover a superseded job over its replacement', async () => {
      const older = await submit('summarize', { input: { doc: 'g', gate: k('rec-1') }, supersede: { key: k('doc:g') } });
      const newer = await submit('summarize', { input: { doc: 'g', gate: k('rec-2') }, supersede: { key: k('doc:g') } });
      assert.equal((await engine.waitless.get(older.body.id))?.error?.code, 'superseded');
      const recovered = await fetch(`${server.url}/v1/jobs/${older.body.id}/recover`, { method: 'POST' });
      assert.equal(recovered.status, 409);
      gate(k('rec-1')).resolve();
      gate(k('rec-2')).resolve();
      await finished(engine.waitless, newer.body.id);
    });

    it('serves a job submitted while an idle worker is between claims, without waiting for its poll', async () => {
      // A worker whose poll would take a minute, held just after a claim that found nothing.
      const held = deferred();
      const reached = deferred();
      let holds = 1;
      const idle = engine.waitless.startWorker({
        names: ['between-claims'],
        pollInterval: 60_000,
        debugPoints: {
          beforeNextDueCheck: async () => {
            if (holds-- <= 0) return;
            reached.resolve();
            await held.promise;
          },
        },
      });
      try {
        await reached.promise;
        const { body: job } = await submit('between-claims', { input: { tag: k('between') } }); // its NOTIFY lands now
        held.resolve();
        await eventually(async () => (await engine.waitless.get(job.id))?.startedAt, 'picked up by the wake-up that landed between claims', 3000);
      } finally {
        held.resolve();
        await idle.stop();
      }
    });

    it('holds a delayed job until its time, and refuses bad scheduling options with 422', async () => {
      const runAt = new Date(Date.now() + 1500).toISOString();
      const { body: delayed } = await submit('summarize', { input: { doc: 'f', gate: k('delay') }, runAt, priority: 5 });
      assert.equal(delayed.runAt, runAt);
      assert.equal(delayed.priority, 5);
      gate(k('delay')).resolve();
      const done = await finished(engine.waitless, delayed.id);
      assert.ok(Date.parse(done.startedAt!) >= Date.parse(runAt), 'not started before its runAt');

      const bads = [
        { priority: 1.5 },
        { priority: 5000 },
        { runAt: 'tomorrow' },
        { runAt: '0000-01-01T00:00:00Z' },
        { delay: '-5s' },
        { delay: '99999999999h' },
        { runAt, delay: '1s' },
        { supersede: { key: '' } },
        { concurrencyKey: 'u1' },
        { context: { note: 'a\u0000b' } },
        { input: { doc: 'nul\u0000', gate: 'x' } },
      ];
      for (const bad of bads) {
        const { status, body } = await submit('summarize', { input: { doc: 'f', gate: 'x' }, ...bad });
        assert.ok(status === 400 || status === 422, `${JSON.stringify(bad)} answered ${status}: ${body.detail}`);
      }
    });
  });
}
