/**
 * Fault injection with real `waitless worker` processes: a job whose process is SIGKILLed
 * between two durable steps, again and again; per-key concurrency across two processes;
 * priorities and delays as a worker process sees them.
 *
 * The kill test runs on PostgreSQL (a shared schema) and on a PGlite folder: one process at a
 * time opens the folder, and each worker reopens what the SIGKILLed one left behind (PGlite
 * recovers it like a crashed server, committed steps included). The other tests need two
 * processes on one database at once, or read the database while a worker runs: PostgreSQL only.
 *
 * The test process submits and reads jobs through its own engine (no worker in it); what the
 * handlers do inside the workers comes back through the files written by
 * test/fixtures/durable-jobs.ts: a JSON-lines log and a counter of side effects.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { createWaitless, type Waitless } from '../src/engine.ts';
import { internals } from '../src/internals.ts';
import type { Job, JobEvent } from '../src/job/model.ts';
import {
  charge,
  DURABLE_COUNTER_ENV,
  DURABLE_LOG_ENV,
  type DurableRecord,
  durableJobs,
  KILLS,
  ordered,
  perUser,
  SELF_KILL_ENV,
} from './fixtures/durable-jobs.ts';
import { killAll, WorkerProcess, within } from './worker-process.ts';
import { drained, dropSchema, eventually, finished, openEngine, silentLogger, type TestEngine } from './helpers.ts';

const JOBS_MODULE = 'test/fixtures/durable-jobs.ts';





/** Everything one test owns; `cleanup` runs in t.after, so a failing test leaves nothing behind. */
class Scenario {
  readonly workers: WorkerProcess[] = [];
  readonly dir = mkdtempSync(join(tmpdir(), 'waitless-durable-'));
  readonly handlerLog = join(this.dir, 'handlers.jsonl');
  readonly counter = join(this.dir, 'side-effects.txt');
  /** PostgreSQL: the test's engine, in a fresh schema the workers join. */
  engine: TestEngine | undefined;
  /** PGlite: the folder (opened by one process at a time), and the engine while the test has it open. */
  pgliteDir: string | undefined;
  pglite: Waitless | undefined;

  async openPostgres(): Promise<this> {
    // A small pool: two workers already hold 2 × 11 connections, and other test files run alongside.
    this.engine = await openEngine('postgres', { jobs: durableJobs, maxConnections: 4 });
    return this;
  }

  get waitless(): Waitless {
    const waitless = this.engine?.waitless ?? this.pglite;
    assert.ok(waitless, 'no engine open');
    return waitless;
  }

  /** Opens the PGlite folder in this process (no worker runs here). Close it before a worker starts. */
  async openPglite(): Promise<Waitless> {
    this.pgliteDir ??= join(this.dir, 'pglite');
    assert.equal(this.pglite, undefined, 'the PGlite folder is already open here');
    this.pglite = await createWaitless({ jobs: durableJobs, database: this.pgliteDir, logger: silentLogger });
    return this.pglite;
  }

  async closePglite(): Promise<void> {
    const open = this.pglite;
    this.pglite = undefined;
    await open?.close();
  }

  spawnWorker(extraArgs: string[], env: Record<string, string> = {}): WorkerProcess {
    const database = this.engine?.databaseUrl ?? this.pgliteDir;
    assert.ok(database, 'no database to start a worker on');
    assert.ok(this.pglite === undefined, 'close the PGlite folder here before a worker opens it');
    const worker = new WorkerProcess({
      jobs: JOBS_MODULE,
      database,
      schema: this.engine?.schema,
      env: { [DURABLE_LOG_ENV]: this.handlerLog, [DURABLE_COUNTER_ENV]: this.counter, ...env },
      args: extraArgs,
    });
    this.workers.push(worker);
    return worker;
  }

  async ready(workers: WorkerProcess[]): Promise<void> {
    await within(Promise.all(workers.map((w) => w.ready)), 20_000, 'workers to log "worker started"');
  }

  /** Lines of a file appended to by the workers; a last piece without its newline is left for the next read. */
  private lines(file: string): string[] {
    return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(0, -1) : [];
  }

  records(filter: Partial<Pick<DurableRecord, 'event' | 'job' | 'jobId'>> = {}): DurableRecord[] {
    return this.lines(this.handlerLog)
      .map((line) => JSON.parse(line) as DurableRecord)
      .filter((r) => (filter.event === undefined || r.event === filter.event) && (filter.job === undefined || r.job === filter.job) && (filter.jobId === undefined || r.jobId === filter.jobId));
  }

  sideEffects(): string[] {
    return this.lines(this.counter);
  }

  done(jobId: string, timeoutMs = 15_000): Promise<Job> {
    return finished(this.waitless, jobId, timeoutMs);
  }

  async cleanup(): Promise<void> {
    await killAll(this.workers);
    try {
      await this.closePglite();
      // Drops the schema too.
      await this.engine?.close();
    } finally {
      if (this.engine) await dropSchema(this.engine.schema).catch(() => {});
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

/** A test with a {@link Scenario}; on failure the workers' last log lines and the handler log go to the report. */
function durableTest(name: string, body: (s: Scenario, t: TestContext) => Promise<void>): void {
  test(name, async (t) => {
    const scenario = new Scenario();
    t.after(() => scenario.cleanup());
    const started = Date.now();
    try {
      await body(scenario, t);
    } catch (error) {
      for (const worker of scenario.workers) t.diagnostic(`worker ${worker.pid}, last output:\n${worker.tail(30)}`);
      const records = scenario.records();
      t.diagnostic(`handler log (last 30 of ${records.length}):\n${records.slice(-30).map((r) => JSON.stringify(r)).join('\n')}`);
      t.diagnostic(`side effects: ${JSON.stringify(scenario.sideEffects())}`);
      throw error;
    } finally {
      t.diagnostic(`took ${Date.now() - started}ms`);
    }
  });
}

/** The worker logged no error and wrote nothing to stderr. */
function assertQuiet(worker: WorkerProcess): void {
  const troubles = worker.troubles();
  assert.deepEqual(troubles, [], `worker ${worker.pid} logged trouble`);
}

const statusTrail = (events: JobEvent[]) =>
  events.filter((e) => e.type === 'status').map((e) => [e.data.status, e.data.attempt ?? null, e.data.reason ?? null]);

// ---------------------------------------------------------------------------------------------
// 1. Killed between two steps, three times over.

/** Short leases, so each dead worker's job comes back in about a second. */
const CRASH_ARGS = ['--lease', '1s', '--heartbeat', '250ms', '--poll-interval', '200ms'];

/**
 * Starts a worker, waits until it dies (SIGKILLed by the handler) or the job is over, starts
 * the next one; answers the workers in order. `isOver` tells from outside the database whether
 * the job got past its last kill (PGlite: the test cannot read a folder a worker holds open).
 */
async function runUntilSurvived(s: Scenario, isOver: () => Promise<boolean>): Promise<WorkerProcess[]> {
  const runs: WorkerProcess[] = [];
  for (;;) {
    assert.ok(runs.length <= KILLS, `the job was still not done after ${runs.length} worker processes`);
    const worker = s.spawnWorker(CRASH_ARGS, { [SELF_KILL_ENV]: '1' });
    runs.push(worker);
    // Not awaiting "worker started": the handler may kill the process before its log line is read.
    const outcome = await eventually(async () => (worker.exitedAlready ? 'exited' : (await isOver()) ? 'over' : undefined), `worker ${worker.pid} to die or the job to be done`, 20_000);
    if (outcome === 'over') return runs;
    const exit = await worker.exited;
    assert.deepEqual(exit, { code: null, signal: 'SIGKILL' }, `worker ${worker.pid} (run ${runs.length}) should have been SIGKILLed by the handler:\n${worker.tail(20)}`);
  }
}

/** Everything the killed-between-steps scenario must leave behind, read from an open engine. */
async function assertStepsRanOnce(s: Scenario, jobId: string, runs: WorkerProcess[]): Promise<void> {
  const pids = runs.map((w) => w.pid);
  assert.equal(runs.length, KILLS + 1, 'one worker per kill, and one that finished');

  // The side effects: one charge, one e-mail, though the job ran four times.
  assert.deepEqual(s.sideEffects(), [`charge ${jobId}`, `email ${jobId}`]);
  // Each worker started the job once, on the next attempt; the first three died after "charge".
  const starts = s.records({ jobId, event: 'start' }).map((r) => [r.attempt, r.pid]);
  assert.deepEqual(
    starts,
    pids.map((pid, i) => [i + 1, pid]),
  );
  assert.deepEqual(
    s.records({ jobId, event: 'killing' }).map((r) => [r.attempt, r.pid]),
    pids.slice(0, KILLS).map((pid, i) => [i + 1, pid]),
  );

  const job = await s.waitless.get(jobId);
  assert.ok(job);
  assert.equal(job.status, 'completed');
  assert.equal(job.attempt, KILLS + 1);
  // The charge is the first run's: its recorded result came back, it was not computed again.
  assert.deepEqual(job.result, {
    charge: { receipt: `${jobId}:charge`, amount: 4200, chargedOnAttempt: 1, chargedBy: pids[0] },
    email: { sentOnAttempt: KILLS + 1, sentBy: pids[KILLS] },
    attempt: KILLS + 1,
  });
  assert.deepEqual(
    job.steps?.map((step) => [step.name, step.status, step.attempt]),
    [
      ['charge', 'completed', 1],
      ['email', 'completed', KILLS + 1],
    ],
  );

  const events = await s.waitless.events(jobId);
  const steps = events.filter((e) => e.type === 'step').map((e) => [e.data.name, e.data.status, e.data.attempt]);
  assert.deepEqual(steps, [
    ['charge', 'started', 1],
    ['charge', 'completed', 1],
    ['email', 'started', KILLS + 1],
    ['email', 'completed', KILLS + 1],
  ]);
  assert.equal(events.filter((e) => e.type === 'step' && e.data.name === 'charge' && e.data.status === 'completed').length, 1);
  // Each death is a lease that expired and a job taken back, then run on the next attempt.
  const trail: unknown[] = [['queued', null, null]];
  for (let attempt = 1; attempt <= KILLS; attempt++) trail.push(['running', attempt, null], ['queued', attempt, 'lease_expired']);
  trail.push(['running', KILLS + 1, null], ['completed', KILLS + 1, null]);
  assert.deepEqual(statusTrail(events), trail);
  for (const e of events.filter((e) => e.data.reason === 'lease_expired')) {
    assert.equal((e.data.error as { code?: string } | undefined)?.code, 'worker_lost');
  }
}

durableTest(`PostgreSQL: a job killed between step 1 and step 2, ${KILLS} times over, runs step 1 once and completes`, async (s, t) => {
  await s.openPostgres();
  const { job } = await s.waitless.submit(charge, { amount: 4200 });
  const runs = await runUntilSurvived(s, async () => (await s.waitless.get(job.id))?.done === true);
  const survivor = runs.at(-1)!;
  assert.equal(await survivor.stop(), 0);
  t.diagnostic(`worker processes: ${runs.map((w) => w.pid).join(', ')}`);
  await assertStepsRanOnce(s, job.id, runs);
  assertQuiet(survivor);
});

durableTest(`PGlite folder: a job killed between step 1 and step 2, ${KILLS} times over, runs step 1 once and completes`, async (s, t) => {
  // One process at a time opens the folder: the test submits and closes it, then the workers
  // take turns, each reopening what the SIGKILLed one left behind.
  const waitless = await s.openPglite();
  const { job } = await waitless.submit(charge, { amount: 4200 });
  await s.closePglite();
  // The test cannot look into the folder while a worker holds it: the e-mail line says the
  // last attempt got past the kills; a graceful stop then lets it record the job's outcome.
  const runs = await runUntilSurvived(s, async () => s.sideEffects().includes(`email ${job.id}`));
  const survivor = runs.at(-1)!;
  assert.equal(await survivor.stop(), 0);
  t.diagnostic(`worker processes: ${runs.map((w) => w.pid).join(', ')}`);
  await s.openPglite();
  await assertStepsRanOnce(s, job.id, runs);
  assertQuiet(survivor);
});

// ---------------------------------------------------------------------------------------------
// 2. Per-key concurrency across two processes.

/** The most intervals open at one moment; an end at the same millisecond as a start counts first. */
function maxOverlap(intervals: Array<{ start: number; end: number }>): number {
  // Sound with millisecond times: a job's slot is freed only after its handler logged "end" and
  // its completion committed, so the next start is never earlier on the shared realtime clock.
  const points = intervals.flatMap(({ start, end }) => [
    { at: start, delta: 1 },
    { at: end, delta: -1 },
  ]);
  points.sort((a, b) => a.at - b.at || a.delta - b.delta);
  let open = 0;
  let max = 0;
  for (const point of points) {
    open += point.delta;
    max = Math.max(max, open);
  }
  return max;
}

durableTest('PostgreSQL: 200 jobs over 5 users on two worker processes never run more than 2 per user at once', async (s, t) => {
  await s.openPostgres();
  const workers = [s.spawnWorker(['--concurrency', '10', '--poll-interval', '200ms']), s.spawnWorker(['--concurrency', '10', '--poll-interval', '200ms'])];
  await s.ready(workers);

  const TOTAL = 200;
  const USERS = 5;
  const LIMIT = perUser.concurrency!.limit;
  const submitted = await Promise.all(
    Array.from({ length: TOTAL }, (_, n) => s.waitless.submit(perUser, { user: `user-${n % USERS}`, n, ms: 20 + ((n * 37) % 61) })),
  );
  const ids = new Set(submitted.map((o) => o.job.id));
  assert.equal(ids.size, TOTAL);
  assert.deepEqual(submitted[7]?.job.concurrency, { key: 'user-2', limit: LIMIT });

  const { driver } = internals(s.waitless);
  await drained(s.waitless, `all ${TOTAL} jobs to finish`);
  const jobs = await driver.query<{ id: string; status: string; attempt: number; input: { n: number }; result: { n: number; pid: number } | null }>({
    text: 'SELECT id, status, attempt, input, result FROM jobs',
    values: [],
  });
  assert.equal(jobs.length, TOTAL);
  assert.deepEqual(
    jobs.filter((j) => j.status !== 'completed' || j.attempt !== 1 || j.result?.n !== j.input.n).map((j) => [j.id, j.status, j.attempt]),
    [],
    'every job completed on its first attempt with its own result',
  );

  // Each job ran once: one start and one end, in the process that recorded its result.
  const starts = s.records({ event: 'start', job: perUser.name });
  const ends = s.records({ event: 'end', job: perUser.name });
  assert.equal(starts.length, TOTAL, 'one handler start per job');
  assert.equal(ends.length, TOTAL, 'one handler end per job');
  assert.deepEqual(new Set(starts.map((r) => r.jobId)), ids);
  assert.deepEqual(new Set(ends.map((r) => r.jobId)), ids);
  const resultPid = new Map(jobs.map((j) => [j.id, j.result?.pid]));
  assert.deepEqual(
    starts.filter((r) => resultPid.get(r.jobId) !== r.pid).map((r) => r.jobId),
    [],
  );

  const perWorker = workers.map((w) => starts.filter((r) => r.pid === w.pid).length);
  t.diagnostic(`jobs per worker process: ${perWorker.join(' / ')}`);
  assert.equal(perWorker.reduce((a, b) => a + b, 0), TOTAL, 'only our two workers ran jobs');
  for (const [i, count] of perWorker.entries()) assert.ok(count > 0, `worker ${i + 1} ran no job (split: ${perWorker.join(' / ')})`);

  // Sweep line per user over the handlers' [start, end] intervals.
  const endOf = new Map(ends.map((r) => [r.jobId, r.at]));
  const peaks = new Map<string, number>();
  for (let u = 0; u < USERS; u++) {
    const user = `user-${u}`;
    const intervals = starts.filter((r) => r.tag === user).map((r) => ({ start: r.at, end: endOf.get(r.jobId)! }));
    assert.equal(intervals.length, TOTAL / USERS);
    peaks.set(user, maxOverlap(intervals));
  }
  t.diagnostic(`most jobs running at once, per user: ${[...peaks].map(([user, n]) => `${user}: ${n}`).join(', ')}`);
  for (const [user, peak] of peaks) assert.ok(peak <= LIMIT, `${user} had ${peak} jobs running at once (limit ${LIMIT})`);
  // The limit is used, not just respected: with 20 slots for 5 users, users do run two at once.
  assert.ok(Math.max(...peaks.values()) === LIMIT, `no user ever had ${LIMIT} jobs running at once`);
  // Across users, the work did run in parallel (more than one user's limit at a time).
  const all = starts.map((r) => ({ start: r.at, end: endOf.get(r.jobId)! }));
  assert.ok(maxOverlap(all) > LIMIT, `at most ${maxOverlap(all)} jobs ran at once over all users`);
  for (const worker of workers) assertQuiet(worker);
});

// ---------------------------------------------------------------------------------------------
// 3. Priorities and delays.

durableTest('PostgreSQL: a worker process runs higher priorities first and a delayed job not before its runAt', async (s, t) => {
  await s.openPostgres();
  // Everything is queued before the worker exists, so the order is the claim order alone.
  const low: Job[] = [];
  for (let i = 0; i < 10; i++) low.push((await s.waitless.submit(ordered, { label: `low-${i}`, ms: 5 }, { priority: 0 })).job);
  const high: Job[] = [];
  for (let i = 0; i < 5; i++) high.push((await s.waitless.submit(ordered, { label: `high-${i}`, ms: 5 }, { priority: 10 })).job);
  assert.deepEqual([...new Set(high.map((j) => j.priority))], [10]);

  const worker = s.spawnWorker(['--concurrency', '1', '--poll-interval', '200ms']);
  await s.ready([worker]);
  for (const job of [...low, ...high]) assert.equal((await s.done(job.id)).status, 'completed');

  // One job at a time in one process: the log's order is the order the jobs started in.
  const labels = s.records({ event: 'start', job: ordered.name }).map((r) => r.tag);
  const firstLow = labels.findIndex((l) => l?.startsWith('low-'));
  const lastHigh = labels.findLastIndex((l) => l?.startsWith('high-'));
  assert.ok(lastHigh < firstLow, `a priority-0 job started before a priority-10 one: ${labels.join(', ')}`);
  // Within a priority, oldest first.
  assert.deepEqual(labels, [...high, ...low].map((j) => (j.input as { label: string }).label));

  // The worker is idle now, polling every 200 ms. A delayed job waits for its runAt; one
  // submitted right after it without a delay runs at once.
  const delayed = (await s.waitless.submit(ordered, { label: 'delayed' }, { delay: '1500ms', priority: 1000 })).job;
  const prompt = (await s.waitless.submit(ordered, { label: 'prompt' })).job;
  const runAt = Date.parse(delayed.runAt);
  assert.ok(runAt - Date.parse(delayed.createdAt) >= 1400, `runAt ${delayed.runAt} is not 1.5 s after ${delayed.createdAt}`);

  const promptStart = await eventually(() => s.records({ event: 'start', jobId: prompt.id })[0], 'the prompt job to start');
  assert.ok(promptStart);
  assert.equal(s.records({ jobId: delayed.id }).length, 0, 'the delayed job started before the prompt one');

  const finished = await s.done(delayed.id, 10_000);
  assert.equal(finished.status, 'completed');
  const [start, ...again] = s.records({ event: 'start', jobId: delayed.id });
  assert.ok(start);
  assert.equal(again.length, 0);
  const late = start.at - runAt;
  t.diagnostic(`the delayed job started ${late}ms after its runAt`);
  assert.ok(late >= 0, `the delayed job started ${-late}ms before its runAt (${delayed.runAt})`);
  assert.ok(Date.parse(finished.startedAt!) >= runAt, `startedAt ${finished.startedAt} is before runAt ${delayed.runAt}`);
  assertQuiet(worker);
});
