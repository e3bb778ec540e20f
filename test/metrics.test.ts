import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import parsePrometheusTextFormat, { type Family } from 'parse-prometheus-text-format';
import { z } from 'zod';
import { NonRetryableError } from '../src/job/errors.ts';
import { defineJob } from '../src/job/definition.ts';
import { BACKENDS, createGates, deferred, eventually, finished, openEngine, startServer, type TestEngine, type TestServer } from './helpers.ts';

const { gate, releaseAll } = createGates();

const ok = defineJob({
  name: 'metrics-ok',
  input: z.object({}),
  run: async (_input, ctx) => {
    await ctx.recordUsage({ model: 'test-model', promptTokens: 10, completionTokens: 5 });
    return { ok: true };
  },
});
const flaky = defineJob({
  name: 'metrics-flaky',
  input: z.object({}),
  retry: { attempts: 3, initialDelay: '10ms' },
  run: async (_input, ctx) => {
    if (ctx.attempt === 1) throw new Error('first attempt fails');
    return { ok: true };
  },
});
const broken = defineJob({
  name: 'metrics-broken',
  input: z.object({}),
  run: async () => {
    throw new NonRetryableError('always fails');
  },
});
/** Held on a gate until the test releases it. */
const held = defineJob({
  name: 'metrics-held',
  input: z.object({ key: z.string() }),
  retry: { attempts: 1 },
  run: async ({ key }) => {
    await gate(key).promise;
    return { ok: true };
  },
});
/** Run only by a worker whose heartbeats hang, so its lease runs out. */
const stuck = defineJob({
  name: 'metrics-stuck',
  input: z.object({ key: z.string() }),
  retry: { attempts: 1 },
  run: async ({ key }, ctx) => {
    await Promise.race([gate(key).promise, new Promise((resolve) => ctx.signal.addEventListener('abort', resolve))]);
    return { ok: true };
  },
});
const handedBackStarted = new Set<string>();
/** Its first run lasts until its worker shuts down and hands it back; the next completes. */
const handedBack = defineJob({
  name: 'metrics-handed-back',
  input: z.object({ key: z.string() }),
  run: async ({ key }, ctx) => {
    // A hand-back does not use up the attempt: the run tells itself apart by its key.
    if (!handedBackStarted.has(key)) {
      handedBackStarted.add(key);
      gate(`${key}-running`).resolve();
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
    }
    return { ok: true };
  },
});
/** Run only by a worker the test starts once the job has waited. */
const late = defineJob({ name: 'metrics-late', input: z.object({}), run: async () => ({}) });
/** No worker runs it: it stays queued. */
const idle = defineJob({ name: 'metrics-idle', input: z.object({}), run: async () => ({}) });

/** A scrape: the page as the Prometheus text parser reads it, and its text. */
interface Scrape {
  families: Family[];
  text: string;
}

const labelsMatch = (have: Record<string, string> | undefined, want: Record<string, string>) => Object.entries(want).every(([k, v]) => have?.[k] === v);

/**
 * The value of a counter or gauge sample, or a histogram's count, 0 when absent. Histogram
 * counts are read from the `_count` lines of the text: the parser folds a histogram's series
 * into one sample and loses their labels when the histogram has labels besides `le`.
 */
function value(scrape: Scrape, name: string, labels: Record<string, string> = {}, part: 'count' | 'sum' = 'count'): number {
  const family = scrape.families.find((f) => f.name === name);
  if (!family) return 0;
  if (family.type !== 'HISTOGRAM') return Number(family.metrics.find((m) => labelsMatch(m.labels, labels))?.value ?? 0);
  for (const line of scrape.text.split('\n')) {
    const match = /^(\w+)\{([^}]*)\} (\S+)$/.exec(line);
    if (match?.[1] !== `${name}_${part}`) continue;
    const have = Object.fromEntries([...match[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    if (labelsMatch(have, labels)) return Number(match[3]);
  }
  return 0;
}

for (const backend of BACKENDS) {
  describe(`/metrics on ${backend}`, () => {
    let engine: TestEngine;
    let server: TestServer;
    let receiver: Server;
    let hookUrl: string;
    const scrape = async (headers: Record<string, string> = { authorization: 'Bearer scrape-secret' }): Promise<Scrape> => {
      const response = await fetch(`${server.url}/metrics`, { headers });
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      const text = await response.text();
      // The whole page goes through the parser: it throws on any line that is not valid text format.
      return { families: parsePrometheusTextFormat(text), text };
    };
    const submit = async (name: string, input: unknown, extra: Record<string, unknown> = {}) => {
      const response = await fetch(`${server.url}/v1/jobs/${name}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input, ...extra }),
      });
      assert.equal(response.status, 202);
      return ((await response.json()) as { id: string }).id;
    };

    before(async () => {
      receiver = createServer((req, res) => {
        req.resume();
        req.on('end', () => res.writeHead(204).end());
      });
      await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
      hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
      engine = await openEngine(backend, {
        jobs: [ok, flaky, broken, held, stuck, late, idle, handedBack],
        webhooks: { pollInterval: '50ms', ssrf: { allow: ['127.0.0.1'] } },
      });
      engine.waitless.startWorker({ pollInterval: 50, names: ['metrics-ok', 'metrics-flaky', 'metrics-broken', 'metrics-held'] });
      server = await startServer(engine.waitless, { metrics: { bearerToken: 'scrape-secret' } });
    });
    after(async () => {
      releaseAll();
      await server?.close();
      await engine?.close();
      await new Promise<void>((resolve) => {
        receiver?.closeAllConnections();
        receiver?.close(() => resolve());
      });
    });

    it('asks for the metrics token, and is not served unless asked for', async () => {
      const none = await fetch(`${server.url}/metrics`);
      assert.equal(none.status, 401);
      assert.match(none.headers.get('content-type') ?? '', /application\/problem\+json/);
      const wrong = await fetch(`${server.url}/metrics`, { headers: { authorization: 'Bearer not-it' } });
      assert.equal(wrong.status, 401);
      const plain = await startServer(engine.waitless);
      try {
        assert.equal((await fetch(`${plain.url}/metrics`)).status, 404);
      } finally {
        await plain.close();
      }
    });

    it('counts jobs completed, failed and retried, tokens, and webhooks delivered', async () => {
      const before = await scrape();
      const okId = await submit('metrics-ok', {}, { webhook: { url: hookUrl } });
      const flakyId = await submit('metrics-flaky', {});
      const brokenId = await submit('metrics-broken', {});
      assert.equal((await finished(engine.waitless, okId)).status, 'completed');
      assert.equal((await finished(engine.waitless, flakyId)).status, 'completed');
      assert.equal((await finished(engine.waitless, brokenId)).status, 'failed');
      const delivered = () => value(before, 'waitless_webhook_deliveries_total', { outcome: 'delivered' }) + 1;
      const now = await eventually(async () => {
        const s = await scrape();
        return value(s, 'waitless_webhook_deliveries_total', { outcome: 'delivered' }) >= delivered() && s;
      }, 'the webhook delivered');

      const delta = (name: string, labels: Record<string, string> = {}) => value(now, name, labels) - value(before, name, labels);
      assert.equal(delta('waitless_jobs_submitted_total', { name: 'metrics-ok' }), 1);
      assert.equal(delta('waitless_jobs_submitted_total', { name: 'metrics-flaky' }), 1);
      assert.equal(delta('waitless_jobs_finished_total', { name: 'metrics-ok', status: 'completed' }), 1);
      assert.equal(delta('waitless_jobs_finished_total', { name: 'metrics-flaky', status: 'completed' }), 1);
      assert.equal(delta('waitless_jobs_finished_total', { name: 'metrics-broken', status: 'failed' }), 1);
      assert.equal(delta('waitless_job_retries_total', { name: 'metrics-flaky' }), 1);
      // Two claims of the flaky job, two runs: one retried, one completed.
      assert.equal(delta('waitless_job_pickup_latency_seconds', { name: 'metrics-flaky' }), 2);
      assert.equal(delta('waitless_job_run_duration_seconds', { name: 'metrics-flaky', outcome: 'retried' }), 1);
      assert.equal(delta('waitless_job_run_duration_seconds', { name: 'metrics-flaky', outcome: 'completed' }), 1);
      assert.equal(delta('waitless_llm_tokens_total', { model: 'test-model', kind: 'prompt' }), 10);
      assert.equal(delta('waitless_llm_tokens_total', { model: 'test-model', kind: 'completion' }), 5);
      assert.equal(delta('waitless_webhook_delivery_duration_seconds', { outcome: 'delivered' }), 1);
      assert.equal(value(now, 'waitless_jobs_running', { name: 'metrics-ok' }), 0);
    });

    it('reads queue depth and the oldest due job from the database, and counts running jobs and open streams', async () => {
      const idleId = await submit('metrics-idle', {});
      await submit('metrics-idle', {}, { delay: '1h' });
      const heldId = await submit('metrics-held', { key: `running-${backend}` });
      await eventually(async () => (await engine.waitless.get(heldId))?.status === 'running', 'the held job running');
      const stream = new AbortController();
      const response = await fetch(`${server.url}/v1/jobs/${heldId}/events`, { signal: stream.signal });
      assert.equal(response.status, 200);
      const s = await eventually(async () => {
        const s = await scrape();
        return value(s, 'waitless_sse_connections', { stream: 'job' }) === 1 && value(s, 'waitless_queue_oldest_age_seconds', { name: 'metrics-idle' }) > 0 && s;
      }, 'the stream counted and the idle job waiting');
      assert.equal(value(s, 'waitless_jobs_queued', { name: 'metrics-idle' }), 2, 'the due job and the delayed one');
      assert.equal(value(s, 'waitless_jobs_running', { name: 'metrics-held' }), 1);
      stream.abort();
      await response.body?.cancel().catch(() => {});
      gate(`running-${backend}`).resolve();
      await finished(engine.waitless, heldId);
      await eventually(async () => {
        const s = await scrape();
        return value(s, 'waitless_sse_connections', { stream: 'job' }) === 0 && value(s, 'waitless_jobs_running', { name: 'metrics-held' }) === 0;
      }, 'the stream closed and the job released');
      const before = value(await scrape(), 'waitless_jobs_finished_total', { name: 'metrics-idle', status: 'cancelled' });
      assert.equal((await engine.waitless.cancel(idleId))?.status, 'cancelled');
      assert.equal((await engine.waitless.cancel(idleId))?.status, 'cancelled', 'a second cancel changes nothing');
      assert.equal(value(await scrape(), 'waitless_jobs_finished_total', { name: 'metrics-idle', status: 'cancelled' }) - before, 1);
    });

    it('measures pickup latency from when the job became claimable', async () => {
      const before = await scrape();
      const id = await submit('metrics-late', {});
      // The database says how long it has waited; only then does a worker for it start.
      await eventually(async () => value(await scrape(), 'waitless_queue_oldest_age_seconds', { name: 'metrics-late' }) >= 0.3, 'the job waited 0.3 s');
      const worker = engine.waitless.startWorker({ names: ['metrics-late'], pollInterval: 50 });
      try {
        await finished(engine.waitless, id);
        const now = await scrape();
        const waited = (n: Scrape) => value(n, 'waitless_job_pickup_latency_seconds', { name: 'metrics-late' }, 'sum');
        assert.equal(value(now, 'waitless_job_pickup_latency_seconds', { name: 'metrics-late' }) - value(before, 'waitless_job_pickup_latency_seconds', { name: 'metrics-late' }), 1);
        assert.ok(waited(now) - waited(before) >= 0.3, `the pickup took at least the 0.3 s the job waited, got ${waited(now) - waited(before)}`);
      } finally {
        await worker.stop();
      }
    });

    it('counts one pickup for a job handed back at shutdown and claimed again: its wait since is unknown', async () => {
      const before = await scrape();
      const key = `handed-back-${backend}`;
      const id = await submit('metrics-handed-back', { key });
      const first = engine.waitless.startWorker({ names: ['metrics-handed-back'], pollInterval: 50, shutdownGrace: 0 });
      await gate(`${key}-running`).promise;
      await first.stop();
      const job = await engine.waitless.get(id);
      assert.equal(job?.status, 'queued', 'handed back');
      const second = engine.waitless.startWorker({ names: ['metrics-handed-back'], pollInterval: 50 });
      try {
        assert.equal((await finished(engine.waitless, id)).status, 'completed');
        const now = await scrape();
        const pickups = (n: Scrape) => value(n, 'waitless_job_pickup_latency_seconds', { name: 'metrics-handed-back' });
        assert.equal(pickups(now) - pickups(before), 1, 'the first claim only');
      } finally {
        await second.stop();
      }
    });

    it('counts a lease that expired, and the job it failed', async () => {
      const before = await scrape();
      const stalled = deferred();
      try {
        // A worker whose heartbeats hang: its lease runs out, and housekeeping takes the job back.
        engine.waitless.startWorker({ names: ['metrics-stuck'], lease: 300, pollInterval: 50, debugPoints: { beforeHeartbeat: () => stalled.promise } });
        const id = await submit('metrics-stuck', { key: `stalled-${backend}` });
        const job = await finished(engine.waitless, id);
        assert.equal(job.status, 'failed');
        const now = await scrape();
        const delta = (name: string, labels: Record<string, string>) => value(now, name, labels) - value(before, name, labels);
        assert.equal(delta('waitless_lease_expiries_total', { name: 'metrics-stuck', outcome: 'failed' }), 1);
        assert.equal(delta('waitless_jobs_finished_total', { name: 'metrics-stuck', status: 'failed' }), 1);
        // The worker that lost the lease stops its handler at its next heartbeat tick.
        await eventually(async () => value(await scrape(), 'waitless_jobs_running', { name: 'metrics-stuck' }) === 0, 'the aborted handler let go of the job');
      } finally {
        stalled.resolve();
        gate(`stalled-${backend}`).resolve();
      }
    });
  });
}
