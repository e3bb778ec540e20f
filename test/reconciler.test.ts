import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { z } from 'zod';
import { WaitlessClient } from '../src/client/client.ts';
import { defineJob } from '../src/job/definition.ts';
import type { Job } from '../src/job/model.ts';
import { createReconciler, type Reconciler, type ReconcilerOptions, type TrackedJob } from '../src/reconciler/reconciler.ts';
import { BACKENDS, deferred, dropSchema, eventually, freshSchema, openEngine, POSTGRES_URL, startServer, type TestEngine, type TestServer } from './helpers.ts';

const gates = new Map<string, ReturnType<typeof deferred<void>>>();
const plan = defineJob({
  name: 'plan',
  input: z.object({ prd: z.string(), gate: z.string().optional() }),
  run: async ({ prd, gate }) => {
    if (gate) {
      let g = gates.get(gate);
      if (!g) gates.set(gate, (g = deferred()));
      await g.promise;
    }
    return { tasks: [`build ${prd}`] };
  },
});

for (const backend of BACKENDS) {
  describe(`reconciler on ${backend}`, () => {
    let engine: TestEngine;
    let server: TestServer;
    let client: WaitlessClient;
    const cleanups: Array<() => Promise<void>> = [];

    before(async () => {
      engine = await openEngine(backend, { jobs: [plan], webhooks: { retrySchedule: [], pollInterval: '50ms', ssrf: { allow: ['127.0.0.1'] } } });
      engine.waitless.startWorker({ pollInterval: 50 });
      server = await startServer(engine.waitless);
      client = new WaitlessClient({ baseUrl: server.url });
    });
    after(async () => {
      for (const g of gates.values()) g.resolve();
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
      await server.close();
      await engine.close();
    });

    /** A reconciler on its own store: a fresh PostgreSQL schema, or a PGlite folder. */
    async function storeLocation(): Promise<Pick<ReconcilerOptions, 'database' | 'schema'>> {
      if (backend === 'postgres') {
        const schema = freshSchema();
        cleanups.push(() => dropSchema(schema));
        return { database: POSTGRES_URL, schema };
      }
      const dir = await mkdtemp(join(tmpdir(), 'waitless-reconciler-'));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      return { database: dir };
    }

    async function open(options: Omit<ReconcilerOptions, 'source'>): Promise<Reconciler> {
      const reconciler = await createReconciler({ source: client, pollInterval: '50ms', ...options });
      cleanups.push(() => reconciler.close());
      return reconciler;
    }

    it('applies a job whose webhook never came, at the first scheduled check', async () => {
      const applied: string[] = [];
      const statuses: TrackedJob[] = [];
      const reconciler = (
        await open({ ...(await storeLocation()), cadence: ['300ms', '300ms'], apply: async (job) => void applied.push(job.id), onStatus: (t) => void statuses.push(t) })
      ).start();
      const job = await client.submit('plan', { prd: 'search' });
      const tracked = await reconciler.track(job.id, { planId: 7 });
      assert.equal(tracked.state, 'pending');
      const settled = await eventually(async () => {
        const t = await reconciler.get(job.id);
        return t?.state !== 'pending' && t;
      }, 'settled by polling');
      assert.equal(settled.state, 'applied');
      assert.equal(settled.settledBy, 'poll');
      assert.deepEqual(settled.context, { planId: 7 });
      assert.deepEqual(applied, [job.id]);
      assert.deepEqual(statuses.map((s) => s.state), ['applied']);
    });

    it('answers a track that waited on a concurrent track of the same job (a double click) with the row that won', async () => {
      const location = await storeLocation();
      const reconciler = await open({ ...location, apply: async () => {} });
      const job = await client.submit('plan', { prd: 'double click' });
      if (backend === 'pglite') {
        // One connection: calls queue instead of racing. Both still get the one row.
        const tracked = await Promise.all([reconciler.track(job.id, { click: 1 }), reconciler.track(job.id, { click: 2 })]);
        assert.deepEqual(tracked.map((t) => t.context), [{ click: 1 }, { click: 1 }]);
        return;
      }
      // The other click's insert is in flight, uncommitted, when this track starts: its insert
      // waits on that row, and its own snapshot cannot see it once it commits.
      const other = new pg.Client({ connectionString: POSTGRES_URL });
      await other.connect();
      try {
        await other.query('BEGIN');
        await other.query(`INSERT INTO ${location.schema}.tracked_jobs (job_id, state, context, next_check_at) VALUES ($1, 'pending', $2, now())`, [job.id, JSON.stringify({ click: 1 })]);
        const tracking = reconciler.track(job.id, { click: 2 });
        await eventually(async () => {
          const { rows } = await other.query<{ waiting: number }>(`SELECT count(*)::int AS waiting FROM pg_locks WHERE NOT granted`);
          return rows[0]!.waiting > 0;
        }, 'the second track waiting on the first');
        await other.query('COMMIT');
        const tracked = await tracking;
        assert.equal(tracked.jobId, job.id);
        assert.deepEqual(tracked.context, { click: 1 });
      } finally {
        await other.end();
      }
    });

    it('applies once when the webhook and the poll arrive together, in two processes', async () => {
      const location = await storeLocation();
      // PGlite is one process's database: two reconcilers on it share one instance instead.
      const applied = new Map<string, number>();
      const apply = async (job: Job) => void applied.set(job.id, (applied.get(job.id) ?? 0) + 1);
      const a = await open({ ...location, apply });
      const b = backend === 'postgres' ? await open({ ...location, apply }) : a;
      const jobs = await Promise.all(Array.from({ length: 20 }, (_, i) => client.submit('plan', { prd: `race ${i}` })));
      const done = await Promise.all(jobs.map((j) => client.result(j.id).then(() => client.get(j.id))));
      for (const job of done) await a.track(job.id);
      await Promise.all(done.flatMap((job) => [a.settle(job, 'webhook'), b.settle(job, 'poll'), a.settle(job, 'poll')]));
      for (const job of done) assert.equal(applied.get(job.id), 1, `job ${job.id} applied exactly once`);
    });

    it('takes real signed webhooks through handleWebhook, once, and ignores a redelivery', async () => {
      const applied: string[] = [];
      const secret = (await engine.waitless.webhooks.secrets('default'))[0]!.secret;
      const reconciler = await open({ ...(await storeLocation()), webhookSecrets: [secret], cadence: ['1h'], apply: async (job) => void applied.push(job.id) });
      const seen: number[] = [];
      const receiver: Server = createServer((req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          reconciler.handleWebhook({ headers: req.headers, body }).then(
            () => res.writeHead(204).end(),
            () => res.writeHead(400).end(),
          );
          seen.push(Date.now());
        });
      });
      await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
      cleanups.push(() => new Promise<void>((r) => receiver.close(() => r())));
      const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/webhooks`;
      const job = await client.submit('plan', { prd: 'hooks' }, { webhook: { url } });
      await reconciler.track(job.id);
      const settled = await eventually(async () => {
        const t = await reconciler.get(job.id);
        return t?.state === 'applied' && t;
      }, 'applied by webhook');
      assert.equal(settled.settledBy, 'webhook');
      const [delivery] = await engine.waitless.webhooks.listForJob('default', job.id);
      await engine.waitless.webhooks.redeliver('default', delivery!.id);
      await eventually(async () => (await engine.waitless.webhooks.listForJob('default', job.id))[0]!.attempts.length === 2, 'redelivered');
      assert.deepEqual(applied, [job.id]);
      await assert.rejects(reconciler.handleWebhook({ headers: { 'webhook-id': 'x', 'webhook-timestamp': '1', 'webhook-signature': 'v1,AAAA' }, body: '{}' }), /webhook/i);
    });

    it('gives up once when the cadence is spent, says how long it waited, and ignores a late result', async () => {
      const applied: string[] = [];
      const gaveUp: TrackedJob[] = [];
      const statuses: TrackedJob[] = [];
      const reconciler = (
        await open({
          ...(await storeLocation()),
          cadence: ['100ms', '100ms', '100ms'],
          apply: async (job) => void applied.push(job.id),
          onGiveUp: (t) => void gaveUp.push(t),
          onStatus: (t) => void statuses.push(t),
        })
      ).start();
      const key = `giveup-${backend}`;
      const job = await client.submit('plan', { prd: 'slow', gate: key });
      await reconciler.track(job.id);
      const failed = await eventually(async () => {
        const t = await reconciler.get(job.id);
        return t?.state === 'failed' && t;
      }, 'given up');
      assert.equal(failed.settledBy, 'give_up');
      assert.equal(failed.checks, 3);
      assert.match(failed.message ?? '', /waiting 300ms \(3 status checks\)/);
      assert.match(failed.message ?? '', /start it again/);
      assert.equal(gaveUp.length, 1);
      assert.deepEqual(statuses.map((s) => s.state), ['failed']);

      gates.get(key)!.resolve();
      const late = await client.result(job.id).then(() => client.get(job.id));
      assert.equal(await reconciler.settle(late, 'webhook'), undefined, 'a late result is a no-op');
      assert.equal((await reconciler.get(job.id))?.state, 'failed');
      assert.deepEqual(applied, []);
      assert.equal(gaveUp.length, 1);
    });

    it('records a result nobody wants any more as stale, without applying it', async () => {
      const applied: string[] = [];
      const reconciler = await open({
        ...(await storeLocation()),
        apply: async (job) => void applied.push(job.id),
        isRelevant: (_job, tracked) => (tracked.context as { version: number }).version === 2,
      });
      const job = await client.submit('plan', { prd: 'v1 of the document' });
      await reconciler.track(job.id, { version: 1 });
      await client.result(job.id);
      const settled = await reconciler.settle(await client.get(job.id));
      assert.equal(settled?.state, 'stale');
      assert.deepEqual(applied, []);
    });

    it('resumes pending checks after the consumer restarts, and applies once', async () => {
      const location = await storeLocation();
      const applied: string[] = [];
      const first = await createReconciler({ source: client, ...location, cadence: ['400ms', '400ms'], apply: async (job) => void applied.push(job.id) });
      const job = await client.submit('plan', { prd: 'restart' });
      await first.track(job.id);
      await first.close(); // the consumer goes down before its first check
      const second = (await open({ ...location, cadence: ['400ms', '400ms'], apply: async (j) => void applied.push(j.id) })).start();
      await eventually(async () => (await second.get(job.id))?.state === 'applied', 'applied after the restart');
      assert.deepEqual(applied, [job.id]);
    });
  });
}
