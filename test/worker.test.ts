import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, it } from 'node:test';
import { z } from 'zod';
import { defineJob, type JobContext } from '../src/job/definition.ts';
import { JobCancelledError, JobTimeoutError, LeaseLostError, NonRetryableError, WorkerShutdownError } from '../src/job/errors.ts';
import { BACKENDS, deferred, eventually, finished, openEngine, type TestEngine } from './helpers.ts';

type Handler = (input: { n: number }, ctx: JobContext) => Promise<unknown>;

/** One job type whose behaviour each test sets, so definitions stay out of the way. */
function probeJob(handler: { current: Handler }, options: { timeout?: number; attempts?: number } = {}) {
  return defineJob({
    name: 'probe',
    input: z.object({ n: z.number() }),
    timeout: options.timeout ?? 60_000,
    retry: { attempts: options.attempts ?? 3, initialDelay: 20, maxDelay: 50 },
    run: (input, ctx) => handler.current(input, ctx),
  });
}

for (const backend of BACKENDS) {
  describe(`worker on ${backend}`, () => {
    const engines: TestEngine[] = [];
    const open = async (job: ReturnType<typeof probeJob>) => {
      const engine = await openEngine(backend, { jobs: [job] });
      engines.push(engine);
      return engine.waitless;
    };
    afterEach(async () => {
      await Promise.all(engines.splice(0).map((e) => e.close()));
    });

    it('fences out a worker that stalled past its lease: the new owner finishes, the old one writes nothing', async () => {
      const release = deferred();
      const stalled = deferred();
      const oldOwner: { progressError?: unknown; signalReason?: unknown } = {};
      const handler = {
        current: (async (_input, ctx) => {
          if (ctx.attempt === 1) {
            ctx.signal.addEventListener(
              'abort',
              () => {
                oldOwner.signalReason = ctx.signal.reason;
              },
              { once: true },
            );
            await ctx.progress({ stage: 'first owner' });
            await release.promise;
            try {
              await ctx.progress({ stage: 'late write from the old owner' });
            } catch (error) {
              oldOwner.progressError = error;
            }
            ctx.write('late output from the old owner');
            return { by: 'old owner' };
          }
          return { by: 'new owner' };
        }) as Handler,
      };
      const waitless = await open(probeJob(handler));
      // Worker A: its heartbeat hangs (a paused process, a partition); its lease runs out.
      const a = waitless.startWorker({ lease: 300, pollInterval: 50, debugPoints: { beforeHeartbeat: () => stalled.promise } });
      const { job } = await waitless.submit('probe', { n: 1 });
      await eventually(async () => (await waitless.get(job.id))?.progress?.stage === 'first owner', 'A started');
      // Worker B reclaims the expired lease and runs attempt 2.
      const b = waitless.startWorker({ lease: 5000, pollInterval: 50 });
      const byB = await finished(waitless, job.id);
      assert.equal(byB.status, 'completed');
      assert.deepEqual(byB.result, { by: 'new owner' });
      assert.equal(byB.attempt, 2);
      const versionAfterB = byB.version;

      // Its heartbeat never came back, yet its handler is told its lease ran out.
      await eventually(() => oldOwner.signalReason, 'the hung worker aborts its handler', 5000);
      assert.ok(oldOwner.signalReason instanceof LeaseLostError);
      release.resolve();
      await eventually(() => oldOwner.progressError, 'old owner tried to write');
      assert.ok(oldOwner.progressError instanceof LeaseLostError, 'the late write is refused');
      await sleep(300); // room for its result and buffered output to be (not) written
      const final = (await waitless.get(job.id))!;
      assert.equal(final.version, versionAfterB, 'no event after the new owner finished');
      assert.deepEqual(final.result, { by: 'new owner' });
      assert.equal(final.output, '');
      const events = await waitless.events(job.id);
      assert.ok(events.some((e) => e.type === 'status' && e.data.reason === 'lease_expired'), 'the reclaim is in the log');
      assert.ok(!events.some((e) => JSON.stringify(e.data).includes('late')), 'nothing of the old owner after the reclaim');
      stalled.resolve();
      await Promise.all([a.stop(), b.stop()]);
    });

    it('stops the handler of a worker cut off from the database once its lease has run out', async () => {
      let reason: unknown;
      const handler = {
        current: (async (_input, ctx) => {
          await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
          reason = ctx.signal.reason;
          return null;
        }) as Handler,
      };
      const waitless = await open(probeJob(handler));
      let cutOff = false;
      const worker = waitless.startWorker({
        lease: 400,
        heartbeat: 50,
        pollInterval: 50,
        debugPoints: {
          beforeHeartbeat: async () => {
            if (cutOff) throw new Error('database unreachable');
          },
        },
      });
      const { job } = await waitless.submit('probe', { n: 1 });
      await eventually(async () => (await waitless.get(job.id))?.status === 'running', 'running');
      await sleep(500); // healthy heartbeats keep the job well past its first lease
      assert.equal(reason, undefined, 'a renewed lease does not abort the handler');
      cutOff = true;
      await eventually(() => reason, 'handler aborted after the lease ran out', 5000);
      assert.ok((reason as unknown) instanceof LeaseLostError);
      await worker.stop();
    });

    it('ends a job past its time budget as timed_out, with a message, and aborts its signal', async () => {
      let reason: unknown;
      const lateResult = deferred();
      const handler = {
        current: (async (_input, ctx) => {
          await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
          reason = ctx.signal.reason;
          await lateResult.promise;
          return { late: true };
        }) as Handler,
      };
      const waitless = await open(probeJob(handler, { timeout: 300 }));
      waitless.startWorker({ pollInterval: 50 });
      const { job } = await waitless.submit('probe', { n: 1 });
      const done = await finished(waitless, job.id);
      assert.equal(done.status, 'timed_out');
      assert.equal(done.error?.code, 'timed_out');
      assert.match(done.error.message, /time budget of 300ms/);
      assert.match(done.error.message, /larger timeout/);
      await eventually(() => reason, 'signal aborted');
      assert.ok(reason instanceof JobTimeoutError);
      lateResult.resolve();
      await sleep(100);
      const after = (await waitless.get(job.id))!;
      assert.equal(after.status, 'timed_out', 'the late result is discarded');
      assert.equal(after.result, undefined);
    });

    it('cancels a running job: its signal fires, it ends cancelled, and its late result is discarded', async () => {
      let reason: unknown;
      const started = deferred();
      const lateResult = deferred();
      const handler = {
        current: (async (_input, ctx) => {
          ctx.signal.addEventListener(
            'abort',
            () => {
              reason = ctx.signal.reason;
            },
            { once: true },
          );
          started.resolve();
          await lateResult.promise; // ignores its signal on purpose
          return { late: true };
        }) as Handler,
      };
      const waitless = await open(probeJob(handler));
      // Heartbeats far apart: the cancel must arrive through the notification, not the next heartbeat.
      waitless.startWorker({ lease: 60_000, heartbeat: 30_000, pollInterval: 50 });
      const { job } = await waitless.submit('probe', { n: 1 });
      await started.promise;
      const cancelled = await waitless.cancel(job.id);
      assert.equal(cancelled?.status, 'cancelled');
      await eventually(() => reason, 'signal fired', 5000);
      assert.ok(reason instanceof JobCancelledError);
      lateResult.resolve();
      await sleep(100);
      const final = (await waitless.get(job.id))!;
      assert.equal(final.status, 'cancelled');
      assert.equal(final.result, undefined);
      assert.equal(final.version, cancelled.version);
    });

    it('retries a thrown error with backoff, and fails at once on NonRetryableError or when attempts run out', async () => {
      const handler = {
        current: (async ({ n }, ctx) => {
          if (n === 1 && ctx.attempt === 1) throw new Error('flaky upstream');
          if (n === 2) throw new NonRetryableError('bad document');
          if (n === 3) throw new Error(`still broken on attempt ${ctx.attempt}`);
          return { attempt: ctx.attempt };
        }) as Handler,
      };
      const waitless = await open(probeJob(handler, { attempts: 2 }));
      waitless.startWorker({ pollInterval: 20 });
      const ids = await Promise.all([1, 2, 3].map(async (n) => (await waitless.submit('probe', { n })).job.id));
      const [retried, nonRetryable, exhausted] = await Promise.all([finished(waitless, ids[0]!), finished(waitless, ids[1]!), finished(waitless, ids[2]!)]);
      assert.equal(retried.status, 'completed');
      assert.deepEqual(retried.result, { attempt: 2 });
      const retryEvent = (await waitless.events(retried.id)).find((e) => e.data.reason === 'retry');
      assert.equal((retryEvent?.data.error as { message: string }).message, 'flaky upstream');
      assert.equal(nonRetryable.status, 'failed');
      assert.equal(nonRetryable.attempt, 1);
      assert.deepEqual(nonRetryable.error, { code: 'handler_error', name: 'NonRetryableError', message: 'bad document' });
      assert.equal(exhausted.status, 'failed');
      assert.equal(exhausted.attempt, 2);
      assert.equal(exhausted.error?.message, 'still broken on attempt 2');
    });

    it('batches partial output: a thousand tokens become a few writes, in order, all kept', async () => {
      const tokens = Array.from({ length: 1000 }, (_, i) => `t${i} `);
      const handler = {
        current: (async (_input, ctx) => {
          for (const [i, token] of tokens.entries()) {
            ctx.write(token);
            if (i % 100 === 0) await sleep(1);
          }
          return 'done';
        }) as Handler,
      };
      const waitless = await open(probeJob(handler));
      waitless.startWorker({ pollInterval: 50, outputFlushInterval: 50 });
      const { job } = await waitless.submit('probe', { n: 1 });
      const done = await finished(waitless, job.id);
      assert.equal(done.output, tokens.join(''));
      const outputs = (await waitless.events(job.id)).filter((e) => e.type === 'output');
      assert.equal(outputs.map((e) => e.data.text).join(''), tokens.join(''));
      assert.ok(outputs.length <= 20, `expected a few batched writes, got ${outputs.length}`);
    });

    it('runs at most `concurrency` jobs at once', async () => {
      let running = 0;
      let peak = 0;
      const handler = {
        current: (async () => {
          peak = Math.max(peak, ++running);
          await sleep(60);
          running--;
          return null;
        }) as Handler,
      };
      const waitless = await open(probeJob(handler));
      waitless.startWorker({ concurrency: 2, pollInterval: 20 });
      const ids = await Promise.all(Array.from({ length: 8 }, async (_, n) => (await waitless.submit('probe', { n })).job.id));
      await eventually(async () => (await Promise.all(ids.map((id) => waitless.get(id)))).every((j) => j?.status === 'completed'), 'all done');
      assert.equal(peak, 2);
    });

    it('shuts down gracefully: running jobs get their grace period, then go back to the queue for another worker', async () => {
      const reasons: unknown[] = [];
      let slowRuns = 0;
      const handler = {
        current: (async ({ n }, ctx) => {
          if (n === 1) {
            await sleep(100); // finishes within the grace period
            return { finished: 'in grace' };
          }
          if (++slowRuns === 1) {
            await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
            reasons.push(ctx.signal.reason);
            return { shouldNot: 'be kept' };
          }
          return { finished: 'by the next worker' };
        }) as Handler,
      };
      const waitless = await open(probeJob(handler));
      const first = waitless.startWorker({ pollInterval: 20, shutdownGrace: 300 });
      const quick = (await waitless.submit('probe', { n: 1 })).job;
      const slow = (await waitless.submit('probe', { n: 2 })).job;
      await eventually(async () => (await waitless.get(slow.id))?.status === 'running' && (await waitless.get(quick.id))?.status === 'running', 'both running');
      await first.stop();
      assert.ok(reasons[0] instanceof WorkerShutdownError);
      assert.deepEqual((await waitless.get(quick.id))?.result, { finished: 'in grace' });
      const handedBack = (await waitless.get(slow.id))!;
      assert.equal(handedBack.status, 'queued');
      assert.equal(handedBack.attempt, 0, 'a hand-back on shutdown does not use up an attempt');
      assert.ok((await waitless.events(slow.id)).some((e) => e.data.reason === 'worker_shutdown'));
      waitless.startWorker({ pollInterval: 20 });
      const done = await finished(waitless, slow.id);
      assert.deepEqual(done.result, { finished: 'by the next worker' });
      assert.equal(done.attempt, 1);
      assert.equal(slowRuns, 2);
    });

    it('starts each attempt with fresh output: a retry does not append to the failed attempt', async () => {
      const handler = {
        current: (async (_input, ctx) => {
          ctx.write('The answer is ');
          await ctx.flush();
          if (ctx.attempt === 1) throw new Error('model overloaded');
          ctx.write('42.');
          return 42;
        }) as Handler,
      };
      const waitless = await open(probeJob(handler));
      waitless.startWorker({ pollInterval: 20 });
      const { job } = await waitless.submit('probe', { n: 1 });
      const done = await finished(waitless, job.id);
      assert.equal(done.attempt, 2);
      assert.equal(done.output, 'The answer is 42.');
    });

    it('aborts with JobCancelledError even when a progress write is the first to notice the cancel', async () => {
      let reason: unknown;
      let refused: unknown;
      const handler = {
        current: (async (_input, ctx) => {
          try {
            for (;;) {
              await ctx.progress({ message: 'working' });
              await sleep(5);
            }
          } catch (error) {
            refused = error;
            reason = ctx.signal.reason;
          }
          return null;
        }) as Handler,
      };
      const waitless = await open(probeJob(handler));
      waitless.startWorker({ lease: 60_000, heartbeat: 30_000, pollInterval: 50 });
      const { job } = await waitless.submit('probe', { n: 1 });
      await eventually(async () => (await waitless.get(job.id))?.progress, 'writing progress');
      await waitless.cancel(job.id);
      await eventually(() => refused, 'the write was refused');
      // Whichever noticed first (the write, or the cancel's notification), the reason is the cancel.
      assert.ok(refused instanceof LeaseLostError || refused instanceof JobCancelledError, `refused with ${String(refused)}`);
      assert.ok(reason instanceof JobCancelledError, `signal.reason was ${String(reason)}`);
    });

    it('validates the input as JSON, parses it again for the handler, and fingerprints what was sent', async () => {
      const seen: unknown[] = [];
      const dated = defineJob({
        name: 'dated',
        input: z.object({ at: z.coerce.date(), label: z.string().default('none') }),
        run: async (input) => {
          seen.push(input);
          return { year: input.at.getUTCFullYear(), label: input.label };
        },
      });
      const engine = await openEngine(backend, { jobs: [dated] });
      engines.push(engine);
      const { waitless } = engine;
      waitless.startWorker({ pollInterval: 20 });
      const first = await waitless.submit(dated, { at: new Date('2024-01-01T00:00:00Z') }, { idempotencyKey: 'k' });
      await assert.rejects(waitless.submit(dated, { at: new Date('2025-06-01T00:00:00Z') }, { idempotencyKey: 'k' }), /already used for a different request/);
      const replay = await waitless.submit(dated, { at: new Date('2024-01-01T00:00:00Z') }, { idempotencyKey: 'k' });
      assert.equal(replay.job.id, first.job.id);
      assert.equal(replay.created, false);
      const done = await finished(waitless, first.job.id);
      assert.deepEqual(done.result, { year: 2024, label: 'none' });
      assert.ok((seen[0] as { at: unknown }).at instanceof Date, 'the handler gets the parsed input');
    });

    it('writes a terminal state once: a cancel after completion changes nothing', async () => {
      const handler = { current: (async () => ({ ok: true })) as Handler };
      const waitless = await open(probeJob(handler));
      waitless.startWorker({ pollInterval: 20 });
      const { job } = await waitless.submit('probe', { n: 1 });
      const done = await finished(waitless, job.id);
      const after = await waitless.cancel(job.id);
      assert.equal(after?.status, 'completed');
      assert.equal(after?.version, done.version);
      const statuses = (await waitless.events(job.id)).filter((e) => e.type === 'status').map((e) => e.data.status);
      assert.deepEqual(statuses, ['queued', 'running', 'completed']);
    });
  });
}
