/**
 * Real `waitless worker` processes against one PostgreSQL schema: crashes (SIGKILL), stalls
 * (SIGSTOP/SIGCONT), cross-process cancel and two workers sharing a queue. PostgreSQL only,
 * because several OS processes cannot share an embedded PGlite.
 *
 * The test process submits and reads jobs through its own engine (no worker in it); what the
 * handlers do inside the workers comes back through the JSON-lines log written by
 * test/fixtures/process-jobs.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { isTerminalEvent } from '../src/contract/job-events.ts';
import { internals } from '../src/internals.ts';
import type { Job, JobEvent } from '../src/job/model.ts';
import { cancellable, HANDLER_LOG_ENV, type HandlerRecord, processJobs, quick, stalling } from './fixtures/process-jobs.ts';
import { killAll, WorkerProcess, within } from './worker-process.ts';
import { drained, dropSchema, eventually, finished, openEngine, type TestEngine } from './helpers.ts';


/** Short leases so a dead or frozen worker's job comes back in about a second, not 30. */
const FAST_RECLAIM = ['--lease', '1s', '--heartbeat', '250ms', '--poll-interval', '200ms'];




/** Everything one scenario owns; `cleanup` runs in t.after, so a failing test leaves nothing behind. */
class Scenario {
  readonly workers: WorkerProcess[] = [];
  readonly dir = mkdtempSync(join(tmpdir(), 'waitless-processes-'));
  readonly handlerLog = join(this.dir, 'handlers.jsonl');
  engine: TestEngine | undefined;

  get waitless() {
    assert.ok(this.engine, 'engine not open');
    return this.engine.waitless;
  }

  async open(): Promise<this> {
    // The test engine creates and migrates the schema; workers join it. No worker runs here.
    // A small pool: two workers already hold 2 × 11 connections, and other test files run alongside.
    this.engine = await openEngine('postgres', { jobs: processJobs, maxConnections: 4 });
    return this;
  }

  spawnWorkers(count: number, extraArgs: string[]): WorkerProcess[] {
    assert.ok(this.engine);
    const started: WorkerProcess[] = [];
    for (let i = 0; i < count; i++) {
      const worker = new WorkerProcess({
        jobs: 'test/fixtures/process-jobs.ts',
        database: this.engine.databaseUrl,
        schema: this.engine.schema,
        env: { [HANDLER_LOG_ENV]: this.handlerLog },
        args: extraArgs,
      });
      this.workers.push(worker);
      started.push(worker);
    }
    return started;
  }

  async ready(workers: WorkerProcess[]): Promise<void> {
    await within(Promise.all(workers.map((w) => w.ready)), 20_000, 'workers to log "worker started"');
  }

  workerByPid(pid: number): WorkerProcess {
    const worker = this.workers.find((w) => w.pid === pid);
    assert.ok(worker, `pid ${pid} is not one of this test's workers`);
    return worker;
  }

  records(jobId?: string): HandlerRecord[] {
    if (!existsSync(this.handlerLog)) return [];
    // The last piece is '' or a line still being written by a worker: it is read on the next poll.
    const all = readFileSync(this.handlerLog, 'utf8')
      .split('\n')
      .slice(0, -1)
      .map((line) => JSON.parse(line) as HandlerRecord);
    return jobId === undefined ? all : all.filter((r) => r.jobId === jobId);
  }

  /** Waits for the handler of `jobId` to log `step` (optionally on a given attempt). */
  record(jobId: string, step: string, attempt?: number, timeoutMs = 15_000): Promise<HandlerRecord> {
    return eventually(
      () => this.records(jobId).find((r) => r.step === step && (attempt === undefined || r.attempt === attempt)),
      `handler of ${jobId} to log "${step}"${attempt === undefined ? '' : ` on attempt ${attempt}`}`,
      timeoutMs,
    );
  }

  done(jobId: string, timeoutMs = 15_000): Promise<Job> {
    return finished(this.waitless, jobId, timeoutMs);
  }

  async cleanup(): Promise<void> {
    await killAll(this.workers);
    const schema = this.engine?.schema;
    try {
      await this.engine?.close();
    } finally {
      if (schema) await dropSchema(schema);
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

/** A test with a {@link Scenario}; on failure the workers' last log lines go to the report. */
function processTest(name: string, body: (s: Scenario, t: TestContext) => Promise<void>): void {
  test(name, async (t) => {
    const scenario = new Scenario();
    t.after(() => scenario.cleanup());
    await scenario.open();
    try {
      await body(scenario, t);
    } catch (error) {
      for (const worker of scenario.workers) t.diagnostic(`worker ${worker.pid}, last output:\n${worker.tail(30)}`);
      const records = scenario.records();
      t.diagnostic(`handler log (last 30 of ${records.length}):\n${records.slice(-30).map((r) => JSON.stringify(r)).join('\n')}`);
      throw error;
    }
  });
}

/** The worker logged no error and wrote nothing to stderr; the message lists what it did log. */
function assertQuiet(worker: WorkerProcess): void {
  const troubles = worker.troubles();
  const counts = new Map<string, number>();
  for (const line of troubles) counts.set(line, (counts.get(line) ?? 0) + 1);
  const summary = [...counts].map(([line, n]) => `  ${n} × ${line}`).join('\n');
  assert.equal(troubles.length, 0, `worker ${worker.pid} logged ${troubles.length} error(s):\n${summary}`);
}

const statusEvents = (events: JobEvent[]) => events.filter((e) => e.type === 'status');

processTest('a worker process killed with SIGKILL mid-job: another process reclaims the job and finishes it', async (s) => {
  const workers = s.spawnWorkers(2, FAST_RECLAIM);
  await s.ready(workers);
  const gate = join(s.dir, 'never-opened');
  const { job } = await s.waitless.submit(stalling, { gate });

  const first = await s.record(job.id, 'progressed', 1);
  const victim = s.workerByPid(first.pid);
  const survivor = workers.find((w) => w !== victim)!;
  victim.signal('SIGKILL');
  assert.equal((await victim.exited).signal, 'SIGKILL');

  // Reclaimed by the 1s lease these workers run with: the wait is bounded below the 30s
  // default lease, so a reclaim that ignored the setting never gets here.
  const finished = await s.done(job.id, 25_000);
  assert.equal(finished.status, 'completed');
  assert.equal(finished.attempt, 2);
  assert.deepEqual(finished.result, { pid: survivor.pid, attempt: 2 });
  assert.equal(finished.error, undefined);

  const starts = s.records(job.id).filter((r) => r.step === 'start');
  assert.deepEqual(
    starts.map((r) => [r.attempt, r.pid]),
    [
      [1, victim.pid],
      [2, survivor.pid],
    ],
  );

  const events = await s.waitless.events(job.id);
  assert.deepEqual(
    statusEvents(events).map((e) => [e.data.status, e.data.attempt ?? null, e.data.reason ?? null]),
    [
      ['queued', null, null],
      ['running', 1, null],
      ['queued', 1, 'lease_expired'],
      ['running', 2, null],
      ['completed', 2, null],
    ],
  );
  const reclaim = events.find((e) => e.data.reason === 'lease_expired')!;
  assert.equal((reclaim.data.error as { code?: string } | undefined)?.code, 'worker_lost');
  // Both attempts' progress is in the log, each on its side of the reclaim.
  const progressPids = events.filter((e) => e.type === 'progress').map((e) => [(e.data.data as { pid: number }).pid, e.seq < reclaim.seq]);
  assert.deepEqual(progressPids, [
    [victim.pid, true],
    [survivor.pid, false],
  ]);
  // The output restarts with each attempt; the first attempt's output stays in the event log.
  assert.equal(finished.output, `attempt 2 by ${survivor.pid}\n`);
  const outputs = events.filter((e) => e.type === 'output').map((e) => e.data.text as string);
  assert.deepEqual(outputs, [`attempt 1 by ${victim.pid}\n`, `attempt 2 by ${survivor.pid}\n`]);
  assertQuiet(survivor);
});

processTest('a paused worker (SIGSTOP) that loses its lease is fenced out when it resumes', async (s) => {
  const workers = s.spawnWorkers(2, FAST_RECLAIM);
  await s.ready(workers);
  const gate = join(s.dir, 'gate');
  const { job } = await s.waitless.submit(stalling, { gate });

  const first = await s.record(job.id, 'progressed', 1);
  const paused = s.workerByPid(first.pid);
  const other = workers.find((w) => w !== paused)!;
  paused.signal('SIGSTOP');

  const finished = await s.done(job.id, 10_000);
  assert.equal(finished.status, 'completed');
  assert.equal(finished.attempt, 2);
  assert.deepEqual(finished.result, { pid: other.pid, attempt: 2 });
  const eventsBefore = await s.waitless.events(job.id);
  const terminal = eventsBefore.at(-1)!;
  assert.equal(terminal.data.status, 'completed');

  // Let the stale handler go on as if nothing happened: it writes, reports progress, returns.
  writeFileSync(gate, '');
  paused.signal('SIGCONT');
  const lateProgress = await s.record(job.id, 'late-progress', 1);
  await s.record(job.id, 'late-return', 1);
  // A graceful exit means the worker has done whatever it was going to do with that result.
  assert.equal(await paused.stop(), 0);
  // What it logs of the lost lease names the pause, not a database that answered all along.
  const leaseLines = paused.logs().filter((l) => /lease ran out/.test(String(l.msg)));
  assert.ok(leaseLines.length > 0, `the resumed worker says why its handler lost the job:\n${paused.tail(20)}`);
  for (const line of leaseLines) assert.match(String(line.msg), /this process was paused for \d+ s/);

  assert.match(lateProgress.detail ?? '', /^refused: LeaseLostError$/, 'ctx.progress must reject once the lease is gone');
  const after = await s.waitless.get(job.id);
  assert.ok(after);
  assert.equal(after.status, 'completed');
  assert.deepEqual(after.result, { pid: other.pid, attempt: 2 }, "the result is the new owner's, not the paused worker's");
  assert.equal(after.version, finished.version, 'no event was added after the terminal one');
  assert.equal(after.output, finished.output);
  assert.deepEqual(after.progress, finished.progress);
  assert.doesNotMatch(after.output, /late output/);

  const events = await s.waitless.events(job.id);
  assert.deepEqual(events, eventsBefore, 'the event log did not change after the paused worker resumed');
  assert.equal(events.filter(isTerminalEvent).length, 1);
  const reclaim = events.find((e) => e.data.reason === 'lease_expired');
  assert.ok(reclaim, 'the reclaim is in the event log');
  // After the reclaim, every event is the new owner's: none of the paused worker's late writes.
  assert.deepEqual(
    events
      .filter((e) => e.seq > reclaim.seq)
      .map((e) => [e.type, e.type === 'status' ? e.data.status : e.type === 'progress' ? (e.data.data as { pid?: number }).pid : e.data.text]),
    [
      ['status', 'running'],
      ['progress', other.pid],
      ['output', `attempt 2 by ${other.pid}\n`],
      ['status', 'completed'],
    ],
  );
  // The paused worker noticed and said so, without logging errors.
  assert.ok(
    paused.logs().some((l) => l.msg === 'handler settled after its job was taken away; its outcome is discarded'),
    'the paused worker logs that it discarded the outcome',
  );
  assertQuiet(paused);
  assertQuiet(other);
});

processTest('cancelling a job running in another process aborts its handler within a second and discards its late result', async (s) => {
  // Default lease (30s, heartbeat every 10s): only the NOTIFY-driven lease check can bring the
  // cancel to the handler within a second.
  const [worker] = s.spawnWorkers(1, []);
  assert.ok(worker);
  await s.ready([worker]);
  const { job } = await s.waitless.submit(cancellable, { lateMs: 300 });
  await s.record(job.id, 'progressed');

  const answer = await s.waitless.cancel(job.id);
  assert.equal(answer?.status, 'cancelled');
  const aborted = await s.record(job.id, 'aborted', undefined, 15_000);
  assert.equal(aborted.detail, 'JobCancelledError');
  assert.equal(aborted.pid, worker.pid);
  // The bound is below the fixture's own 30s give-up: a signal that never fired fails here.

  await s.record(job.id, 'late-return');
  assert.equal(await worker.stop(), 0);

  const after = await s.waitless.get(job.id);
  assert.ok(after);
  assert.equal(after.status, 'cancelled');
  assert.equal(after.done, true);
  assert.equal(after.result, undefined);
  assert.equal(after.error?.code, 'cancelled');
  // Also at the row level: the late result was not stored and merely hidden by the reader.
  const [row] = await internals(s.waitless).driver.query<{ result: unknown; status: string }>({
    text: 'SELECT status, result FROM jobs WHERE id = $1',
    values: [job.id],
  });
  assert.deepEqual(row, { status: 'cancelled', result: null });
  const events = await s.waitless.events(job.id);
  const last = events.at(-1)!;
  assert.equal(last.type, 'status');
  assert.equal(last.data.status, 'cancelled');
  assert.equal(after.version, last.seq);
  assert.equal(events.filter(isTerminalEvent).length, 1);
  assertQuiet(worker);
});

processTest('two worker processes share 1000 jobs: each runs exactly once and both do some of the work', async (s, t) => {
  const workers = s.spawnWorkers(2, ['--concurrency', '10']);
  await s.ready(workers);

  const TOTAL = 1000;
  const submitted = await Promise.all(Array.from({ length: TOTAL }, (_, n) => s.waitless.submit(quick, { n, ms: 2 })));
  const ids = new Set(submitted.map((o) => o.job.id));
  assert.equal(ids.size, TOTAL);

  const { driver } = internals(s.waitless);
  await drained(s.waitless, `all ${TOTAL} jobs to finish`);

  const jobs = await driver.query<{ id: string; status: string; attempt: number; input: { n: number }; result: { n: number; pid: number } }>({
    text: 'SELECT id, status, attempt, input, result FROM jobs',
    values: [],
  });
  assert.equal(jobs.length, TOTAL);
  assert.deepEqual(
    jobs.filter((j) => j.status !== 'completed' || j.result.n !== j.input.n).map((j) => j.id),
    [],
    'every job completed with its own result',
  );

  const starts = s.records().filter((r) => r.step === 'start');
  const pairs = new Map<string, number>();
  for (const r of starts) pairs.set(`${r.jobId}#${r.attempt}`, (pairs.get(`${r.jobId}#${r.attempt}`) ?? 0) + 1);
  assert.deepEqual(
    [...pairs].filter(([, count]) => count > 1),
    [],
    'no (job, attempt) started twice',
  );
  const rerun = jobs.filter((j) => j.attempt !== 1);
  if (rerun.length > 0) {
    // Say why they ran again: the requeue events carry the reason and the error.
    const requeues = await driver.query<{ job_id: string; data: { reason?: string; error?: { name?: string; message?: string } } }>({
      text: `SELECT job_id, data FROM job_events WHERE job_id = ANY($1::uuid[]) AND type = 'status' AND data->>'status' = 'queued' AND data ? 'reason'`,
      values: [rerun.map((j) => j.id)],
    });
    const why = requeues.map((e) => `${e.data.reason ?? '?'} after ${e.data.error?.name ?? '?'}: ${e.data.error?.message ?? '?'}`);
    const attempts = [...new Set(rerun.map((j) => j.attempt))].sort().join(', ');
    assert.fail(`${rerun.length} of ${TOTAL} jobs ran more than once (up to attempt ${attempts}); requeued because: ${[...new Set(why)].join(' | ')}`);
  }

  assert.equal(starts.length, TOTAL, 'one handler start per job');
  assert.deepEqual(new Set(starts.map((r) => r.jobId)), ids);

  // The pid in each result is the one that started it: nobody finished a job someone else ran.
  const starter = new Map(starts.map((r) => [r.jobId, r.pid]));
  assert.deepEqual(
    jobs.filter((j) => starter.get(j.id) !== j.result.pid).map((j) => j.id),
    [],
  );

  const perWorker = workers.map((w) => starts.filter((r) => r.pid === w.pid).length);
  assert.equal(perWorker.reduce((a, b) => a + b, 0), TOTAL, 'only our two workers ran jobs');
  t.diagnostic(`jobs per worker process: ${perWorker.join(' / ')}`);
  for (const [i, count] of perWorker.entries()) assert.ok(count > 0, `worker ${i + 1} ran no job (split: ${perWorker.join(' / ')})`);

  // Each job's log is exactly queued → running → completed: no second claim was ever written.
  const odd = await driver.query<{ job_id: string; types: string }>({
    text: `SELECT job_id, string_agg(type || ':' || (data->>'status'), ',' ORDER BY seq) AS types FROM job_events
      GROUP BY job_id HAVING string_agg(type || ':' || (data->>'status'), ',' ORDER BY seq) <> 'status:queued,status:running,status:completed'`,
    values: [],
  });
  assert.deepEqual(odd, []);
  for (const worker of workers) assertQuiet(worker);
});
