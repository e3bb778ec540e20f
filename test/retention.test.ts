/**
 * Retention: finished jobs past their retention are deleted with every row that belongs to
 * them; unfinished and recent ones, and ones a webhook still waits on, stay; definition, tenant
 * and failed rules apply; one process prunes at a time; `waitless prune` reports per table.
 * "Old" is made by moving timestamps back in the database, never by waiting.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { z } from 'zod';
import { InvalidOptionError } from '../src/errors.ts';
import { defineJob } from '../src/job/definition.ts';
import { internals } from '../src/internals.ts';
import { createReconciler } from '../src/reconciler/reconciler.ts';
import type { Job } from '../src/job/model.ts';
import { BACKENDS, createGates, dropSchema, eventually, finished, freshSchema, openEngine, POSTGRES_URL, type TestEngine } from './helpers.ts';

const CLI = join(fileURLToPath(new URL('../', import.meta.url)), 'src/cli/main.ts');
const gates = createGates();
const children = new Set<ChildProcess>();
after(() => {
  gates.releaseAll();
  for (const child of children) child.kill('SIGKILL');
});

const echo = defineJob({
  name: 'echo',
  input: z.object({ n: z.number() }),
  retry: { attempts: 1 },
  async run({ n }, ctx) {
    await ctx.step('double', async () => n * 2);
    return { n };
  },
});
/** Its own rule: completed after an hour, failed (no `failed` given) too. */
const brief = defineJob({ name: 'brief', input: z.object({}), retention: '1h', run: async () => ({ ok: true }) });
const fails = defineJob({
  name: 'fails',
  input: z.object({}),
  retry: { attempts: 1 },
  run: async () => {
    throw new Error('always');
  },
});
const held = defineJob({
  name: 'held',
  input: z.object({ gate: z.string() }),
  run: async ({ gate }) => {
    await gates.gate(gate).promise;
    return {};
  },
});
const JOBS = [echo, brief, fails, held];

/** Moves a job's life back by `hours`: it finished (and started, and was created) that long ago. */
async function age(engine: TestEngine, id: string, hours: number): Promise<void> {
  await internals(engine.waitless).driver.query({
    text: `UPDATE jobs SET finished_at = finished_at - $2 * interval '1 hour', created_at = created_at - $2 * interval '1 hour',
      started_at = started_at - $2 * interval '1 hour' WHERE id = $1`,
    values: [id, hours],
  });
}

async function count(engine: TestEngine, sql: string, values: unknown[] = []): Promise<number> {
  const [row] = await internals(engine.waitless).driver.query<{ n: number }>({ text: `SELECT count(*)::int AS n FROM ${sql}`, values });
  return row!.n;
}

async function run(engine: TestEngine, name: string, input: unknown, tenant = 'default', idempotencyKey?: string): Promise<Job> {
  const { job } = await engine.waitless.submit(name, input, { tenant, idempotencyKey });
  return finished(engine.waitless, job.id, 15_000, tenant);
}

/** A webhook delivery of the job, as the outbox writes them, with one attempt. */
async function addDelivery(engine: TestEngine, job: Job, status: 'pending' | 'succeeded', tenant = 'default'): Promise<string> {
  const id = randomUUID();
  const { driver } = internals(engine.waitless);
  await driver.query({
    text: `INSERT INTO webhook_deliveries (id, tenant_id, job_id, url, event_type, payload, status, next_attempt_at)
      VALUES ($1, $2, $3, 'https://receiver.example/hook', 'job.completed', '{}', $4, now() + interval '1 hour')`,
    values: [id, tenant, job.id, status],
  });
  await driver.query({
    text: `INSERT INTO webhook_attempts (delivery_id, n, tenant_id, started_at, status_code, latency_ms) VALUES ($1, 1, $2, now(), 500, 10)`,
    values: [id, tenant],
  });
  return id;
}

for (const backend of BACKENDS) {
  describe(`retention on ${backend}`, () => {
    // One engine for both tests (opening PGlite is the slow part): the first works in tenant
    // `default`, the second in tenants of its own, after it.
    let engine: TestEngine;
    before(async () => {
      engine = await openEngine(backend, {
        jobs: JOBS,
        // Batches of two: a run takes several, stepping over the jobs other rules keep between them.
        retention: { default: '720h', failed: '2160h', tenants: { archive: { default: '8760h' }, strict: { failed: '2h' } }, batchSize: 2 },
      });
      engine.waitless.startWorker({ pollInterval: 50 });
    });
    after(async () => {
      gates.gate(`${backend}-running`).resolve();
      await engine.close();
    });

    it('deletes old finished jobs with their events, steps, deliveries and keys; keeps unfinished, recent and still-delivering ones', async () => {
      const { waitless } = engine;
      const [old, recent, waiting] = await Promise.all([
        run(engine, 'echo', { n: 1 }, 'default', 'old-key'),
        run(engine, 'echo', { n: 2 }, 'default', 'recent-key'),
        run(engine, 'echo', { n: 3 }),
      ]);
      const oldDelivery = await addDelivery(engine, old, 'succeeded');
      const pendingDelivery = await addDelivery(engine, waiting, 'pending');
      const running = (await waitless.submit('held', { gate: `${backend}-running` })).job;
      await eventually(async () => (await waitless.get(running.id))?.status === 'running', 'held job running');
      const queued = (await waitless.submit('echo', { n: 4 }, { delay: '1h' })).job;
      for (const job of [old, waiting]) await age(engine, job.id, 31 * 24);
      await age(engine, recent.id, 29 * 24);
      // Unfinished jobs created long ago are not finished: no retention applies to them.
      await internals(waitless).driver.query({ text: `UPDATE jobs SET created_at = now() - interval '400 days', started_at = now() - interval '400 days' WHERE id = ANY($1::uuid[])`, values: [[running.id, queued.id]] });
      // An idempotency key past its day (its job stays), and a signing secret whose overlap ended.
      await internals(waitless).driver.query({ text: `UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'recent-key'`, values: [] });
      await waitless.webhooks.secrets('default');
      await waitless.webhooks.rotateSecret('default', 0);
      const eventsOfOld = await count(engine, 'job_events WHERE job_id = $1', [old.id]);

      const dry = await waitless.prune({ dryRun: true });
      assert.equal(await count(engine, 'jobs'), 5, 'a dry run deletes nothing');
      // The worker's own housekeeping round does the same as prune() would.
      await internals(waitless).housekeeping.runNow('retention');

      const ids = (await internals(waitless).driver.query<{ id: string }>({ text: 'SELECT id FROM jobs', values: [] })).map((r) => r.id);
      assert.deepEqual(new Set(ids), new Set([recent.id, waiting.id, running.id, queued.id]), 'only the old finished job went');
      assert.equal(await waitless.get(old.id), undefined);
      assert.equal(await count(engine, 'job_events WHERE job_id = $1', [old.id]), 0);
      assert.equal(await count(engine, 'job_steps WHERE job_id = $1', [old.id]), 0);
      assert.equal(await count(engine, 'webhook_deliveries WHERE id = $1', [oldDelivery]), 0);
      assert.equal(await count(engine, 'webhook_attempts WHERE delivery_id = $1', [oldDelivery]), 0);
      assert.equal(await count(engine, 'webhook_deliveries WHERE id = $1', [pendingDelivery]), 1, 'a pending delivery keeps its job');
      assert.equal(await count(engine, 'idempotency_keys'), 0, "the old job's key went with it, the expired one on its own");
      assert.equal(await count(engine, 'webhook_secrets'), 1, 'the expired secret went; the one signing now stays');
      assert.deepEqual(dry.deleted, {
        jobs: 1,
        job_events: eventsOfOld,
        job_steps: 1,
        webhook_deliveries: 1,
        webhook_attempts: 1,
        idempotency_keys: 2,
        webhook_secrets: 1,
      });
      // A replayed submit under a forgotten key is a new request: a new job, not an error.
      const replay = await waitless.submit('echo', { n: 1 }, { idempotencyKey: 'old-key' });
      assert.equal(replay.created, true);

      // Once its delivery is done, the job that waited for it goes too; nothing else changes.
      await internals(waitless).driver.query({ text: `UPDATE webhook_deliveries SET status = 'succeeded' WHERE id = $1`, values: [pendingDelivery] });
      const report = await waitless.prune();
      assert.equal(report.skipped, false);
      assert.equal(report.deleted.jobs, 1);
      assert.equal(report.deleted.webhook_deliveries, 1);
      assert.equal(await waitless.get(waiting.id), undefined);
      assert.ok(await waitless.get(running.id));
      assert.ok(await waitless.get(recent.id));
    });

    it('applies the tenant rule over the definition, the definition over the default, and keeps failed jobs longer', async () => {
      // [tenant, job, hours ago, kept?]
      const cases: Array<[string, string, number, boolean]> = [
        ['plain', 'echo', 31 * 24, false], // the engine's 30 days
        ['plain', 'echo', 29 * 24, true],
        ['plain', 'brief', 2, false], // the definition's own hour
        ['plain', 'fails', 31 * 24, true], // failed: 90 days
        ['plain', 'fails', 91 * 24, false],
        ['archive', 'echo', 300 * 24, true], // the tenant's year
        ['archive', 'brief', 2, true], // the tenant wins over the definition
        ['archive', 'fails', 366 * 24, false], // the tenant's default speaks for failed jobs too
        ['strict', 'fails', 3, false], // the tenant's failed rule
        ['strict', 'echo', 3, true], // ...which says nothing of completed jobs: the engine's 30 days
        ['strict', 'brief', 2, false], // ...nor of the definition's
      ];
      const jobs = await Promise.all(cases.map(([tenant, name, hours]) => run(engine, name, name === 'echo' ? { n: hours } : {}, tenant)));
      for (const [i, [, name, hours]] of cases.entries()) {
        assert.equal(jobs[i]!.status, name === 'fails' ? 'failed' : 'completed');
        await age(engine, jobs[i]!.id, hours);
      }
      // A run whose signal is spent deletes nothing and says it is not done (a worker's round
      // stops so when its time is up, and the next round goes on).
      const stopped = await engine.waitless.prune({ signal: AbortSignal.abort() });
      assert.deepEqual([stopped.complete, stopped.deleted.jobs], [false, 0]);
      const dry = await engine.waitless.prune({ dryRun: true });
      const report = await engine.waitless.prune();
      assert.equal(report.complete, true);
      const doomed = cases.filter(([, , , kept]) => !kept).length;
      assert.equal(report.deleted.jobs, doomed);
      assert.equal(dry.deleted.jobs, doomed);
      assert.equal(dry.deleted.job_events, report.deleted.job_events, 'the dry run counted what the run deleted');
      for (const [i, [tenant, name, hours, kept]] of cases.entries()) {
        const job = await engine.waitless.get(jobs[i]!.id, { tenant });
        assert.equal(Boolean(job), kept, `${tenant}/${name} finished ${hours} h ago: ${kept ? 'kept' : 'deleted'}`);
      }
      // An operator's override for one run: everything finished over an hour ago.
      await assert.rejects(engine.waitless.prune({ olderThan: '10ms' }), (error: unknown) => error instanceof InvalidOptionError && /olderThan must be at least 1s/.test(error.message));
      await engine.waitless.prune({ olderThan: '1h' });
      for (const [i, [tenant]] of cases.entries()) assert.equal(await engine.waitless.get(jobs[i]!.id, { tenant }), undefined);
    });
  });
}

describe('retention options', () => {
  it('refuses a retention that is not a duration, or under a second', async () => {
    assert.throws(() => defineJob({ name: 'x', input: z.object({}), retention: '30 days' as never, run: async () => ({}) }), /Job "x": retention must be a duration/);
    assert.throws(() => defineJob({ name: 'x', input: z.object({}), retention: { failed: 5 }, run: async () => ({}) }), /retention.failed must be at least 1s/);
    await assert.rejects(openEngine('pglite', { jobs: [], retention: { failed: '876001h' } }), /retention.failed must be at most 100 years/);
    await assert.rejects(openEngine('pglite', { jobs: [], retention: { tenants: { a: { default: 'soon' as never } } } }), (error: unknown) => {
      assert.ok(error instanceof InvalidOptionError);
      assert.match(error.message, /retention.tenants\["a"\].default must be a duration/);
      return true;
    });
  });
});

if (BACKENDS.includes('postgres')) {
  describe('pruning across processes (postgres)', () => {
    it('one process prunes at a time: another engine and `waitless prune` skip while it runs, then the CLI reports per table', async () => {
      // A's worker does not prune on its own (its first round could be the one the test holds).
      const a = await openEngine('postgres', { jobs: JOBS, retention: false });
      const b = await openEngine('postgres', { jobs: JOBS, schema: a.schema, retention: { interval: '1h' } });
      const blocker = new pg.Client({ connectionString: POSTGRES_URL });
      await blocker.connect();
      try {
        a.waitless.startWorker({ pollInterval: 50 });
        const [first, second] = await Promise.all([run(a, 'echo', { n: 1 }), run(a, 'echo', { n: 2 })]);
        await age(a, first.id, 31 * 24);
        await age(a, second.id, 31 * 24);
        // Hold engine A's run at its last table (after it took the pruning lock): a transaction
        // of the test's own locks webhook_secrets until the test lets go.
        await blocker.query(`BEGIN; LOCK TABLE ${a.schema}.webhook_secrets IN ACCESS EXCLUSIVE MODE`);
        const runA = a.waitless.prune();
        await eventually(async () => {
          const { rows } = await blocker.query(`SELECT 1 FROM pg_locks WHERE NOT granted AND relation = '${a.schema}.webhook_secrets'::regclass`);
          return rows.length > 0;
        }, "engine A's run waiting at webhook_secrets");
        const reportB = await b.waitless.prune();
        assert.equal(reportB.skipped, true, 'the second process does not prune meanwhile');
        const cli = await runCli(['prune', '--schema', a.schema]);
        assert.equal(cli.code, 0, cli.stderr);
        assert.match(cli.stdout, /another process is pruning this database right now; nothing was deleted/);
        await blocker.query('COMMIT');
        const reportA = await runA;
        assert.equal(reportA.skipped, false);
        assert.equal(reportA.deleted.jobs, 2);

        // Done: the CLI runs now, with the rules of its own flags.
        const third = await run(a, 'echo', { n: 3 });
        await age(a, third.id, 3);
        // The tenant's own rule (4 h) keeps it from the engine's (2 h)...
        const kept = await runCli(['prune', '--schema', a.schema, '--retention', '2h', '--dry-run'], { WAITLESS_RETENTION_TENANTS: 'other=1h,default=4h/1h' });
        assert.equal(kept.code, 0, kept.stderr);
        assert.match(kept.stdout, /dry run: would delete, past their retention:\n\s+jobs\s+0\n/);
        // ...and without it, the engine's rule applies.
        const dry = await runCli(['prune', '--schema', a.schema, '--retention', '2h', '--dry-run']);
        assert.equal(dry.code, 0, dry.stderr);
        assert.match(dry.stdout, /dry run: would delete, past their retention:\n\s+jobs\s+1\n/);
        const pruned = await runCli(['prune', '--schema', a.schema, '--retention', '2h']);
        assert.equal(pruned.code, 0, pruned.stderr);
        assert.match(pruned.stdout, /deleted, past their retention:\n\s+jobs\s+1\n\s+job_events\s+[1-9]\d*\n\s+job_steps\s+1\n/);
        assert.equal(await a.waitless.get(third.id), undefined);
      } finally {
        await blocker.query('ROLLBACK').catch(() => {});
        await blocker.end();
        await b.waitless.close();
        await a.close();
      }
    });
  });
}

/** Runs the CLI to its end (killed after 60 s), registered so that a failing test leaves no process. */
function runCli(args: string[], extraEnv: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WAITLESS_') && k !== 'DATABASE_URL'));
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args], { env: { ...env, LOG_LEVEL: 'silent', DATABASE_URL: POSTGRES_URL, ...extraEnv }, timeout: 60_000, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      children.delete(child);
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
    });
    children.add(child);
  });
}

// The reconciler's SQL is the same on both backends; one is enough for its few statements.
for (const backend of BACKENDS.filter((b) => b === 'postgres' || !BACKENDS.includes('postgres'))) {
  describe(`reconciler retention on ${backend}`, () => {
    it('forgets settled jobs and handled webhook ids past its retention, never pending ones', async () => {
      const schema = freshSchema();
      // The test reaches the reconciler's tables itself, to make rows old: on PostgreSQL through a
      // client of its own, on PGlite through the instance it lends the reconciler.
      const pglite = backend === 'pglite' ? await PGlite.create('memory://') : undefined;
      const client = backend === 'postgres' ? new pg.Client({ connectionString: POSTGRES_URL }) : undefined;
      await client?.connect();
      const sql = async (text: string) => void (await (pglite ? pglite.exec(text) : client!.query(text)));
      const reconciler = await createReconciler({
        source: { get: async () => ({}) as Job },
        apply: async () => {},
        ...(pglite ? { pglite } : { database: POSTGRES_URL }),
        schema,
        retention: '720h',
      });
      try {
        for (const id of ['settled-old', 'settled-new', 'pending-old']) await reconciler.track(id);
        for (const id of ['settled-old', 'settled-new']) await reconciler.settle({ id, status: 'completed', done: true, result: {} } as Job);
        await sql(`UPDATE ${schema}.tracked_jobs SET settled_at = now() - interval '31 days' WHERE job_id = 'settled-old'`);
        await sql(`UPDATE ${schema}.tracked_jobs SET tracked_at = now() - interval '400 days' WHERE job_id = 'pending-old'`);
        await sql(`INSERT INTO ${schema}.seen_webhooks (webhook_id, seen_at) VALUES ('msg_old', now() - interval '31 days'), ('msg_new', now())`);
        assert.deepEqual(await reconciler.prune(), { tracked_jobs: 1, seen_webhooks: 1 });
        assert.equal(await reconciler.get('settled-old'), undefined);
        assert.equal((await reconciler.get('settled-new'))?.state, 'applied');
        assert.equal((await reconciler.get('pending-old'))?.state, 'pending');
      } finally {
        await reconciler.close();
        await client?.end();
        await pglite?.close();
        if (backend === 'postgres') await dropSchema(schema);
      }
    });
  });
}
