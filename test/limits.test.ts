/**
 * Size limits: a job cannot grow the database without bound. Past its limit the input is
 * refused at submit (413); a running job fails at once, without retries, with a message naming
 * the limit and its value; at the limit it passes. Sizes are UTF-8 bytes of the stored JSON.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { LimitExceededError } from '../src/errors.ts';
import { defineJob } from '../src/job/definition.ts';
import type { Job } from '../src/job/model.ts';
import { BACKENDS, finished, openEngine, startServer, type TestEngine, type TestServer } from './helpers.ts';

/** Why each job's handler was stopped, by job id (undefined: it ran to the end). */
const stoppedWith = new Map<string, unknown>();

const sized = defineJob({
  name: 'sized',
  input: z.object({
    pad: z.string().optional(),
    result: z.string().optional(),
    output: z.number().optional(),
    progress: z.number().optional(),
    lines: z.number().optional(),
    stepResult: z.number().optional(),
  }),
  retry: { attempts: 3, initialDelay: 10 },
  limits: { input: 300, result: 100, output: 1000, progress: 200, events: 40 },
  run: async (o, ctx) => {
    if (o.output) {
      // In chunks across rounds: the limit holds for the attempt's output, not one chunk.
      for (let i = 0; i < o.output; i += 100) {
        ctx.write('x'.repeat(Math.min(100, o.output - i)));
        if (i % 300 === 0) await ctx.flush();
      }
    }
    if (o.progress) await ctx.progress({ data: 'p'.repeat(o.progress) });
    for (let i = 0; i < (o.lines ?? 0); i++) ctx.log.info(`line ${i}`);
    await ctx.flush();
    if (o.stepResult) await ctx.step('fetch', async () => 's'.repeat(o.stepResult!));
    stoppedWith.set(ctx.jobId, ctx.signal.reason);
    return o.result ?? 'ok';
  },
});

/** No limits of its own: the engine's apply. */
const plain = defineJob({
  name: 'plain',
  input: z.object({ output: z.number() }),
  run: async ({ output }, ctx) => {
    ctx.write('y'.repeat(output));
    await ctx.flush();
    return 'ok';
  },
});

for (const backend of BACKENDS) {
  describe(`size limits on ${backend}`, () => {
    let engine: TestEngine;
    let server: TestServer;
    before(async () => {
      engine = await openEngine(backend, { jobs: [sized, plain], limits: { output: 50 } });
      engine.waitless.startWorker({ pollInterval: 50 });
      server = await startServer(engine.waitless);
    });
    after(async () => {
      await server?.close();
      await engine?.close();
    });

    const run = async (name: string, input: unknown): Promise<Job> => {
      const { job } = await engine.waitless.submit(name, input);
      return finished(engine.waitless, job.id);
    };
    /** Failed on its first attempt (no retry), with the limit and its value in the message. */
    const failedOver = (job: Job, message: RegExp) => {
      assert.equal(job.status, 'failed', `${job.id}: ${job.error?.message}`);
      assert.equal(job.attempt, 1, 'a limit passed is not retried');
      assert.equal(job.error?.code, 'limit_exceeded');
      assert.match(job.error.message, message);
    };

    it('refuses an input over its limit at submit (413 over HTTP), and takes one at it', async () => {
      // {"pad":"…"} is 10 bytes around the text; "é" is 2 bytes: 145 of them make exactly 300.
      assert.equal((await run('sized', { pad: 'é'.repeat(145) })).status, 'completed');
      await assert.rejects(engine.waitless.submit('sized', { pad: 'é'.repeat(146) }), (error: unknown) => {
        assert.ok(error instanceof LimitExceededError);
        assert.equal(error.code, 'limit_exceeded');
        assert.equal(error.limit, 'limits.input');
        assert.match(error.message, /passed its limit of 300 bytes \(limits\.input\)/);
        return true;
      });
      const response = await fetch(`${server.url}/v1/jobs/sized`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input: { pad: 'x'.repeat(400) } }),
      });
      assert.equal(response.status, 413);
      assert.equal(response.headers.get('content-type'), 'application/problem+json');
      const problem = (await response.json()) as { type: string; limit: string; max: number; detail: string };
      assert.equal(problem.type, '/problems/limit-exceeded');
      assert.equal(problem.limit, 'limits.input');
      assert.equal(problem.max, 300);
      assert.match(problem.detail, /limits\.input/);
      assert.equal((await engine.waitless.list({ limit: 100 })).jobs.filter((j) => j.name === 'sized').length, 1, 'no job for the refused inputs');
    });

    it('fails a job whose result passes its limit, counting UTF-8 bytes; one at the limit completes', async () => {
      // A JSON string is its text and two quotes: 49 × "é" is 100 bytes, 50 × "é" 102 (52 characters).
      const at = await run('sized', { result: 'é'.repeat(49) });
      assert.equal(at.status, 'completed');
      assert.equal(at.result, 'é'.repeat(49));
      const over = await run('sized', { result: 'é'.repeat(50) });
      failedOver(over, /^The job's result passed its limit of 100 bytes \(limits\.result\)\.$/);
      assert.equal(over.result, undefined);
    });

    it("fails a job whose output passes its limit, stopping its handler; output at the limit completes", async () => {
      const at = await run('sized', { output: 1000 });
      assert.equal(at.status, 'completed');
      assert.equal(at.output.length, 1000);
      const over = await run('sized', { output: 1100 });
      failedOver(over, /^The job's output passed its limit of 1000 bytes \(limits\.output\)\.$/);
      assert.ok(stoppedWith.get(over.id) instanceof LimitExceededError, 'the handler saw its signal abort with the limit');
      assert.ok(Buffer.byteLength(over.output) <= 1000, 'no output past the limit was stored');
    });

    it('fails a job whose progress report passes its limit; a report at the limit is kept', async () => {
      // {"data":"…"} is 11 bytes around the text.
      const at = await run('sized', { progress: 189 });
      assert.equal(at.status, 'completed');
      assert.equal((at.progress as { data: string }).data.length, 189);
      failedOver(await run('sized', { progress: 190 }), /^A progress report of the job passed its limit of 200 bytes \(limits\.progress\)\.$/);
    });

    it('fails a job whose events pass their limit, without storing more than the limit (and its final status)', async () => {
      assert.equal((await run('sized', { lines: 20 })).status, 'completed');
      const over = await run('sized', { lines: 60 });
      failedOver(over, /^The job's event log passed its limit of 40 events \(limits\.events\)\./);
      assert.ok(stoppedWith.get(over.id) instanceof LimitExceededError);
      const events = await engine.waitless.events(over.id);
      assert.ok(events.length <= 41, `${events.length} events stored`);
      assert.equal(events.at(-1)?.data.status, 'failed');
    });

    it("holds a step's result to the result limit", async () => {
      assert.equal((await run('sized', { stepResult: 98 })).status, 'completed');
      failedOver(await run('sized', { stepResult: 99 }), /^The result of step "fetch" passed its limit of 100 bytes \(limits\.result\)\.$/);
    });

    it("applies the engine's limits to a job without its own; a job's own limit wins over the engine's", async () => {
      assert.equal((await run('plain', { output: 50 })).status, 'completed');
      failedOver(await run('plain', { output: 51 }), /^The job's output passed its limit of 50 bytes \(limits\.output\)\.$/);
      assert.equal((await run('sized', { output: 900 })).status, 'completed', "sized's own 1000 bytes, not the engine's 50");
    });
  });
}

describe('limit options', () => {
  it('are checked when the job is defined', () => {
    const base = { name: 'bad', input: z.object({}), run: async () => null };
    assert.throws(() => defineJob({ ...base, limits: { output: 0 } }), /Job "bad": limits\.output must be a whole number ≥ 1/);
    assert.throws(() => defineJob({ ...base, limits: { result: 1.5 } }), /limits\.result must be a whole number/);
    assert.throws(() => defineJob({ ...base, limits: { size: 1 } as never }), /limits\.size is not a limit/);
  });
});
