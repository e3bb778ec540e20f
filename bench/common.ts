/**
 * Shared helpers for the hand-run benchmarks in bench/ (not part of the test suite).
 * See docs/benchmarks.md for how to run them and the figures they produced.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { constants, monitorEventLoopDelay, type PerformanceEntry, PerformanceObserver } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { serve, type ServerType } from '@hono/node-server';
import pg from 'pg';
import { pino } from 'pino';
import { createWaitless, type Waitless, type WaitlessOptions } from '../src/engine.ts';
import { createHttpApp } from '../src/http/app.ts';

export { sleep };

export type Backend = 'postgres' | 'pglite';

/** PostgreSQL used by the benchmarks: `--database`, else `WAITLESS_BENCH_DATABASE_URL`, else the local test server. */
export const DEFAULT_POSTGRES_URL = process.env.WAITLESS_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export const silentLogger = pino({ level: 'silent' });

/** A schema of its own for every run, dropped at the end. */
export const freshSchema = (prefix = 'bench') => `${prefix}_${randomBytes(5).toString('hex')}`;

/** `--backend postgres,pglite` → the list; `all` or unset → both. */
export function parseBackends(value: string | undefined): Backend[] {
  if (!value || value === 'all') return ['postgres', 'pglite'];
  const list = value.split(',').map((s) => s.trim());
  for (const b of list) if (b !== 'postgres' && b !== 'pglite') throw new Error(`--backend: expected postgres, pglite or all, got "${b}"`);
  return list as Backend[];
}

/** A number from a flag, else an environment variable, else the default. */
export function numberOption(flag: string | undefined, envName: string, fallback: number): number {
  const raw = flag ?? process.env[envName];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${envName} / flag: expected a positive number, got "${raw}"`);
  return n;
}

export interface BenchEngine {
  waitless: Waitless;
  schema: string;
  databaseUrl: string;
  close(): Promise<void>;
}

/** Opens an engine in a fresh schema (PostgreSQL) or in-memory PGlite; `close()` drops the schema. */
export async function openEngine(
  backend: Backend,
  options: Omit<WaitlessOptions, 'database' | 'logger' | 'schema'> & { databaseUrl?: string; schema?: string },
): Promise<BenchEngine> {
  const schema = options.schema ?? freshSchema();
  const databaseUrl = backend === 'postgres' ? (options.databaseUrl ?? DEFAULT_POSTGRES_URL) : 'memory://';
  const waitless = await createWaitless({ ...options, schema, database: databaseUrl, logger: silentLogger });
  return {
    waitless,
    schema,
    databaseUrl,
    async close() {
      await waitless.close();
      if (backend === 'postgres') await dropSchema(databaseUrl, schema);
    },
  };
}

export async function withClient<T>(databaseUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function dropSchema(databaseUrl: string, schema: string): Promise<void> {
  await withClient(databaseUrl, (c) => c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
}

// ---------------------------------------------------------------- statistics

export interface Summary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentile of a sorted array. */
function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function summarize(samples: number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted.at(-1) ?? NaN,
    mean: sorted.length ? sum / sorted.length : NaN,
  };
}

export const ms = (value: number) => (Number.isFinite(value) ? value.toFixed(2) : '-');

// ---------------------------------------------------------------- machine

/** Total and idle CPU jiffies of the whole machine (Linux), to show how busy the cores were in a phase. */
export function cpuTimes(): { total: number; idle: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    const total = fields.reduce((a, b) => a + b, 0);
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
    return { total, idle };
  } catch {
    return undefined;
  }
}

/** Busy share (0–100 %) of all cores between two {@link cpuTimes} readings. */
export function busyPercent(before: ReturnType<typeof cpuTimes>, after: ReturnType<typeof cpuTimes>): number {
  if (!before || !after || after.total === before.total) return NaN;
  return (100 * (after.total - before.total - (after.idle - before.idle))) / (after.total - before.total);
}

/** CPU time (ms, user + system) a process has used so far (Linux `/proc/<pid>/stat`). */
export function processCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After "pid (comm) ": state is field 3, utime field 14, stime field 15 (1-based, man proc).
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return NaN;
  }
}

/**
 * CPU time (ms) used so far by all PostgreSQL server processes on this machine, including
 * backends that have exited (their time moves to the postmaster's cutime/cstime when reaped).
 * Linux only; NaN elsewhere or when /proc cannot be read.
 */
export function postgresCpuMs(): number {
  let total = 0;
  let found = false;
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      } catch {
        continue; // exited meanwhile
      }
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (comm !== 'postgres') continue;
      found = true;
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    }
  } catch {
    return NaN;
  }
  return found ? (total * 1000) / 100 : NaN;
}

export interface RuntimeStats {
  gcCount: number;
  gcTotalMs: number;
  gcMaxMs: number;
  /** Pauses of the major (mark-compact) collector. */
  gcMajorCount: number;
  gcMajorMaxMs: number;
  /** Event-loop delay (how late a 1 ms timer fires), ms. */
  loopDelayP99: number;
  loopDelayMax: number;
  /** Every pause as [start, end] on this process's performance.now() clock. */
  pauses: [number, number][];
}

/** Records garbage-collection pauses and event-loop delay of this process from now until `stop()`. */
export function watchRuntime(): { stop(): RuntimeStats } {
  const gc: { start: number; ms: number; major: boolean }[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind ?? 0;
      gc.push({ start: entry.startTime, ms: entry.duration, major: kind === constants.NODE_PERFORMANCE_GC_MAJOR });
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  return {
    stop() {
      observer.disconnect();
      loop.disable();
      const major = gc.filter((g) => g.major);
      return {
        gcCount: gc.length,
        gcTotalMs: gc.reduce((a, g) => a + g.ms, 0),
        gcMaxMs: Math.max(0, ...gc.map((g) => g.ms)),
        gcMajorCount: major.length,
        gcMajorMaxMs: Math.max(0, ...major.map((g) => g.ms)),
        loopDelayP99: loop.percentile(99) / 1e6,
        loopDelayMax: loop.max / 1e6,
        pauses: gc.map((g) => [g.start, g.start + g.ms]),
      };
    },
  };
}

export const formatRuntime = (r: RuntimeStats) =>
  `GC ${r.gcCount}× (total ${r.gcTotalMs.toFixed(1)} ms, longest ${r.gcMaxMs.toFixed(1)} ms; ${r.gcMajorCount} major, longest ${r.gcMajorMaxMs.toFixed(1)} ms); ` +
  `event-loop delay p99 ${r.loopDelayP99.toFixed(1)} / max ${r.loopDelayMax.toFixed(1)} ms`;

/** New PostgreSQL connections made by this process (counted once {@link countConnections} ran). */
export const connections = { opened: 0, connectMs: [] as number[] };

/**
 * Counts connections node-postgres opens in this process (pool growth, reconnects) and how
 * long each took, by wrapping `pg.Client.prototype.connect` (callback and promise styles).
 */
export function countConnections(): void {
  const proto = pg.Client.prototype as unknown as { connect: (...args: unknown[]) => unknown; __benchCounted?: boolean };
  if (proto.__benchCounted) return;
  proto.__benchCounted = true;
  const original = proto.connect;
  proto.connect = function (this: unknown, ...args: unknown[]) {
    connections.opened++;
    const t0 = performance.now();
    const callback = args[0];
    if (typeof callback === 'function') {
      return original.call(this, (error: unknown) => {
        connections.connectMs.push(performance.now() - t0);
        (callback as (error: unknown) => void)(error);
      });
    }
    return (original.apply(this, args) as Promise<void>).then(() => void connections.connectMs.push(performance.now() - t0));
  };
}

// ---------------------------------------------------------------- instrumented HTTP server

/** What the server side saw between `reset()` and `report()`. */
export interface ServerReport {
  /** From the request reaching the Hono handler to its Response (body not yet sent). */
  handler: Summary;
  /** `waitless.submit()` inside the handler (validation + the INSERT round trip). */
  submit: Summary;
  runtime: RuntimeStats;
  connectionsOpened: number;
  connect: Summary;
}

/**
 * Serves the HTTP API on a free loopback port, as test/helpers.ts startServer does, timing
 * each request inside the server and each `waitless.submit()` call it makes.
 */
export async function serveInstrumented(waitless: Waitless): Promise<{ url: string; reset(): void; report(): ServerReport; close(): Promise<void> }> {
  countConnections();
  let handler: number[] = [];
  let submits: number[] = [];
  const original = waitless.submit.bind(waitless);
  waitless.submit = async (...args: Parameters<Waitless['submit']>) => {
    const t0 = performance.now();
    try {
      return await original(...args);
    } finally {
      submits.push(performance.now() - t0);
    }
  };
  // Capacity is measured, not the per-tenant limits (one tenant sends everything).
  const app = createHttpApp(waitless, { auth: { mode: 'none', tenant: 'default' }, tenantLimits: { submitsPerSecond: 0, streamsPerKey: 0 } });
  const fetch = async (request: Request) => {
    const t0 = performance.now();
    const response = await app.fetch(request);
    handler.push(performance.now() - t0);
    return response;
  };
  const server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  let runtime = watchRuntime();
  let connected = { opened: connections.opened, measured: connections.connectMs.length };
  return {
    url: `http://127.0.0.1:${port}`,
    reset() {
      handler = [];
      submits = [];
      runtime.stop();
      runtime = watchRuntime();
      connected = { opened: connections.opened, measured: connections.connectMs.length };
    },
    report() {
      return {
        handler: summarize(handler),
        submit: summarize(submits),
        runtime: runtime.stop(),
        connectionsOpened: connections.opened - connected.opened,
        connect: summarize(connections.connectMs.slice(connected.measured)),
      };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        if ('closeAllConnections' in server) server.closeAllConnections();
      }),
  };
}

export const formatServerReport = (r: ServerReport) =>
  `server side: handler p50 ${ms(r.handler.p50)} / p99 ${ms(r.handler.p99)} / max ${ms(r.handler.max)} ms, ` +
  `of which submit() p50 ${ms(r.submit.p50)} / p99 ${ms(r.submit.p99)} / max ${ms(r.submit.max)} ms; ` +
  `${formatRuntime(r.runtime)}; new PostgreSQL connections: ${r.connectionsOpened}` +
  (r.connectionsOpened ? ` (connect p50 ${ms(r.connect.p50)} / max ${ms(r.connect.max)} ms)` : '');

// ---------------------------------------------------------------- helper processes

/** A child process spoken to in lines: commands on its stdin, one JSON line per answer on its stdout. */
export interface LineChild {
  readonly pid: number;
  send(line: string): void;
  next<T>(): Promise<T>;
  /** Closes its stdin (its cue to finish) and waits for it to exit. */
  close(): Promise<void>;
}

export function spawnLineChild(script: URL, args: string[]): LineChild {
  const child = spawn(process.execPath, [script.pathname, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, LOG_LEVEL: 'silent' },
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const iterator = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return {
    pid: child.pid!,
    send: (line) => void child.stdin.write(`${line}\n`),
    async next<T>() {
      const { value, done } = await iterator.next();
      if (done) throw new Error(`${script.pathname} ended unexpectedly`);
      return JSON.parse(value) as T;
    },
    async close() {
      child.stdin.end();
      await exited;
    },
  };
}

/** What bench/canary.ts saw: stalls as [start, end] in epoch ms (a late timer: the machine; a slow INSERT: PostgreSQL). */
export interface CanaryReport {
  stalls: { timer: [number, number][]; insert: [number, number][] };
  insert: Summary;
  lateness: Summary;
}

/** Starts bench/canary.ts (with a PostgreSQL URL: timer + INSERT probe; without: timer only). */
export async function startCanary(databaseUrl: string | undefined): Promise<LineChild> {
  const canary = spawnLineChild(new URL('./canary.ts', import.meta.url), databaseUrl ? ['--database', databaseUrl] : []);
  await canary.next();
  return canary;
}

/** Which spans (epoch ms) overlap one of the intervals (epoch ms). */
export const overlapping = (spans: [number, number][], intervals: [number, number][]) =>
  spans.map(([a, b]) => intervals.some(([s, e]) => s < b && e > a));

/** Prints what the figures were measured on. */
export async function printMachine(databaseUrl: string | undefined): Promise<void> {
  let pgVersion = '(not used)';
  if (databaseUrl) {
    try {
      pgVersion = await withClient(databaseUrl, async (c) => {
        const r = await c.query<{ v: string; sc: string }>(`SELECT current_setting('server_version') AS v, current_setting('synchronous_commit') AS sc`);
        return `${r.rows[0]!.v} (synchronous_commit=${r.rows[0]!.sc})`;
      });
    } catch (error) {
      pgVersion = `(unreachable: ${(error as Error).message})`;
    }
  }
  const pgliteVersion = (JSON.parse(readFileSync(new URL('../node_modules/@electric-sql/pglite/package.json', import.meta.url), 'utf8')) as { version: string })
    .version;
  const [l1, l5] = loadavg();
  console.log(
    [
      `date:       ${new Date().toISOString()}`,
      `cpu:        nproc=${availableParallelism()} (${cpus()[0]?.model ?? '?'})`,
      `memory:     ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
      `node:       ${process.version}`,
      `postgresql: ${pgVersion}`,
      `pglite:     ${pgliteVersion}`,
      `load avg:   ${l1?.toFixed(2)} (1 min), ${l5?.toFixed(2)} (5 min) at start`,
    ].join('\n'),
  );
}

/** A markdown table, printed so it can be pasted into docs/benchmarks.md. */
export function printTable(header: string[], rows: (string | number)[][]): void {
  console.log(`| ${header.join(' | ')} |`);
  console.log(`|${header.map(() => '---').join('|')}|`);
  for (const row of rows) console.log(`| ${row.join(' | ')} |`);
}
