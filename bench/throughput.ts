/**
 * Throughput on PostgreSQL, every figure measured in the same run:
 *
 *   1. raw INSERT rate: pgbench, N clients, each transaction one single-row INSERT into a
 *      simple table (the ceiling the database and its commit fsync allow);
 *   2. the same with Waitless's own submit statement (the job row + its first event + the two
 *      NOTIFY triggers), still through pgbench: the cost of the SQL alone, without Node;
 *   3. enqueue rate: N concurrent library callers of `waitless.submit()` (closed loop);
 *   4. end-to-end no-op jobs with 1 and with 2 worker processes (`node src/cli/main.ts worker`):
 *      "drain" (a backlog of M jobs, workers released at once) and "pipeline" (workers idle,
 *      N callers submit M jobs; from the first submit to the M-th completion).
 *
 *   node bench/throughput.ts [--clients 4] [--duration 10] [--jobs 3000] [--workers 1,2]
 *                            [--concurrency 10] [--database URL] [--protocol prepared|extended]
 *                            [--prepared] [--notify-after-commit]
 *   node bench/throughput.ts --diagnose [--rounds 3] [--clients 4] [--duration 5]
 *
 * `--protocol` is pgbench's for phases 1 and 2 (default `prepared`, as the pg driver runs its
 * statements since commit 2b6a7f9; `extended` re-parses every statement, as it did before).
 * `--prepared` repeats the enqueue and end-to-end phases with every store query run as a named
 * prepared statement (bench/prepared.ts, in this process and in the workers): the experiment
 * behind commit 2b6a7f9, which made the pg driver do that itself (since then it changes nothing).
 * `--notify-after-commit` adds an enqueue phase with the NOTIFY moved out of the submit's
 * transaction (emulated, see wakeUpAfterCommit): the experiment behind the change proposed in
 * docs/benchmarks.md.
 *
 * `--diagnose` runs only pgbench variants of the submit write (with and without NOTIFY, and
 * with NOTIFY moved out of the job's transaction), interleaved, to show where its time goes.
 *
 * Environment (used when the flag is absent): WAITLESS_BENCH_CLIENTS, WAITLESS_BENCH_DURATION,
 * WAITLESS_BENCH_JOBS, WAITLESS_BENCH_DATABASE_URL. Needs `pgbench` on PATH.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import {
  type BenchEngine,
  busyPercent,
  cpuTimes,
  DEFAULT_POSTGRES_URL,
  dropSchema,
  freshSchema,
  ms,
  numberOption,
  openEngine,
  postgresCpuMs,
  printMachine,
  printTable,
  processCpuMs,
  sleep,
  summarize,
  withClient,
} from './common.ts';
import { internals } from '../src/internals.ts';
import * as jobs from './jobs.ts';
import { createRawTable, type PgbenchResult, pgbench, RAW_INSERT, submitScript } from './pgbench.ts';
import { setNamedStatements } from './prepared.ts';

const { values } = parseArgs({
  options: {
    clients: { type: 'string' },
    duration: { type: 'string' },
    jobs: { type: 'string' },
    workers: { type: 'string' },
    concurrency: { type: 'string' },
    database: { type: 'string' },
    diagnose: { type: 'boolean' },
    prepared: { type: 'boolean' },
    'notify-after-commit': { type: 'boolean' },
    protocol: { type: 'string' },
    rounds: { type: 'string' },
  },
});
const clients = numberOption(values.clients, 'WAITLESS_BENCH_CLIENTS', 4);
const seconds = numberOption(values.duration, 'WAITLESS_BENCH_DURATION', 10);
const jobCount = numberOption(values.jobs, 'WAITLESS_BENCH_JOBS', 3000);
const workerCounts = (values.workers ?? '1,2').split(',').map(Number);
const concurrency = numberOption(values.concurrency, 'WAITLESS_BENCH_CONCURRENCY', 10);
const databaseUrl = values.database ?? DEFAULT_POSTGRES_URL;
const repoRoot = new URL('../', import.meta.url).pathname;
/** pgbench's protocol for the raw INSERT and submit-SQL phases: `prepared`, as the pg driver does since 2b6a7f9. */
const protocol = (values.protocol ?? 'prepared') as 'prepared' | 'extended';
if (protocol !== 'prepared' && protocol !== 'extended') throw new Error('--protocol: prepared or extended');

/** CPU spent in one phase: whole machine busy %, and ms by PostgreSQL, the worker processes and this process. */
class CpuMeter {
  private readonly machine = cpuTimes();
  private readonly postgres = postgresCpuMs();
  private readonly self = process.cpuUsage();
  private readonly workers: Map<number, number>;
  constructor(workerPids: number[] = []) {
    this.workers = new Map(workerPids.map((pid) => [pid, processCpuMs(pid)]));
  }
  stop(): { busy: number; postgresMs: number; workersMs: number; benchMs: number } {
    const self = process.cpuUsage(this.self);
    let workersMs = 0;
    for (const [pid, before] of this.workers) workersMs += processCpuMs(pid) - before;
    return {
      busy: busyPercent(this.machine, cpuTimes()),
      postgresMs: postgresCpuMs() - this.postgres,
      workersMs,
      benchMs: (self.user + self.system) / 1000,
    };
  }
}

type Cpu = ReturnType<CpuMeter['stop']>;
const perItem = (cpu: Cpu, items: number) =>
  `pg ${(cpu.postgresMs / items).toFixed(3)} · workers ${(cpu.workersMs / items).toFixed(3)} · bench ${(cpu.benchMs / items).toFixed(3)}`;

// ---------------------------------------------------------------- pgbench

const bench = (script: string, schema: string, durationS = seconds, mode: 'extended' | 'prepared' = protocol) =>
  pgbench(script, { databaseUrl, schema, clients, seconds: durationS, protocol: mode });

// ---------------------------------------------------------------- phases

interface PhaseRow {
  phase: string;
  rate: number;
  detail: string;
  cpu?: string;
}

const perFlush = (r: PgbenchResult) => `${(r.count / r.walSyncs).toFixed(2)} commits per WAL flush`;

async function rawInsert(): Promise<PhaseRow> {
  const schema = freshSchema();
  await createRawTable(databaseUrl, schema);
  try {
    const meter = new CpuMeter();
    const r = await bench(RAW_INSERT, schema);
    const cpu = meter.stop();
    console.log(`  $ ${r.command}`);
    return { phase: `raw INSERT, pgbench -c ${clients} -M ${protocol}`, rate: r.tps, detail: `${perFlush(r)}; machine busy ${cpu.busy.toFixed(0)} %`, cpu: perItem(cpu, r.count) };
  } finally {
    await dropSchema(databaseUrl, schema);
  }
}

async function submitSql(): Promise<PhaseRow> {
  const engine = await openEngine('postgres', { jobs, databaseUrl });
  await engine.waitless.close(); // only the migrated schema is wanted
  try {
    const meter = new CpuMeter();
    const r = await bench(submitScript(), engine.schema);
    const cpu = meter.stop();
    console.log(`  $ ${r.command}  (script: Waitless's submit statement, see submitScript())`);
    return {
      phase: `Waitless submit SQL, pgbench -c ${clients} -M ${protocol}`,
      rate: r.tps,
      detail: `${perFlush(r)}; machine busy ${cpu.busy.toFixed(0)} %`,
      cpu: perItem(cpu, r.count),
    };
  } finally {
    await dropSchema(databaseUrl, engine.schema);
  }
}

const preparedLabel = (prepared: boolean) => (prepared ? ' [named prepared statements]' : '');

/**
 * The proposed NOTIFY change, emulated from outside src/ for the enqueue phase only: the schema's
 * NOTIFY triggers are disabled, and after each submit this process sends the workers' wake-up
 * itself, as its own statement with synchronous_commit=off, at most one in flight (submits that
 * land meanwhile share the next one). The submit does not wait for it.
 */
function wakeUpAfterCommit(engine: BenchEngine): { kick(): void; idle(): Promise<void> } {
  let inFlight: Promise<void> | undefined;
  let again = false;
  const send = (): Promise<void> =>
    internals(engine.waitless).driver
      .query({ text: `SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)`, values: [`${engine.schema}_queued`, jobs.noop.name] })
      .then(() => {
        if (!again) return;
        again = false;
        return send();
      });
  return {
    kick() {
      if (inFlight) again = true;
      else inFlight = send().finally(() => (inFlight = undefined));
    },
    idle: async () => {
      while (inFlight) await inFlight;
    },
  };
}

async function enqueue(prepared = false, notifyAfterCommit = false): Promise<PhaseRow> {
  setNamedStatements(prepared);
  const engine = await openEngine('postgres', { jobs, databaseUrl, maxConnections: clients });
  const wake = notifyAfterCommit ? wakeUpAfterCommit(engine) : undefined;
  if (notifyAfterCommit) {
    await internals(engine.waitless).driver.exec(`ALTER TABLE jobs DISABLE TRIGGER jobs_notify_queued; ALTER TABLE job_events DISABLE TRIGGER job_events_notify`);
  }
  try {
    // Warm the pool (one connection per caller) before timing.
    await Promise.all(Array.from({ length: clients * 5 }, (_, n) => engine.waitless.submit(jobs.noop, { n })));
    const latencies: number[] = [];
    const meter = new CpuMeter();
    const start = performance.now();
    const end = start + seconds * 1000;
    let n = 0;
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (performance.now() < end) {
          const t0 = performance.now();
          await engine.waitless.submit(jobs.noop, { n: n++ });
          latencies.push(performance.now() - t0);
          wake?.kick();
        }
      }),
    );
    const elapsed = (performance.now() - start) / 1000;
    await wake?.idle();
    const cpu = meter.stop();
    const s = summarize(latencies);
    const label = `${preparedLabel(prepared)}${notifyAfterCommit ? ' [NOTIFY after commit, coalesced (emulated)]' : ''}`;
    return {
      phase: `enqueue, ${clients} library callers${label}`,
      rate: s.n / elapsed,
      detail: `latency p50 ${ms(s.p50)} / p99 ${ms(s.p99)} ms; machine busy ${cpu.busy.toFixed(0)} %`,
      cpu: perItem(cpu, s.n),
    };
  } finally {
    await engine.close();
  }
}

function spawnWorker(schema: string, prepared: boolean): ChildProcess {
  const preload = prepared ? ['--import', new URL('./prepared.ts', import.meta.url).href] : [];
  const args = [...preload, 'src/cli/main.ts', 'worker', '--jobs', 'bench/jobs.ts', '--database', databaseUrl, '--schema', schema, '--concurrency', String(concurrency)];
  return spawn(process.execPath, args, {
    cwd: repoRoot,
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, LOG_LEVEL: 'silent', WAITLESS_BENCH_PREPARED: prepared ? '1' : '0' },
  });
}

/**
 * A worker is ready once its notification connection has run its LISTENs (the worker starts
 * right after them); a short pause then covers the last one.
 */
async function waitForListeners(schema: string, count: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  await withClient(databaseUrl, async (c) => {
    for (;;) {
      const { rows } = await c.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'idle' AND query LIKE 'LISTEN ' || $1 || '\\_%'`,
        [schema],
      );
      if ((rows[0]?.n ?? 0) >= count) break;
      if (Date.now() > deadline) throw new Error(`only ${rows[0]?.n} of ${count} listeners on ${schema} after 30 s`);
      await sleep(50);
    }
  });
  await sleep(500);
}

async function stopWorkers(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGCONT');
          child.kill('SIGTERM');
        }),
    ),
  );
}

async function endToEnd(workers: number, prepared = false): Promise<PhaseRow[]> {
  setNamedStatements(prepared);
  const engine = await openEngine('postgres', { jobs, databaseUrl, maxConnections: clients });
  const children: ChildProcess[] = [];
  try {
    let completed = 0;
    let target = Infinity;
    let reached: () => void = () => {};
    // A no-op job's status events are 1 queued, 2 running, 3 completed: count the third.
    internals(engine.waitless).notifier.onStatus((_id, seq) => {
      if (seq === 3 && ++completed >= target) reached();
    });
    const allDone = (count: number) =>
      new Promise<void>((resolve) => {
        target = count;
        reached = resolve;
        if (completed >= target) resolve();
      });
    const submitMany = async (count: number) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: clients }, async () => {
          while (next < count) await engine.waitless.submit(jobs.noop, { n: next++ });
        }),
      );
    };

    for (let i = 0; i < workers; i++) children.push(spawnWorker(engine.schema, prepared));
    await waitForListeners(engine.schema, workers + 1);
    const pids = children.map((c) => c.pid!);

    // Jobs per claim statement (one claim stamps its jobs with the same worker and started_at),
    // and queued → completed as the database saw it; then clear the table for the next phase.
    const phaseStats = async () => {
      const [row] = await internals(engine.waitless).driver.query<{ jobs: number; claims: number; p50: number; p99: number; left: number }>({
        text: `SELECT count(*)::int AS jobs, count(DISTINCT (worker_id, started_at))::int AS claims,
            count(*) FILTER (WHERE status <> 'completed')::int AS left,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at) * 1000) AS p50,
            percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at) * 1000) AS p99
          FROM jobs`,
        values: [],
      });
      await internals(engine.waitless).driver.query({ text: 'DELETE FROM jobs', values: [] });
      if (row && row.left > 0) console.error(`  warning: ${row.left} jobs not completed`);
      return row ? `${(row.jobs / row.claims).toFixed(1)} jobs per claim; queued→completed p50 ${ms(row.p50)} / p99 ${ms(row.p99)} ms` : '';
    };

    // Warm-up: a few hundred jobs through the whole path (JIT, pools, caches).
    await submitMany(300);
    await allDone(300);
    await phaseStats();
    completed = 0;

    // Drain: pause the workers, queue a backlog, release them together.
    for (const child of children) child.kill('SIGSTOP');
    await submitMany(jobCount);
    let meter = new CpuMeter(pids);
    let start = performance.now();
    for (const child of children) child.kill('SIGCONT');
    await allDone(jobCount);
    let elapsed = (performance.now() - start) / 1000;
    let cpu = meter.stop();
    const drain: PhaseRow = {
      phase: `end-to-end drain, ${workers} worker process${workers > 1 ? 'es' : ''}${preparedLabel(prepared)}`,
      rate: jobCount / elapsed,
      detail: `${jobCount} queued jobs in ${elapsed.toFixed(2)} s; ${(await phaseStats()).replace(/; queued.*/, '')}; machine busy ${cpu.busy.toFixed(0)} %`,
      cpu: perItem(cpu, jobCount),
    };
    completed = 0;

    // Pipeline: workers idle, N callers submit; from the first submit to the last completion.
    meter = new CpuMeter(pids);
    start = performance.now();
    const done = allDone(jobCount);
    await submitMany(jobCount);
    const enqueued = (performance.now() - start) / 1000;
    await done;
    elapsed = (performance.now() - start) / 1000;
    cpu = meter.stop();
    const pipeline: PhaseRow = {
      phase: `end-to-end pipeline, ${workers} worker process${workers > 1 ? 'es' : ''}${preparedLabel(prepared)}`,
      rate: jobCount / elapsed,
      detail:
        `${jobCount} jobs submitted in ${enqueued.toFixed(2)} s, all completed after ${elapsed.toFixed(2)} s; ` +
        `${await phaseStats()}; machine busy ${cpu.busy.toFixed(0)} %`,
      cpu: perItem(cpu, jobCount),
    };
    return [drain, pipeline];
  } finally {
    await stopWorkers(children);
    await engine.close();
  }
}

// ---------------------------------------------------------------- diagnosis

/**
 * Where the submit statement's time goes, with pgbench only (no Node): variants of the same
 * write, interleaved over several rounds (this machine is shared; medians are compared).
 * `-M extended` re-parses and re-plans every statement, as node-postgres does for unnamed
 * queries; `-M prepared` parses and plans once per connection (a named prepared statement).
 */
async function diagnose(rounds: number, durationS: number): Promise<void> {
  const raw = freshSchema();
  await createRawTable(databaseUrl, raw);
  const migrated = async () => {
    const engine = await openEngine('postgres', { jobs, databaseUrl });
    await engine.waitless.close(); // only the migrated schema is wanted
    return engine.schema;
  };
  const shipped = await migrated();
  const quiet = await migrated(); // NOTIFY triggers disabled
  const noFk = await migrated(); // NOTIFY triggers disabled, no foreign key on job_events
  await withClient(databaseUrl, async (c) => {
    for (const schema of [quiet, noFk]) {
      await c.query(`ALTER TABLE ${schema}.jobs DISABLE TRIGGER jobs_notify_queued`);
      await c.query(`ALTER TABLE ${schema}.job_events DISABLE TRIGGER job_events_notify`);
    }
    await c.query(`ALTER TABLE ${noFk}.job_events DROP CONSTRAINT job_events_job_id_fkey`);
  });
  const submit = submitScript();
  const jobRowOnly = submit.replace(/^WITH changed AS \(\s*(INSERT INTO jobs .*?) RETURNING .*$/s, '$1;\n');
  if (jobRowOnly === submit) throw new Error('could not cut the job-row INSERT out of the submit statement');
  const wakeUp =
    `SELECT set_config('synchronous_commit', 'off', true), pg_notify('${quiet}_queued', '${jobs.noop.name}'), ` +
    `pg_notify('${quiet}_events', '00000000-0000-0000-0000-000000000000 1 status');\n`;
  const variants: { name: string; schema: string; script: string; protocol?: 'prepared' }[] = [
    { name: 'A. raw INSERT (one row, one index)', schema: raw, script: RAW_INSERT },
    {
      name: 'B. raw INSERT + pg_notify in the same statement',
      schema: raw,
      script: `WITH i AS (INSERT INTO bench_insert (n) VALUES (1) RETURNING id) SELECT pg_notify('${raw}_x', id::text) FROM i;\n`,
    },
    { name: 'C. Waitless submit SQL (job + event rows, 2 NOTIFY triggers), re-planned each time as before 2b6a7f9', schema: shipped, script: submit },
    { name: 'D. C as a prepared statement (-M prepared), as the pg driver runs it since 2b6a7f9', schema: shipped, script: submit, protocol: 'prepared' },
    { name: 'E. C without its NOTIFY triggers', schema: quiet, script: submit },
    { name: 'F. E without the job_events foreign key', schema: noFk, script: submit },
    { name: 'G. job row only (no event row, no NOTIFY)', schema: quiet, script: jobRowOnly },
    { name: 'H. E, then the wake-up as its own statement with synchronous_commit=off', schema: quiet, script: submit + wakeUp },
    { name: 'I. H with both statements prepared (-M prepared)', schema: quiet, script: submit + wakeUp, protocol: 'prepared' },
  ];
  try {
    const results = new Map(variants.map((v) => [v.name, { tps: [] as number[], perFlush: [] as number[], pgCpu: [] as number[] }]));
    for (let round = 1; round <= rounds; round++) {
      for (const v of variants) {
        const meter = new CpuMeter();
        const r = await bench(v.script, v.schema, durationS, v.protocol ?? 'extended');
        const cpu = meter.stop();
        const entry = results.get(v.name)!;
        entry.tps.push(r.tps);
        entry.perFlush.push(r.count / r.walSyncs);
        entry.pgCpu.push(cpu.postgresMs / r.count);
        console.log(
          `  round ${round}: ${v.name}: ${r.tps.toFixed(0)} scripts/s, ${(r.count / r.walSyncs).toFixed(2)} per WAL flush, ` +
            `PostgreSQL CPU ${(cpu.postgresMs / r.count).toFixed(3)} ms per script`,
        );
      }
    }
    console.log(`\n  e.g. $ ${(await bench(RAW_INSERT, raw, 1, 'extended')).command}\n`);
    const median = (xs: number[]) => summarize(xs).p50;
    const base = median(results.get(variants[0]!.name)!.tps);
    printTable(
      [`pgbench script (-c ${clients})`, `median scripts/s (${rounds} × ${durationS} s)`, '% of A', 'commits per WAL flush', 'PostgreSQL CPU ms per script'],
      variants.map((v) => {
        const r = results.get(v.name)!;
        return [v.name, median(r.tps).toFixed(0), `${((100 * median(r.tps)) / base).toFixed(0)} %`, median(r.perFlush).toFixed(2), median(r.pgCpu).toFixed(3)];
      }),
    );
  } finally {
    for (const schema of [raw, shipped, quiet, noFk]) await dropSchema(databaseUrl, schema);
  }
}

await printMachine(databaseUrl);
if (values.diagnose) {
  const rounds = numberOption(values.rounds, 'WAITLESS_BENCH_ROUNDS', 3);
  console.log(`diagnosis: pgbench -c ${clients}, ${rounds} rounds of ${seconds} s per variant, interleaved\n`);
  await diagnose(rounds, seconds);
  process.exit(0);
}
console.log(
  `clients (pgbench -c and library callers): ${clients}; timed phases: ${seconds} s; end-to-end: ${jobCount} jobs, worker --concurrency ${concurrency}\n`,
);
const rows: PhaseRow[] = [];
rows.push(await rawInsert());
rows.push(await submitSql());
rows.push(await enqueue());
for (const w of workerCounts) rows.push(...(await endToEnd(w)));
if (values.prepared) {
  // The experiment behind the proposed pg-driver change (bench/prepared.ts), in the same run.
  rows.push(await enqueue(true));
  for (const w of workerCounts) rows.push(...(await endToEnd(w, true)));
}
// The experiment behind the proposed NOTIFY change (wakeUpAfterCommit), in the same run.
if (values['notify-after-commit']) rows.push(await enqueue(values.prepared ?? false, true));
console.log();
const raw = rows[0]!.rate;
printTable(
  ['phase', 'per second', '% of raw INSERT', 'detail', 'CPU ms per row/job'],
  rows.map((r) => [r.phase, r.rate.toFixed(0), `${((100 * r.rate) / raw).toFixed(0)} %`, r.detail, r.cpu ?? '']),
);
