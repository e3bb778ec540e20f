/**
 * AI-shaped load on PostgreSQL, run as a user would: the CLI's `serve` and `worker` in
 * processes of their own, a load generator (bench/ai-load-watchers.ts) talking HTTP + SSE to
 * them, and this process only starting, timing and reading /proc and pg_stat_database.
 *
 *   1. Streaming: for each J, `serve --no-worker` and one `worker --concurrency J`; the load
 *      generator submits J `ai-stream` jobs (bench/ai-load-jobs.ts: `--rate` short tokens a
 *      second through ctx.write for `--duration` seconds) and watches each over SSE. Reported:
 *      token → watcher latency of tokens written after the stream opened (each token carries
 *      its write time), tokens lost / duplicated (every token, replayed ones too), database
 *      transactions per token (pg_stat_database commits + rollbacks of the whole database over
 *      the window, reads included), CPU (% of one core) and peak memory of serve, worker, load
 *      generator and PostgreSQL, and leases that expired / jobs that did not complete.
 *      The window runs from the first submit until every stream has ended.
 *   2. Idle watchers: for each count, `serve --no-worker`, min(count, 1000) queued jobs that
 *      never run and `count` SSE streams on them held open by load-generator processes (at
 *      most `--per-generator` each, from another loopback source address every `--per-source`
 *      streams). Reported: streams held after `--hold` seconds, the server's RSS before and
 *      after and per stream, server and PostgreSQL CPU while nothing happens, then every job
 *      is cancelled at once and each stream's terminal event is timed from the start of that
 *      burst.
 *   3. `--tree name=/path` (repeatable) runs the same against other checkouts (e.g. the
 *      previous release), alternating trees within each J so both see the same machine state.
 *      A checkout other than this one gets a generated jobs module that wraps this job in
 *      that checkout's own `defineJob`.
 *
 *   node bench/ai-load.ts [--jobs 100,300,1000,3000] [--duration 20] [--rate 30] [--rounds 1]
 *                         [--idle 1000,10000] [--hold 20] [--per-generator 5000] [--per-source 8000]
 *                         [--database URL] [--shared-database]
 *                         [--tree current=. --tree before=../waitless-before] [--worker-args="--flush-interval 200ms"]
 *
 * `--jobs none` or `--idle none` skips that part. Each run gets a fresh schema, in a scratch
 * database created on the server of `--database` (default: the local test server) and dropped
 * at the end, so that pg_stat_database counts only this run's transactions; with
 * `--shared-database` the runs use that database itself, and whatever else runs on it counts
 * too. PostgreSQL CPU is every postgres process on the machine: "others busy" is the share of
 * samples in which a client of another database was working meanwhile (0 % is a clean run).
 * With rounds > 1 every round is a row of its own. Exits 1 if a token was lost or duplicated,
 * a job did not complete, a lease expired, or an idle stream was dropped or not told of its
 * cancellation. Linux only (/proc).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import {
  DEFAULT_POSTGRES_URL,
  dropSchema,
  freshSchema,
  type LineChild,
  ms,
  postgresCpuMs,
  printMachine,
  printTable,
  processCpuMs,
  sleep,
  spawnLineChild,
  summarize,
  withClient,
} from './common.ts';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string' },
    duration: { type: 'string' },
    rate: { type: 'string' },
    rounds: { type: 'string' },
    idle: { type: 'string' },
    hold: { type: 'string' },
    'per-generator': { type: 'string' },
    'per-source': { type: 'string' },
    database: { type: 'string' },
    'shared-database': { type: 'boolean' },
    tree: { type: 'string', multiple: true },
    'worker-args': { type: 'string' },
  },
});
/** Extra flags for every tree's worker, e.g. "--flush-interval 200ms" (a tree must know them). */
const workerArgs = values['worker-args']?.split(' ').filter(Boolean) ?? [];

const list = (value: string, flag: string) =>
  value === 'none'
    ? []
    : value.split(',').map((s) => {
        const n = Number(s.trim());
        if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: expected whole numbers ≥ 1 (or none), got "${s}"`);
        return n;
      });
const positive = (value: string | undefined, flag: string, fallback: number) => {
  const n = value === undefined ? fallback : Number(value);
  if (!(Number.isFinite(n) && n > 0)) throw new Error(`${flag}: expected a positive number, got "${value}"`);
  return n;
};

const jobCounts = list(values.jobs ?? '100,300,1000,3000', '--jobs');
const idleCounts = list(values.idle ?? '1000,10000', '--idle');
const durationS = positive(values.duration, '--duration', 20);
const rate = positive(values.rate, '--rate', 30);
const rounds = Math.round(positive(values.rounds, '--rounds', 1));
// Longer than the server's 15 s SSE keep-alive interval, so the idle cost includes one round of it.
const holdS = positive(values.hold, '--hold', 20);
const databaseUrl = values.database ?? DEFAULT_POSTGRES_URL;
/**
 * Where the runs happen: unless --shared-database, a scratch database created for this run on
 * the same server, so that its pg_stat_database counts no one else's transactions (tests
 * that run meanwhile on the shared database would otherwise count as ours).
 */
let runUrl = databaseUrl;
let scratchDatabase: string | undefined;
const tokensPerJob = Math.round(rate * durationS);
const here = realpathSync(new URL('..', import.meta.url).pathname);

/** Streams per load-generator process: far below the 20000 descriptors a process may hold. */
const STREAMS_PER_GENERATOR = Math.round(positive(values['per-generator'], '--per-generator', 5000));
/** Streams per loopback source address (127.0.0.1, .2, …), below the ~28000 ephemeral ports of one. */
const STREAMS_PER_SOURCE = Math.round(positive(values['per-source'], '--per-source', 8000));
const IDLE_JOBS_MAX = 1000;
const CANCELS_IN_FLIGHT = 64;

interface Tree {
  name: string;
  root: string;
  /** The `--jobs` module its CLI loads. */
  jobsModule: string;
}

let scratch: string | undefined;

function trees(): Tree[] {
  const specs = values.tree?.length ? values.tree : [`current=${here}`];
  return specs.map((spec) => {
    const eq = spec.indexOf('=');
    if (eq < 1) throw new Error(`--tree: expected name=/path, got "${spec}"`);
    const name = spec.slice(0, eq);
    const root = realpathSync(resolve(spec.slice(eq + 1)));
    for (const file of ['src/cli/main.ts', 'src/job/definition.ts']) {
      if (!existsSync(join(root, file))) throw new Error(`--tree ${name}: ${root} has no ${file}`);
    }
    if (root === here) return { name, root, jobsModule: join(here, 'bench/ai-load-jobs.ts') };
    // The CLI accepts any export whose `kind` is 'waitless.job', so this checkout's definition
    // would load there too; but its shape is this version's. Built by the tree's own defineJob,
    // the definition is exactly what that version expects, and only the job body is shared.
    scratch ??= mkdtempSync(join(tmpdir(), 'waitless-ai-load-'));
    const jobsModule = join(scratch, `jobs-${name.replace(/[^A-Za-z0-9_-]/g, '_')}.mjs`);
    writeFileSync(
      jobsModule,
      `import { defineJob } from ${JSON.stringify(pathToFileURL(join(root, 'src/job/definition.ts')).href)};\n` +
        `import { aiStreamOptions } from ${JSON.stringify(pathToFileURL(join(here, 'bench/ai-load-jobs.ts')).href)};\n` +
        `export const aiStream = defineJob(aiStreamOptions);\n`,
    );
    return { name, root, jobsModule };
  });
}

// ---------------------------------------------------------------- processes and cleanup

/** Every child still alive: killed if this process ends in any way. */
const children = new Set<ChildProcess>();
const lineChildren = new Set<LineChild>();
const schemas = new Set<string>();

function killEverything(signal: NodeJS.Signals): void {
  for (const child of children) child.kill(signal);
  for (const child of lineChildren) {
    try {
      process.kill(child.pid, signal);
    } catch {
      // already gone
    }
  }
}

let cleaning: Promise<void> | undefined;
/** Drops what is left (schemas, the scratch database, the generated modules); once, whoever asks first. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const schema of schemas) await dropSchema(runUrl, schema).catch(() => {});
    await dropScratchDatabase().catch((error: unknown) => console.error(`could not drop the scratch database: ${(error as Error).message}`));
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  })();
  return cleaning;
}

let interrupted = false;
process.on('exit', () => killEverything('SIGKILL'));
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true;
    console.error(`\n${signal}: stopping every child and dropping what the run created`);
    killEverything('SIGKILL');
    void within(cleanup(), 15, 'cleanup')
      .catch((error: unknown) => console.error((error as Error).message))
      .finally(() => process.exit(130));
  });
}

async function within<T>(promise: Promise<T>, seconds: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${seconds} s: ${what}`)), seconds * 1000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A CLI process of one tree, whose output is kept (the last lines) to explain a failure. */
interface Cli {
  child: ChildProcess;
  pid: number;
  /** Resolves with the first stdout line (parsed pino JSON) whose `msg` is `msg`. */
  logged(msg: string): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
  tail(): string;
}

function startCli(tree: Tree, args: string[], env: Record<string, string>): Cli {
  const child = spawn(process.execPath, [join(tree.root, 'src/cli/main.ts'), ...args], {
    cwd: tree.root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  children.add(child);
  const exited = new Promise<void>((done) =>
    child.once('exit', () => {
      children.delete(child);
      done();
    }),
  );
  const last: string[] = [];
  const waiting = new Map<string, (line: Record<string, unknown>) => void>();
  const keep = (line: string) => {
    last.push(line);
    if (last.length > 20) last.shift();
  };
  // Both pipes are read to the end, or a chatty child would block on a full pipe.
  createInterface({ input: child.stdout }).on('line', (line) => {
    keep(line);
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    const waiter = typeof parsed.msg === 'string' ? waiting.get(parsed.msg) : undefined;
    if (waiter) {
      waiting.delete(parsed.msg as string);
      waiter(parsed);
    }
  });
  createInterface({ input: child.stderr }).on('line', keep);
  const tail = () => last.join('\n');
  return {
    child,
    pid: child.pid!,
    tail,
    logged: (msg) =>
      new Promise((resolveLine, reject) => {
        waiting.set(msg, resolveLine);
        void exited.then(() => reject(new Error(`${args[0]} exited before logging "${msg}":\n${tail()}`)));
      }),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      // The worker's default shutdown grace is 10 s; past that, it is stuck.
      await within(exited, 20, `${args[0]} to exit after SIGTERM`).catch((error: unknown) => {
        console.error(`  warning: ${(error as Error).message}; killing it`);
        child.kill('SIGKILL');
        return exited;
      });
    },
  };
}

function run(tree: Tree, args: string[], env: Record<string, string>, seconds: number): Promise<string> {
  return new Promise((resolveRun, reject) => {
    const child = execFile(
      process.execPath,
      [join(tree.root, 'src/cli/main.ts'), ...args],
      { cwd: tree.root, env: { ...process.env, ...env }, timeout: seconds * 1000, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        children.delete(child);
        if (error) reject(new Error(`${args.join(' ')} failed: ${error.message}\n${stderr}`));
        else resolveRun(stdout);
      },
    );
    children.add(child);
  });
}

async function startGenerator(): Promise<LineChild> {
  const generator = spawnLineChild(new URL('./ai-load-watchers.ts', import.meta.url), []);
  lineChildren.add(generator);
  await within(generator.next(), 30, 'load generator to start');
  return generator;
}

async function stopGenerator(generator: LineChild): Promise<void> {
  await within(generator.close(), 20, 'load generator to exit').catch(() => process.kill(generator.pid, 'SIGKILL'));
  lineChildren.delete(generator);
}

interface Answer {
  type: string;
  message?: string;
}

async function ask<T extends Answer>(generator: LineChild, command: object, seconds: number, what: string): Promise<T> {
  generator.send(JSON.stringify(command));
  const answer = await within(generator.next<T>(), seconds, what);
  if (answer.type === 'error') throw new Error(`load generator: ${answer.message}`);
  return answer;
}

/** A schema with a migrated database and an API key, made by the tree's own CLI. */
async function prepare(tree: Tree): Promise<{ schema: string; key: string; env: Record<string, string> }> {
  const schema = freshSchema('aiload');
  schemas.add(schema);
  const env = { DATABASE_URL: runUrl, LOG_LEVEL: 'warn' };
  const out = await run(tree, ['keys', 'create', '--tenant', 'bench', '--schema', schema], env, 60);
  const key = out.trim().split('\n').at(-1)?.trim();
  if (!key || /\s/.test(key)) throw new Error(`could not read the API key from:\n${out}`);
  return { schema, key, env };
}

async function startServe(tree: Tree, schema: string, env: Record<string, string>): Promise<{ cli: Cli; url: string }> {
  // Port 0: the kernel picks a free one, and the "listening" line says which.
  const cli = startCli(tree, ['serve', '--no-worker', '--jobs', tree.jobsModule, '--schema', schema, '--port', '0', '--host', '127.0.0.1'], {
    ...env,
    LOG_LEVEL: 'info',
    // Capacity is measured, not the per-tenant limits (one key sends everything; older trees ignore these).
    WAITLESS_SUBMIT_RATE: '0',
    WAITLESS_STREAMS_PER_KEY: '0',
  });
  const line = await within(cli.logged('listening'), 60, 'serve to listen');
  return { cli, url: String(line.url) };
}

async function finish(schema: string, ...clis: (Cli | undefined)[]): Promise<void> {
  await Promise.all(clis.flatMap((c) => (c ? [c.stop()] : [])));
  await dropSchema(runUrl, schema);
  schemas.delete(schema);
}

async function createScratchDatabase(): Promise<void> {
  const name = freshSchema('waitless_ai_load');
  await withClient(databaseUrl, (c) => c.query(`CREATE DATABASE ${name}`));
  scratchDatabase = name;
  const url = new URL(databaseUrl);
  url.pathname = `/${name}`;
  runUrl = url.toString();
}

async function dropScratchDatabase(): Promise<void> {
  if (!scratchDatabase) return;
  const name = scratchDatabase;
  scratchDatabase = undefined;
  await withClient(databaseUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
}

// ---------------------------------------------------------------- measurements

const now = () => performance.timeOrigin + performance.now();
const MiB = (kB: number) => (Number.isFinite(kB) ? (kB / 1024).toFixed(0) : '-');
const busyLabel = (p: number) => (Number.isFinite(p) ? `${p.toFixed(0)} %` : '-');
const pct = (cpuMs: number, wallMs: number) => (Number.isFinite(cpuMs) ? ((100 * cpuMs) / wallMs).toFixed(0) : '-');

/** A field of /proc/PID/status in kB (VmRSS, VmHWM), NaN if the process is gone. */
function statusKb(pid: number, field: string): number {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : NaN;
  } catch {
    return NaN;
  }
}

/**
 * Memory of all PostgreSQL processes, as the sum of their proportional set sizes: RSS would
 * count the shared buffers once per backend that touched them.
 */
function postgresPssKb(): number {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== 'postgres') continue;
      const match = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${entry}/smaps_rollup`, 'utf8'));
      if (match) total += Number(match[1]);
    } catch {
      // exited meanwhile, or not ours to read
    }
  }
  return total;
}

/** Peak of a reading sampled every 500 ms until `stop()`. */
function samplePeak(read: () => number): { stop(): number } {
  let peak = read();
  const timer = setInterval(() => (peak = Math.max(peak, read())), 500);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, read());
    },
  };
}

/**
 * Transactions (commits + rollbacks) of the whole database so far. Backends publish their
 * counts at most once a second and an idle one may hold them back for up to 10 s, so the
 * closing reading is taken after the measured processes have exited (a backend publishes all
 * it has when it ends).
 */
async function transactions(monitor: pg.Client): Promise<number> {
  await monitor.query('SELECT pg_stat_clear_snapshot()');
  const { rows } = await monitor.query<{ n: string }>(
    'SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = current_database()',
  );
  return Number(rows[0]!.n);
}

/**
 * How often (share of 500 ms samples) a client backend outside this run's database was busy:
 * such work shares the machine, and the PostgreSQL CPU figure counts every postgres process.
 * Without a scratch database the run's own backends cannot be told apart: NaN.
 */
async function watchOthers(): Promise<{ stop(): Promise<number> }> {
  const ours = scratchDatabase;
  if (!ours) return { stop: async () => NaN };
  const client = new pg.Client({ connectionString: databaseUrl });
  // An idle client that loses its server emits an error that would end this process.
  client.on('error', () => {});
  await client.connect();
  let samples = 0;
  let busy = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const { rows } = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE backend_type = 'client backend' AND state <> 'idle' AND pid <> pg_backend_pid() AND datname IS DISTINCT FROM $1`,
        [ours],
      );
      samples++;
      if (rows[0]!.n > 0) busy++;
      await sleep(500);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      await client.end();
      return samples ? (100 * busy) / samples : NaN;
    },
  };
}

async function withMonitor<T>(fn: (monitor: pg.Client) => Promise<T>): Promise<T> {
  const monitor = new pg.Client({ connectionString: runUrl });
  // Dropping the scratch database after a signal ends this connection while it idles.
  monitor.on('error', () => {});
  await monitor.connect();
  try {
    return await fn(monitor);
  } finally {
    await monitor.end();
  }
}

// ---------------------------------------------------------------- 1. AI-shaped load

interface Streamed extends Answer {
  submitted: number;
  submitMs: number;
  lastOpenMs: number;
  expected: number;
  received: number;
  lost: number;
  duplicated: number;
  foreign: number;
  jobsWithLoss: number;
  replayed: number;
  unfinished: number;
  statuses: Record<string, number>;
  latency: { n: number; p50: number; p99: number; max: number };
  errors: string[];
}

interface StreamRow {
  tree: string;
  jobs: number;
  round: number;
  windowMs: number;
  result: Streamed;
  commitsPerToken: number;
  cpuMs: { serve: number; worker: number; generator: number; postgres: number };
  peakKb: { serve: number; worker: number; generator: number; postgres: number };
  leaseExpired: number;
  notCompleted: number;
  /** % of samples in which another database's client was busy (see watchOthers). */
  othersBusy: number;
}

async function streaming(tree: Tree, jobs: number, round: number): Promise<StreamRow> {
  const { schema, key, env } = await prepare(tree);
  let serve: Cli | undefined;
  let worker: Cli | undefined;
  let generator: LineChild | undefined;
  try {
    const started = await startServe(tree, schema, env);
    serve = started.cli;
    worker = startCli(tree, ['worker', '--jobs', tree.jobsModule, '--schema', schema, '--concurrency', String(jobs), ...workerArgs], { ...env, LOG_LEVEL: 'info' });
    await within(worker.logged('worker started'), 60, 'worker to start');
    generator = await startGenerator();
    return await withMonitor(async (monitor) => {
      const pids = { serve: serve!.pid, worker: worker!.pid, generator: generator!.pid };
      const cpu = () => ({
        serve: processCpuMs(pids.serve),
        worker: processCpuMs(pids.worker),
        generator: processCpuMs(pids.generator),
        postgres: postgresCpuMs(),
      });
      const xact0 = await transactions(monitor);
      const others = await watchOthers();
      const pgMemory = samplePeak(postgresPssKb);
      const cpu0 = cpu();
      const t0 = performance.now();
      // Submits take a while at large J, and the last job starts only once it is submitted.
      const deadline = now() + (durationS + 60 + jobs / 20) * 1000;
      const result = await ask<Streamed>(
        generator!,
        { cmd: 'stream', url: started.url, key, jobs, tokens: tokensPerJob, rate, deadlineMs: deadline },
        (deadline - now()) / 1000 + 30,
        `${jobs} streams to end`,
      );
      const windowMs = performance.now() - t0;
      const cpu1 = cpu();
      const peakKb = {
        serve: statusKb(pids.serve, 'VmHWM'),
        worker: statusKb(pids.worker, 'VmHWM'),
        generator: statusKb(pids.generator, 'VmHWM'),
        postgres: pgMemory.stop(),
      };
      const othersBusy = await others.stop();
      await stopGenerator(generator!);
      generator = undefined;
      await Promise.all([serve!.stop(), worker!.stop()]);
      await sleep(200);
      const xact1 = await transactions(monitor);
      const { rows } = await monitor.query<{ expired: number; left: number }>(
        `SELECT (SELECT count(*)::int FROM ${schema}.job_events WHERE data->>'reason' = 'lease_expired') AS expired,
                (SELECT count(*)::int FROM ${schema}.jobs WHERE status <> 'completed') AS left`,
      );
      if (result.unfinished) console.error(`  warning: ${result.unfinished} streams still open at the deadline`);
      if (result.errors.length) console.error(`  load generator errors: ${result.errors.join(' | ')}`);
      return {
        tree: tree.name,
        jobs,
        round,
        windowMs,
        result,
        commitsPerToken: (xact1 - xact0) / (jobs * tokensPerJob),
        cpuMs: {
          serve: cpu1.serve - cpu0.serve,
          worker: cpu1.worker - cpu0.worker,
          generator: cpu1.generator - cpu0.generator,
          postgres: cpu1.postgres - cpu0.postgres,
        },
        peakKb,
        leaseExpired: rows[0]!.expired,
        notCompleted: rows[0]!.left,
        othersBusy,
      };
    });
  } catch (error) {
    if (serve && !interrupted) console.error(`serve's last output:\n${serve.tail()}`);
    if (worker && !interrupted) console.error(`worker's last output:\n${worker.tail()}`);
    throw error;
  } finally {
    if (generator) await stopGenerator(generator);
    await finish(schema, serve, worker);
  }
}

// ---------------------------------------------------------------- 2. idle watchers

interface Opened extends Answer {
  opened: number;
  failed: number;
  openMs: number;
  errors: string[];
}
interface Finished extends Answer {
  terminalAt: [job: number, at: number][];
  statuses: Record<string, number>;
  stillOpen: number;
  errors: string[];
}

interface IdleRow {
  tree: string;
  count: number;
  round: number;
  opened: number;
  openMs: number;
  held: number;
  rssBeforeKb: number;
  rssAfterKb: number;
  holdMs: number;
  serveCpuMs: number;
  postgresCpuMs: number;
  transactions: number;
  burstMs: number;
  delivered: number;
  statuses: Record<string, number>;
  /** From the start of the cancel burst. */
  delivery: ReturnType<typeof summarize>;
  /** From the moment the stream's own job was sent its cancel. */
  sinceCancel: ReturnType<typeof summarize>;
  othersBusy: number;
}

/** Runs `fn` for 0..count-1 with at most `limit` at once. */
async function inPool(count: number, limit: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, count) }, async () => {
      while (next < count) await fn(next++);
    }),
  );
}

async function post(url: string, key: string, body: object | undefined, expect: number): Promise<{ id: string }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body ?? {}),
  });
  const text = await response.text();
  if (response.status !== expect) throw new Error(`POST ${url} answered ${response.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as { id: string };
}

function openFilesLimit(): number {
  const match = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return match ? Number(match[1]) : Infinity;
}

async function idleWatchers(tree: Tree, count: number, round: number): Promise<IdleRow> {
  // The server holds one descriptor per stream, besides its database connections and files.
  const limit = openFilesLimit();
  if (count + 1000 > limit) throw new Error(`--idle ${count}: serve would need more than the ${limit} open files allowed (ulimit -n)`);
  const { schema, key, env } = await prepare(tree);
  let serve: Cli | undefined;
  const generators: LineChild[] = [];
  try {
    const started = await startServe(tree, schema, env);
    serve = started.cli;
    const pid = serve.pid;
    const url = started.url;
    const jobs = Math.min(count, IDLE_JOBS_MAX);
    const ids: string[] = new Array<string>(jobs);
    await within(
      inPool(jobs, 32, async (index) => {
        ids[index] = (await post(`${url}/v1/jobs/ai-stream`, key, { input: { tokens: 1, ratePerSecond: 1, index } }, 202)).id;
      }),
      120,
      `${jobs} submits`,
    );
    // Let the submit burst's garbage and buffers settle before the baseline.
    await sleep(2000);
    const rssBeforeKb = statusKb(pid, 'VmRSS');

    const generatorCount = Math.ceil(count / STREAMS_PER_GENERATOR);
    const sources = Array.from({ length: Math.ceil(count / STREAMS_PER_SOURCE) }, (_, i) => `127.0.0.${i + 1}`);
    for (let g = 0; g < generatorCount; g++) generators.push(await startGenerator());
    const shares = generators.map((_, g) => Math.floor(count / generatorCount) + (g < count % generatorCount ? 1 : 0));
    const offsets = shares.map((_, g) => shares.slice(0, g).reduce((a, b) => a + b, 0));
    const opening = await Promise.all(
      generators.map((generator, g) =>
        ask<Opened>(generator, { cmd: 'idle', url, key, ids, count: shares[g], offset: offsets[g], sources }, 60 + count / 50, `${count} streams to open`),
      ),
    );
    const opened = opening.reduce((a, o) => a + o.opened, 0);
    const openMs = Math.max(...opening.map((o) => o.openMs));
    for (const o of opening) if (o.errors.length) console.error(`  load generator errors: ${o.errors.join(' | ')}`);

    return await withMonitor(async (monitor) => {
      const xact0 = await transactions(monitor);
      const others = await watchOthers();
      const cpu0 = { serve: processCpuMs(pid), postgres: postgresCpuMs() };
      const t0 = performance.now();
      await sleep(holdS * 1000);
      const holdMs = performance.now() - t0;
      const cpu1 = { serve: processCpuMs(pid), postgres: postgresCpuMs() };
      const othersBusy = await others.stop();
      const xact1 = await transactions(monitor);
      const status = await Promise.all(generators.map((g) => ask<Answer & { open: number }>(g, { cmd: 'status' }, 30, 'stream count')));
      const held = status.reduce((a, s) => a + s.open, 0);
      const rssAfterKb = statusKb(pid, 'VmRSS');

      // Every job cancelled as fast as the server takes it; each stream's terminal event is
      // timed from the start of the burst, so a slow burst shows in the figures.
      const burstStart = now();
      const cancelledAt: number[] = new Array<number>(jobs);
      await within(
        inPool(jobs, CANCELS_IN_FLIGHT, async (i) => {
          cancelledAt[i] = now();
          await post(`${url}/v1/jobs/${ids[i]}/cancel`, key, undefined, 200);
        }),
        120,
        `${jobs} cancels`,
      );
      const burstMs = now() - burstStart;
      const finished = await Promise.all(
        generators.map((g) => ask<Finished>(g, { cmd: 'finish', deadlineMs: now() + 60_000 }, 90, 'terminal events')),
      );
      const statuses: Record<string, number> = {};
      for (const f of finished) for (const [s, n] of Object.entries(f.statuses)) statuses[s] = (statuses[s] ?? 0) + n;
      const delays = finished.flatMap((f) => f.terminalAt.map(([, at]) => at - burstStart));
      const sinceCancel = finished.flatMap((f) => f.terminalAt.map(([job, at]) => at - cancelledAt[job]!));
      return {
        tree: tree.name,
        count,
        round,
        opened,
        openMs,
        held,
        rssBeforeKb,
        rssAfterKb,
        holdMs,
        serveCpuMs: cpu1.serve - cpu0.serve,
        postgresCpuMs: cpu1.postgres - cpu0.postgres,
        transactions: xact1 - xact0,
        burstMs,
        delivered: delays.length,
        statuses,
        delivery: summarize(delays),
        sinceCancel: summarize(sinceCancel),
        othersBusy,
      };
    });
  } catch (error) {
    if (serve && !interrupted) console.error(`serve's last output:\n${serve.tail()}`);
    throw error;
  } finally {
    for (const g of generators) await stopGenerator(g);
    await finish(schema, serve);
  }
}

// ---------------------------------------------------------------- main

const treeList = trees();
await printMachine(databaseUrl);
console.log(`command:    node bench/ai-load.ts ${process.argv.slice(2).join(' ')}`);
console.log(`database:   ${values['shared-database'] ? databaseUrl : `a scratch database on ${databaseUrl}'s server`}`);
console.log(
  `trees:      ${treeList.map((t) => `${t.name}=${t.root}`).join(', ')}\n` +
    `streaming:  J = ${jobCounts.join(', ') || 'none'}; ${tokensPerJob} tokens per job at ${rate}/s (${durationS} s); ${rounds} round(s)\n` +
    `idle:       ${idleCounts.join(', ') || 'none'} streams, held ${holdS} s\n`,
);
const roundLabel = (r: number) => (rounds > 1 ? [r] : []);
const roundHeader = rounds > 1 ? ['round'] : [];
let exitCode = 0;
try {
  if (!values['shared-database']) await createScratchDatabase();
  const streamRows: StreamRow[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const jobs of jobCounts) {
      for (const tree of treeList) {
        const row = await streaming(tree, jobs, round);
        streamRows.push(row);
        const r = row.result;
        console.log(
          `  ${tree.name}, J=${jobs}, round ${round}: ${(row.windowMs / 1000).toFixed(1)} s, ${r.submitted} submitted in ${(r.submitMs / 1000).toFixed(1)} s; ` +
            `${r.latency.n} live tokens (${r.replayed} replayed): p50 ${ms(r.latency.p50)} / p99 ${ms(r.latency.p99)} / max ${ms(r.latency.max)} ms; ` +
            `lost ${r.lost}, duplicated ${r.duplicated}, foreign ${r.foreign}; statuses ${JSON.stringify(r.statuses)}`,
        );
      }
    }
  }
  if (streamRows.length) {
    streamRows.sort((a, b) => a.jobs - b.jobs || treeList.findIndex((t) => t.name === a.tree) - treeList.findIndex((t) => t.name === b.tree) || a.round - b.round);
    console.log(`\nStreaming: J jobs × ${rate} tokens/s for ${durationS} s, each watched over SSE; latency of tokens written after the stream opened\n`);
    printTable(
      ['tree', 'J', ...roundHeader, 'tokens/s', 'latency p50 ms', 'p99 ms', 'max ms', 'lost', 'duplicated', 'transactions per token', 'leases expired', 'jobs not completed', 'window s'],
      streamRows.map((row) => [
        row.tree,
        row.jobs,
        ...roundLabel(row.round),
        row.jobs * rate,
        ms(row.result.latency.p50),
        ms(row.result.latency.p99),
        ms(row.result.latency.max),
        row.result.lost,
        row.result.duplicated,
        row.commitsPerToken.toFixed(3),
        row.leaseExpired,
        row.notCompleted,
        (row.windowMs / 1000).toFixed(1),
      ]),
    );
    console.log(`\nStreaming: CPU over the window (% of one core) and peak memory (serve, worker, load generator: VmHWM; PostgreSQL: sum of PSS, sampled)\n`);
    printTable(
      ['tree', 'J', ...roundHeader, 'CPU serve', 'CPU worker', 'CPU load gen', 'CPU PostgreSQL', 'MiB serve', 'MiB worker', 'MiB load gen', 'MiB PostgreSQL', 'others busy'],
      streamRows.map((row) => [
        row.tree,
        row.jobs,
        ...roundLabel(row.round),
        `${pct(row.cpuMs.serve, row.windowMs)} %`,
        `${pct(row.cpuMs.worker, row.windowMs)} %`,
        `${pct(row.cpuMs.generator, row.windowMs)} %`,
        `${pct(row.cpuMs.postgres, row.windowMs)} %`,
        MiB(row.peakKb.serve),
        MiB(row.peakKb.worker),
        MiB(row.peakKb.generator),
        MiB(row.peakKb.postgres),
        busyLabel(row.othersBusy),
      ]),
    );
    const bad = streamRows.filter((r) => r.result.lost || r.result.duplicated || r.result.foreign || r.notCompleted || r.leaseExpired);
    if (bad.length) {
      console.log(`\nFAILED: tokens lost, duplicated or misdelivered, or jobs not completed, in ${bad.map((r) => `${r.tree} J=${r.jobs}`).join(', ')}`);
      exitCode = 1;
    }
  }

  const idleRows: IdleRow[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const count of idleCounts) {
      for (const tree of treeList) {
        const row = await idleWatchers(tree, count, round);
        idleRows.push(row);
        console.log(
          `  ${tree.name}, ${count} idle streams, round ${round}: ${row.opened} opened in ${(row.openMs / 1000).toFixed(1)} s, ${row.held} held; ` +
            `${row.delivered} terminal events after the cancel burst (${row.burstMs.toFixed(0)} ms), statuses ${JSON.stringify(row.statuses)}`,
        );
      }
    }
  }
  if (idleRows.length) {
    idleRows.sort((a, b) => a.count - b.count || treeList.findIndex((t) => t.name === a.tree) - treeList.findIndex((t) => t.name === b.tree) || a.round - b.round);
    console.log(
      `\nIdle watchers: streams on min(count, ${IDLE_JOBS_MAX}) queued jobs, held ${holdS} s, then every job cancelled (${CANCELS_IN_FLIGHT} requests at a time); ` +
        `terminal event timed from the start of the burst and from the stream's own job's cancel request\n`,
    );
    printTable(
      [
        'tree',
        'streams',
        ...roundHeader,
        'held',
        'serve RSS before MiB',
        'after MiB',
        'KiB per stream',
        'serve CPU idle',
        'PostgreSQL CPU idle',
        'transactions/s idle',
        'cancel burst ms',
        'terminal received',
        'from burst start p50 ms',
        'p99 ms',
        'max ms',
        'from own cancel p50 ms',
        'p99 ms',
        'max ms',
        'others busy',
      ],
      idleRows.map((row) => [
        row.tree,
        row.count,
        ...roundLabel(row.round),
        row.held,
        MiB(row.rssBeforeKb),
        MiB(row.rssAfterKb),
        ((row.rssAfterKb - row.rssBeforeKb) / row.count).toFixed(1),
        `${pct(row.serveCpuMs, row.holdMs)} %`,
        `${pct(row.postgresCpuMs, row.holdMs)} %`,
        ((1000 * row.transactions) / row.holdMs).toFixed(0),
        row.burstMs.toFixed(0),
        row.delivered,
        ms(row.delivery.p50),
        ms(row.delivery.p99),
        ms(row.delivery.max),
        ms(row.sinceCancel.p50),
        ms(row.sinceCancel.p99),
        ms(row.sinceCancel.max),
        busyLabel(row.othersBusy),
      ]),
    );
    const bad = idleRows.filter((r) => r.held !== r.count || r.delivered !== r.count);
    if (bad.length) {
      console.log(`\nFAILED: streams not held or terminal events not delivered in ${bad.map((r) => `${r.tree} ${r.count}`).join(', ')}`);
      exitCode = 1;
    }
  }
} catch (error) {
  // After a signal, the failures are the children it killed: not worth a stack trace.
  if (!interrupted) console.error(error);
  exitCode = 1;
} finally {
  await cleanup();
}
process.exit(interrupted ? 130 : exitCode);
