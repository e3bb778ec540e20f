/**
 * Fairness between tenants: a claim takes due jobs round robin across the tenants with due
 * work, so one tenant's deep backlog of high-priority jobs cannot hold another tenant's job back
 * by more than a turn per tenant; priority still orders each tenant's own jobs. The claims are
 * made by hand (no worker runs), so the order asserted is the claim's, not a race's.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { internals } from '../src/internals.ts';
import { defineJob } from '../src/job/definition.ts';
import { roundEnd } from '../src/store/tenant-rounds.ts';
import { BACKENDS, openEngine, type TestEngine } from './helpers.ts';

const report = defineJob({ name: 'report', input: z.object({ n: z.number() }), run: async () => 'done' });
const perUser = defineJob({
  name: 'per-user',
  input: z.object({ user: z.string() }),
  concurrency: { limit: 1, key: (input) => input.user },
  run: async () => 'done',
});

describe('the round of tenants', () => {
  it('ends on the tenant holding the last turn, in byte order after the cursor', () => {
    assert.equal(roundEnd([], 'b'), undefined);
    // One turn each: the last in the round that starts after "b" (c, then a wraps around).
    assert.equal(roundEnd(['a', 'c'], 'b'), 'a');
    assert.equal(roundEnd(['a', 'c'], ''), 'c');
    // Two turns for "a", one for "c": a's second turn is the last.
    assert.equal(roundEnd(['a', 'c', 'a'], ''), 'a');
    // Byte order, not a locale's: "B" (0x42) comes before "a" (0x61).
    assert.equal(roundEnd(['a', 'B'], ''), 'a');
  });
});

for (const backend of BACKENDS) {
  describe(`claims interleave tenants on ${backend}`, () => {
    let engine: TestEngine;
    before(async () => {
      // No worker runs, so no dispatcher either: the delivery claims below are made by hand too.
      engine = await openEngine(backend, { jobs: [report, perUser], webhooks: { ssrf: { allow: ['127.0.0.1'] } } });
    });
    after(async () => {
      await engine.close();
    });

    /** Claims (the jobs claimed are left running: no worker runs them). */
    const claim = (limit: number) => internals(engine.waitless).store.claim(['report'], limit, 'test-worker', 60_000);

    /** Ends every job the test left, so the next one starts from an empty queue. */
    const clear = () =>
      internals(engine.waitless).driver.query({ text: `UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE status IN ('queued', 'running')`, values: [] });

    it('puts another tenant’s job in the first claim, behind 1 000 high-priority jobs of one tenant', async () => {
      const { waitless } = engine;
      const heavy = await Promise.all(Array.from({ length: 1000 }, (_, n) => waitless.submit(report, { n }, { tenant: 'heavy', priority: 1000 - (n % 10) })));
      const { job: light } = await waitless.submit(report, { n: -1 }, { tenant: 'light', priority: 0 });

      const first = await claim(10);
      assert.equal(first.length, 10);
      assert.ok(first.some((c) => c.job.id === light.id), 'the light tenant’s job is in the first claim batch');
      // The heavy tenant's own jobs still go by priority: its nine are its highest.
      const heavyPriorities = first.filter((c) => c.tenant === 'heavy').map((c) => c.job.priority);
      assert.equal(heavyPriorities.length, 9);
      assert.ok(heavyPriorities.every((p) => p === 1000), `heavy's claimed priorities: ${heavyPriorities.join(',')}`);
      assert.equal(heavy.length, 1000);
      await clear();
    });

    it('serves every tenant within one claim per tenant when claims take one job at a time', async () => {
      const { waitless } = engine;
      const tenants = ['t-a', 't-b', 't-c', 't-d'];
      // t-a's backlog is deep and urgent; the others have one job each.
      await Promise.all(Array.from({ length: 50 }, (_, n) => waitless.submit(report, { n }, { tenant: 't-a', priority: 500 })));
      for (const tenant of tenants.slice(1)) await waitless.submit(report, { n: 0 }, { tenant });

      const served: string[] = [];
      for (let i = 0; i < tenants.length; i++) served.push(...(await claim(1)).map((c) => c.tenant));
      assert.deepEqual([...served].sort(), tenants, `one claim each, in turn: ${served.join(', ')}`);
      // Only t-a has jobs left: the claims keep taking them.
      assert.deepEqual((await claim(3)).map((c) => c.tenant), ['t-a', 't-a', 't-a']);
      await clear();
    });

    it('deals a claim’s slots evenly, a tenant with fewer jobs leaving its turns to the others', async () => {
      const { waitless } = engine;
      await Promise.all(Array.from({ length: 20 }, (_, n) => waitless.submit(report, { n }, { tenant: 'even-a' })));
      await Promise.all(Array.from({ length: 20 }, (_, n) => waitless.submit(report, { n }, { tenant: 'even-b' })));
      await waitless.submit(report, { n: 0 }, { tenant: 'even-c' });
      const counts = new Map<string, number>();
      for (const c of await claim(9)) counts.set(c.tenant, (counts.get(c.tenant) ?? 0) + 1);
      assert.deepEqual(Object.fromEntries([...counts].sort()), { 'even-a': 4, 'even-b': 4, 'even-c': 1 });
      await clear();
    });

    it('puts another tenant’s keyed job in the first keyed claim, behind one tenant’s many keys', async () => {
      const { waitless } = engine;
      const { store } = internals(waitless);
      for (let u = 0; u < 12; u++) await waitless.submit(perUser, { user: `u${u}` }, { tenant: 'many-keys', priority: 900 });
      const { job: light } = await waitless.submit(perUser, { user: 'solo' }, { tenant: 'one-key' });

      const { jobs } = await store.claimKeyed(['per-user'], 4, 'test-worker', 60_000);
      assert.equal(jobs.length, 4);
      assert.ok(jobs.some((c) => c.job.id === light.id), 'the one-key tenant’s job is in the first keyed claim');
      await clear();
    });

    it('puts another tenant’s webhook in the first delivery claim, and none of a tenant already at its room', async () => {
      const { waitless } = engine;
      const { store, webhooks } = internals(waitless);
      const url = 'http://127.0.0.1:9/hooks';
      await Promise.all(Array.from({ length: 20 }, (_, n) => waitless.submit(report, { n }, { tenant: 'loud', webhook: { url } })));
      const { job: quiet } = await waitless.submit(report, { n: 0 }, { tenant: 'quiet', webhook: { url } });
      // The jobs end: each leaves a delivery in the outbox, the loud tenant's first.
      for (const c of await claim(21)) assert.equal(await store.finish(c.job.id, c.leaseToken, 'completed', 'done'), true);

      const first = await webhooks.claim(4, 60_000);
      assert.equal(first.length, 4);
      assert.ok(first.some((d) => d.jobId === quiet.id), 'the quiet tenant’s delivery is in the first claim');
      // The loud tenant already has 3 in flight and may have 3: the next claim leaves it out.
      const loudInFlight = new Map([['loud', first.filter((d) => d.tenant === 'loud').length]]);
      assert.deepEqual(await webhooks.claim(4, 60_000, { tenantRoom: 3, inFlight: loudInFlight }), []);
      assert.equal((await webhooks.claim(4, 60_000, { tenantRoom: 5, inFlight: loudInFlight })).length, 2, 'room for two more');
      await internals(waitless).driver.query({ text: `UPDATE webhook_deliveries SET status = 'failed'`, values: [] });
    });
  });
}
