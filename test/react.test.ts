/**
 * waitless/react without React: the job reducer and its selector, the subject bindings behind
 * the stale rule, submit intents (one idempotency key per intent), the submit scope (one
 * request at a time) and the persistence that lets a reload resume. The hooks themselves run in
 * a real browser in test/browser/risk-scan.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { JobView, WatchEvent } from '../src/client/client.ts';
import { JobUnsuccessfulError } from '../src/errors.ts';
import { initialJobState, jobReducer, type JobState, selectJob, SubjectBindings } from '../src/react/job-state.ts';
import { fingerprintOf, intentFor, memoryPersistence, stableStringify, type StorageLike, storagePersistence, urlPersistence } from '../src/react/persistence.ts';
import { SubmitScope, type SubmitFunction } from '../src/react/submit-scope.ts';

const ID = '01a2-job';
const at = '2026-01-01T00:00:00.000Z';

function view(overrides: Partial<JobView> = {}): JobView {
  return {
    id: ID,
    name: 'risk-scan',
    status: 'queued',
    done: false,
    input: { company: 'Acme' },
    output: '',
    attempt: 0,
    maxAttempts: 2,
    version: 1,
    createdAt: at,
    updatedAt: at,
    runAt: at,
    priority: 0,
    fallback: { result: { kind: 'estimate', score: 40 }, provisional: true },
    links: { self: `/v1/jobs/${ID}`, events: `/v1/jobs/${ID}/events`, cancel: `/v1/jobs/${ID}/cancel` },
    ...overrides,
  };
}

const event = (seq: number, type: WatchEvent['type'], data: Record<string, unknown>): WatchEvent => ({ seq, type, data, at });

function run(state: JobState, ...events: WatchEvent[]): JobState {
  return events.reduce((s, e) => jobReducer(s, { type: 'event', id: ID, event: e }), state);
}

describe('job reducer', () => {
  test('the 202 body shows its fallback at once; events bring status, progress and partial output', () => {
    let state = initialJobState(ID, view());
    let shown = selectJob(state, ID, false);
    assert.equal(shown.status, 'queued');
    assert.deepEqual(shown.fallback, { kind: 'estimate', score: 40 });
    assert.equal(shown.result, undefined);
    assert.equal(shown.isDone, false);

    state = run(
      state,
      event(2, 'status', { status: 'running', attempt: 1 }),
      event(3, 'progress', { percent: 30, stage: 'writing', message: 'Writing' }),
      event(4, 'output', { text: 'Acme carries ' }),
      event(5, 'output', { text: 'a high risk.' }),
    );
    shown = selectJob(state, ID, false);
    assert.equal(shown.status, 'running');
    assert.deepEqual(shown.progress, { percent: 30, stage: 'writing', message: 'Writing' });
    assert.equal(shown.partial, 'Acme carries a high risk.');
    assert.deepEqual(shown.fallback, { kind: 'estimate', score: 40 }, 'the fallback stays until the result lands');
    assert.equal(shown.job?.version, 5);
    assert.equal(shown.job?.output, 'Acme carries a high risk.');
  });

  test('events fold as every reader of the log folds them: output is `text` only, attempt and time follow', () => {
    const later = '2026-01-01T00:00:05.000Z';
    const state = run(
      initialJobState(ID, view()),
      { seq: 2, type: 'status', data: { status: 'running', attempt: 1 }, at: later },
      event(3, 'output', { chunk: 'not a field of the API' }),
      event(4, 'output', { text: 'sent' }),
    );
    const shown = selectJob(state, ID, false);
    assert.equal(shown.partial, 'sent');
    assert.equal(shown.job?.attempt, 1);
    assert.equal(shown.job?.updatedAt, at, 'the last event is the one at `at`');
    assert.equal(run(state, { seq: 5, type: 'progress', data: { percent: 1 }, at: later }).job?.updatedAt, later);
  });

  test('an event already covered (seq ≤ version) is ignored: nothing is applied twice', () => {
    const state = run(initialJobState(ID, view()), event(2, 'status', { status: 'running' }), event(3, 'output', { text: 'one ' }));
    const again = run(state, event(3, 'output', { text: 'one ' }), event(2, 'status', { status: 'running' }));
    assert.equal(again, state);
    assert.equal(selectJob(run(state, event(4, 'output', { text: 'two' })), ID, false).partial, 'one two');
  });

  test('a new attempt starts its output afresh', () => {
    const state = run(
      initialJobState(ID, view()),
      event(2, 'status', { status: 'running', attempt: 1 }),
      event(3, 'output', { text: 'lost' }),
      event(4, 'status', { status: 'queued', reason: 'retry' }),
      event(5, 'status', { status: 'running', attempt: 2 }),
      event(6, 'output', { text: 'kept' }),
    );
    assert.equal(state.partial, 'kept');
  });

  test('the completed snapshot replaces the fallback with the result in place', () => {
    let state = run(initialJobState(ID, view()), event(2, 'status', { status: 'running' }), event(3, 'status', { status: 'completed' }));
    let shown = selectJob(state, ID, false);
    assert.equal(shown.isDone, true);
    assert.equal(shown.result, undefined, 'not before the final view is fetched');
    assert.ok(shown.fallback, 'the estimate stays up meanwhile');
    const { fallback: _dropped, ...completed } = view({ status: 'completed', done: true, version: 3, result: { kind: 'ai', summary: 'Done.' } });
    state = jobReducer(state, { type: 'snapshot', id: ID, job: completed });
    shown = selectJob(state, ID, false);
    assert.deepEqual(shown.result, { kind: 'ai', summary: 'Done.' });
    assert.equal(shown.fallback, undefined);
    assert.equal(shown.error, undefined);
  });

  test('an older snapshot (a cancel answer overtaken by events) does not move the state back', () => {
    const state = run(initialJobState(ID, view()), event(2, 'status', { status: 'running' }), event(3, 'progress', { percent: 50 }));
    assert.equal(jobReducer(state, { type: 'snapshot', id: ID, job: view({ version: 2, status: 'running' }) }), state);
  });

  test('a failed job carries a JobUnsuccessfulError; a cancelled one does not', () => {
    const failed = jobReducer(initialJobState(ID), { type: 'snapshot', id: ID, job: view({ status: 'failed', done: true, error: { code: 'handler_error', message: 'boom' } }) });
    assert.ok(failed.error instanceof JobUnsuccessfulError);
    assert.match(failed.error.message, /boom/);
    const cancelled = jobReducer(initialJobState(ID), { type: 'snapshot', id: ID, job: view({ status: 'cancelled', done: true, version: 4 }) });
    assert.equal(cancelled.error, undefined);
    assert.equal(selectJob(cancelled, ID, false).status, 'cancelled');
    assert.equal(selectJob(cancelled, ID, false).isDone, true);
  });

  test('news of another job is ignored; a reset for another id starts empty, for the same id keeps the state', () => {
    const state = run(initialJobState(ID, view()), event(2, 'status', { status: 'running' }));
    assert.equal(jobReducer(state, { type: 'event', id: 'other', event: event(9, 'output', { text: 'x' }) }), state);
    assert.equal(jobReducer(state, { type: 'snapshot', id: 'other', job: view({ id: 'other', version: 9 }) }), state);
    const withError = jobReducer(state, { type: 'error', id: ID, error: new Error('network') });
    const same = jobReducer(withError, { type: 'reset', id: ID });
    assert.equal(same.version, 2);
    assert.equal(same.error, undefined, 'a restart forgets the last transport error');
    const other = jobReducer(state, { type: 'reset', id: 'other' });
    assert.equal(other.id, 'other');
    assert.equal(other.job, undefined);
    assert.deepEqual(selectJob(state, 'other', false).status, undefined, 'the selector never shows one id’s state for another');
  });

  test('a stale job shows no result, fallback or partial output', () => {
    const { fallback: _f, ...completed } = view({ status: 'completed', done: true, version: 5, output: 'text', result: { kind: 'ai' } });
    const state = jobReducer(initialJobState(ID), { type: 'snapshot', id: ID, job: completed });
    const shown = selectJob(state, ID, true);
    assert.equal(shown.isStale, true);
    assert.equal(shown.result, undefined);
    assert.equal(shown.fallback, undefined);
    assert.equal(shown.partial, '');
    assert.equal(shown.job?.result, undefined);
    assert.equal(shown.job?.output, '');
    assert.equal(shown.status, 'completed');
    assert.equal(shown.isDone, true);
  });
});

describe('subject bindings (the stale rule)', () => {
  test('an id is bound to its first subject; another subject makes it stale for good', () => {
    const bindings = new SubjectBindings();
    assert.equal(bindings.observe('j1', 'acme'), false);
    assert.equal(bindings.observe('j1', 'acme'), false);
    assert.equal(bindings.observe('j2', 'globex'), false);
    assert.equal(bindings.observe('j1', 'globex'), true, 'the user moved on');
    assert.equal(bindings.observe('j1', 'acme'), true, 'and stays moved on');
    assert.equal(bindings.isStale('j1'), true);
    assert.equal(bindings.isStale('j2'), false);
    assert.equal(bindings.subjectOf('j1'), 'acme');
  });

  test('without subjects nothing is ever stale; dropping the subject later is moving on', () => {
    const bindings = new SubjectBindings();
    assert.equal(bindings.observe('j', undefined), false);
    assert.equal(bindings.observe('j', undefined), false);
    assert.equal(bindings.observe('k', 'doc-1'), false);
    assert.equal(bindings.observe('k', undefined), true);
  });
});

describe('submit intents', () => {
  test('the fingerprint ignores key order and tells inputs apart', () => {
    assert.equal(stableStringify({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: null } }), '{"a":{"c":null,"d":[1,{"x":1,"y":2}]},"b":1}');
    assert.equal(fingerprintOf({ a: 1, b: 2 }), fingerprintOf({ b: 2, a: 1 }));
    assert.notEqual(fingerprintOf({ a: 1 }), fingerprintOf({ a: 2 }));
    assert.match(fingerprintOf('x'), /^[0-9a-f]{14}$/);
  });

  test('the same input keeps its intent (and key); another input starts a new one', () => {
    let n = 0;
    const key = () => `key-${++n}`;
    const first = intentFor(undefined, { a: 1 }, key);
    assert.equal(first.key, 'key-1');
    assert.equal(intentFor(first, { a: 1 }, key), first);
    assert.equal(intentFor(first, { a: 2 }, key).key, 'key-2');
  });
});

/** A submit function under the test's control: every call waits until settled. */
function controlledSend() {
  const calls: Array<{ input: unknown; key: string; signal: AbortSignal; resolve: (token?: string) => void; reject: (error: Error) => void }> = [];
  let jobs = 0;
  const send: SubmitFunction = (input, { idempotencyKey, signal }) =>
    new Promise((resolve, reject) => {
      calls.push({
        input,
        key: idempotencyKey,
        signal,
        resolve: (token) => resolve({ job: view({ id: `job-${++jobs}` }), ...(token ? { token } : {}) }),
        reject,
      });
      signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
    });
  return { send, calls };
}

describe('submit scope', () => {
  test('while a submit is pending, further calls return the same promise and send nothing', async () => {
    const scope = new SubmitScope(memoryPersistence());
    const { send, calls } = controlledSend();
    const first = scope.submit({ a: 1 }, 'acme', send);
    const second = scope.submit({ a: 1 }, 'acme', send);
    const third = scope.submit({ other: true }, 'acme', send);
    assert.equal(second, first);
    assert.equal(third, first);
    assert.equal(calls.length, 1);
    assert.equal(scope.getSnapshot().pending, true);
    calls[0]!.resolve('wlt_x');
    const submitted = await first;
    assert.equal(submitted?.job.id, 'job-1');
    assert.deepEqual(
      { ...scope.getSnapshot(), job: undefined },
      { pending: false, job: undefined, jobId: 'job-1', token: 'wlt_x', subject: 'acme', error: undefined },
    );
  });

  test('one key per intent: reused after a failure for the same input, new after success, for another input, after reset', async () => {
    const scope = new SubmitScope(memoryPersistence());
    const { send, calls } = controlledSend();
    const failing = scope.submit({ a: 1 }, undefined, send);
    calls[0]!.reject(new Error('network down'));
    assert.equal(await failing, undefined, 'never rejects');
    assert.equal(scope.getSnapshot().error?.message, 'network down');

    const retry = scope.submit({ a: 1 }, undefined, send);
    assert.equal(calls[1]!.key, calls[0]!.key, 'a retry of the same intent');
    assert.equal(scope.getSnapshot().error, undefined);
    calls[1]!.resolve();
    await retry;

    const again = scope.submit({ a: 1 }, undefined, send);
    assert.notEqual(calls[2]!.key, calls[0]!.key, 'after a success the same input is a new intent');
    calls[2]!.reject(new Error('x'));
    await again;
    const other = scope.submit({ a: 2 }, undefined, send);
    assert.notEqual(calls[3]!.key, calls[2]!.key, 'another input, another intent');
    calls[3]!.reject(new Error('x'));
    await other;

    scope.reset();
    const fresh = scope.submit({ a: 2 }, undefined, send);
    assert.notEqual(calls[4]!.key, calls[3]!.key, 'reset ends the intent');
    calls[4]!.resolve();
    await fresh;
  });

  test('reset aborts a pending submit, whose late answer is then ignored', async () => {
    const scope = new SubmitScope(memoryPersistence());
    const { send, calls } = controlledSend();
    let notified = 0;
    scope.subscribe(() => notified++);
    const pending = scope.submit({ a: 1 }, 'acme', send);
    scope.reset();
    assert.equal(calls[0]!.signal.aborted, true);
    assert.equal(await pending, undefined);
    assert.deepEqual(scope.getSnapshot(), { pending: false, job: undefined, jobId: undefined, token: undefined, subject: undefined, error: undefined });
    assert.ok(notified >= 2);
  });

  test('a submit function that resolves with something else than { job } is an error, not a job', async () => {
    const scope = new SubmitScope(memoryPersistence());
    await scope.submit({}, undefined, async () => ({}) as never);
    assert.match(scope.getSnapshot().error?.message ?? '', /must resolve with `\{ job, token\? \}`/);
  });

  test('persisted: a reload (a new scope on the same storage) has the job, token and subject at once', async () => {
    const storage = fakeStorage();
    const scope = new SubmitScope(storagePersistence('scan:acme', storage));
    const { send, calls } = controlledSend();
    const done = scope.submit({ a: 1 }, 'acme', send);
    calls[0]!.resolve('wlt_t');
    await done;
    assert.deepEqual(JSON.parse(storage.getItem('scan:acme')!), { jobId: 'job-1', token: 'wlt_t', subject: 'acme' });
    const reloaded = new SubmitScope(storagePersistence('scan:acme', storage)).getSnapshot();
    assert.deepEqual(reloaded, { pending: false, job: undefined, jobId: 'job-1', token: 'wlt_t', subject: 'acme', error: undefined });
    scope.reset();
    assert.equal(storage.getItem('scan:acme'), null);
  });

  test('persisted: a reload mid-submit submits the same input under the same key (the server answers the same job)', async () => {
    const storage = fakeStorage();
    const { send, calls } = controlledSend();
    void new SubmitScope(storagePersistence('k', storage)).submit({ a: 1 }, undefined, send); // the page goes away mid-flight
    const afterReload = new SubmitScope(storagePersistence('k', storage));
    const again = afterReload.submit({ a: 1 }, undefined, send);
    assert.equal(calls[1]!.key, calls[0]!.key);
    calls[1]!.resolve();
    await again;
  });
});

describe('persistence', () => {
  test('storage: garbage and a broken storage read as nothing, never throw', () => {
    const storage = fakeStorage();
    storage.setItem('k', '{not json');
    assert.deepEqual(storagePersistence('k', storage).load(), {});
    storage.setItem('k', JSON.stringify({ jobId: 7, token: 'wlt_a', extra: true }));
    assert.deepEqual(storagePersistence('k', storage).load(), { token: 'wlt_a' });
    const broken: StorageLike = {
      getItem: () => {
        throw new Error('denied');
      },
      setItem: () => {
        throw new Error('quota');
      },
      removeItem: () => {
        throw new Error('denied');
      },
    };
    const p = storagePersistence('k', broken);
    assert.deepEqual(p.load(), {});
    p.save({ jobId: 'x' });
    p.clear();
    assert.deepEqual(storagePersistence('k', undefined).load(), {});
  });

  test('url: the job id in ?job=, the token beside it only for that job', () => {
    let href = 'https://app.example/scan?tab=2';
    const url = { href: () => href, replace: (next: string) => void (href = next) };
    const storage = fakeStorage();
    const p = urlPersistence('k', 'job', url, storage);
    p.save({ jobId: 'j1', token: 'wlt_1', subject: 's' });
    assert.equal(href, 'https://app.example/scan?tab=2&job=j1');
    assert.deepEqual(p.load(), { jobId: 'j1', token: 'wlt_1', subject: 's' });
    href = 'https://app.example/scan?job=j2'; // another job's link, pasted
    assert.deepEqual(p.load(), { jobId: 'j2' });
    p.clear();
    assert.equal(href, 'https://app.example/scan');
    assert.deepEqual(p.load(), {});
  });
});

function fakeStorage(): StorageLike & { data: Map<string, string> } {
  const data = new Map<string, string>();
  return {
    data,
    getItem: (k) => data.get(k) ?? null,
    setItem: (k, v) => void data.set(k, v),
    removeItem: (k) => void data.delete(k),
  };
}
