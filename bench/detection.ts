/**
 * Missed-webhook detection: how long after a job completes does the consumer apply its result,
 * and how many status requests per job does it make to get there?
 *
 *   node bench/detection.ts [--jobs 1000] [--factor 600] [--loss 0.05] [--seed 1] [--spread 240]
 *                           [--paths old,new,watch,watch+new] [--database URL]
 *
 * Real server (createWaitless on PostgreSQL in a fresh schema, the HTTP API through
 * @hono/node-server, a worker and the webhook dispatcher), real client (WaitlessClient over
 * loopback HTTP), real signed webhooks to a real receiver that hands them to the reconciler.
 *
 * The workload, the same for every path: `--jobs` jobs submitted at random moments over
 * `--spread` minutes (240: about 4 jobs a minute, 2 a second once scaled), lasting 30 s to 35 min (20 % 0.5–5 min, 10 % 5–10 min, 55 % 10–20 min,
 * 15 % 20–35 min: "most analyses finish in the 10 to 20 minute range"). A seeded `--loss`
 * share of them (exactly 5 % by default, the same jobs for every path) has its webhook lost:
 * the receiver answers 503 and the sender has no retries left (`retrySchedule: []`), as when a
 * sender gave up during a receiver's deploy.
 *
 * Time is divided by `--factor` (600: 35 min → 3.5 s; a status check due after 480 s comes
 * after 0.8 s): job durations, submit moments and every status-check delay. But the latency of
 * a webhook, of an SSE event and of applying a result is processing and network time, which
 * does not shrink with the factor. So the delay is reported in real-world seconds as
 *
 *   (when the consumer would first have learnt of the completion, in real time)
 *     + (the measured time to apply the result once learnt)
 *
 * where the first term is the earliest of the channels the job had: the webhook's arrival (as
 * measured, not lost), the watching client's terminal event (as measured), or the first status
 * check that found the job done (measured × factor: its wait was a scheduled one). Taking the
 * earliest in real time matters: in the scaled run a check sometimes lands in the few ms a
 * webhook is in flight (those ms are seconds once scaled back), and catches a job whose
 * webhook, in real time, would have been first by minutes.
 *
 * Status requests are counted at the server: a wrapper around the HTTP handler counts
 * `GET /v1/jobs/:id` (status) and `GET /v1/jobs/:id/events` (SSE streams) per job.
 *
 * The paths:
 *  - old        webhook + status checks at 900 s, then 300 s × 12 (the seed's first schedule)
 *  - new        webhook + status checks at 60, 60, 120, 240, 480 × 8 s (the seed's new
 *               schedule, which is the reconciler's DEFAULT_CADENCE)
 *  - watch      webhook + a watching client: `client.watch(id)` over SSE learns of the
 *               completion the moment it is written, then one `client.get(id)` hands the job
 *               to `reconciler.settle()`. The reconciler tracks the job with a single backstop
 *               check at the end of the 72-minute window (so no polling while it runs).
 *  - watch+new  the same watch, with the reconciler on DEFAULT_CADENCE as the durable safety
 *               net (a watch lives in one process; the reconciler's schedule survives a restart).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { serve, type ServerType } from '@hono/node-server';
import { z } from 'zod';
import { WaitlessClient, isTerminalEvent } from '../src/client/index.ts';
import { createHttpApp } from '../src/http/app.ts';
import { defineJob } from '../src/job/definition.ts';
import { createReconciler, DEFAULT_CADENCE, type Reconciler } from '../src/reconciler/index.ts';
import { toMs } from '../src/job/duration.ts';
import { prng } from '../test/prng.ts';
import { DEFAULT_POSTGRES_URL, dropSchema, freshSchema, numberOption, openEngine, printMachine, printTable, sleep, summarize, withClient } from './common.ts';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string' },
    factor: { type: 'string' },
    loss: { type: 'string' },
    seed: { type: 'string' },
    spread: { type: 'string' },
    paths: { type: 'string' },
    database: { type: 'string' },
  },
});
const JOBS = numberOption(values.jobs, 'WAITLESS_BENCH_JOBS', 1000);
const FACTOR = numberOption(values.factor, 'WAITLESS_BENCH_FACTOR', 600);
const LOSS = values.loss === '0' ? 0 : numberOption(values.loss, 'WAITLESS_BENCH_LOSS', 0.05);
const SEED = numberOption(values.seed, 'WAITLESS_BENCH_SEED', 1);
// Scaling time scales the load too: 1000 jobs over 240 min is ~40 submits a second in the run.
// Crowding them more makes the run measure a saturated machine instead of the schedules.
const SPREAD_MIN = numberOption(values.spread, 'WAITLESS_BENCH_SPREAD', 240);
const databaseUrl = values.database ?? DEFAULT_POSTGRES_URL;

// ---------------------------------------------------------------- paths

interface Path {
  key: string;
  label: string;
  /** Status-check delays, real seconds. */
  cadence: number[];
  watch: boolean;
}
const NEW = DEFAULT_CADENCE.map((d) => toMs(d) / 1000); // 60, 60, 120, 240, 480 × 8
const WINDOW = NEW.reduce((a, b) => a + b, 0); // 72 min
const PATHS: Path[] = [
  { key: 'old', label: 'Old schedule: webhook + checks at 900 s, then 300 s × 12', cadence: [900, ...Array<number>(12).fill(300)], watch: false },
  { key: 'new', label: 'New schedule (= reconciler DEFAULT_CADENCE): webhook + checks at 60, 60, 120, 240, 480 × 8 s', cadence: NEW, watch: false },
  { key: 'watch', label: 'Waitless watching client: webhook + watch() over SSE, one backstop check at 72 min', cadence: [WINDOW], watch: true },
  { key: 'watch+new', label: 'Waitless watching client + reconciler on DEFAULT_CADENCE', cadence: NEW, watch: true },
];
const chosen = values.paths ? values.paths.split(',').map((k) => PATHS.find((p) => p.key === k.trim()) ?? fail(`unknown path "${k}"`)) : PATHS;

function fail(message: string): never {
  throw new Error(message);
}

// ---------------------------------------------------------------- workload (seeded)

interface Planned {
  index: number;
  /** Real seconds. */
  submitAt: number;
  duration: number;
  lost: boolean;
}

function workload(): Planned[] {
  const random = prng(SEED);
  const between = (lo: number, hi: number) => lo + random() * (hi - lo);
  const minutes = () => {
    const r = random();
    if (r < 0.2) return between(0.5, 5);
    if (r < 0.3) return between(5, 10);
    if (r < 0.85) return between(10, 20);
    return between(20, 35);
  };
  const jobs: Planned[] = Array.from({ length: JOBS }, (_, index) => ({ index, submitAt: random() * SPREAD_MIN * 60, duration: minutes() * 60, lost: false }));
  // Exactly round(JOBS × LOSS) lost webhooks, chosen by a seeded shuffle.
  const order = jobs.map((j) => j.index);
  for (let i = order.length - 1; i > 0; i--) {
    const k = Math.floor(random() * (i + 1));
    [order[i], order[k]] = [order[k]!, order[i]!];
  }
  for (const i of order.slice(0, Math.round(JOBS * LOSS))) jobs[i]!.lost = true;
  return jobs;
}

// ---------------------------------------------------------------- the service

const detect = defineJob({
  name: 'detect',
  input: z.object({ ms: z.number().min(0) }),
  retry: { attempts: 1 },
  timeout: '1h',
  async run({ ms }, ctx) {
    await sleep(ms, undefined, { signal: ctx.signal });
    return { ok: true };
  },
});

const engine = await openEngine('postgres', {
  jobs: [detect],
  databaseUrl,
  maxConnections: 20,
  // One attempt only: a webhook the receiver refuses stays lost, as when the sender gave up.
  webhooks: { retrySchedule: [], ssrf: { allow: ['127.0.0.1'] }, concurrency: 50 },
});
const { waitless } = engine;
waitless.startWorker({ concurrency: JOBS + 10 });

/** Per job id: status GETs and SSE streams the server answered. */
const requests = new Map<string, { status: number; events: number }>();
const app = createHttpApp(waitless, { auth: { mode: 'none', tenant: 'default' }, tenantLimits: { submitsPerSecond: 0, streamsPerKey: 0 } });
const counting = (request: Request) => {
  if (request.method === 'GET') {
    const m = /^\/v1\/jobs\/([0-9a-f-]{36})(\/events)?$/.exec(new URL(request.url).pathname);
    if (m) {
      const entry = requests.get(m[1]!) ?? { status: 0, events: 0 };
      if (m[2]) entry.events++;
      else entry.status++;
      requests.set(m[1]!, entry);
    }
  }
  return app.fetch(request);
};
const server = await new Promise<ServerType>((resolve) => {
  const s = serve({ fetch: counting, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
});
const apiUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const client = new WaitlessClient({ baseUrl: apiUrl });
const secrets = (await waitless.webhooks.secrets('default')).map((s) => s.secret);

// ---------------------------------------------------------------- the consumer's receiver

let current: { reconciler: Reconciler; outcomes: Map<string, Outcome> } | undefined;
let webhooksReceived = 0;
let webhooksDropped = 0;
const receiver = createServer((req: IncomingMessage, res: ServerResponse) => {
  let body = '';
  req.on('data', (chunk: Buffer) => (body += chunk.toString()));
  req.on('end', () => {
    webhooksReceived++;
    const id = (JSON.parse(body) as { data?: { id?: string } }).data?.id ?? '';
    const outcome = current?.outcomes.get(id);
    if (!current || !outcome || outcome.lost) {
      webhooksDropped++;
      res.writeHead(503).end(); // lost: the sender has no retry left
      return;
    }
    outcome.hookAt ??= Date.now();
    current.reconciler.handleWebhook({ headers: req.headers, body }).then(
      () => res.writeHead(204).end(),
      () => res.writeHead(400).end(),
    );
  });
});
await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;

// ---------------------------------------------------------------- one path

interface Outcome {
  index: number;
  lost: boolean;
  applied: number;
  appliedAt?: number;
  /** What settled it in the scaled run: webhook, watch or poll. */
  settledBy?: string;
  state?: string;
  /** When each channel told the consumer the job was done (Date.now()). */
  hookAt?: number;
  watchAt?: number;
  checkAt?: number;
}

interface PathResult {
  path: Path;
  outcomes: Map<string, Outcome>;
  finishedAt: Map<string, number>;
  seconds: number;
}

async function run(path: Path, plan: Planned[]): Promise<PathResult> {
  const schema = freshSchema('detect_consumer');
  const outcomes = new Map<string, Outcome>();
  const byWatch = new Set<string>();
  const reconciler = await createReconciler({
    // The client, noting when a status check first finds the job done.
    source: {
      get: async (id) => {
        const job = await client.get(id);
        const outcome = outcomes.get(id);
        if (job.done && outcome) outcome.checkAt ??= Date.now();
        return job;
      },
    },
    database: databaseUrl,
    schema,
    cadence: path.cadence.map((s) => (s * 1000) / FACTOR),
    // The default 1 s, scaled too (at least 2 ms): how often due checks are looked for.
    pollInterval: Math.max(2, Math.round(1000 / FACTOR)),
    webhookSecrets: secrets,
    apply: async (job) => {
      const outcome = outcomes.get(job.id)!;
      outcome.appliedAt = Date.now();
      outcome.applied++;
    },
    onStatus: (tracked) => {
      const outcome = outcomes.get(tracked.jobId);
      if (outcome) {
        outcome.state = tracked.state;
        outcome.settledBy = tracked.settledBy;
      }
    },
  });
  reconciler.start();
  current = { reconciler, outcomes };
  const watches: Promise<void>[] = [];

  const watch = async (id: string) => {
    for await (const event of client.watch(id)) if (isTerminalEvent(event)) break;
    outcomes.get(id)!.watchAt = Date.now();
    if (await reconciler.settle(await client.get(id), 'poll')) byWatch.add(id);
  };

  const t0 = performance.now();
  await Promise.all(
    plan.map(async (p) => {
      await sleep(Math.max(0, t0 + (p.submitAt * 1000) / FACTOR - performance.now()));
      const job = await client.submit('detect', { ms: (p.duration * 1000) / FACTOR }, { webhook: { url: hookUrl } });
      outcomes.set(job.id, { index: p.index, lost: p.lost, applied: 0 });
      await reconciler.track(job.id);
      if (path.watch) watches.push(watch(job.id).catch((error: unknown) => console.error(`watch ${job.id}: ${String(error)}`)));
    }),
  );
  // Every job is settled or given up by the end of its check window; what is left after that
  // (and a margin) is reported as not applied.
  const window = path.cadence.reduce((a, b) => a + b, 0);
  const deadline = performance.now() + ((window + 60) * 1000) / FACTOR + 10_000;
  while ([...outcomes.values()].some((o) => o.state === undefined) && performance.now() < deadline) await sleep(20);
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(watches);
  current = undefined;
  await reconciler.close();
  await dropSchema(databaseUrl, schema);
  for (const id of byWatch) outcomes.get(id)!.settledBy = 'watch';

  const finishedAt = new Map<string, number>();
  await withClient(databaseUrl, async (c) => {
    const rows = await c.query<{ id: string; finished_at: Date }>(`SELECT id::text, finished_at FROM ${engine.schema}.jobs WHERE id = ANY($1::uuid[])`, [[...outcomes.keys()]]);
    for (const row of rows.rows) finishedAt.set(row.id, row.finished_at.getTime());
  });
  return { path, outcomes, finishedAt, seconds };
}

// ---------------------------------------------------------------- report

const fmt = (s: number) => (!Number.isFinite(s) ? '-' : s < 10 ? s.toFixed(2) : s.toFixed(0));

function report(results: PathResult[]): void {
  const rows: (string | number)[][] = [];
  const summary = new Map<string, { p99: number; gets: number; twice: number; notApplied: number }>();
  const raw: (string | number)[][] = [];
  for (const { path, outcomes, finishedAt } of results) {
    const delays: number[] = [];
    const lostDelays: number[] = [];
    const first = new Map<string, number>();
    const measured = new Map<string, number[]>();
    let status = 0;
    let events = 0;
    let notApplied = 0;
    let twice = 0;
    for (const [id, o] of outcomes) {
      const r = requests.get(id);
      status += r?.status ?? 0;
      events += r?.events ?? 0;
      if (o.applied > 1) twice++;
      const fin = finishedAt.get(id);
      if (o.appliedAt === undefined || fin === undefined || o.settledBy === undefined) {
        notApplied++;
        continue;
      }
      measured.set(o.settledBy, [...(measured.get(o.settledBy) ?? []), o.appliedAt - fin]);
      // When each channel told the consumer, in real-world ms after the completion.
      const channels: Array<[string, number]> = [];
      if (o.hookAt !== undefined) channels.push(['webhook', o.hookAt - fin]);
      if (o.watchAt !== undefined) channels.push(['watch', o.watchAt - fin]);
      if (o.checkAt !== undefined) channels.push(['check', (o.checkAt - fin) * FACTOR]);
      const [channel, learnt] = channels.reduce((a, b) => (b[1] < a[1] ? b : a));
      first.set(channel, (first.get(channel) ?? 0) + 1);
      // Plus the time the actual settlement took once its channel had spoken (measured).
      const heardAt = { webhook: o.hookAt, watch: o.watchAt, poll: o.checkAt }[o.settledBy as 'webhook' | 'watch' | 'poll'] ?? o.appliedAt;
      const delay = (learnt + Math.max(0, o.appliedAt - heardAt)) / 1000;
      delays.push(delay);
      if (o.lost) lostDelays.push(delay);
    }
    const d = summarize(delays);
    const l = summarize(lostDelays);
    const n = outcomes.size;
    const counts = ['webhook', 'watch', 'check'].map((k) => first.get(k) ?? 0).join(' / ');
    const flags = (notApplied ? ` (${notApplied} not applied)` : '') + (twice ? ` (${twice} applied twice!)` : '');
    summary.set(path.key, { p99: d.p99, gets: status / n, twice, notApplied });
    rows.push([path.key, counts + flags, fmt(d.p50), fmt(d.p99), fmt(d.max), `${fmt(l.p50)} / ${fmt(l.max)}`, (status / n).toFixed(2), (events / n).toFixed(2)]);
    for (const [key, list] of measured) {
      const s = summarize(list);
      raw.push([path.key, key === 'poll' ? 'check' : key, s.n, s.p50.toFixed(0), s.p99.toFixed(0), s.max.toFixed(0)]);
    }
  }
  console.log(`\n${JOBS} jobs of 30 s – 35 min over ${SPREAD_MIN} min, ${Math.round(JOBS * LOSS)} webhooks lost (${LOSS * 100} %), time ÷ ${FACTOR}, seed ${SEED}\n`);
  for (const r of results) console.log(`- **${r.path.key}**: ${r.path.label} (ran ${r.seconds.toFixed(1)} s)`);
  console.log('\nDelay from completion to applied, in real-world seconds (see the top of bench/detection.ts):\n');
  printTable(['Path', 'First told by webhook / watch / check', 'Delay p50 (s)', 'Delay p99 (s)', 'Delay max (s)', 'Lost-webhook jobs: p50 / max (s)', 'Status GETs per job', 'SSE streams per job'], rows);
  console.log('\nAs measured in the scaled run, by what settled the job there (ms, nothing multiplied):\n');
  printTable(['Path', 'Settled by', 'Jobs', 'p50 (ms)', 'p99 (ms)', 'max (ms)'], raw);
  const all = [...summary.values()];
  console.log(`\nApplied exactly once: ${all.every((x) => x.twice === 0 && x.notApplied === 0) ? 'yes, every job on every path' : 'NO (see the table)'}`);
  const base = summary.get('new');
  for (const key of ['watch', 'watch+new']) {
    const x = summary.get(key);
    if (!x || !base) continue;
    const ok = x.p99 <= 5 && x.gets < base.gets;
    console.log(`Target (p99 ≤ 5 s, fewer status GETs per job than "new"): ${key} ${ok ? 'meets it' : 'misses it'} (p99 ${fmt(x.p99)} s, ${x.gets.toFixed(2)} vs ${base.gets.toFixed(2)} GETs per job)`);
  }
}

await printMachine(databaseUrl);
console.log(`command:    node bench/detection.ts ${process.argv.slice(2).join(' ')}`.trimEnd());
const plan = workload();
const results: PathResult[] = [];
try {
  for (const path of chosen) {
    process.stderr.write(`running ${path.key}…\n`);
    results.push(await run(path, plan));
  }
  report(results);
  console.log(`\nwebhooks received ${webhooksReceived}, dropped ${webhooksDropped}`);
} finally {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    if ('closeAllConnections' in server) server.closeAllConnections();
  });
  receiver.close();
  await engine.close();
}
