import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import {
  defineJob,
  IdempotencyConflictError,
  InputValidationError,
  InvalidCursorError,
  InvalidOptionError,
  JobNotFoundError,
  JobUnsuccessfulError,
  NonRetryableError,
  ResultTimeoutError,
  UnknownJobError,
  WaitlessError,
} from '../src/index.ts';
import { BACKENDS, createGates, openEngine, type TestEngine } from './helpers.ts';

const gates = createGates();

const gated = defineJob({
  name: 'gated',
  input: z.object({ key: z.string(), fail: z.boolean().default(false) }),
  retry: { attempts: 1 },
  run: async ({ key, fail }) => {
    await gates.gate(key).promise;
    if (fail) throw new NonRetryableError(`${key} refused`);
    return { key };
  },
});

for (const backend of BACKENDS) {
  describe(`waitless.result() on ${backend}`, () => {
    let engine: TestEngine;
    before(async () => {
      engine = await openEngine(backend, { jobs: [gated] });
      engine.waitless.startWorker({ pollInterval: 50 });
    });
    after(async () => {
      gates.releaseAll();
      await engine.close();
    });

    it('resolves with the result once the job completes, not at its first change', async () => {
      const { waitless } = engine;
      const { job } = await waitless.submit(gated, { key: `${backend}-ok` });
      const result = waitless.result<{ key: string }>(job.id);
      let settled = false;
      void result.finally(() => (settled = true));
      // The job changes (it starts running) before it completes: result() must not answer then.
      await waitless.wait(job.id, { since: job.version, timeoutMs: 10_000 });
      assert.equal(settled, false);
      gates.gate(`${backend}-ok`).resolve();
      assert.deepEqual(await result, { key: `${backend}-ok` });
    });

    it('rejects with JobUnsuccessfulError carrying the job when it fails', async () => {
      const { waitless } = engine;
      const { job } = await waitless.submit(gated, { key: `${backend}-fail`, fail: true });
      const result = waitless.result(job.id);
      gates.gate(`${backend}-fail`).resolve();
      await assert.rejects(result, (error: unknown) => {
        assert.ok(error instanceof JobUnsuccessfulError && error instanceof WaitlessError);
        assert.equal(error.code, 'job_unsuccessful');
        assert.equal(error.jobStatus, 'failed');
        assert.equal(error.job.id, job.id);
        assert.match(error.message, /refused/);
        return true;
      });
    });

    it('rejects with JobUnsuccessfulError when the job is cancelled', async () => {
      const { waitless } = engine;
      const { job } = await waitless.submit(gated, { key: `${backend}-cancel` });
      // The expectation is attached before the cancel: the result may reject while the cancel is still answering.
      const rejected = assert.rejects(waitless.result(job.id), (error: unknown) => error instanceof JobUnsuccessfulError && error.jobStatus === 'cancelled');
      await waitless.cancel(job.id);
      await rejected;
    });

    it("rejects with the signal's reason on abort, and the job keeps running", async () => {
      const { waitless } = engine;
      const { job } = await waitless.submit(gated, { key: `${backend}-abort` });
      const controller = new AbortController();
      const result = waitless.result(job.id, { signal: controller.signal });
      const reason = new Error('the caller went away');
      controller.abort(reason);
      await assert.rejects(result, (error: unknown) => error === reason);
      assert.equal((await waitless.get(job.id))!.done, false);
      gates.gate(`${backend}-abort`).resolve();
      assert.deepEqual(await waitless.result(job.id), { key: `${backend}-abort` });
    });

    it('rejects with ResultTimeoutError after its timeout, and JobNotFoundError for an unknown id or tenant', async () => {
      const { waitless } = engine;
      const { job } = await waitless.submit(gated, { key: `${backend}-slow` });
      await assert.rejects(waitless.result(job.id, { timeout: 50 }), (error: unknown) => error instanceof ResultTimeoutError && error.code === 'result_timeout');
      await assert.rejects(waitless.result(job.id, { tenant: 'someone-else' }), JobNotFoundError);
      await assert.rejects(waitless.result('00000000-0000-4000-8000-000000000000'), { code: 'job_not_found' });
      gates.gate(`${backend}-slow`).resolve();
    });

    it('throws only errors of the family, each with its code', async () => {
      const { waitless } = engine;
      const cases: Array<[Promise<unknown>, new (...args: never[]) => WaitlessError, string]> = [
        [waitless.submit('nope', {}), UnknownJobError, 'unknown_job'],
        [waitless.submit(gated, { key: 1 } as never), InputValidationError, 'invalid_input'],
        [waitless.submit(gated, { key: 'x' }, { priority: 5000 }), InvalidOptionError, 'invalid_option'],
        [waitless.list({ cursor: 'not-a-cursor' }), InvalidCursorError, 'invalid_cursor'],
        [waitless.createJobToken('00000000-0000-4000-8000-000000000000', { ttl: 10 }), InvalidOptionError, 'invalid_option'],
      ];
      for (const [promise, type, code] of cases) {
        await assert.rejects(promise, (error: unknown) => error instanceof type && error instanceof WaitlessError && error.code === code);
      }
      const first = await waitless.submit(gated, { key: `${backend}-idem` }, { idempotencyKey: `${backend}-once` });
      gates.gate(`${backend}-idem`).resolve();
      await assert.rejects(waitless.submit(gated, { key: 'other' }, { idempotencyKey: `${backend}-once` }), (error: unknown) => {
        assert.ok(error instanceof IdempotencyConflictError);
        assert.equal(error.code, 'idempotency_conflict');
        assert.equal(error.jobId, first.job.id);
        return true;
      });
    });
  });
}
