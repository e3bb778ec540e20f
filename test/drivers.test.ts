import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { z } from 'zod';
import { createWaitless } from '../src/engine.ts';
import { internals } from '../src/internals.ts';
import { defineJob } from '../src/job/definition.ts';
import { dropSchema, eventually, finished, freshSchema, POSTGRES_URL, silentLogger } from './helpers.ts';

const quick = defineJob({ name: 'quick', input: z.object({ n: z.number() }), run: async ({ n }) => ({ n }) });

describe('drivers', () => {
  it("share an app's own PGlite instance without changing its search_path", async () => {
    const db = await PGlite.create('memory://');
    try {
      await db.exec(`CREATE TABLE notes (body text); INSERT INTO notes VALUES ('mine')`);
      const waitless = await createWaitless({ jobs: [quick], pglite: db, logger: silentLogger });
      waitless.startWorker({ pollInterval: 20 });
      const { job } = await waitless.submit(quick, { n: 7 });
      const done = await finished(waitless, job.id);
      assert.deepEqual(done.result, { n: 7 });
      assert.deepEqual((await db.query('SELECT body FROM notes')).rows, [{ body: 'mine' }], "the app's own tables still resolve");
      await waitless.close();
      assert.equal(db.closed, false, 'a borrowed instance stays open');
      assert.deepEqual((await db.query('SELECT body FROM notes')).rows, [{ body: 'mine' }]);
    } finally {
      await db.close();
    }
  });

  it("fail a transaction whose connection is lost between its statements, without crashing the process (PostgreSQL)", async () => {
    const schema = freshSchema();
    const waitless = await createWaitless({ jobs: [quick], database: POSTGRES_URL, schema, logger: silentLogger });
    const { driver } = internals(waitless);
    const admin = new pg.Client({ connectionString: POSTGRES_URL });
    await admin.connect();
    try {
      await assert.rejects(
        driver.transaction(async (tx) => {
          const [{ pid }] = await tx.query<{ pid: number }>({ text: 'SELECT pg_backend_pid() AS pid', values: [] }) as [{ pid: number }];
          // Idle in its transaction, as a lock holder waits between statements, when the server ends it.
          await admin.query('SELECT pg_terminate_backend($1)', [pid]);
          await eventually(async () => (await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount === 0, 'the backend gone');
          await tx.query({ text: 'SELECT 1', values: [] });
        }),
      );
      // The broken connection left the pool: the next statements run on a new one.
      for (let i = 0; i < 12; i++) assert.equal((await driver.query<{ one: number }>({ text: 'SELECT 1 AS one', values: [] }))[0]?.one, 1);
    } finally {
      await admin.end();
      await waitless.close();
      await dropSchema(schema);
    }
  });

  it('keep waking workers after the LISTEN connection is killed, again and again (PostgreSQL)', async () => {
    const schema = freshSchema();
    const waitless = await createWaitless({ jobs: [quick], database: POSTGRES_URL, schema, logger: silentLogger });
    const admin = new pg.Client({ connectionString: POSTGRES_URL });
    await admin.connect();
    try {
      // A poll far longer than the test: only a notification can wake this worker.
      waitless.startWorker({ pollInterval: 600_000 });
      const killListeners = async () => {
        const { rows } = await admin.query<{ n: number }>(
          `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE query ILIKE $1`,
          [`LISTEN ${schema}_%`],
        );
        return rows[0]!.n;
      };
      const runOne = async (n: number) => {
        const { job } = await waitless.submit(quick, { n });
        return eventually(async () => (await waitless.get(job.id))?.status === 'completed', `job ${n} picked up by notification`, 20_000);
      };
      await runOne(1);
      for (let round = 2; round <= 4; round++) {
        assert.ok((await eventually(killListeners, 'a listening connection to kill', 20_000)) >= 1);
        await runOne(round);
      }
    } finally {
      await admin.end();
      await waitless.close();
      await dropSchema(schema);
    }
  });

  it('feed a job stream a change made while the LISTEN connection was down, once it is back (PostgreSQL)', async () => {
    const schema = freshSchema();
    // No backstop re-read within the test: only the reconnect's resync can bring the change.
    const waitless = await createWaitless({ jobs: [quick], database: POSTGRES_URL, schema, logger: silentLogger, events: { backstopMs: 600_000 } });
    const admin = new pg.Client({ connectionString: POSTGRES_URL });
    await admin.connect();
    try {
      await internals(waitless).hub.start();
      const { job } = await waitless.submit(quick, { n: 1 });
      const subscription = internals(waitless).hub.subscribe('default', job.id, 0);
      assert.deepEqual(
        (await subscription.next()).map((e) => e.seq),
        [1],
      );
      const { rows } = await admin.query<{ n: number }>(`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE query ILIKE $1`, [`LISTEN ${schema}_%`]);
      assert.ok(rows[0]!.n >= 1, 'a listening connection was killed');
      await waitless.cancel(job.id);
      const events = await subscription.next();
      assert.deepEqual(
        events.map((e) => [e.seq, e.data.status]),
        [[2, 'cancelled']],
      );
      subscription.close();
    } finally {
      await admin.end();
      await waitless.close();
      await dropSchema(schema);
    }
  });
});
