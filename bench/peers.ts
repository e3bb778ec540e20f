/**
 * Waitless next to its peers: no-op job throughput and pickup latency, the same workload for
 * every system, in alternating rounds of one run.
 *
 *   npm install --prefix bench/peers        # once: graphile-worker, pg-boss, bullmq (+ ioredis)
 *   node bench/peers.ts [--jobs 5000] [--concurrency 10] [--enqueuers 50] [--rounds 3]
 *                       [--systems pgbench,graphile-worker,pg-boss,bullmq,waitless-lib-pg,waitless-http-pg,waitless-lib-pglite]
 *                       [--database URL] [--redis redis://127.0.0.1:6379] [--pool 10]
 *                       [--pickup 200] [--pickup-gap 20] [--pgbench-duration 5]
 *                       [--pglite dir|memory] [--phase-timeout 300] [--tree before=/path/to/checkout]...
 *
 * Per system and round, in a fresh schema (or Redis key prefix, or PGlite folder) dropped after:
 *
 *   enqueue/s     no worker running; `--enqueuers` concurrent callers (closed loop) submit
 *                 `--jobs` jobs; jobs / wall time (after 200 warm-up submits).
 *   end-to-end/s  one worker process with `--concurrency` 10 running, idle (it has just drained
 *                 the enqueue phase's backlog); the same callers submit `--jobs` jobs; from the
 *                 first submit until the system's own store shows none queued or running
 *                 (polled every 25 ms once the last submit returned).
 *   pickup        `--pickup` probe jobs one at a time to the idle worker, `--pickup-gap` ms apart:
 *                 from the moment the submit call returned (in this process) to the moment the
 *                 handler started (in the worker process, which prints it); both read
 *                 performance.timeOrigin + performance.now(), i.e. the same machine clock. Negative
 *                 when the handler started before the submit call returned.
 *   raw INSERT    `pgbench` row: pgbench -M prepared with `--enqueuers` clients, a single-row INSERT
 *                 into a table with a bigserial key, `--pgbench-duration` s: the ceiling
 *                 PostgreSQL's commits allow on this machine.
 *
 * Every worker runs in a child process of its own, so the callers' CPU is not the worker's:
 * bench/peers-worker.ts for the peers, `node src/cli/main.ts worker` for Waitless (with
 * bench/peers-worker.ts preloaded to report its probe job's start). `waitless-http-pg` submits
 * over HTTP to `node src/cli/main.ts serve --no-worker` (API key auth, keep-alive connections).
 * `waitless-lib-pglite` is the exception: PGlite is single-process, so its worker runs in this
 * process beside the callers.
 *
 * `--tree name=/path` adds every selected waitless-* system again, run from another checkout of
 * this project (its src/ and bench/jobs.ts), labelled e.g. `waitless-lib-pg@name`. Rounds run the
 * systems in turn, the order rotated by one each round; the table shows the median over the
 * rounds and the range. Peer settings are printed with the results. Needs pgbench on PATH,
 * PostgreSQL (WAITLESS_BENCH_DATABASE_URL or --database) and, for bullmq, Redis.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import pg from 'pg';
import type * as EngineModule from '../src/engine.ts';
import type * as InternalsModule from '../src/internals.ts';
import type { Driver } from '../src/store/driver.ts';
import { DEFAULT_POSTGRES_URL, dropSchema, freshSchema, numberOption, postgresCpuMs, printMachine, printTable, processCpuMs, silentLogger, sleep, summarize } from './common.ts';
import type * as JobsModule from './jobs.ts';
import {
  epochMs,
  INSTALL_COMMAND,
  loadPeer,
  peersInstalled,
  peerVersion,
  pgBossQueueOptions,
  pgBossWorkOptions,
  QUEUE,
} from './peers-worker.ts';
import { createRawTable, pgbench, RAW_INSERT } from './pgbench.ts';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string' },
    concurrency: { type: 'string' },
    enqueuers: { type: 'string' },
    rounds: { type: 'string' },
    systems: { type: 'string' },
    database: { type: 'string' },
    redis: { type: 'string' },
    pool: { type: 'string' },
    pickup: { type: 'string' },
    'pickup-gap': { type: 'string' },
    'pgbench-duration': { type: 'string' },
    pglite: { type: 'string' },
    'phase-timeout': { type: 'string' },
    tree: { type: 'string', multiple: true },
  },
});
const jobCount = numberOption(values.jobs, 'WAITLESS_BENCH_JOBS', 5000);
const concurrency = numberOption(values.concurrency, 'WAITLESS_BENCH_CONCURRENCY', 10);
const enqueuers = numberOption(values.enqueuers, 'WAITLESS_BENCH_ENQUEUERS', 50);
const rounds = numberOption(values.rounds, 'WAITLESS_BENCH_ROUNDS', 3);
const pool = numberOption(values.pool, 'WAITLESS_BENCH_POOL', 10);
const pickupCount = numberOption(values.pickup, 'WAITLESS_BENCH_PICKUP', 200);
const pickupGapMs = values['pickup-gap'] === '0' ? 0 : numberOption(values['pickup-gap'], 'WAITLESS_BENCH_GAP', 20);
const pgbenchSeconds = numberOption(values['pgbench-duration'], 'WAITLESS_BENCH_DURATION', 5);
const phaseTimeoutMs = numberOption(values['phase-timeout'], 'WAITLESS_BENCH_PHASE_TIMEOUT', 300) * 1000;
const databaseUrl = values.database ?? DEFAULT_POSTGRES_URL;
const redisUrl = values.redis ?? process.env.WAITLESS_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const pgliteStorage = values.pglite ?? 'dir';
if (pgliteStorage !== 'dir' && pgliteStorage !== 'memory') throw new Error('--pglite: dir or memory');

/** Submits before the timed enqueue phase (connections, JIT, the schema's caches). */
const WARM_UP = Math.min(200, jobCount);
/** Probe jobs before the counted ones: the worker moves from draining to idle. */
const PICKUP_WARM_UP = 10;
/** How often a run asks its store whether the jobs are done. */
const POLL_MS = 25;
/** A pause between phases, so one phase's tail (commits, wake-ups) does not land in the next. */
const SETTLE_MS = 300;

// ---------------------------------------------------------------- systems

const PEERS = ['graphile-worker', 'pg-boss', 'bullmq'] as const;
const WAITLESS = ['waitless-lib-pg', 'waitless-http-pg', 'waitless-lib-pglite'] as const;
type Kind = 'pgbench' | (typeof PEERS)[number] | (typeof WAITLESS)[number];
const KINDS: readonly Kind[] = ['pgbench', ...PEERS, ...WAITLESS];

interface Tree {
  /** '' for this checkout. */
  name: string;
  root: string;
}

interface Spec {
  label: string;
  kind: Kind;
  tree: Tree;
}

const here: Tree = { name: '', root: fileURLToPath(new URL('../', import.meta.url)) };
const trees: Tree[] = (values.tree ?? []).map((entry) => {
  const [name, path] = entry.split('=');
  if (!name || !path) throw new Error(`--tree: expected name=/path/to/checkout, got "${entry}"`);
  return { name, root: resolve(path) };
});

function parseSystems(value: string | undefined): Spec[] {
  const specs: Spec[] = [];
  for (const entry of (value ?? KINDS.join(',')).split(',').map((s) => s.trim())) {
    const [kind, treeName] = entry.split('@') as [Kind, string | undefined];
    if (!KINDS.includes(kind)) throw new Error(`--systems: unknown system "${kind}"; expected ${KINDS.join(', ')}`);
    const isWaitless = (WAITLESS as readonly string[]).includes(kind);
    if (treeName !== undefined) {
      const tree = trees.find((t) => t.name === treeName);
      if (!isWaitless || !tree) throw new Error(`--systems: "${entry}" needs a waitless-* system and --tree ${treeName}=PATH`);
      specs.push({ label: entry, kind, tree });
      continue;
    }
    specs.push({ label: kind, kind, tree: here });
    if (isWaitless && !(value ?? '').includes('@')) for (const tree of trees) specs.push({ label: `${kind}@${tree.name}`, kind, tree });
  }
  return specs;
}
const specs = parseSystems(values.systems);

if (specs.some((s) => (PEERS as readonly string[]).includes(s.kind)) && !peersInstalled()) {
  console.error(`The peer queues are not installed. Run, from the repository root:\n\n  ${INSTALL_COMMAND}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------- child processes and cleanup

/** Every child process still running, killed however this process ends. */
const children = new Set<ChildProcess>();
/** Schemas, Redis keys and folders to remove if the run is interrupted before it removes them. */
const cleanups = new Set<() => Promise<unknown>>();

process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
/** Set on SIGINT/SIGTERM: the run stops, removes what it created and exits 130. */
let interrupted: Promise<never> | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    console.error(`\n${signal}: stopping child processes and removing this run's schemas…`);
    // Killed outright: a worker still holding locks would make the DROP SCHEMA wait.
    for (const child of children) child.kill('SIGKILL');
    interrupted = Promise.race([Promise.allSettled([...cleanups].map((cleanup) => cleanup())), sleep(10_000)]).then(() => process.exit(130));
  });
}

/** Keeps `fn` for an interruption; the function returned runs it now and forgets it. */
function cleanup(fn: () => Promise<unknown>): () => Promise<void> {
  cleanups.add(fn);
  return async () => {
    cleanups.delete(fn);
    await fn();
  };
}

interface Child {
  child: ChildProcess;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

function spawnNode(args: string[], options: { cwd?: string; env?: Record<string, string>; onLine?: (line: string) => void }): Child {
  const child = spawn(process.execPath, args, {
    cwd: options.cwd,
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, LOG_LEVEL: 'silent', ...options.env },
  });
  children.add(child);
  const exited = new Promise<number | null>((done) =>
    child.once('exit', (code) => {
      children.delete(child);
      done(code);
    }),
  );
  if (options.onLine) createInterface({ input: child.stdout }).on('line', options.onLine);
  else child.stdout.resume();
  return {
    child,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      // A Waitless worker's shutdown grace is 10 s; an idle one leaves at once.
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Fails loudly when a phase runs longer than --phase-timeout, or when `failure` (a child that
 * died) rejects first. The phase's own later rejection is dropped: the run has failed already.
 */
async function phase<T>(label: string, work: Promise<T>, failure?: Promise<never>): Promise<T> {
  work.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label}: still not done after ${phaseTimeoutMs / 1000} s (--phase-timeout)`)), phaseTimeoutMs);
  });
  try {
    return await Promise.race(failure ? [work, timeout, failure] : [work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------- one system, one round

interface Progress {
  /** Jobs queued or running. */
  pending: number;
  failed: number;
}

interface WorkerHandle {
  /** Undefined when the worker runs in this process. */
  pid?: number;
  /** When (epoch ms) probe job `n`'s handler started. */
  started: (n: number) => Promise<number>;
  /** Rejects if the worker exits before `stop()`. */
  failure: Promise<never>;
  stop(): Promise<void>;
}

interface Adapter {
  /** Resolves when the submit call returned: the job is stored. */
  submit(n: number, probe: boolean): Promise<void>;
  progress(): Promise<Progress>;
  startWorker(): Promise<WorkerHandle> | WorkerHandle;
  /** Where the jobs live, for the CPU column. */
  store: 'postgres' | 'redis' | 'in-process';
  /** A server process between the callers and the database (HTTP), counted with the callers. */
  serverPid?: number;
  close(): Promise<void>;
}

interface RoundResult {
  enqueue: number;
  endToEnd?: number;
  pickupP50?: number;
  pickupP99?: number;
  submitP50?: number;
  /** CPU ms per job in the end-to-end phase. */
  cpu?: { client: number; worker: number; store: number };
}

/** Start lines (`start <n> <epoch ms>`) of a worker, matched with whoever waits for them. */
function startTracker() {
  const seen = new Map<number, number>();
  const waiting = new Map<number, (at: number) => void>();
  const record = (n: number, at: number) => {
    const waiter = waiting.get(n);
    if (waiter) {
      waiting.delete(n);
      waiter(at);
    } else {
      seen.set(n, at);
    }
  };
  return {
    record,
    line(line: string) {
      const m = /^start (-?\d+) ([\d.]+)$/.exec(line);
      if (m) record(Number(m[1]), Number(m[2]));
    },
    started: (n: number): Promise<number> => {
      const at = seen.get(n);
      if (at !== undefined) {
        seen.delete(n);
        return Promise.resolve(at);
      }
      return new Promise((done) => waiting.set(n, done));
    },
  };
}

function childWorker(name: string, args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): WorkerHandle {
  const tracker = startTracker();
  const proc = spawnNode(args, { ...options, onLine: (line) => tracker.line(line) });
  let stopping = false;
  const failure = proc.exited.then((code): never => {
    throw new Error(`${name} worker exited${stopping ? '' : ' unexpectedly'} (code ${code})`);
  });
  failure.catch(() => {});
  return {
    pid: proc.child.pid,
    started: tracker.started,
    failure,
    async stop() {
      stopping = true;
      await proc.stop();
    },
  };
}

const peerWorker = (kind: (typeof PEERS)[number], args: string[]) =>
  childWorker(kind, [fileURLToPath(new URL('./peers-worker.ts', import.meta.url)), kind, '--concurrency', String(concurrency), ...args]);

/** A dedicated connection for the progress polls, not taken from a system's own pool. */
async function progressClient(sql: string, params: unknown[] = []): Promise<{ progress: () => Promise<Progress>; end(): Promise<void> }> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  return {
    progress: async () => (await client.query<Progress>(sql, params)).rows[0]!,
    end: () => client.end(),
  };
}

async function submitMany(adapter: Adapter, from: number, count: number): Promise<void> {
  let next = from;
  const end = from + count;
  await Promise.all(
    Array.from({ length: enqueuers }, async () => {
      while (next < end) await adapter.submit(next++, false);
    }),
  );
}

/** When (performance.now()) the store first showed every job done. */
async function untilDone(adapter: Adapter): Promise<number> {
  for (;;) {
    const { pending, failed } = await adapter.progress();
    if (failed > 0) throw new Error(`${failed} jobs failed`);
    if (pending === 0) return performance.now();
    await sleep(POLL_MS);
  }
}

/** CPU time (ms) of every redis-server process (Linux /proc), NaN if none is found. */
function redisCpuMs(): number {
  let total = NaN;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== 'redis-server') continue;
      total = (Number.isNaN(total) ? 0 : total) + processCpuMs(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

function cpuMeter(adapter: Adapter, worker: WorkerHandle) {
  const storeMs = () => (adapter.store === 'postgres' ? postgresCpuMs() : adapter.store === 'redis' ? redisCpuMs() : 0);
  const clientMs = () => {
    const self = process.cpuUsage();
    return (self.user + self.system) / 1000 + (adapter.serverPid ? processCpuMs(adapter.serverPid) : 0);
  };
  const workerMs = () => (worker.pid ? processCpuMs(worker.pid) : 0);
  const before = { client: clientMs(), worker: workerMs(), store: storeMs() };
  return (jobs: number) => ({
    client: (clientMs() - before.client) / jobs,
    worker: (workerMs() - before.worker) / jobs,
    store: (storeMs() - before.store) / jobs,
  });
}

async function measure(label: string, adapter: Adapter): Promise<RoundResult> {
  let worker: WorkerHandle | undefined;
  try {
    await phase(`${label}: warm-up submits`, submitMany(adapter, 0, WARM_UP));
    let t0 = performance.now();
    await phase(`${label}: enqueue`, submitMany(adapter, WARM_UP, jobCount));
    const enqueue = jobCount / ((performance.now() - t0) / 1000);
    // The end-to-end phase ends on this count reaching 0: it must see every job first.
    const { pending } = await adapter.progress();
    if (pending !== WARM_UP + jobCount) throw new Error(`${label}: ${pending} jobs pending after the enqueue phase, expected ${WARM_UP + jobCount}`);

    worker = await phase(`${label}: worker start`, Promise.resolve(adapter.startWorker()));
    // Draining the enqueue phase's backlog also warms the worker up.
    await phase(`${label}: drain`, untilDone(adapter), worker.failure);
    await sleep(SETTLE_MS);

    const cpu = cpuMeter(adapter, worker);
    t0 = performance.now();
    const done = await phase(
      `${label}: end-to-end`,
      submitMany(adapter, WARM_UP + jobCount, jobCount).then(() => untilDone(adapter)),
      worker.failure,
    );
    const endToEnd = jobCount / ((done - t0) / 1000);
    const cpuPerJob = cpu(jobCount);
    await sleep(SETTLE_MS);

    const pickups: number[] = [];
    const submits: number[] = [];
    const started = worker.started;
    await phase(
      `${label}: pickup`,
      (async () => {
        for (let i = 0; i < PICKUP_WARM_UP + pickupCount; i++) {
          const s0 = epochMs();
          await adapter.submit(i, true);
          const s1 = epochMs();
          const at = await started(i);
          if (i >= PICKUP_WARM_UP) {
            pickups.push(at - s1);
            submits.push(s1 - s0);
          }
          if (pickupGapMs > 0) await sleep(pickupGapMs);
        }
      })(),
      worker.failure,
    );
    await phase(`${label}: pickup jobs done`, untilDone(adapter), worker.failure);
    const p = summarize(pickups);
    return { enqueue, endToEnd, pickupP50: p.p50, pickupP99: p.p99, submitP50: summarize(submits).p50, cpu: cpuPerJob };
  } finally {
    if (worker) await worker.stop();
    await adapter.close();
  }
}

// ---------------------------------------------------------------- adapters

async function runPgbench(): Promise<RoundResult> {
  const schema = freshSchema('peers_raw');
  const drop = cleanup(() => dropSchema(databaseUrl, schema));
  try {
    await createRawTable(databaseUrl, schema);
    const r = await pgbench(RAW_INSERT, { databaseUrl, schema, clients: enqueuers, seconds: pgbenchSeconds, protocol: 'prepared' });
    pgbenchCommand = r.command;
    return { enqueue: r.tps };
  } finally {
    await drop();
  }
}
let pgbenchCommand = '';

async function graphileWorker(): Promise<Adapter> {
  const { makeWorkerUtils, Logger } = await loadPeer('graphile-worker');
  const schema = freshSchema('peers_gw');
  const drop = cleanup(() => dropSchema(databaseUrl, schema));
  const utils = await makeWorkerUtils({ connectionString: databaseUrl, schema, maxPoolSize: pool, logger: new Logger(() => () => {}) });
  await utils.migrate();
  // Finished jobs are deleted; a job that failed its one attempt stays, with its error.
  const poll = await progressClient(
    `SELECT count(*) FILTER (WHERE last_error IS NULL)::int AS pending, count(*) FILTER (WHERE last_error IS NOT NULL)::int AS failed FROM ${schema}._private_jobs`,
  );
  return {
    submit: async (n, probe) => void (await utils.addJob(probe ? 'probe' : 'noop', { n }, { maxAttempts: 1 })),
    progress: poll.progress,
    startWorker: () => peerWorker('graphile-worker', ['--database', databaseUrl, '--schema', schema]),
    store: 'postgres',
    async close() {
      await utils.release();
      await poll.end();
      await drop();
    },
  };
}

async function pgBoss(): Promise<Adapter> {
  const { PgBoss } = await loadPeer('pg-boss');
  const schema = freshSchema('peers_pgboss');
  const drop = cleanup(() => dropSchema(databaseUrl, schema));
  // A producer only: maintenance and cron run in the worker process, as in a deployment.
  const boss = new PgBoss({ connectionString: databaseUrl, schema, max: pool, supervise: false, schedule: false });
  boss.on('error', (error) => console.error('pg-boss:', error.message));
  await boss.start();
  await boss.createQueue(QUEUE, pgBossQueueOptions);
  const poll = await progressClient(
    `SELECT count(*) FILTER (WHERE state < 'completed')::int AS pending, count(*) FILTER (WHERE state IN ('failed', 'cancelled'))::int AS failed
       FROM ${schema}.job WHERE name = $1`,
    [QUEUE],
  );
  return {
    submit: async (n, probe) => void (await boss.send(QUEUE, probe ? { n, probe } : { n })),
    progress: poll.progress,
    startWorker: () => peerWorker('pg-boss', ['--database', databaseUrl, '--schema', schema]),
    store: 'postgres',
    async close() {
      await boss.stop({ graceful: false, close: true, timeout: 5000 });
      await poll.end();
      await drop();
    },
  };
}

let redisVersion = '?';

async function flushRedisPrefix(prefix: string): Promise<void> {
  const { Redis } = await loadPeer('ioredis');
  const redis = new Redis(redisUrl);
  try {
    redisVersion = /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? redisVersion;
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    await redis.quit();
  }
}

async function bullMq(): Promise<Adapter> {
  const { Queue } = await loadPeer('bullmq');
  const prefix = freshSchema('peers_bull');
  const flush = cleanup(() => flushRedisPrefix(prefix));
  const url = new URL(redisUrl);
  const queue = new Queue(QUEUE, { connection: { host: url.hostname, port: Number(url.port || 6379) }, prefix });
  await queue.waitUntilReady();
  return {
    submit: async (n, probe) => void (await queue.add(probe ? 'probe' : 'noop', { n })),
    async progress() {
      const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'paused', 'failed');
      return { pending: (c.waiting ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0) + (c.paused ?? 0), failed: c.failed ?? 0 };
    },
    startWorker: () => peerWorker('bullmq', ['--redis', redisUrl, '--prefix', prefix]),
    store: 'redis',
    async close() {
      await queue.close();
      await flush();
    },
  };
}

async function loadWaitless(tree: Tree) {
  const engine = (await import(pathToFileURL(join(tree.root, 'src/engine.ts')).href)) as typeof EngineModule;
  const jobs = (await import(pathToFileURL(join(tree.root, 'bench/jobs.ts')).href)) as typeof JobsModule;
  // The engine's driver is behind internals() since the engine's surface was narrowed; older trees expose it as a property.
  const internalsFile = join(tree.root, 'src/internals.ts');
  const internals = existsSync(internalsFile)
    ? ((await import(pathToFileURL(internalsFile).href)) as typeof InternalsModule).internals
    : (waitless: object) => waitless as unknown as { driver: Driver };
  return { engine, jobs, internals };
}

const WAITLESS_PROGRESS = (table: string) =>
  `SELECT count(*) FILTER (WHERE status IN ('queued', 'running'))::int AS pending,
          count(*) FILTER (WHERE status NOT IN ('queued', 'running', 'completed'))::int AS failed FROM ${table}`;

/** `node src/cli/main.ts worker` of a tree, with the probe reporter preloaded. */
function waitlessWorker(tree: Tree, schema: string): WorkerHandle {
  const jobsModule = join(tree.root, 'bench/jobs.ts');
  return childWorker(
    'waitless',
    [
      '--import',
      new URL('./peers-worker.ts', import.meta.url).href,
      join(tree.root, 'src/cli/main.ts'),
      'worker',
      '--jobs',
      jobsModule,
      '--schema',
      schema,
      '--concurrency',
      String(concurrency),
    ],
    { cwd: tree.root, env: { DATABASE_URL: databaseUrl, WAITLESS_PEERS_PRELOAD: '1', WAITLESS_PEERS_PROBE_JOBS: jobsModule } },
  );
}

async function waitlessLibPg(tree: Tree): Promise<Adapter> {
  const { engine, jobs } = await loadWaitless(tree);
  const schema = freshSchema('peers_wl');
  const drop = cleanup(() => dropSchema(databaseUrl, schema));
  const waitless = await engine.createWaitless({ jobs: [jobs.noop, jobs.probe], database: databaseUrl, schema, maxConnections: pool, logger: silentLogger });
  const poll = await progressClient(WAITLESS_PROGRESS(`${schema}.jobs`));
  return {
    submit: async (n, probe) => void (await waitless.submit(probe ? jobs.probe : jobs.noop, { n })),
    progress: poll.progress,
    startWorker: () => waitlessWorker(tree, schema),
    store: 'postgres',
    async close() {
      await waitless.close();
      await poll.end();
      await drop();
    },
  };
}

const freePort = () =>
  new Promise<number>((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => done(port));
    });
  });

function request(agent: http.Agent, port: number, method: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((done, fail) => {
    const req = http.request({ agent, host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => done({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', fail);
    });
    req.on('error', fail);
    req.end(body);
  });
}

async function waitlessHttpPg(tree: Tree): Promise<Adapter> {
  const { jobs } = await loadWaitless(tree);
  const schema = freshSchema('peers_wlhttp');
  const drop = cleanup(() => dropSchema(databaseUrl, schema));
  const main = join(tree.root, 'src/cli/main.ts');
  const env = { ...process.env, DATABASE_URL: databaseUrl, LOG_LEVEL: 'silent' };
  // `keys create` migrates the schema too. Its output ends with the key on a line of its own.
  const { stdout } = await promisify(execFile)(process.execPath, [main, 'keys', 'create', '--tenant', 'bench', '--schema', schema], {
    cwd: tree.root,
    env,
    timeout: phaseTimeoutMs,
  });
  const key = stdout.trim().split('\n').at(-1)!.trim();
  const port = await freePort();
  const server = spawnNode(
    ['--import', new URL('./peers-worker.ts', import.meta.url).href, main, 'serve', '--no-worker', '--jobs', join(tree.root, 'bench/jobs.ts'), '--schema', schema, '--port', String(port), '--host', '127.0.0.1'],
    // Capacity is measured, not the per-tenant limits (one key sends everything; older trees ignore these).
    { cwd: tree.root, env: { DATABASE_URL: databaseUrl, WAITLESS_PEERS_PRELOAD: '1', WAITLESS_SUBMIT_RATE: '0', WAITLESS_STREAMS_PER_KEY: '0' } },
  );
  const agent = new http.Agent({ keepAlive: true, maxSockets: enqueuers });
  const poll = await progressClient(WAITLESS_PROGRESS(`${schema}.jobs`));
  const close = async () => {
    agent.destroy();
    await server.stop();
    await poll.end();
    await drop();
  };
  try {
    const serverDied = server.exited.then((code): never => {
      throw new Error(`waitless serve exited (code ${code})`);
    });
    await phase(
      'waitless serve start',
      (async () => {
        for (;;) {
          const health = await request(agent, port, 'GET', '/healthz', {}).catch(() => undefined);
          if (health?.status === 200) return;
          await sleep(100);
        }
      })(),
      serverDied,
    );
  } catch (error) {
    await close();
    throw error;
  }
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${key}` };
  return {
    async submit(n, probe) {
      const r = await request(agent, port, 'POST', `/v1/jobs/${probe ? jobs.probe.name : jobs.noop.name}`, headers, `{"input":{"n":${n}}}`);
      if (r.status !== 202) throw new Error(`POST /v1/jobs: ${r.status} ${r.body}`);
    },
    progress: poll.progress,
    startWorker: () => waitlessWorker(tree, schema),
    store: 'postgres',
    serverPid: server.child.pid,
    close,
  };
}

async function waitlessLibPglite(tree: Tree): Promise<Adapter> {
  const { engine, jobs, internals } = await loadWaitless(tree);
  const dir = pgliteStorage === 'memory' ? undefined : mkdtempSync(join(tmpdir(), 'peers-pglite-'));
  const remove = cleanup(async () => dir && rmSync(dir, { recursive: true, force: true }));
  const waitless = await engine.createWaitless({ jobs: [jobs.noop, jobs.probe], database: dir ?? 'memory://', logger: silentLogger });
  return {
    submit: async (n, probe) => void (await waitless.submit(probe ? jobs.probe : jobs.noop, { n })),
    progress: async () => (await internals(waitless).driver.query<Progress>({ text: WAITLESS_PROGRESS('jobs'), values: [] }))[0]!,
    startWorker() {
      const tracker = startTracker();
      jobs.probeHook.onStart = (n, startedAt) => tracker.record(n, performance.timeOrigin + startedAt);
      const worker = waitless.startWorker({ concurrency });
      return {
        started: tracker.started,
        failure: new Promise<never>(() => {}),
        async stop() {
          await worker.stop();
          jobs.probeHook.onStart = undefined;
        },
      };
    },
    store: 'in-process',
    async close() {
      await waitless.close();
      await remove();
    },
  };
}

async function runOnce(spec: Spec): Promise<RoundResult> {
  if (spec.kind === 'pgbench') return runPgbench();
  const open: Record<Exclude<Kind, 'pgbench'>, () => Promise<Adapter>> = {
    'graphile-worker': graphileWorker,
    'pg-boss': pgBoss,
    bullmq: bullMq,
    'waitless-lib-pg': () => waitlessLibPg(spec.tree),
    'waitless-http-pg': () => waitlessHttpPg(spec.tree),
    'waitless-lib-pglite': () => waitlessLibPglite(spec.tree),
  };
  const adapter = await phase(`${spec.label}: setup`, open[spec.kind]());
  return measure(spec.label, adapter);
}

// ---------------------------------------------------------------- report

const fmt = (value: number | undefined, digits = 0) => (value === undefined || !Number.isFinite(value) ? '-' : value.toFixed(digits));
/** Of the rounds: with an even count, the mean of the middle two (summarize's p50 is nearest-rank). */
function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Median, and the range when there is more than one round. */
function spread(xs: (number | undefined)[], digits = 0): string {
  const v = xs.filter((x): x is number => x !== undefined && Number.isFinite(x));
  if (v.length === 0) return '-';
  return v.length === 1 ? fmt(v[0], digits) : `${fmt(median(v), digits)} (${fmt(Math.min(...v), digits)}–${fmt(Math.max(...v), digits)})`;
}

function settings(spec: Spec): string {
  const tree = spec.tree.name ? ` from ${spec.tree.root}` : '';
  switch (spec.kind) {
    case 'pgbench':
      return `pgbench -M prepared -c ${enqueuers}, ${pgbenchSeconds} s, single-row INSERT (bench/pgbench.ts RAW_INSERT)`;
    case 'graphile-worker':
      return `${peerVersion('graphile-worker')}: addJob (WorkerUtils, maxPoolSize ${pool}, maxAttempts 1); run({ concurrency: ${concurrency} }), other settings default (no localQueue, no completeJobBatchDelay); completed jobs are deleted`;
    case 'pg-boss':
      return (
        `${peerVersion('pg-boss')}: send (max ${pool}, supervise/schedule off in the producer); queue ${JSON.stringify(pgBossQueueOptions)}; ` +
        `worker useListenNotify: true, work(${JSON.stringify(pgBossWorkOptions(concurrency))}), a batch's handlers run concurrently; completed jobs kept (default retention)`
      );
    case 'bullmq':
      return `${peerVersion('bullmq')} (ioredis ${peerVersion('ioredis')}), Redis ${redisVersion} at ${redisUrl}: Queue.add (one connection, job options default: completed jobs kept); Worker({ concurrency: ${concurrency} })`;
    case 'waitless-lib-pg':
      return `waitless.submit() (maxConnections ${pool}); \`waitless worker --concurrency ${concurrency}\`${tree}`;
    case 'waitless-http-pg':
      return `POST /v1/jobs/:name with an API key to \`waitless serve --no-worker\` (its default pool of 10), http.Agent keep-alive, ${enqueuers} sockets; \`waitless worker --concurrency ${concurrency}\`${tree}`;
    case 'waitless-lib-pglite':
      return `waitless.submit() on PGlite (${pgliteStorage === 'dir' ? 'a temporary folder' : 'memory://'}); startWorker({ concurrency: ${concurrency} }) in the same process as the callers${tree}`;
  }
}

const quote = (arg: string) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`);
console.log(`$ node ${[process.argv[1] ? relativeToCwd(process.argv[1]) : 'bench/peers.ts', ...process.argv.slice(2)].map(quote).join(' ')}`);
function relativeToCwd(path: string): string {
  return path.startsWith(`${process.cwd()}/`) ? path.slice(process.cwd().length + 1) : path;
}
await printMachine(databaseUrl);
console.log(
  `\n${jobCount} no-op jobs per phase, ${enqueuers} concurrent callers, worker concurrency ${concurrency}, ${rounds} round(s); ` +
    `pickup: ${pickupCount} probe jobs (after ${PICKUP_WARM_UP}), ${pickupGapMs} ms apart; phase timeout ${phaseTimeoutMs / 1000} s\n`,
);

const results = new Map<string, RoundResult[]>(specs.map((s) => [s.label, []]));
const failures = new Map<string, string[]>();
for (let round = 1; round <= rounds && !interrupted; round++) {
  const order = specs.map((_, i) => specs[(i + round - 1) % specs.length]!);
  for (const spec of order) {
    try {
      const r = await runOnce(spec);
      results.get(spec.label)!.push(r);
      console.log(
        `round ${round}/${rounds} ${spec.label}: enqueue ${fmt(r.enqueue)}/s` +
          (r.endToEnd === undefined ? '' : `, end-to-end ${fmt(r.endToEnd)}/s, pickup p50 ${fmt(r.pickupP50, 2)} / p99 ${fmt(r.pickupP99, 2)} ms`),
      );
    } catch (error) {
      if (interrupted) break;
      const message = error instanceof Error ? error.message : String(error);
      console.error(`round ${round}/${rounds} ${spec.label}: FAILED: ${message}`);
      failures.set(spec.label, [...(failures.get(spec.label) ?? []), message]);
    }
    if (interrupted) break;
  }
}
// The failures an interruption causes are not results; wait for its cleanup, which exits.
if (interrupted) await interrupted;

const medianOf = (label: string, pick: (r: RoundResult) => number | undefined) => {
  const v = (results.get(label) ?? []).map(pick).filter((x): x is number => x !== undefined);
  return v.length ? median(v) : NaN;
};
const rawInsert = medianOf('pgbench', (r) => r.enqueue);
const pgBossRate = medianOf('pg-boss', (r) => r.endToEnd);
const bullRate = medianOf('bullmq', (r) => r.endToEnd);
const ratio = (a: number, b: number, suffix: string, digits = 2) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(digits)}${suffix}` : '-');

console.log();
printTable(
  [
    'system',
    'enqueue/s',
    '% of raw INSERT',
    'end-to-end/s',
    '× pg-boss',
    '× BullMQ',
    'pickup p50 ms',
    'pickup p99 ms',
    'submit p50 ms (one at a time)',
    'end-to-end CPU ms/job: callers · worker · store',
  ],
  specs.map((spec) => {
    const rs = results.get(spec.label)!;
    const failed = failures.get(spec.label)?.length ?? 0;
    const name = failed ? `${spec.label} (${failed} of ${rounds} rounds failed)` : spec.label;
    const e2e = medianOf(spec.label, (r) => r.endToEnd);
    const cpu = rs.length && rs[0]!.cpu ? rs.map((r) => r.cpu!) : undefined;
    return [
      name,
      spread(rs.map((r) => r.enqueue)),
      spec.kind === 'pgbench'
        ? '100 %'
        : `${ratio(100 * medianOf(spec.label, (r) => r.enqueue), rawInsert, ' %', 0)}${spec.kind === 'bullmq' ? ' (Redis, not PostgreSQL)' : ''}`,
      spread(rs.map((r) => r.endToEnd)),
      ratio(e2e, pgBossRate, '×'),
      ratio(e2e, bullRate, '×'),
      spread(rs.map((r) => r.pickupP50), 2),
      spread(rs.map((r) => r.pickupP99), 2),
      spread(rs.map((r) => r.submitP50), 2),
      cpu
        ? spec.kind === 'waitless-lib-pglite'
          ? `${fmt(median(cpu.map((c) => c.client)), 3)} (worker and PGlite included)`
          : `${fmt(median(cpu.map((c) => c.client)), 3)} · ${fmt(median(cpu.map((c) => c.worker)), 3)} · ${fmt(median(cpu.map((c) => c.store)), 3)}`
        : '-',
    ];
  }),
);
console.log('\nSettings:');
for (const spec of specs) console.log(`  ${spec.label}: ${settings(spec)}`);
if (pgbenchCommand) console.log(`  $ ${pgbenchCommand}`);
console.log(
  `\nStore CPU is every postgres (or redis-server) process on the machine in the phase; PGlite runs inside the callers' process. ` +
    `Pickup is measured from the submit call's return; the HTTP system's callers are this process, its server a child process (counted with the callers).`,
);
for (const [label, messages] of failures) for (const m of messages) console.error(`FAILED ${label}: ${m}`);
process.exit(failures.size ? 1 : 0);
