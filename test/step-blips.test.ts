/**
 * Step writes ride out a database blip: the worker's connection to PostgreSQL is cut (a real
 * TCP proxy) while a step's start, a step's result or a progress report is being recorded; the
 * write is tried again within the lease, the step's side effect runs exactly once, and the job
 * completes on its first attempt. And a write tried again after its first try did commit (its
 * answer lost with the connection) is not applied twice.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import pg from 'pg';
import { z } from 'zod';
import { startStep as startStepSql } from '../src/store/queries.ts';
import { createWaitless, type Waitless } from '../src/engine.ts';
import { internals } from '../src/internals.ts';
import { defineJob } from '../src/job/definition.ts';
import { JobWriteBuffer } from '../src/worker/job-writes.ts';
import { createGates, dropSchema, eventually, finished, freshSchema, POSTGRES_URL, silentLogger } from './helpers.ts';
import { freePort, tcpProxy, type TcpProxy } from './tcp-proxy.ts';

const { gate, releaseAll } = createGates();
/** How often each job's step body ran (its side effect), by the input's key. */
const sideEffects = new Map<string, number>();

const charge = defineJob({
  name: 'charge',
  input: z.object({ key: z.string(), cutAt: z.enum(['start', 'result', 'progress']) }),
  run: async ({ key, cutAt }, ctx) => {
    // Each point tells the test it is there, then waits while the test cuts the connection.
    const hold = async (point: string) => {
      if (cutAt !== point) return;
      gate(`${key}:reached`).resolve();
      await gate(`${key}:go`).promise;
    };
    await hold('start');
    const receipt = await ctx.step('charge the card', async () => {
      sideEffects.set(key, (sideEffects.get(key) ?? 0) + 1);
      await hold('result');
      return { receipt: `r-${key}` };
    });
    await hold('progress');
    await ctx.progress({ stage: 'charged' });
    return receipt;
  },
});

/** Claimed by hand by the test: no worker runs it. */
const ledger = defineJob({ name: 'ledger', input: z.object({}), run: async () => null });

describe('a database blip while a step is recorded, on postgres', () => {
  let proxy: TcpProxy;
  let waitless: Waitless;
  const schema = freshSchema();
  const logs: Array<{ msg: string; jobId?: string }> = [];
  before(async () => {
    proxy = tcpProxy(await freePort());
    await proxy.open();
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as { msg: string; jobId?: string });
        done();
      },
    });
    waitless = await createWaitless({ jobs: [charge, ledger], database: `postgres://postgres@127.0.0.1:${proxy.port}/test`, schema, logger: pino({ level: 'warn' }, sink) });
    waitless.startWorker({ pollInterval: 100, names: ['charge'] });
  });
  after(async () => {
    releaseAll();
    await proxy?.open().catch(() => {});
    await waitless?.close();
    await proxy?.close();
    await dropSchema(schema);
  });

  const cases = [
    { cutAt: 'start', what: "a step's start", retried: 'the database did not answer while a step or token usage was recorded; retrying within the lease' },
    { cutAt: 'result', what: "a step's result", retried: 'the database did not answer while a step or token usage was recorded; retrying within the lease' },
    { cutAt: 'progress', what: 'a progress report', retried: 'buffered job writes did not reach the database; sending them again with the next round' },
  ] as const;

  for (const { cutAt, what, retried } of cases) {
    it(`writes ${what} once the database is back: the side effect ran once, the job completes on attempt 1`, async () => {
      const key = `cut-${cutAt}`;
      const { job } = await waitless.submit('charge', { key, cutAt });
      await gate(`${key}:reached`).promise;
      // The database goes away just as the handler is about to have the write made.
      await proxy.close();
      gate(`${key}:go`).resolve();
      // The first word of the job's worker after the cut: with the fix, that it retries the write.
      const first = await eventually(() => logs.find((l) => l.jobId === job.id), `the worker to say what it does about ${what}`);
      await proxy.open();

      const done = await finished(waitless, job.id, 30_000);
      assert.equal(done.status, 'completed', done.error?.message);
      assert.equal(done.attempt, 1);
      assert.deepEqual(done.result, { receipt: `r-${key}` });
      assert.equal(sideEffects.get(key), 1, 'the step ran once');
      const events = await waitless.events(job.id);
      const steps = events.filter((e) => e.type === 'step').map((e) => e.data.status);
      assert.deepEqual(steps, ['started', 'completed'], 'each step record written once');
      assert.equal(events.filter((e) => e.type === 'progress').length, 1, 'the progress report written once');
      assert.equal(first.msg, retried);
    });
  }

  // The same SQL runs on PGlite; the connection is cut only here.
  it('is answered as written and not applied twice (step start and result, usage, a round of buffered writes)', async () => {
      const { store } = internals(waitless);
      const { job } = await waitless.submit('ledger', {});
      const [claimed] = await store.claim(['ledger'], 1, 'test-worker', 60_000);
      assert.equal(claimed?.job.id, job.id);
      const { leaseToken } = claimed;
      const twice = async (write: () => Promise<boolean>) => {
        assert.equal(await write(), true);
        assert.equal(await write(), true, 'the second try finds the first applied');
      };
      const start = randomUUID();
      await twice(() => store.startStep(job.id, leaseToken, 'pay', start));
      const result = randomUUID();
      const startedAt = new Date();
      await twice(() => store.completeStep(job.id, leaseToken, 'pay', { ok: true }, startedAt, result));
      const usage = randomUUID();
      await twice(() => store.recordUsage(job.id, leaseToken, { model: 'm', promptTokens: 10, completionTokens: 5, totalTokens: 15 }, usage));
      const round = randomUUID();
      const writes = [
        { id: job.id, token: leaseToken, kind: 'output' as const, body: 'hello', round },
        { id: job.id, token: leaseToken, kind: 'progress' as const, body: '{"percent":50}', round },
      ];
      for (let i = 0; i < 2; i++) assert.deepEqual([...(await store.writeJobs(writes))], [leaseToken]);

      const read = (await waitless.get(job.id))!;
      assert.equal(read.output, 'hello');
      assert.equal(read.usage?.totalTokens, 15);
      const events = await waitless.events(job.id);
      assert.deepEqual(
        events.filter((e) => e.type !== 'status').map((e) => `${e.type}:${typeof e.data.status === 'string' ? e.data.status : ''}`),
        ['step:started', 'step:completed', 'output:', 'progress:'],
      );
      // A new write id is a new write; a fenced-out lease is refused whatever its id.
      assert.equal(await store.startStep(job.id, leaseToken, 'pay-again', randomUUID()), true);
      assert.equal(await store.startStep(job.id, randomUUID(), 'pay-again', start), false);
      await waitless.cancel(job.id);
    });

  it('answers a try sent while the earlier one is still committing as written, and applies it once', async () => {
    const { store } = internals(waitless);
    const { job } = await waitless.submit('ledger', {});
    const [claimed] = await store.claim(['ledger'], 1, 'test-worker', 60_000);
    assert.equal(claimed?.job.id, job.id);
    const writeId = randomUUID();
    // The first try, as the server still runs it after the client lost the connection: applied, not yet committed.
    const first = new pg.Client({ connectionString: POSTGRES_URL });
    await first.connect();
    try {
      await first.query(`SET search_path TO ${schema}`);
      await first.query('BEGIN');
      const sql = startStepSql(job.id, claimed.leaseToken, 'pay', writeId);
      assert.equal((await first.query(sql.text, sql.values)).rowCount, 1);
      const pid = (await first.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const retried = store.startStep(job.id, claimed.leaseToken, 'pay', writeId);
      await eventually(
        async () => (await first.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [pid])).rows[0]!.n === 1,
        'the retry waiting on the first try',
      );
      await first.query('COMMIT');
      assert.equal(await retried, true, 'written: not mistaken for a lost lease');
      const started = (await waitless.events(job.id)).filter((e) => e.type === 'step');
      assert.equal(started.length, 1, 'applied once');
    } finally {
      await first.end();
      await waitless.cancel(job.id);
    }
  });

  it('drops a log line the database refused (not a blip) after one try, and counts it; the output beside it is kept', async () => {
    const { store } = internals(waitless);
    const { job } = await waitless.submit('ledger', {});
    const [claimed] = await store.claim(['ledger'], 1, 'test-worker', 60_000);
    assert.equal(claimed?.job.id, job.id);
    const writes = new JobWriteBuffer(store, 10, silentLogger);
    const writer = writes.open(job.id, claimed.leaseToken, () => {});
    try {
      writer.write('kept');
      writer.log('{not json'); // refused by the database, whichever round carries it
      await assert.rejects(writer.flush());
      await writer.flush(); // the output again, without the line
      assert.equal(writer.droppedLogLines(), 1);
      assert.equal((await waitless.get(job.id))?.output, 'kept');
    } finally {
      writer.close();
      writes.stop();
      await waitless.cancel(job.id);
    }
  });
});

