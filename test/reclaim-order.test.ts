/**
 * A job taken back after its lease expired, or handed back by a worker shutting down, keeps its
 * place in the queue: it was due before the jobs submitted while it ran, and its worker's crash
 * or deploy is no reason to serve them first. A retry still waits out its backoff.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { internals } from '../src/internals.ts';
import { defineJob } from '../src/job/definition.ts';
import { BACKENDS, openEngine, type TestEngine } from './helpers.ts';

const report = defineJob({ name: 'report', input: z.object({ label: z.string() }), retry: { attempts: 3 }, run: async () => 'done' });

for (const backend of BACKENDS) {
  describe(`a reclaimed job keeps its place on ${backend}`, () => {
    let engine: TestEngine;
    // No worker runs: the test claims and takes back by hand, so nothing else moves the queue.
    before(async () => {
      engine = await openEngine(backend, { jobs: [report] });
    });
    after(async () => {
      await engine.close();
    });

    it('is claimed again before the jobs submitted while it ran', async () => {
      const { store, driver } = internals(engine.waitless);
      const { job: first } = await engine.waitless.submit(report, { label: 'first' });
      const [claimed] = await store.claim(['report'], 1, 'crashed-worker', 60_000);
      assert.equal(claimed?.job.id, first.id);
      const { job: later } = await engine.waitless.submit(report, { label: 'later' });

      // Its worker stops reporting: the lease runs out and the job is taken back.
      await driver.query({ text: `UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, values: [first.id] });
      const reclaimed = await store.reclaimExpiredLeases();
      assert.deepEqual(reclaimed.map((j) => [j.id, j.status]), [[first.id, 'queued']]);

      const [next] = await store.claim(['report'], 1, 'next-worker', 60_000);
      assert.equal(next?.job.id, first.id, 'the reclaimed job comes first, not the one submitted after it');
      assert.equal(next.job.attempt, 2);
      const [then] = await store.claim(['report'], 1, 'next-worker', 60_000);
      assert.equal(then?.job.id, later.id);
      await store.handBack(first.id, next.leaseToken);
      await store.handBack(later.id, then.leaseToken);
    });

    it('is claimed again first after a shutdown hand-back, and a retry waits behind what is due', async () => {
      const { store } = internals(engine.waitless);
      const [held] = await store.claim(['report'], 1, 'deploying-worker', 60_000);
      assert.ok(held);
      await engine.waitless.submit(report, { label: 'newer' });
      assert.equal(await store.handBack(held.job.id, held.leaseToken), true);
      const [again] = await store.claim(['report'], 1, 'next-worker', 60_000);
      assert.equal(again?.job.id, held.job.id, 'the handed-back job comes first');

      // A failed attempt retried without delay goes behind the jobs already due.
      assert.equal(await store.retryLater(again.job.id, again.leaseToken, 0, { code: 'handler_error', message: 'flaky' }), true);
      const [following] = await store.claim(['report'], 1, 'next-worker', 60_000);
      assert.notEqual(following?.job.id, held.job.id, 'a retry is not served before what was due');
      assert.ok(following);
      await store.handBack(following.job.id, following.leaseToken);
    });
  });
}
