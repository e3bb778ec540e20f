import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { retryAfterSeconds } from '../src/contract/cadence.ts';
import { defineJob } from '../src/job/definition.ts';
import { formatDuration, toMs } from '../src/job/duration.ts';
import { resolveRetryPolicy, retryDelayMs } from '../src/job/retry.ts';
import { canTransition, isTerminal, JOB_STATUSES, TRANSITIONS } from '../src/contract/statuses.ts';
import { DatabaseUnavailableError } from '../src/errors.ts';
import { GroupCommit } from '../src/store/group-commit.ts';
import { fingerprint } from '../src/store/job-store.ts';
import { uuidv7 } from '../src/store/uuid.ts';

describe('job model', () => {
  it('has terminal states that lead nowhere and a running state that can end every way', () => {
    for (const status of JOB_STATUSES) assert.equal(isTerminal(status), TRANSITIONS[status].length === 0, status);
    assert.ok(canTransition('queued', 'running'));
    assert.ok(canTransition('running', 'queued'), 'retry and lease reclaim');
    assert.ok(!canTransition('completed', 'cancelled'));
    assert.ok(!canTransition('queued', 'completed'), 'a job is never completed without running');
  });

  it('front-loads the poll cadence: tight while young, calm when old', () => {
    const cadence = [0, 5_000, 30_000, 120_000, 600_000, 3_600_000].map(retryAfterSeconds);
    assert.equal(cadence[0], 1);
    for (let i = 1; i < cadence.length; i++) assert.ok(cadence[i]! >= cadence[i - 1]!, 'never shorter as the job ages');
    assert.ok(cadence.at(-1)! >= 15);
  });

  it('grows retry delays exponentially up to the cap, with jitter between half and all of it', () => {
    const policy = resolveRetryPolicy({ initialDelay: '1s', factor: 2, maxDelay: '5s' });
    assert.equal(retryDelayMs(policy, 1, () => 1), 1000);
    assert.equal(retryDelayMs(policy, 1, () => 0), 500);
    assert.equal(retryDelayMs(policy, 3, () => 1), 4000);
    assert.equal(retryDelayMs(policy, 10, () => 1), 5000);
    assert.throws(() => resolveRetryPolicy({ attempts: 0 }), /attempts/);
  });

  it('parses and prints durations, and refuses nonsense', () => {
    assert.equal(toMs('250ms'), 250);
    assert.equal(toMs('1.5s'), 1500);
    assert.equal(toMs('5m'), 300_000);
    assert.equal(toMs('30d'), 30 * 86_400_000);
    assert.equal(toMs(42), 42);
    assert.throws(() => toMs('soon' as never), /Invalid duration/);
    assert.throws(() => toMs(-1), /Invalid/);
    assert.equal(formatDuration(90_000), '1m 30s');
    assert.equal(formatDuration(3_600_000), '1h');
  });

  it('validates job definitions', () => {
    const input = z.object({});
    assert.throws(() => defineJob({ name: 'has space', input, run: async () => null }), /Invalid job name/);
    assert.throws(() => defineJob({ name: 'x', input, timeout: 'forever' as never, run: async () => null }), /timeout/);
    const job = defineJob({ name: 'ok.name-1', input, run: async () => null });
    assert.equal(job.timeoutMs, 15 * 60_000);
    assert.equal(job.retry.attempts, 3);
  });
});

describe('store helpers', () => {
  it('fingerprints requests by content, not by key order', () => {
    assert.equal(fingerprint('a', { x: 1, y: [1, { b: 2, a: 1 }] }), fingerprint('a', { y: [1, { a: 1, b: 2 }], x: 1 }));
    assert.notEqual(fingerprint('a', { x: 1 }), fingerprint('a', { x: 2 }));
    assert.notEqual(fingerprint('a', { x: 1 }), fingerprint('b', { x: 1 }));
  });

  it('makes time-ordered version 7 UUIDs', () => {
    const a = uuidv7(1_700_000_000_000);
    const b = uuidv7(1_700_000_000_001);
    assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.ok(a < b);
    assert.notEqual(uuidv7(), uuidv7());
  });
});

describe('group commit', () => {
  /** A batch writer that fails its batches (of more than one item) with `error`, counting its calls. */
  function failingBatches(error: Error) {
    const calls: string[][] = [];
    const commit = new GroupCommit<string, string>(async (items) => {
      calls.push(items);
      if (items.length > 1 || items[0] === 'bad') throw error;
      return items.map((item) => `${item}:written`);
    });
    return { calls, commit };
  }

  it('writes each item of a refused batch alone, so only the bad one fails', async () => {
    const { calls, commit } = failingBatches(new Error('invalid input syntax'));
    const outcomes = await Promise.allSettled(['a', 'bad', 'c'].map((item) => commit.add(item)));
    assert.deepEqual(
      outcomes.map((o) => (o.status === 'fulfilled' ? o.value : 'rejected')),
      ['a:written', 'rejected', 'c:written'],
    );
    assert.deepEqual(calls, [['a', 'bad', 'c'], ['a'], ['bad'], ['c']]);
  });

  it('fails a whole batch at once when the database did not answer, instead of waiting it out once per item', async () => {
    const { calls, commit } = failingBatches(new DatabaseUnavailableError('no database connection came free in time'));
    const outcomes = await Promise.allSettled(['a', 'b', 'c'].map((item) => commit.add(item)));
    assert.ok(outcomes.every((o) => o.status === 'rejected' && o.reason instanceof DatabaseUnavailableError));
    assert.deepEqual(calls, [['a', 'b', 'c']]);
  });
});
