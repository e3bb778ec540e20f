import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChildContext, ChildTask } from '../src/job/definition.ts';
import { runAll, runAllSettled, SiblingFailedError } from '../src/job/structured.ts';

/** A child context without steps: these tests are about signals, not the database. */
const makeChild = (signal: AbortSignal): ChildContext => ({
  signal,
  step: () => Promise.reject(new Error('no steps in these tests')),
});

const rejectsAfter = (ms: number, error: Error) => async () => {
  await sleep(ms);
  throw error;
};

/** A promise settled from outside. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Runs `promise` to its rejection and says when that happened (ms since `t0`). */
async function rejection(promise: Promise<unknown>, t0: number): Promise<{ error: unknown; at: number }> {
  try {
    await promise;
  } catch (error) {
    return { error, at: performance.now() - t0 };
  }
  assert.fail('expected a rejection');
}

/** `process.getActiveResourcesInfo()` as counts per kind, so two snapshots compare regardless of order. */
function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1;
  return counts;
}

// Tasks below that wait 30 s on their signal carry a 5 s timeout, so a broken abort fails fast
// instead of stalling the suite.
describe('runAll', () => {
  it('resolves with every result in order, types preserved', async () => {
    const parent = new AbortController();
    const late = async () => {
      await sleep(30); // finishes last, yet comes first
      return 1;
    };
    const [n, s, o] = await runAll([late, async () => 'two', async () => ({ three: true })], parent.signal, makeChild);
    // Compile-time: each position keeps its own type, without `as const` at the call.
    const typed: [number, string, { three: boolean }] = [n, s, o];
    assert.deepEqual(typed, [1, 'two', { three: true }]);
  });

  it('gives each task its own child signal, none aborted on success', async () => {
    const parent = new AbortController();
    const seen: AbortSignal[] = [];
    await runAll(
      [0, 1, 2].map(() => async (child: ChildContext) => void seen.push(child.signal)),
      parent.signal,
      makeChild,
    );
    assert.equal(new Set(seen).size, 3);
    assert.ok(seen.every((s) => s !== parent.signal && !s.aborted));
  });

  it('a failure at ~50 ms aborts a 30 s timer and a hanging fetch at once, and leaves no handle open', { timeout: 5_000 }, async () => {
    const requestArrived = deferred<void>();
    const requestAborted = deferred<boolean>();
    // Never answers: only the client giving up ends the request.
    const server = createServer((_req: IncomingMessage, res: ServerResponse) => {
      res.once('close', () => requestAborted.resolve(!res.writableFinished));
      requestArrived.resolve();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hang`;
    // Taken with the server listening: it is closed before the second snapshot, which then must
    // show exactly one TCPServerWrap less and nothing else changed.
    const before = resources();

    const boom = new Error('sibling 0 failed');
    const signals: AbortSignal[] = [];
    const t0 = performance.now();
    const { error } = await rejection(
      runAll(
        [
          async () => {
            await requestArrived.promise; // fail only once the fetch is really in flight
            await sleep(Math.max(0, 50 - (performance.now() - t0)));
            throw boom;
          },
          async ({ signal }) => {
            signals.push(signal);
            await sleep(30_000, undefined, { signal });
            return 'timer';
          },
          async ({ signal }) => {
            signals.push(signal);
            const res = await fetch(url, { signal });
            return res.text();
          },
        ],
        new AbortController().signal,
        makeChild,
      ),
      t0,
    );

    assert.equal(error, boom, 'rejects with the failure itself, not the abort errors it caused');
    // No duration asserted: the 30 s timer and the hanging fetch end only through their signals,
    // so the test's own bound fails a run in which they were not aborted.
    for (const signal of signals) {
      assert.ok(signal.aborted);
      assert.ok(signal.reason instanceof SiblingFailedError);
      assert.equal(signal.reason.index, 0);
      assert.equal(signal.reason.cause, boom);
    }
    assert.equal(await requestAborted.promise, true, 'the server saw its request cut off before any answer');

    server.close();
    await new Promise((resolve) => server.once('close', resolve));
    const { TCPServerWrap: servers = 1, ...others } = before;
    const expected = servers > 1 ? { ...others, TCPServerWrap: servers - 1 } : others;
    // libuv frees closed handles a few loop turns later (both ends of the aborted connection,
    // the server's listener): give it those turns, but no timer that would itself be a handle.
    for (let turn = 0; turn < 100 && !isDeepStrictEqual(resources(), expected); turn++) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.deepEqual(resources(), expected);
  });

  it('waits for a sibling that ignores its signal before rejecting', async () => {
    const boom = new Error('fast failure');
    let ignorerEnd = 0;
    let ignorerSignal: AbortSignal | undefined;
    const t0 = performance.now();
    const { error, at } = await rejection(
      runAll(
        [
          rejectsAfter(20, boom),
          async ({ signal }) => {
            ignorerSignal = signal;
            await sleep(300); // deliberately deaf to its signal
            ignorerEnd = performance.now() - t0;
            return 'late';
          },
        ],
        new AbortController().signal,
        makeChild,
      ),
      t0,
    );
    assert.equal(error, boom);
    assert.ok(ignorerSignal?.aborted, 'its signal was aborted all the same');
    assert.ok(ignorerEnd >= 300 - 5, `ignorer ended at ${ignorerEnd}`);
    assert.ok(ignorerEnd <= at, `ignorer ended at ${ignorerEnd}, call rejected at ${at}`);
  });

  it('aborts every child with the parent reason when the parent aborts, awaits all, rejects with that reason', { timeout: 5_000 }, async () => {
    const parent = new AbortController();
    const reason = new Error('job cancelled');
    const signals: AbortSignal[] = [];
    let ignorerEnd = 0;
    const t0 = performance.now();
    setTimeout(() => parent.abort(reason), 50);
    const { error, at } = await rejection(
      runAll(
        [
          async ({ signal }) => {
            signals.push(signal);
            await sleep(30_000, undefined, { signal });
          },
          async ({ signal }) => {
            signals.push(signal);
            await sleep(200);
            ignorerEnd = performance.now() - t0;
          },
          async ({ signal }) => {
            signals.push(signal);
            // A task that turns the abort into an error of its own: the call still reports the parent's reason.
            await new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('task cleanup'))));
          },
        ],
        parent.signal,
        makeChild,
      ),
      t0,
    );
    assert.equal(error, reason);
    assert.equal(signals.length, 3);
    for (const signal of signals) assert.equal(signal.reason, reason);
    assert.ok(ignorerEnd > 0 && ignorerEnd <= at, `ignorer ended at ${ignorerEnd}, call rejected at ${at}`);
  });

  it('reports the first failure even if the parent aborts while siblings wind down', async () => {
    const parent = new AbortController();
    const boom = new Error('first');
    await assert.rejects(
      runAll(
        [
          rejectsAfter(10, boom),
          async () => {
            await sleep(60);
            parent.abort(new Error('later cancel'));
          },
        ],
        parent.signal,
        makeChild,
      ),
      (error) => error === boom,
    );
  });

  it('counts a synchronous throw as a rejection', { timeout: 5_000 }, async () => {
    const boom = new Error('sync');
    let siblingSignal: AbortSignal | undefined;
    const tasks: ChildTask<unknown>[] = [
      ({ signal }) => {
        siblingSignal = signal;
        return sleep(30_000, undefined, { signal });
      },
      () => {
        throw boom;
      },
    ];
    await assert.rejects(runAll(tasks, new AbortController().signal, makeChild), (error) => error === boom);
    assert.ok(siblingSignal?.reason instanceof SiblingFailedError);
    assert.equal(siblingSignal.reason.index, 1);
  });

  it('resolves [] at once for an empty list', async () => {
    assert.deepEqual(await runAll([], new AbortController().signal, makeChild), []);
  });

  it('rejects with a TypeError before starting anything when an entry is not a function', async () => {
    let started = false;
    const tasks = [
      async () => {
        started = true;
      },
      'not a task',
    ] as unknown as ChildTask<unknown>[];
    await assert.rejects(runAll(tasks, new AbortController().signal, makeChild), TypeError);
    await assert.rejects(runAllSettled(tasks, new AbortController().signal, makeChild), TypeError);
    assert.equal(started, false);
  });

  it('starts nothing when the parent is already aborted', async () => {
    const parent = new AbortController();
    const reason = new Error('already cancelled');
    parent.abort(reason);
    let started = false;
    const task = async () => {
      started = true;
    };
    await assert.rejects(runAll([task], parent.signal, makeChild), (error) => error === reason);
    assert.deepEqual(await runAllSettled([task], parent.signal, makeChild), [{ status: 'rejected', reason }]);
    assert.equal(started, false);
  });
});

describe('runAllSettled', () => {
  it('lets the others run on after one fails and reports every outcome in order', async () => {
    const boom = new Error('one failed');
    const signals: AbortSignal[] = [];
    const slow =
      (value: string) =>
      async ({ signal }: ChildContext) => {
        signals.push(signal);
        await sleep(80, undefined, { signal });
        return value;
      };
    const outcomes = await runAllSettled([slow('a'), rejectsAfter(10, boom), slow('c')], new AbortController().signal, makeChild);
    assert.deepEqual(outcomes, [
      { status: 'fulfilled', value: 'a' },
      { status: 'rejected', reason: boom },
      { status: 'fulfilled', value: 'c' },
    ]);
    assert.ok(signals.every((s) => !s.aborted));
  });

  it('aborts every child when the parent aborts and still waits for all', { timeout: 5_000 }, async () => {
    const parent = new AbortController();
    const reason = new Error('job timed out');
    let ignorerEnd = 0;
    const t0 = performance.now();
    setTimeout(() => parent.abort(reason), 30);
    const outcomes = await runAllSettled(
      [
        ({ signal }) => sleep(30_000, 'never', { signal }),
        async ({ signal }) => {
          await sleep(150);
          ignorerEnd = performance.now() - t0;
          return signal.reason === reason;
        },
      ],
      parent.signal,
      makeChild,
    );
    const end = performance.now() - t0;
    const [timer] = outcomes;
    assert.ok(timer.status === 'rejected');
    // timers/promises wraps the signal's reason in an AbortError.
    assert.ok(timer.reason instanceof Error);
    assert.equal(timer.reason.cause, reason);
    assert.deepEqual(outcomes[1], { status: 'fulfilled', value: true });
    assert.ok(ignorerEnd > 0 && ignorerEnd <= end);
  });
});

describe('parent signal listeners', () => {
  it('are removed when each call ends: 1 000 calls on one signal leave none behind', async () => {
    const parent = new AbortController();
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const baseline = getEventListeners(parent.signal, 'abort').length;
      let during = -1;
      const ok: ChildTask<number> = async () => {
        during = getEventListeners(parent.signal, 'abort').length;
        return 1;
      };
      const fails: ChildTask<never> = async () => {
        throw new Error('x');
      };
      for (let i = 0; i < 1_000; i++) {
        await runAll([ok, ok, ok], parent.signal, makeChild);
        await assert.rejects(runAll([ok, fails], parent.signal, makeChild));
        await runAllSettled([ok, fails], parent.signal, makeChild);
      }
      assert.equal(during, baseline + 1, 'one listener per call, not one per task');
      assert.equal(getEventListeners(parent.signal, 'abort').length, baseline);
      // Warnings are emitted on a later tick.
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(
        warnings.filter((w) => w.name === 'MaxListenersExceededWarning'),
        [],
      );
    } finally {
      process.off('warning', onWarning);
    }
  });
});
