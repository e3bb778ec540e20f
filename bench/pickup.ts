/**
 * Pickup latency: from just before `submit()` to the first line of the handler, on an idle
 * worker in the same process (both ends read performance.now()). One job at a time: submit,
 * wait for it to complete, pause, repeat.
 *
 *   node bench/pickup.ts [--backend postgres|pglite|all] [--iterations 300] [--gap 20]
 *                        [--database URL]
 *
 * `--gap` is the pause in ms between a job's completion and the next submit, so the worker is
 * idle (its post-job claim has returned) when the next job arrives. Environment (used when the
 * flag is absent): WAITLESS_BENCH_ITERATIONS, WAITLESS_BENCH_DATABASE_URL.
 */
import { parseArgs } from 'node:util';
import {
  type Backend,
  type CanaryReport,
  DEFAULT_POSTGRES_URL,
  type LineChild,
  ms,
  numberOption,
  openEngine,
  overlapping,
  parseBackends,
  printMachine,
  printTable,
  sleep,
  startCanary,
  summarize,
} from './common.ts';
import { probe, probeHook } from './jobs.ts';

const { values } = parseArgs({
  options: { backend: { type: 'string' }, iterations: { type: 'string' }, gap: { type: 'string' }, database: { type: 'string' } },
});
const backends = parseBackends(values.backend);
const iterations = numberOption(values.iterations, 'WAITLESS_BENCH_ITERATIONS', 300);
const gapMs = values.gap === '0' ? 0 : numberOption(values.gap, 'WAITLESS_BENCH_GAP', 20);
const databaseUrl = values.database ?? DEFAULT_POSTGRES_URL;
const WARMUP = 30;

async function run(backend: Backend, canary: LineChild): Promise<(string | number)[]> {
  const engine = await openEngine(backend, { jobs: [probe], databaseUrl });
  const { waitless } = engine;
  try {
    waitless.startWorker({ concurrency: 10 });
    const pickups: number[] = [];
    const submits: number[] = [];
    const roundTrips: number[] = [];
    const spans: [number, number][] = [];
    let startedAt = NaN;
    let started: () => void = () => {};
    probeHook.onStart = (_n, at) => {
      startedAt = at;
      started();
    };
    await sleep(200); // let the worker's first claim (an empty queue) return
    for (let i = 0; i < WARMUP + iterations; i++) {
      if (i === WARMUP) canary.send('reset');
      startedAt = NaN;
      const handlerStarted = new Promise<void>((resolve) => (started = resolve));
      const t0 = performance.now();
      const { job } = await waitless.submit(probe, { n: i });
      const t1 = performance.now();
      await handlerStarted;
      let current = job;
      while (!current.done) {
        const next = await waitless.wait(job.id, { since: current.version, timeoutMs: 5000 });
        if (!next) throw new Error(`job ${job.id} vanished`);
        current = next;
      }
      const t2 = performance.now();
      if (current.status !== 'completed') throw new Error(`job ${job.id} ended ${current.status}`);
      if (i >= WARMUP) {
        pickups.push(startedAt - t0);
        spans.push([performance.timeOrigin + t0, performance.timeOrigin + startedAt]);
        submits.push(t1 - t0);
        roundTrips.push(t2 - t0);
      }
      if (gapMs > 0) await sleep(gapMs);
    }
    canary.send('report');
    const report = await canary.next<CanaryReport>();
    // PGlite does not use the PostgreSQL server: only the canary's timer (the machine) counts for it.
    const stalls = backend === 'postgres' ? [...report.stalls.timer, ...report.stalls.insert] : report.stalls.timer;
    const hit = overlapping(spans, stalls);
    const clear = summarize(pickups.filter((_, k) => !hit[k]));
    const p = summarize(pickups);
    const s = summarize(submits);
    const r = summarize(roundTrips);
    return [
      backend,
      p.n,
      ms(p.p50),
      ms(p.p90),
      ms(p.p99),
      ms(p.max),
      `${ms(s.p50)} / ${ms(s.p99)}`,
      `${ms(r.p50)} / ${ms(r.p99)}`,
      `${ms(clear.p99)} (${hit.filter(Boolean).length})`,
    ];
  } finally {
    probeHook.onStart = undefined;
    await engine.close();
  }
}

await printMachine(backends.includes('postgres') ? databaseUrl : undefined);
console.log(`${iterations} jobs one at a time (after ${WARMUP} warm-up), ${gapMs} ms idle between them; ms\n`);
const rows: (string | number)[][] = [];
const canary = await startCanary(databaseUrl); // bench/canary.ts: stalls of the machine and of PostgreSQL
for (const backend of backends) rows.push(await run(backend, canary));
await canary.close();
printTable(
  ['backend', 'jobs', 'pickup p50', 'p90', 'p99', 'max', 'submit() p50 / p99', 'submit → completed seen p50 / p99', 'pickup p99 w/o canary stalls (jobs left out)'],
  rows,
);
