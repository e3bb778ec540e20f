import { randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { defineJob } from '../src/job/definition.ts';
import { LeaseLostError } from '../src/job/errors.ts';
import type { JobLogEntry } from '../src/job/model.ts';
import { internals } from '../src/internals.ts';
import { BACKENDS, createGates, deferred, eventually, finished, openEngine, readSse, startServer, type TestEngine, type TestServer } from './helpers.ts';

const chatty = defineJob({
  name: 'chatty',
  input: z.object({}),
  retry: { attempts: 2, initialDelay: 10 },
  run: async (_input, ctx) => {
    ctx.log.debug('attempt starts', { attempt: ctx.attempt });
    ctx.log.info('fetched the page', { bytes: 1234, odd: 'cut \ud83d emoji and a \u0000 NUL', 'key \udc00': 'spelled \\u0000 👍' });
    if (ctx.attempt === 1) {
      ctx.log.error('the model answered 500');
      throw new Error('model down');
    }
    ctx.log.warn('slow answer');
    return { ok: true };
  },
});

const flood = defineJob({
  name: 'flood',
  input: z.object({ lines: z.number(), size: z.number() }),
  logs: { maxLines: 3, maxBytes: 1000 },
  run: async ({ lines, size }, ctx) => {
    for (let i = 0; i < lines; i++) ctx.log.info(`line ${i} ${'x'.repeat(size)}`);
    return {};
  },
});

/** Its first attempt stays until released (by key), and logs after it lost its lease. */
const { gate, releaseAll } = createGates();
const oldOwner = new Map<string, unknown>();
const stubborn = defineJob({
  name: 'stubborn',
  input: z.object({ key: z.string() }),
  run: async ({ key }, ctx) => {
    if (ctx.attempt === 1) {
      ctx.log.info('first owner starts');
      await ctx.flush();
      await gate(key).promise;
      oldOwner.set(key, ctx.signal.reason);
      ctx.log.info('late line from the old owner');
      await ctx.flush().catch(() => {});
      return { by: 'old owner' };
    }
    ctx.log.info('new owner runs');
    return { by: 'new owner' };
  },
});

for (const backend of BACKENDS) {
  describe(`ctx.log on ${backend}`, () => {
    let engine: TestEngine;
    let server: TestServer;
    const logs = async (id: string, after?: number) => {
      const response = await fetch(`${server.url}/v1/jobs/${id}/logs${after === undefined ? '' : `?after=${after}`}`);
      assert.equal(response.status, 200);
      return (await response.json()) as { lines: JobLogEntry[]; nextAfter?: number };
    };

    before(async () => {
      engine = await openEngine(backend, { jobs: [chatty, flood, stubborn] });
      engine.waitless.startWorker({ pollInterval: 50, names: ['chatty', 'flood'] });
      server = await startServer(engine.waitless);
    });
    after(async () => {
      releaseAll();
      await server?.close();
      await engine?.close();
    });

    it("keeps a job's lines with it, every attempt's, readable at /logs and in its event stream", async () => {
      const { job } = await engine.waitless.submit('chatty', {});
      assert.equal((await finished(engine.waitless, job.id)).status, 'completed');
      const { lines, nextAfter } = await logs(job.id);
      assert.equal(nextAfter, undefined);
      assert.deepEqual(
        lines.map((l) => [l.attempt, l.level, l.message]),
        [
          [1, 'debug', 'attempt starts'],
          [1, 'info', 'fetched the page'],
          [1, 'error', 'the model answered 500'],
          [2, 'debug', 'attempt starts'],
          [2, 'info', 'fetched the page'],
          [2, 'warn', 'slow answer'],
        ],
      );
      // Text PostgreSQL would refuse is stored as U+FFFD, not a failed write.
      assert.deepEqual(lines[1]!.data, { bytes: 1234, odd: 'cut \ufffd emoji and a \ufffd NUL', 'key \ufffd': 'spelled \\u0000 👍' });
      assert.ok(lines.every((l, i) => i === 0 || l.seq > lines[i - 1]!.seq));
      assert.ok(lines.every((l) => !Number.isNaN(Date.parse(l.at))));
      const page = await logs(job.id, lines[3]!.seq);
      assert.deepEqual(page.lines, lines.slice(4));
      for (const bad of ['-1', 'abc', '1.5', '99999999999999999999']) {
        const response = await fetch(`${server.url}/v1/jobs/${job.id}/logs?after=${bad}`);
        assert.equal(response.status, 400, `after=${bad}`);
        assert.match(response.headers.get('content-type') ?? '', /application\/problem\+json/);
      }
      assert.equal((await fetch(`${server.url}/v1/jobs/0190f0f0-0000-7000-8000-000000000000/logs`)).status, 404);
      assert.equal((await fetch(`${server.url}/v1/jobs/not-a-job/logs`)).status, 404);

      const stream = await fetch(`${server.url}/v1/jobs/${job.id}/events`);
      const { events } = await readSse(stream, (e) => e.event === 'status' && /"completed"/.test(e.data));
      assert.equal(events.filter((e) => e.event === 'log').length, 6);
    });

    it("leaves the lines out of a job token's stream, and refuses the token at /logs", async () => {
      const { job } = await engine.waitless.submit('chatty', {});
      await finished(engine.waitless, job.id);
      const { token } = (await engine.waitless.createJobToken(job.id))!;
      const stream = await fetch(`${server.url}/v1/jobs/${job.id}/events?access_token=${token}`);
      const { events } = await readSse(stream, (e) => e.event === 'status' && /"completed"/.test(e.data));
      assert.ok(events.some((e) => e.event === 'status'));
      assert.equal(events.filter((e) => e.event === 'log').length, 0);
      assert.equal((await fetch(`${server.url}/v1/jobs/${job.id}/logs`, { headers: { authorization: `Bearer ${token}` } })).status, 403);
    });

    it('keeps at most the limit per attempt, and counts the lines dropped', async () => {
      const byLines = (await engine.waitless.submit('flood', { lines: 10, size: 1 })).job;
      const byBytes = (await engine.waitless.submit('flood', { lines: 10, size: 400 })).job;
      await finished(engine.waitless, byLines.id);
      await finished(engine.waitless, byBytes.id);

      const lines = (await logs(byLines.id)).lines;
      assert.deepEqual(lines.map((l) => l.message.slice(0, 6)), ['line 0', 'line 1', 'line 2', lines[3]!.message.slice(0, 6)]);
      assert.equal(lines[3]!.level, 'warn');
      assert.equal(lines[3]!.dropped, 7);
      assert.match(lines[3]!.message, /7 more log lines were dropped/);

      // Two lines of ~450 bytes fit in 1000 bytes; the third does not.
      const big = (await logs(byBytes.id)).lines;
      assert.equal(big.length, 3);
      assert.equal(big[2]!.dropped, 8);
    });

    it('refuses the lines of a worker that lost its lease', async () => {
      const stalled = deferred();
      const { waitless } = engine;
      // Worker A: its heartbeat hangs; its lease runs out, and worker B runs attempt 2.
      const a = waitless.startWorker({ names: ['stubborn'], lease: 300, pollInterval: 50, debugPoints: { beforeHeartbeat: () => stalled.promise } });
      try {
        const { job } = await waitless.submit('stubborn', { key: backend });
        await eventually(async () => (await logs(job.id)).lines.length === 1, 'the first owner logged');
        const b = waitless.startWorker({ names: ['stubborn'], lease: 5000, pollInterval: 50 });
        const done = await finished(waitless, job.id);
        assert.deepEqual(done.result, { by: 'new owner' });
        gate(backend).resolve();
        await eventually(() => oldOwner.get(backend), 'the old owner went on');
        assert.ok(oldOwner.get(backend) instanceof LeaseLostError);
        // The old owner flushed after its late line: whatever it could write is written by now.
        assert.deepEqual((await logs(job.id)).lines.map((l) => l.message), ['first owner starts', 'new owner runs']);
        await b.stop();
      } finally {
        stalled.resolve();
        await a.stop();
      }
    });

    it('fences log writes by the lease token in the statement itself', async () => {
      const { store, driver } = internals(engine.waitless);
      const { job } = await engine.waitless.submit('stubborn', { key: `${backend}-by-hand` });
      // Claimed by hand (no worker runs this name now), then taken back as an expired lease.
      const [claimed] = await store.claim(['stubborn'], 1, 'test-worker', 60_000);
      assert.equal(claimed?.job.id, job.id);
      const line = (message: string) => ({ id: job.id, token: claimed.leaseToken, kind: 'log' as const, body: JSON.stringify({ level: 'info', message, attempt: 1 }), round: randomUUID() });
      assert.deepEqual([...(await store.writeJobs([line('while held')]))], [claimed.leaseToken]);
      await driver.query({ text: `UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, values: [job.id] });
      // Taken back (by this call or by the engine's housekeeping, whichever comes first).
      await eventually(async () => {
        await store.reclaimExpiredLeases();
        return (await store.get('default', job.id))?.status === 'queued';
      }, 'the lease taken back');
      assert.equal((await store.writeJobs([line('after the lease')])).size, 0);
      assert.deepEqual((await logs(job.id)).lines.map((l) => l.message), ['while held']);
      await engine.waitless.cancel(job.id);
    });
  });
}
