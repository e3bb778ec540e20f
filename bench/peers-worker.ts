/**
 * The worker side of bench/peers.ts, and how it loads the peer queues from bench/peers.
 *
 *   node bench/peers-worker.ts graphile-worker|pg-boss|bullmq --concurrency 10
 *        [--database URL --schema NAME] [--redis URL --prefix NAME]
 *
 * runs one peer's worker with no-op handlers until its stdin closes or it gets SIGTERM, and
 * prints `start <n> <epoch ms>` when a probe job's handler starts (bench/peers.ts joins these
 * lines with the moments its submit calls returned: the pickup latency).
 *
 * Loaded with `--import` into a Waitless process (`src/cli/main.ts worker` or `serve`) with
 * WAITLESS_PEERS_PRELOAD=1, it makes that process stop when its stdin closes; with
 * WAITLESS_PEERS_PROBE_JOBS set to a worker's `--jobs` module (bench/jobs.ts) too, it prints
 * the same lines for Waitless's probe job through that module's probeHook, so every system's
 * pickup is read the same way without touching src/.
 *
 * The peers are benchmark-only dependencies: `npm install --prefix bench/peers`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

export const PEERS_DIR = new URL('./peers/', import.meta.url);
export const INSTALL_COMMAND = 'npm install --prefix bench/peers';

/** Epoch ms with a fraction: comparable between processes on the same machine. */
export const epochMs = () => performance.timeOrigin + performance.now();

const startLine = (n: number, at: number) => `start ${n} ${at.toFixed(3)}\n`;

// ---------------------------------------------------------------- the peers' APIs, as used here

// The peers' own types live in bench/peers/node_modules, which the project's tsconfig does not
// resolve from bench/; these describe only the calls made here.

export interface GraphileWorkerModule {
  run: (options: {
    connectionString: string;
    schema: string;
    concurrency: number;
    logger: unknown;
    noHandleSignals: boolean;
    taskList: Record<string, (payload: unknown) => Promise<void>>;
  }) => Promise<{ stop(): Promise<void> }>;
  makeWorkerUtils: (options: { connectionString: string; schema: string; maxPoolSize: number; logger: unknown }) => Promise<GraphileWorkerUtils>;
  Logger: new (factory: () => () => void) => unknown;
}

export interface GraphileWorkerUtils {
  migrate(): Promise<void>;
  addJob(task: string, payload: unknown, spec?: { maxAttempts?: number }): Promise<unknown>;
  release(): Promise<void>;
}

export interface PgBoss {
  on(event: 'error', listener: (error: Error) => void): void;
  start(): Promise<unknown>;
  stop(options?: { graceful?: boolean; timeout?: number; close?: boolean }): Promise<void>;
  createQueue(name: string, options?: { notify?: boolean; retryLimit?: number }): Promise<void>;
  send(name: string, data: object): Promise<string | null>;
  work(name: string, options: object, handler: (jobs: { data: PeerPayload }[]) => Promise<void>): Promise<string>;
}

export interface PgBossModule {
  PgBoss: new (options: object) => PgBoss;
}

export interface BullQueue {
  add(name: string, data: PeerPayload): Promise<unknown>;
  getJobCounts(...types: string[]): Promise<Record<string, number>>;
  waitUntilReady(): Promise<unknown>;
  close(): Promise<void>;
}

export interface BullWorker {
  on(event: 'error' | 'failed', listener: (...args: unknown[]) => void): void;
  waitUntilReady(): Promise<unknown>;
  close(): Promise<void>;
}

export interface BullMqModule {
  Queue: new (name: string, options: object) => BullQueue;
  Worker: new (name: string, processor: (job: { name: string; data: PeerPayload }) => Promise<void>, options: object) => BullWorker;
}

export interface RedisClient {
  scan(cursor: string, ...args: (string | number)[]): Promise<[string, string[]]>;
  del(...keys: string[]): Promise<number>;
  info(section: string): Promise<string>;
  quit(): Promise<unknown>;
}

export interface IoRedisModule {
  Redis: new (url: string, options?: object) => RedisClient;
}

export interface Peers {
  'graphile-worker': GraphileWorkerModule;
  'pg-boss': PgBossModule;
  bullmq: BullMqModule;
  ioredis: IoRedisModule;
}

/** What every peer's jobs carry; `probe` only where the peer has no job names (pg-boss). */
export interface PeerPayload {
  n: number;
  probe?: boolean;
}

export const peersInstalled = () => existsSync(new URL('./node_modules/', PEERS_DIR));

/** Imports one peer from bench/peers/node_modules (bench/ itself has no node_modules of its own). */
export async function loadPeer<K extends keyof Peers>(name: K): Promise<Peers[K]> {
  const require = createRequire(new URL('./package.json', PEERS_DIR));
  return (await import(pathToFileURL(require.resolve(name)).href)) as Peers[K];
}

/** A peer's installed version, for the report. */
export function peerVersion(name: keyof Peers): string {
  // Read from the folder: not every peer exports its package.json.
  return (JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, PEERS_DIR), 'utf8')) as { version: string }).version;
}

// ---------------------------------------------------------------- peer settings (shared with the enqueuer)

export const QUEUE = 'bench_noop';

/**
 * pg-boss: with its defaults a worker fetches one job and then sleeps its polling interval (2 s)
 * unless woken, so these follow its docs for throughput: LISTEN/NOTIFY on the queue (workers woken
 * as jobs are created) and batches of `concurrency` jobs, fetched back to back while they come
 * back full (`burstWhenBatchFull`); a batch's handlers run concurrently.
 */
export const pgBossWorkOptions = (concurrency: number) => ({ batchSize: concurrency, burstWhenBatchFull: true });
export const pgBossQueueOptions = { notify: true, retryLimit: 0 };

// ---------------------------------------------------------------- worker processes

interface WorkerArgs {
  concurrency: number;
  database: string;
  schema: string;
  redis: string;
  prefix: string;
}

const silentGraphileLogger = async () => {
  const { Logger } = await loadPeer('graphile-worker');
  return new Logger(() => () => {});
};

async function graphileWorker(a: WorkerArgs): Promise<() => Promise<void>> {
  const { run } = await loadPeer('graphile-worker');
  const runner = await run({
    connectionString: a.database,
    schema: a.schema,
    concurrency: a.concurrency,
    logger: await silentGraphileLogger(),
    noHandleSignals: true,
    taskList: {
      noop: async () => {},
      probe: async (payload) => void process.stdout.write(startLine((payload as PeerPayload).n, epochMs())),
    },
  });
  return () => runner.stop();
}

async function pgBossWorker(a: WorkerArgs): Promise<() => Promise<void>> {
  const { PgBoss } = await loadPeer('pg-boss');
  const boss = new PgBoss({ connectionString: a.database, schema: a.schema, useListenNotify: true });
  boss.on('error', (error) => console.error('pg-boss worker:', error.message));
  await boss.start();
  await boss.work(QUEUE, pgBossWorkOptions(a.concurrency), async (jobs) => {
    await Promise.all(
      jobs.map(async ({ data }) => {
        if (data.probe) process.stdout.write(startLine(data.n, epochMs()));
      }),
    );
  });
  return () => boss.stop({ graceful: true, timeout: 5000 });
}

async function bullMqWorker(a: WorkerArgs): Promise<() => Promise<void>> {
  const { Worker } = await loadPeer('bullmq');
  const url = new URL(a.redis);
  const worker = new Worker(
    QUEUE,
    async (job) => {
      if (job.name === 'probe') process.stdout.write(startLine(job.data.n, epochMs()));
    },
    {
      // A worker's blocking connection must retry forever (BullMQ requires maxRetriesPerRequest: null).
      connection: { host: url.hostname, port: Number(url.port || 6379), maxRetriesPerRequest: null },
      prefix: a.prefix,
      concurrency: a.concurrency,
    },
  );
  worker.on('error', (error) => console.error('bullmq worker:', (error as Error).message));
  worker.on('failed', (_job, error) => console.error('bullmq job failed:', (error as Error).message));
  await worker.waitUntilReady();
  return () => worker.close();
}

const workers: Record<string, (a: WorkerArgs) => Promise<() => Promise<void>>> = {
  'graphile-worker': graphileWorker,
  'pg-boss': pgBossWorker,
  bullmq: bullMqWorker,
};

async function workerMain(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      concurrency: { type: 'string' },
      database: { type: 'string' },
      schema: { type: 'string' },
      redis: { type: 'string' },
      prefix: { type: 'string' },
    },
  });
  const start = workers[positionals[0] ?? ''];
  if (!start) throw new Error(`peers-worker: expected one of ${Object.keys(workers).join(', ')}, got "${positionals[0]}"`);
  const stop = await start({
    concurrency: Number(values.concurrency ?? 10),
    database: values.database ?? '',
    schema: values.schema ?? '',
    redis: values.redis ?? 'redis://127.0.0.1:6379',
    prefix: values.prefix ?? 'bull',
  });
  let stopping = false;
  const shutdown = () => {
    if (stopping) return;
    stopping = true;
    // Never outlive the benchmark: if the peer's own stop hangs, leave anyway.
    setTimeout(() => process.exit(0), 5000).unref();
    stop().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error('peers-worker: stop failed:', error);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  // The parent holds our stdin: when it goes away (even killed), so do we.
  createInterface({ input: process.stdin }).on('close', shutdown);
}

if (import.meta.main) {
  workerMain().catch((error: unknown) => {
    console.error('peers-worker:', error);
    process.exit(1);
  });
} else if (process.env.WAITLESS_PEERS_PRELOAD) {
  // Preloaded into a Waitless process (`--import`). Its parent holds our stdin: when that goes
  // away (even killed), stop as on Ctrl-C.
  createInterface({ input: process.stdin }).on('close', () => process.kill(process.pid, 'SIGTERM'));
  const jobsModule = process.env.WAITLESS_PEERS_PROBE_JOBS;
  if (jobsModule) {
    // The module its --jobs flag names, so the worker's probe job calls this hook (the same
    // module instance, by URL).
    const jobs = (await import(pathToFileURL(jobsModule).href)) as { probeHook: { onStart?: (n: number, startedAt: number) => void } };
    jobs.probeHook.onStart = (n, startedAt) => void process.stdout.write(startLine(n, performance.timeOrigin + startedAt));
  }
}
