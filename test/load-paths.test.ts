/**
 * The paths that carry load: the event hub (one read per change for every reader of a job,
 * bounded slow readers, tenant streams fed from shared reads), the worker's batched writes
 * (many jobs per statement, each fenced alone, one bad write isolated) and grouped finishes,
 * and the wake-up a submit sends after its commit.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { z } from 'zod';
import { isTerminalEvent } from '../src/contract/job-events.ts';
import type { Waitless } from '../src/engine.ts';
import { internals } from '../src/internals.ts';
import { defineJob, type JobContext } from '../src/job/definition.ts';
import type { JobEvent } from '../src/job/model.ts';
import { finishJobs, listEvents, listEventsOfJobs, getJobSummariesById, writeJobs } from '../src/store/queries.ts';
import { JobWriteBuffer } from '../src/worker/job-writes.ts';
import { BACKENDS, createGates, deferred, eventually, finished, openEngine, silentLogger, type TestEngine } from './helpers.ts';

type Handler = (input: { n: number }, ctx: JobContext) => Promise<unknown>;

function probeJob(handler: { current: Handler }) {
  return defineJob({
    name: 'probe',
    input: z.object({ n: z.number() }),
    retry: { attempts: 1 },
    run: (input, ctx) => handler.current(input, ctx),
  });
}

/** Counts the statements the engine runs, by their text. */
function countStatements(waitless: Waitless): Map<string, number> {
  const counts = new Map<string, number>();
  const driver = internals(waitless).driver;
  const query = driver.query.bind(driver);
  driver.query = (sql) => {
    counts.set(sql.text, (counts.get(sql.text) ?? 0) + 1);
    return query(sql);
  };
  return counts;
}

const textOf = { eventReads: listEventsOfJobs([], 1).text, singleJobReads: listEvents('', '', 0, 1).text, summaries: getJobSummariesById([]).text, writes: writeJobs([]).text };

/** Reads a subscription to the job's terminal event; answers every event it got, in order. */
async function readAll(next: () => Promise<JobEvent[]>): Promise<JobEvent[]> {
  const seen: JobEvent[] = [];
  for (;;) {
    const events = await next();
    if (events.length === 0) return seen;
    seen.push(...events);
    if (events.some(isTerminalEvent)) return seen;
  }
}

const assertWholeLog = (events: JobEvent[], last: number) =>
  assert.deepEqual(
    events.map((e) => e.seq),
    Array.from({ length: last }, (_, i) => i + 1),
  );

for (const backend of BACKENDS) {
  describe(`load paths on ${backend}`, () => {
    const engines: TestEngine[] = [];
    const open = async (handler: { current: Handler }, events?: Parameters<typeof openEngine>[1]['events']) => {
      // The hub's backstop re-read is pushed out of the way, so every read counted comes from a change.
      const engine = await openEngine(backend, { jobs: [probeJob(handler)], events: { backstopMs: 600_000, ...events } });
      engines.push(engine);
      // As the HTTP app does: listening before the first reader, so no reader starts with a resync.
      await internals(engine.waitless).hub.start();
      return engine.waitless;
    };
    afterEach(async () => {
      await Promise.all(engines.splice(0).map((e) => e.close()));
    });

    it('feeds fifty readers of a job from one read and the events their statements announce, each the whole log in order', async () => {
      const gates = createGates();
      const big = 'x'.repeat(4000);
      const handler = {
        current: (async (_input, ctx) => {
          await gates.gate('written').promise;
          ctx.write('hello ');
          await ctx.flush();
          await ctx.progress({ percent: 50 });
          // Too large to travel in a notification: readers read this one.
          ctx.write(big);
          await ctx.flush();
          ctx.write('world');
          return 'done';
        }) as Handler,
      };
      const waitless = await open(handler);
      waitless.startWorker({ pollInterval: 50 });
      const { job } = await waitless.submit('probe', { n: 1 });
      await eventually(async () => (await waitless.get(job.id))?.status === 'running', 'job running');
      const counts = countStatements(waitless);
      const subscriptions = Array.from({ length: 50 }, () => internals(waitless).hub.subscribe('default', job.id, 0));
      // Every reader has the log so far before the job goes on (one read for all fifty).
      const firsts = await Promise.all(subscriptions.map((s) => s.next()));
      assert.equal(counts.get(textOf.eventReads), 1);
      const reading = subscriptions.map((s, i) => readAll(() => s.next()).then((rest) => [...firsts[i]!, ...rest]));
      gates.gate('written').resolve();
      const logs = await Promise.all(reading);
      const done = await finished(waitless, job.id);
      assert.equal(done.output, `hello ${big}world`);
      for (const log of logs) assertWholeLog(log, done.version);
      // After the join, only the large chunk needed a read: every other event came in its
      // statement's notification. Reading per reader would have taken fifty per change.
      const reads = counts.get(textOf.eventReads) ?? 0;
      assert.ok(reads >= 2 && reads <= 3, `expected the join's read and the large chunk's, got ${reads}`);
      assert.equal(counts.get(textOf.singleJobReads) ?? 0, 0, 'no per-reader reads');
      for (const s of subscriptions) s.close();
    });

    it('pushes exactly the events the table holds, whatever the text: quotes, commas, brackets, newlines, emoji', async () => {
      const hostile = ['"quoted", [bracketed], {braced}', 'line\nbreak\r\n', 'tab\tand \\ backslash', 'emoji 🧪 and 中文', '\u2028 separators \u2029'];
      const handler = {
        current: (async (_input, ctx) => {
          for (const text of hostile) {
            ctx.write(text);
            await ctx.flush();
          }
          await ctx.progress({ message: hostile.join('|'), data: { nested: hostile } });
          return hostile;
        }) as Handler,
      };
      const waitless = await open(handler);
      const { job } = await waitless.submit('probe', { n: 1 });
      const subscription = internals(waitless).hub.subscribe('default', job.id, 0);
      waitless.startWorker({ pollInterval: 50 });
      const seen = await readAll(() => subscription.next());
      assert.deepEqual(seen, await waitless.events(job.id));
      assert.equal((await finished(waitless, job.id)).output, hostile.join(''));
      subscription.close();
    });

    it('bounds a reader that does not keep up: it holds a few events, then catches up from the log with nothing lost or repeated', async () => {
      const handler = {
        current: (async (_input, ctx) => {
          for (let i = 0; i < 60; i++) {
            ctx.write(`${i} `);
            await ctx.flush();
          }
          return 'done';
        }) as Handler,
      };
      const waitless = await open(handler, { maxQueuedEvents: 5 });
      const { job } = await waitless.submit('probe', { n: 1 });
      const slow = internals(waitless).hub.subscribe('default', job.id, 0);
      const fast = internals(waitless).hub.subscribe('default', job.id, 0);
      const fastLog = readAll(() => fast.next());
      waitless.startWorker({ pollInterval: 50 });
      const done = await finished(waitless, job.id);
      assertWholeLog(await fastLog, done.version);
      // The slow reader read nothing while 60 writes landed: it was fed no more than its bound.
      const first = await slow.next();
      assert.ok(first.length <= 5, `a slow reader held ${first.length} events`);
      const rest = await readAll(() => slow.next());
      assertWholeLog([...first, ...rest], done.version);
      slow.close();
      fast.close();
    });

    it('feeds every tenant stream from one read per window, only its own tenant, and resyncs a stream that falls behind', async () => {
      const handler = { current: (async () => 'ok') as Handler };
      const waitless = await open(handler, { maxQueuedJobs: 3 });
      const counts = countStatements(waitless);
      const streams = Array.from({ length: 5 }, () => internals(waitless).hub.subscribeTenant('acme'));
      const other = internals(waitless).hub.subscribeTenant('globex');
      const { job } = await waitless.submit('probe', { n: 0 }, { tenant: 'acme' });
      for (const stream of streams) {
        const batch = await stream.next();
        assert.deepEqual(
          batch.jobs.map((j) => j.id),
          [job.id],
        );
        assert.equal(batch.jobs[0]!.input, null, 'summaries carry no payloads');
      }
      assert.equal(counts.get(textOf.summaries), 1, 'one read for five streams');
      // Ten more jobs while nobody reads: past the bound of three, a stream is told to list again.
      await Promise.all(Array.from({ length: 10 }, (_, n) => waitless.submit('probe', { n }, { tenant: 'acme' })));
      await eventually(() => (counts.get(textOf.summaries) ?? 0) >= 2, 'the streams fed again');
      await new Promise((resolve) => setTimeout(resolve, 300)); // a feed split over two windows lands too
      const behind = await streams[0]!.next();
      assert.equal(behind.resync, true);
      assert.ok(behind.jobs.length <= 3);
      // The other tenant heard of nothing: its next batch is only the resync a close brings.
      other.close();
      assert.deepEqual(await other.next(), { jobs: [], resync: false, closed: true });
      for (const s of streams) s.close();
    });

    it('writes the output of many running jobs in few statements, each job complete and in order', async () => {
      const handler = {
        current: (async ({ n }, ctx) => {
          for (let i = 0; i < 40; i++) {
            ctx.write(`${n}.${i} `);
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
          return n;
        }) as Handler,
      };
      const waitless = await open(handler);
      const counts = countStatements(waitless);
      const ids = await Promise.all(Array.from({ length: 20 }, async (_, n) => (await waitless.submit('probe', { n })).job.id));
      waitless.startWorker({ concurrency: 20, pollInterval: 50, outputFlushInterval: 100 });
      let outputEvents = 0;
      for (const [n, id] of ids.entries()) {
        const done = await finished(waitless, id);
        assert.equal(done.output, Array.from({ length: 40 }, (_, i) => `${n}.${i} `).join(''));
        outputEvents += (await waitless.events(id)).filter((e) => e.type === 'output').length;
      }
      const statements = counts.get(textOf.writes) ?? 0;
      // One statement a flush interval for all twenty jobs, not one per job.
      assert.ok(statements * 4 <= outputEvents, `${statements} statements for ${outputEvents} output events`);
    });

    it('finishes streaming jobs with the next round of writes: their last output and their outcomes share statements', async () => {
      const handler = {
        current: (async ({ n }, ctx) => {
          // Ten jobs ending at ten different moments within one flush interval.
          await new Promise((resolve) => setTimeout(resolve, n * 40));
          ctx.write(`last words of ${n}`);
          return n;
        }) as Handler,
      };
      const waitless = await open(handler);
      const ids = await Promise.all(Array.from({ length: 10 }, async (_, n) => (await waitless.submit('probe', { n })).job.id));
      const counts = countStatements(waitless);
      waitless.startWorker({ concurrency: 10, pollInterval: 50, outputFlushInterval: 1000 });
      for (const [n, id] of ids.entries()) {
        const done = await finished(waitless, id);
        assert.equal(done.output, `last words of ${n}`);
        assert.equal(done.result, n);
      }
      // A statement of their own each would be ten writes and ten finishes.
      assert.ok((counts.get(textOf.writes) ?? 0) <= 2, `${counts.get(textOf.writes)} write statements`);
      assert.ok((counts.get(finishJobs([]).text) ?? 0) <= 2, `${counts.get(finishJobs([]).text)} finish statements`);
    });

    it("starts the next job while the last one's outcome is written, and never runs more handlers than its concurrency", async () => {
      const started: number[] = [];
      let running = 0;
      let peak = 0;
      const secondStarted = deferred();
      const handler = {
        current: (async ({ n }) => {
          started.push(n);
          peak = Math.max(peak, ++running);
          if (n === 2) secondStarted.resolve();
          running--;
          return n;
        }) as Handler,
      };
      const waitless = await open(handler);
      // The first finish statement is held until the second job's handler has started.
      const finishText = finishJobs([]).text;
      const release = deferred();
      const driver = internals(waitless).driver;
      const query = driver.query.bind(driver);
      let held = false;
      driver.query = async (sql) => {
        if (sql.text === finishText && !held) {
          held = true;
          await release.promise;
        }
        return query(sql);
      };
      const first = (await waitless.submit('probe', { n: 1 })).job;
      const second = (await waitless.submit('probe', { n: 2 })).job;
      waitless.startWorker({ concurrency: 1, pollInterval: 50 });
      let started2 = false;
      void secondStarted.promise.then(() => (started2 = true));
      await eventually(() => started2, "the second job's handler, while the first one's finish is held");
      assert.equal((await waitless.get(first.id))?.status, 'running', "the first job's outcome is still being written");
      release.resolve();
      assert.equal((await finished(waitless, first.id)).result, 1);
      assert.equal((await finished(waitless, second.id)).result, 2);
      assert.deepEqual(started, [1, 2]);
      assert.equal(peak, 1);
    });

    it('fences each job of a batch alone, and one job whose write the database refuses does not hold back the others', async () => {
      const waitless = await open({ current: async () => 'unused' });
      const [a, b, c] = await Promise.all([1, 2, 3].map(async (n) => (await waitless.submit('probe', { n })).job.id));
      const claimed = await internals(waitless).store.claim(['probe'], 3, 'test-worker', 60_000);
      const token = (id: string) => claimed.find((j) => j.job.id === id)!.leaseToken;
      const lost: string[] = [];
      const buffer = new JobWriteBuffer(internals(waitless).store, 60_000, silentLogger);
      const writerA = buffer.open(a!, token(a!), () => lost.push('a'));
      const writerB = buffer.open(b!, token(b!), () => lost.push('b'));
      // c's lease is not the one the writer holds: a takeover happened.
      const writerC = buffer.open(c!, '00000000-0000-4000-8000-000000000000', () => lost.push('c'));
      writerA.write('kept');
      writerC.write('fenced out');
      const fencedOut = writerC.progress({ percent: 1 });
      // Output, then a NUL character in a progress report: JSON the database refuses (jsonb
      // has no \u0000). The report fails alone; the output before it is kept for the next
      // write, not lost.
      writerB.write('kept through a refused write, ');
      const refused = writerB.progress({ message: 'nul \u0000' });
      const flushedA = writerA.flush();
      await assert.rejects(refused);
      await flushedA;
      await assert.rejects(fencedOut, { name: 'LeaseLostError' });
      assert.deepEqual(lost, ['c']);
      assert.equal((await waitless.get(a!))?.output, 'kept');
      assert.equal((await waitless.get(c!))?.output, '');
      assert.equal((await waitless.events(c!)).filter((e) => e.type === 'output').length, 0);
      // The refused job can still write what the database accepts, after the output it kept.
      writerB.write('and after');
      await writerB.flush();
      assert.equal((await waitless.get(b!))?.output, 'kept through a refused write, and after');
      // Finishes made at once share a statement, each fenced by its own lease.
      const outcomes = await Promise.all([
        internals(waitless).store.finish(a!, token(a!), 'completed', 'A'),
        internals(waitless).store.finish(b!, '00000000-0000-4000-8000-000000000000', 'completed', 'B'),
      ]);
      assert.deepEqual(outcomes, [true, false]);
      assert.equal((await waitless.get(a!))?.status, 'completed');
      assert.equal((await waitless.get(b!))?.status, 'running');
      for (const w of [writerA, writerB, writerC]) w.close();
    });

    it('inserts submits that arrive together in one statement, idempotency keys and all, and their wake-up starts an idle worker', async () => {
      const handler = { current: (async ({ n }) => n) as Handler };
      const waitless = await open(handler);
      const counts = countStatements(waitless);
      // No poll within the test's reach: only the wake-up can start the jobs.
      waitless.startWorker({ pollInterval: '1h' });
      await new Promise((resolve) => setTimeout(resolve, 50)); // the worker's first, empty claim
      const submits = await Promise.all([
        ...Array.from({ length: 30 }, (_, n) => waitless.submit('probe', { n })),
        // The same key ten times in one batch: one job, nine replays.
        ...Array.from({ length: 10 }, () => waitless.submit('probe', { n: 100 }, { idempotencyKey: 'once' })),
      ]);
      // Another input under a key taken in the batch is refused, not queued.
      await assert.rejects(waitless.submit('probe', { n: 101 }, { idempotencyKey: 'once' }), { name: 'IdempotencyConflictError' });
      const keyed = submits.slice(30);
      assert.equal(new Set(keyed.map((s) => s.job.id)).size, 1);
      assert.equal(keyed.filter((s) => s.created).length, 1);
      const inserts = [...counts].filter(([text]) => text.includes('INSERT INTO idempotency_keys')).reduce((sum, [, n]) => sum + n, 0);
      assert.ok(inserts < 40 / 4, `${inserts} insert statements for 40 submits`);
      for (const { job } of submits) assert.equal((await finished(waitless, job.id)).result, job.input && (job.input as { n: number }).n);
    });
  });
}
