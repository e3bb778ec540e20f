/**
 * What durable execution costs, measured against the same engine without it, in one run:
 *
 * 1. **Steps.** One job at a time, each running `--steps` no-op `ctx.step`s, against the same
 *    job with none: the difference per step is the price of recording one (a fenced write of
 *    the step's start, then one of its result, its row and its events).
 * 2. **Keyed claims.** Draining `--jobs` queued no-op jobs with one in-process worker: without a
 *    concurrency key, and with one (spread over `--keys` keys, a limit high enough never to
 *    bind), so the figure is the price of claiming key by key under a lock.
 *
 *   node bench/durable.ts [--backend postgres|pglite|all] [--iterations 200] [--steps 10]
 *                         [--jobs 2000] [--keys 20] [--database URL]
 */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { defineJob } from '../src/job/definition.ts';
import { DEFAULT_POSTGRES_URL, ms, numberOption, openEngine, parseBackends, printMachine, printTable, summarize } from './common.ts';

const { values } = parseArgs({
  options: { backend: { type: 'string' }, iterations: { type: 'string' }, steps: { type: 'string' }, jobs: { type: 'string' }, keys: { type: 'string' }, database: { type: 'string' } },
});
const backends = parseBackends(values.backend);
const iterations = numberOption(values.iterations, 'WAITLESS_BENCH_ITERATIONS', 200);
const stepCount = numberOption(values.steps, 'WAITLESS_BENCH_STEPS', 10);
const jobCount = numberOption(values.jobs, 'WAITLESS_BENCH_JOBS', 2000);
const keyCount = numberOption(values.keys, 'WAITLESS_BENCH_KEYS', 20);
const databaseUrl = values.database ?? DEFAULT_POSTGRES_URL;

const stepped = defineJob({
  name: 'bench-steps',
  input: z.object({ steps: z.number().int() }),
  retry: { attempts: 1 },
  async run({ steps }, ctx) {
    for (let i = 0; i < steps; i++) await ctx.step(`s${i}`, async () => i);
    return { steps };
  },
});

const plain = defineJob({ name: 'bench-plain', input: z.object({ n: z.number().int() }), retry: { attempts: 1 }, run: async ({ n }) => ({ n }) });
const keyed = defineJob({
  name: 'bench-keyed',
  input: z.object({ n: z.number().int(), key: z.string() }),
  retry: { attempts: 1 },
  concurrency: { limit: 1000, key: (input) => input.key },
  run: async ({ n }) => ({ n }),
});

/** Submit-to-completion time of one job, one at a time. */
async function timeOneByOne(waitless: Awaited<ReturnType<typeof openEngine>>['waitless'], steps: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < iterations + 20; i++) {
    const started = performance.now();
    let { job } = await waitless.submit(stepped, { steps });
    while (!job.done) job = (await waitless.wait(job.id, { since: job.version, timeoutMs: 30_000 }))!;
    if (i >= 20) samples.push(performance.now() - started); // the first 20 warm up
  }
  return samples;
}

/** Jobs per second draining `jobCount` queued jobs with one worker. */
async function drain(backend: 'postgres' | 'pglite', withKeys: boolean): Promise<number> {
  const engine = await openEngine(backend, { jobs: [plain, keyed], databaseUrl });
  try {
    const submits = Array.from({ length: jobCount }, (_, n) =>
      withKeys ? engine.waitless.submit(keyed, { n, key: `k${n % keyCount}` }) : engine.waitless.submit(plain, { n }),
    );
    await Promise.all(submits);
    const started = performance.now();
    const worker = engine.waitless.startWorker({ concurrency: 20, pollInterval: 50 });
    for (;;) {
      const page = await engine.waitless.list({ statuses: ['queued', 'running'], limit: 1 });
      if (page.jobs.length === 0 && worker.busy === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return jobCount / ((performance.now() - started) / 1000);
  } finally {
    await engine.close();
  }
}

await printMachine(backends.includes('postgres') ? databaseUrl : undefined);
for (const backend of backends) {
  const engine = await openEngine(backend, { jobs: [stepped], databaseUrl });
  let none: number[];
  let many: number[];
  try {
    engine.waitless.startWorker({ pollInterval: 50 });
    none = await timeOneByOne(engine.waitless, 0);
    many = await timeOneByOne(engine.waitless, stepCount);
  } finally {
    await engine.close();
  }
  const a = summarize(none);
  const b = summarize(many);
  console.log(`\n### ${backend}: steps (${iterations} jobs each, one at a time)\n`);
  printTable(['job', 'p50 ms', 'p90 ms', 'p99 ms'], [
    ['no step', ms(a.p50), ms(a.p90), ms(a.p99)],
    [`${stepCount} steps`, ms(b.p50), ms(b.p90), ms(b.p99)],
  ]);
  console.log(`\nper step (p50 difference / ${stepCount}): ${ms((b.p50 - a.p50) / stepCount)} ms`);

  const unkeyedRate = await drain(backend, false);
  const keyedRate = await drain(backend, true);
  console.log(`\n### ${backend}: draining ${jobCount} jobs, one worker (concurrency 20)\n`);
  printTable(['jobs', 'jobs/s'], [
    ['no concurrency key', unkeyedRate.toFixed(0)],
    [`${keyCount} keys, limit never reached`, keyedRate.toFixed(0)],
  ]);
  console.log(`\nkeyed / unkeyed: ${(keyedRate / unkeyedRate).toFixed(2)}`);
}
