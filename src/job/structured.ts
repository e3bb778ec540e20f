import type { ChildContext, ChildTask } from './definition.ts';

/** What {@link runAll} resolves with: each task's result, in the tasks' order. */
export type AllResults<T extends readonly ChildTask<unknown>[]> = { -readonly [K in keyof T]: Awaited<ReturnType<T[K]>> };

/** What {@link runAllSettled} resolves with: each task's outcome, in the tasks' order. */
export type AllSettledResults<T extends readonly ChildTask<unknown>[]> = {
  -readonly [K in keyof T]: PromiseSettledResult<Awaited<ReturnType<T[K]>>>;
};

/** Builds the context a task receives around its child signal. */
export type MakeChild = (signal: AbortSignal) => ChildContext;

/**
 * The reason a task's signal aborts when another task of the same {@link runAll} call failed.
 * The failure itself is `cause`, so a task that logs why it stopped can say what really went wrong.
 */
export class SiblingFailedError extends Error {
  override name = 'SiblingFailedError';
  /** Position of the failed task in the list. */
  readonly index: number;
  constructor(index: number, cause: unknown) {
    super(`Task ${index} of ctx.all failed, so the tasks running beside it were aborted: ${describe(cause)}`, { cause });
    this.index = index;
  }
}

/**
 * Runs `tasks` at once, each with its own child signal, and resolves with their results in
 * order (the semantics of `ctx.all`).
 *
 * - The first task to reject (a synchronous throw counts) aborts every task's signal with a
 *   {@link SiblingFailedError}; the call then waits for every started task to settle, even one
 *   that ignores its signal, and rejects with that first failure — never with the abort errors
 *   it caused in the others.
 * - When `parent` aborts, every child aborts with the parent's reason; the call waits for all of
 *   them and rejects with that reason (unless a task had already failed: then with that failure).
 * - If `parent` is already aborted, no task starts and the call rejects with its reason.
 * - An empty list resolves `[]`. An entry that is not a function rejects with a `TypeError`
 *   before any task starts.
 *
 * Adds one listener to `parent` for the call's duration and removes it when the call settles.
 */
export async function runAll<const T extends readonly ChildTask<unknown>[]>(
  tasks: T,
  parent: AbortSignal,
  makeChild: MakeChild,
): Promise<AllResults<T>> {
  validate(tasks);
  parent.throwIfAborted();
  if (tasks.length === 0) return [] as unknown as AllResults<T>;

  const children = tasks.map(() => new AbortController());
  const contexts = children.map((c) => makeChild(c.signal));
  const results: unknown[] = new Array<unknown>(tasks.length);
  let failed = false;
  let failure: unknown;

  const fail = (reason: unknown, childReason: unknown) => {
    if (failed) return;
    failed = true;
    failure = reason;
    for (const c of children) c.abort(childReason);
  };
  const onParentAbort = () => fail(parent.reason, parent.reason);

  parent.addEventListener('abort', onParentAbort, { once: true });
  try {
    const running: Promise<void>[] = [];
    for (const [i, task] of tasks.entries()) {
      // A failure (or a parent abort) while earlier tasks were being started means this one's
      // signal is already aborted: starting it would only do work nobody will look at.
      if (failed) break;
      running.push(
        start(task, contexts[i]!).then(
          (value) => void (results[i] = value),
          (error: unknown) => fail(error, new SiblingFailedError(i, error)),
        ),
      );
    }
    // The handlers above never reject, so this waits for every started task, however it ends.
    await Promise.all(running);
  } finally {
    // The parent is usually the job's signal, which outlives many calls: a listener left behind
    // per call would pile up for the job's whole life.
    parent.removeEventListener('abort', onParentAbort);
  }
  if (failed) throw failure;
  return results as AllResults<T>;
}

/**
 * Runs `tasks` at once, each with its own child signal, waits for every one of them and resolves
 * with their outcomes in order (the semantics of `ctx.allSettled`). It never rejects once tasks
 * have started.
 *
 * - A failing task (a synchronous throw counts) does not abort the others.
 * - When `parent` aborts, every child aborts with the parent's reason and the call still waits
 *   for all of them; tasks that had not been started yet (the parent aborted while they were
 *   being started, or before the call) do not start and report `rejected` with that reason.
 * - An empty list resolves `[]`. An entry that is not a function rejects with a `TypeError`
 *   before any task starts.
 *
 * Adds one listener to `parent` for the call's duration and removes it when the call settles.
 */
export async function runAllSettled<const T extends readonly ChildTask<unknown>[]>(
  tasks: T,
  parent: AbortSignal,
  makeChild: MakeChild,
): Promise<AllSettledResults<T>> {
  validate(tasks);
  if (tasks.length === 0) return [] as unknown as AllSettledResults<T>;

  const children = tasks.map(() => new AbortController());
  const contexts = children.map((c) => makeChild(c.signal));
  const onParentAbort = () => {
    for (const c of children) c.abort(parent.reason);
  };

  // An already-aborted signal never fires 'abort' again, so its children are aborted here instead.
  if (parent.aborted) onParentAbort();
  else parent.addEventListener('abort', onParentAbort, { once: true });
  try {
    return (await Promise.all(
      tasks.map((task, i): Promise<PromiseSettledResult<unknown>> => {
        if (parent.aborted) return Promise.resolve({ status: 'rejected', reason: parent.reason as unknown });
        return start(task, contexts[i]!).then(
          (value) => ({ status: 'fulfilled', value }),
          (reason: unknown) => ({ status: 'rejected', reason }),
        );
      }),
    )) as AllSettledResults<T>;
  } finally {
    parent.removeEventListener('abort', onParentAbort);
  }
}

/** Checks the whole list first, so a bad entry is found before any task has side effects. */
function validate(tasks: readonly unknown[]): void {
  if (!Array.isArray(tasks)) throw new TypeError('ctx.all / ctx.allSettled take an array of functions.');
  for (const [i, task] of tasks.entries()) {
    if (typeof task !== 'function') {
      throw new TypeError(`Task ${i} of ctx.all / ctx.allSettled is ${task === null ? 'null' : typeof task}, not a function.`);
    }
  }
}

/** Calls a task, turning a synchronous throw (or a non-promise return) into a promise. */
function start(task: ChildTask<unknown>, child: ChildContext): Promise<unknown> {
  // The executor runs the task right away; a throw in it becomes the promise's rejection.
  return new Promise((resolve) => resolve(task(child)));
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  try {
    return String(error);
  } catch {
    // An object without a usable toString must not turn one failure into another.
    return 'a value that is not an Error';
  }
}
