/**
 * Submit latency: how long the caller waits for the acknowledgement of a new job, at a steady
 * open-loop rate (requests are sent on a fixed schedule, whether or not earlier ones have
 * answered), (a) through the library (`waitless.submit`) and (b) through HTTP
 * (`POST /v1/jobs/:name` over loopback with fetch, which keeps connections alive).
 * No worker runs: only the acknowledgement is measured. On PostgreSQL, `--mode sql` gives the
 * floor: pgbench at the same rate (Poisson arrivals, 4 connections) for a plain single-row
 * INSERT and for Waitless's submit statement, with no Node in the path (`--protocol`: pgbench's,
 * default `prepared` as the pg driver since commit 2b6a7f9; `extended` re-parses every statement).
 *
 *   node bench/submit.ts [--backend postgres|pglite|all] [--mode sql|library|http|all]
 *                        [--rate 200] [--duration 10] [--warmup 2] [--server process|inline]
 *                        [--database URL] [--protocol prepared|extended]
 *
 * Environment (used when the flag is absent): WAITLESS_BENCH_RATE, WAITLESS_BENCH_DURATION,
 * WAITLESS_BENCH_DATABASE_URL. `--server process` (default) runs the HTTP API in a child process
 * (bench/http-server.ts) so the load generator does not share its event loop; `inline` serves it
 * from this process, as test/helpers.ts startServer does.
 */
import { parseArgs } from 'node:util';
import {
  type Backend,
  busyPercent,
  type CanaryReport,
  connections,
  countConnections,
  cpuTimes,
  DEFAULT_POSTGRES_URL,
  dropSchema,
  formatRuntime,
  formatServerReport,
  freshSchema,
  type LineChild,
  ms,
  numberOption,
  openEngine,
  overlapping,
  parseBackends,
  printMachine,
  printTable,
  type ServerReport,
  serveInstrumented,
  sleep,
  spawnLineChild,
  startCanary,
  summarize,
  watchRuntime,
} from './common.ts';
import * as jobs from './jobs.ts';
import { createRawTable, pgbench, RAW_INSERT, submitScript } from './pgbench.ts';

const { values } = parseArgs({
  options: {
    backend: { type: 'string' },
    mode: { type: 'string' },
    rate: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    server: { type: 'string' },
    database: { type: 'string' },
    protocol: { type: 'string' },
  },
});
const backends = parseBackends(values.backend);
const modes = !values.mode || values.mode === 'all' ? ['sql', 'library', 'http'] : values.mode.split(',');
const rate = numberOption(values.rate, 'WAITLESS_BENCH_RATE', 200);
const seconds = numberOption(values.duration, 'WAITLESS_BENCH_DURATION', 10);
const warmupSeconds = values.warmup === '0' ? 0 : numberOption(values.warmup, 'WAITLESS_BENCH_WARMUP', 2);
const serverMode = values.server ?? 'process';
const databaseUrl = values.database ?? DEFAULT_POSTGRES_URL;
/** pgbench's protocol for `--mode sql`: `prepared`, as the pg driver runs its statements since commit 2b6a7f9. */
const protocol = (values.protocol ?? 'prepared') as 'prepared' | 'extended';
if (protocol !== 'prepared' && protocol !== 'extended') throw new Error('--protocol: prepared or extended');
if (serverMode !== 'process' && serverMode !== 'inline') throw new Error('--server: process or inline');

interface LoopResult {
  latencies: number[];
  /** [start, end] of each answered call, in epoch ms. */
  spans: [number, number][];
  lateness: number[];
  errors: number;
  firstError?: string;
  elapsedMs: number;
}

/**
 * Calls `send(i)` at `rate` per second for `durationS` seconds on a fixed schedule. Latency is
 * taken from the moment each call is made; `lateness` is how far that moment was behind the
 * schedule (timer granularity, or a busy event loop).
 */
async function openLoop(ratePerS: number, durationS: number, send: (i: number) => Promise<void>): Promise<LoopResult> {
  const interval = 1000 / ratePerS;
  const total = Math.round(ratePerS * durationS);
  const result: LoopResult = { latencies: [], spans: [], lateness: [], errors: 0, elapsedMs: 0 };
  const pending: Promise<void>[] = [];
  const start = performance.now() + 2;
  for (let i = 0; i < total; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait >= 1) await sleep(Math.floor(wait));
    const t0 = performance.now();
    result.lateness.push(Math.max(0, t0 - due));
    pending.push(
      send(i).then(
        () => {
          const t1 = performance.now();
          result.latencies.push(t1 - t0);
          result.spans.push([performance.timeOrigin + t0, performance.timeOrigin + t1]);
        },
        (error: unknown) => {
          result.errors++;
          result.firstError ??= error instanceof Error ? error.message : String(error);
        },
      ),
    );
  }
  await Promise.all(pending);
  result.elapsedMs = performance.now() - start;
  return result;
}

type Row = (string | number)[];

function row(backend: Backend, path: string, r: LoopResult, busy: number, stalls: [number, number][]): Row {
  const s = summarize(r.latencies);
  const late = summarize(r.lateness);
  const hit = overlapping(r.spans, stalls);
  const clear = summarize(r.latencies.filter((_, i) => !hit[i]));
  return [
    backend,
    path,
    rate,
    s.n,
    r.errors,
    ms(s.p50),
    ms(s.p90),
    ms(s.p99),
    ms(s.max),
    ((s.n + r.errors) / (r.elapsedMs / 1000)).toFixed(0),
    ms(late.p99),
    Number.isFinite(busy) ? busy.toFixed(0) : '-',
    `${ms(clear.p99)} (${hit.filter(Boolean).length})`,
  ];
}

const notes: string[] = [];

interface Measured {
  result: LoopResult;
  busy: number;
  client: string;
  canary: CanaryReport;
}

/** Warm-up (not recorded), then the measured open loop; `reset` runs between the two. */
async function measure(send: (i: number) => Promise<void>, reset: () => Promise<void> | void, canary: LineChild): Promise<Measured> {
  if (warmupSeconds > 0) await openLoop(rate, warmupSeconds, (i) => send(-1 - i));
  await reset();
  canary.send('reset');
  const opened = connections.opened;
  const runtime = watchRuntime();
  const before = cpuTimes();
  const result = await openLoop(rate, seconds, send);
  const busy = busyPercent(before, cpuTimes());
  const stats = runtime.stop();
  canary.send('report');
  const report = await canary.next<CanaryReport>();
  // Which calls had a garbage-collection pause of this (calling) process inside them?
  const pauses = stats.pauses.map(([a, b]): [number, number] => [performance.timeOrigin + a, performance.timeOrigin + b]);
  const hit = overlapping(result.spans, pauses);
  const clear = summarize(result.latencies.filter((_, i) => !hit[i]));
  const client =
    `${formatRuntime(stats)}; ${hit.filter(Boolean).length} of ${hit.length} calls overlapped one of these GC pauses, ` +
    `without them p99 ${ms(clear.p99)} / max ${ms(clear.max)} ms; new PostgreSQL connections: ${connections.opened - opened}`;
  if (result.firstError) console.error(`  first error: ${result.firstError}`);
  return { result, busy, client, canary: report };
}

const formatCanary = (c: CanaryReport) =>
  `canary: ${c.stalls.insert.length} INSERTs and ${c.stalls.timer.length} timer wake-ups > 10 ms; its INSERT p50 ${ms(c.insert.p50)} / ` +
  `p99 ${ms(c.insert.p99)} / max ${ms(c.insert.max)} ms, its 10 ms timer late by p99 ${ms(c.lateness.p99)} / max ${ms(c.lateness.max)} ms`;

/** Stalls that matter to a backend: PGlite does not use the PostgreSQL server, only the machine. */
const stallsFor = (backend: Backend, c: CanaryReport) => (backend === 'postgres' ? [...c.stalls.timer, ...c.stalls.insert] : c.stalls.timer);

async function libraryRun(backend: Backend, canary: LineChild): Promise<Row> {
  const engine = await openEngine(backend, { jobs, databaseUrl });
  try {
    const m = await measure(
      async (n) => void (await engine.waitless.submit(jobs.noop, { n })),
      () => {},
      canary,
    );
    notes.push(`${backend}, library: ${m.client}`);
    notes.push(`${backend}, library: ${formatCanary(m.canary)}`);
    return row(backend, 'library submit()', m.result, m.busy, stallsFor(backend, m.canary));
  } finally {
    await engine.close();
  }
}

/**
 * The floor under the figures above: the same rate through pgbench (C, no Node), for a plain
 * single-row INSERT and for Waitless's own submit statement. PostgreSQL only.
 */
async function sqlRuns(canary: LineChild): Promise<Row[]> {
  const raw = freshSchema();
  await createRawTable(databaseUrl, raw);
  const engine = await openEngine('postgres', { jobs, databaseUrl });
  await engine.waitless.close(); // only the migrated schema is wanted
  try {
    const rows: Row[] = [];
    for (const [label, script, schema] of [
      ['pgbench: plain INSERT', RAW_INSERT, raw],
      ['pgbench: Waitless submit SQL', submitScript(), engine.schema],
    ] as const) {
      if (warmupSeconds > 0) await pgbench(script, { databaseUrl, schema, clients: 4, seconds: Math.ceil(warmupSeconds), rate, protocol });
      canary.send('reset');
      const before = cpuTimes();
      const r = await pgbench(script, { databaseUrl, schema, clients: 4, seconds: Math.round(seconds), rate, protocol });
      const busy = busyPercent(before, cpuTimes());
      canary.send('report');
      const report = await canary.next<CanaryReport>();
      notes.push(`postgres, ${label}: $ ${r.command}`);
      notes.push(`postgres, ${label}: ${formatCanary(report)}`);
      const loop: LoopResult = { latencies: r.latencies, spans: r.spans, lateness: [], errors: 0, elapsedMs: seconds * 1000 };
      rows.push(row('postgres', label, loop, busy, stallsFor('postgres', report)));
    }
    return rows;
  } finally {
    await dropSchema(databaseUrl, raw);
    await dropSchema(databaseUrl, engine.schema);
  }
}

interface Api {
  url: string;
  reset(): Promise<void>;
  report(): Promise<ServerReport>;
  close(): Promise<void>;
}

/** Starts the HTTP API (child process or inline) on a fresh schema / in-memory PGlite. */
async function startApi(backend: Backend): Promise<Api> {
  if (serverMode === 'inline') {
    const engine = await openEngine(backend, { jobs, databaseUrl });
    const server = await serveInstrumented(engine.waitless);
    return {
      url: server.url,
      reset: async () => server.reset(),
      report: async () => server.report(),
      async close() {
        await server.close();
        await engine.close();
      },
    };
  }
  const schema = freshSchema();
  const child = spawnLineChild(new URL('./http-server.ts', import.meta.url), ['--backend', backend, '--schema', schema, '--database', databaseUrl]);
  const { url } = await child.next<{ url: string }>();
  return {
    url,
    async reset() {
      child.send('reset');
      await sleep(50);
    },
    async report() {
      child.send('report');
      return child.next<ServerReport>();
    },
    async close() {
      await child.close();
      if (backend === 'postgres') await dropSchema(databaseUrl, schema);
    },
  };
}

async function httpRun(backend: Backend, canary: LineChild): Promise<Row> {
  const api = await startApi(backend);
  try {
    const endpoint = `${api.url}/v1/jobs/${jobs.noop.name}`;
    const m = await measure(async (n) => {
      const response = await fetch(endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input: { n } }),
      });
      const body = await response.text();
      if (response.status !== 202) throw new Error(`HTTP ${response.status}: ${body.slice(0, 200)}`);
    }, () => api.reset(), canary);
    notes.push(`${backend}, HTTP (${serverMode} server): ${formatServerReport(await api.report())}`);
    notes.push(`${backend}, HTTP (${serverMode} server): load generator: ${m.client}`);
    notes.push(`${backend}, HTTP (${serverMode} server): ${formatCanary(m.canary)}`);
    return row(backend, `HTTP POST (${serverMode} server)`, m.result, m.busy, stallsFor(backend, m.canary));
  } finally {
    await api.close();
  }
}

countConnections();
await printMachine(backends.includes('postgres') ? databaseUrl : undefined);
console.log(`rate ${rate}/s for ${seconds} s after ${warmupSeconds} s of warm-up; no worker running; latencies in ms\n`);
const rows: Row[] = [];
for (const backend of backends) {
  // The canary probes the PostgreSQL server even for PGlite runs: its timer catches stalls of the VM.
  const canary = await startCanary(databaseUrl);
  for (const mode of modes) {
    if (mode === 'sql') {
      if (backend === 'postgres') rows.push(...(await sqlRuns(canary)));
    } else if (mode === 'library') rows.push(await libraryRun(backend, canary));
    else if (mode === 'http') rows.push(await httpRun(backend, canary));
    else throw new Error(`--mode: sql, library, http or all, got "${mode}"`);
  }
  await canary.close();
}
printTable(
  ['backend', 'path', 'rate/s', 'ok', 'errors', 'p50', 'p90', 'p99', 'max', 'achieved/s', 'sched lag p99', 'cpu busy %', 'p99 w/o canary stalls (calls left out)'],
  rows,
);
console.log();
for (const note of notes) console.log(`- ${note}`);
