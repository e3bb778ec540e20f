/**
 * Retention under a steady load, on PostgreSQL: jobs are submitted at a fixed rate and run in
 * this process's worker (each with a step, a progress report, output and a webhook delivered to
 * a local receiver), with a short retention and pruning on, as in production but faster. Every
 * few seconds the row counts and sizes (`pg_total_relation_size`) of the job tables are
 * sampled: they should grow for one retention period and then stay flat. At the end: rows
 * pruned per table, the prune rate, and the longest single delete statement.
 *
 *   node bench/retention.ts [--duration 90] [--rate 100] [--retention 5s] [--interval 1s]
 *                           [--batch 500] [--sample 5] [--vacuum 10] [--database URL]
 *
 * Deleted rows leave dead tuples whose space only VACUUM makes reusable: in production
 * autovacuum does it (on by default). `--vacuum S` runs a plain `VACUUM (ANALYZE)` of the job
 * tables every S seconds, as autovacuum would, for a server where it is off; `--vacuum 0` runs
 * none (then the row counts stay flat and the sizes do not).
 *
 * Environment (used when the flag is absent): WAITLESS_BENCH_DATABASE_URL.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { z } from 'zod';
import { createWaitless } from '../src/engine.ts';
import { defineJob } from '../src/job/definition.ts';
import type { Duration } from '../src/job/duration.ts';
import { toMs } from '../src/job/duration.ts';
import { DEFAULT_POSTGRES_URL, dropSchema, freshSchema, numberOption, printMachine, printTable, sleep, withClient } from './common.ts';

const { values } = parseArgs({
  options: {
    duration: { type: 'string' },
    rate: { type: 'string' },
    retention: { type: 'string' },
    interval: { type: 'string' },
    batch: { type: 'string' },
    sample: { type: 'string' },
    vacuum: { type: 'string' },
    database: { type: 'string' },
  },
});
const durationS = numberOption(values.duration, 'WAITLESS_BENCH_DURATION', 90);
const rate = numberOption(values.rate, 'WAITLESS_BENCH_RATE', 100);
const retention = (values.retention ?? '5s') as Duration;
const interval = (values.interval ?? '1s') as Duration;
const batchSize = numberOption(values.batch, 'WAITLESS_BENCH_BATCH', 500);
const sampleS = numberOption(values.sample, 'WAITLESS_BENCH_SAMPLE', 5);
const databaseUrl = values.database ?? DEFAULT_POSTGRES_URL;
const vacuumS = values.vacuum === '0' ? 0 : numberOption(values.vacuum, 'WAITLESS_BENCH_VACUUM', 10);

const work = defineJob({
  name: 'bench-retention',
  input: z.object({ n: z.number() }),
  retry: { attempts: 1 },
  async run({ n }, ctx) {
    const fetched = await ctx.step('fetch', async () => ({ n, text: 'x'.repeat(200) }));
    await ctx.progress({ percent: 50, stage: 'writing' });
    ctx.write('partial output, ');
    ctx.write('a little more');
    return { n, length: fetched.text.length };
  },
});

const TABLES = ['jobs', 'job_events', 'job_steps', 'webhook_deliveries', 'webhook_attempts', 'idempotency_keys'] as const;

/** Prune runs, as the housekeeping task reports them in its log line. */
interface PruneRun {
  deleted: Record<string, number>;
  statements: number;
  longestStatementMs: number;
  durationMs: number;
}
const runs: PruneRun[] = [];
const logger = pino(
  { level: 'info' },
  {
    write(line: string) {
      const entry = JSON.parse(line) as { msg?: string; level?: number } & PruneRun;
      if (entry.msg?.startsWith('pruned rows past their retention')) runs.push(entry);
      else if ((entry.level ?? 0) >= 50) process.stderr.write(line);
    },
  },
);

async function main(): Promise<void> {
  await printMachine(databaseUrl);
  const autovacuum = await withClient(databaseUrl, async (c) => (await c.query<{ a: string }>(`SELECT current_setting('autovacuum') AS a`)).rows[0]!.a);
  console.log(
    `\nretention ${retention}, pruning every ${interval} in batches of ${batchSize}; ${rate} jobs/s for ${durationS} s; a sample every ${sampleS} s; ` +
      `autovacuum ${autovacuum}; ${vacuumS ? `VACUUM (ANALYZE) of the job tables every ${vacuumS} s` : 'no VACUUM of our own'}\n`,
  );
  const receiver = createServer((request, response) => {
    request.resume();
    request.on('end', () => response.writeHead(200).end());
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  const schema = freshSchema('bench_retention');
  const waitless = await createWaitless({
    jobs: [work],
    database: databaseUrl,
    schema,
    logger,
    retention: { default: retention, interval, batchSize },
    webhooks: { ssrf: { allow: ['127.0.0.1'] }, pollInterval: '200ms', retrySchedule: ['1s'] },
  });
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  await client.query(`SET search_path TO ${schema}`);
  const samples: (string | number)[][] = [];
  const sizes: { t: number; rows: Record<string, number>; bytes: Record<string, number> }[] = [];
  let submitted = 0;
  let stopVacuum = false;
  const vacuumMs: number[] = [];
  let failedSubmits = 0;
  try {
    waitless.startWorker({ concurrency: 50, pollInterval: 200 });
    const started = Date.now();
    const end = started + durationS * 1000;
    // Autovacuum's part, when asked: its own connection, a plain VACUUM (no table lock that
    // blocks reads or writes), timed.
    const vacuuming = (async () => {
      if (!vacuumS) return;
      await withClient(databaseUrl, async (c) => {
        await c.query(`SET search_path TO ${schema}`);
        while (!stopVacuum) {
          await sleep(vacuumS * 1000);
          if (stopVacuum) break;
          const t0 = performance.now();
          await c.query(`VACUUM (ANALYZE) ${TABLES.join(', ')}`);
          vacuumMs.push(performance.now() - t0);
        }
      });
    })();
    // Open loop: a tenth of the rate every 100 ms, whatever the engine does meanwhile.
    const submitter = (async () => {
      const perTick = Math.max(1, Math.round(rate / 10));
      for (let tick = 0; Date.now() < end; tick++) {
        const due = started + tick * 100;
        if (due > Date.now()) await sleep(due - Date.now());
        await Promise.all(
          Array.from({ length: perTick }, (_, i) =>
            waitless.submit(work, { n: tick * perTick + i }, { webhook: { url: hook }, idempotencyKey: `k-${tick}-${i}` }).then(
              () => void submitted++,
              () => void failedSubmits++,
            ),
          ),
        );
      }
    })();
    for (let t = 0; ; t += sampleS) {
      const at = started + t * 1000;
      if (at > Date.now()) await sleep(at - Date.now());
      const { rows } = await client.query<Record<string, string>>(
        `SELECT ${TABLES.map((table) => `(SELECT count(*) FROM ${table}) AS "${table}", pg_total_relation_size('${table}') AS "${table}_bytes"`).join(', ')},
          (SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')) AS unfinished,
          (SELECT sum(n_dead_tup) FROM pg_stat_user_tables WHERE schemaname = current_schema()) AS dead,
          (SELECT sum(autovacuum_count) FROM pg_stat_user_tables WHERE schemaname = current_schema()) AS autovacuums`,
      );
      const row = rows[0]!;
      const rowsOf = Object.fromEntries(TABLES.map((table) => [table, Number(row[table])]));
      const bytesOf = Object.fromEntries(TABLES.map((table) => [table, Number(row[`${table}_bytes`])]));
      sizes.push({ t, rows: rowsOf, bytes: bytesOf });
      const mb = (table: string) => (bytesOf[table]! / 1048576).toFixed(1);
      samples.push([t, submitted, Number(row.unfinished), ...TABLES.map((table) => rowsOf[table]!), mb('jobs'), mb('job_events'), mb('job_steps'), mb('webhook_deliveries'), mb('webhook_attempts'), Number(row.dead), Number(row.autovacuums)]);
      if (Date.now() >= end) break;
    }
    stopVacuum = true;
    await Promise.all([submitter, vacuuming]);
  } finally {
    stopVacuum = true;
    await waitless.close();
    await client.end();
    await new Promise<void>((resolve) => receiver.close(() => resolve()));
    await dropSchema(databaseUrl, schema);
  }

  printTable(
    ['t (s)', 'submitted', 'queued+running', ...TABLES, 'jobs MB', 'events MB', 'steps MB', 'deliveries MB', 'attempts MB', 'dead rows', 'autovacuums'],
    samples,
  );
  const totals: Record<string, number> = {};
  for (const run of runs) for (const [table, n] of Object.entries(run.deleted)) totals[table] = (totals[table] ?? 0) + n;
  const rowsPruned = Object.values(totals).reduce((a, b) => a + b, 0);
  const pruneMs = runs.reduce((a, r) => a + r.durationMs, 0);
  const statements = runs.reduce((a, r) => a + r.statements, 0);
  const longest = Math.max(0, ...runs.map((r) => r.longestStatementMs));
  console.log(`\nsubmitted ${submitted} jobs (${(submitted / durationS).toFixed(0)}/s), ${failedSubmits} submits failed`);
  if (vacuumMs.length) console.log(`${vacuumMs.length} VACUUM runs, the longest ${Math.round(Math.max(...vacuumMs))} ms`);
  console.log(`pruned, per table: ${Object.entries(totals).map(([t, n]) => `${t} ${n}`).join(', ')}`);
  console.log(
    `${runs.length} prune runs that deleted something, ${statements} statements, ${(pruneMs / 1000).toFixed(1)} s pruning in all: ` +
      `${Math.round(rowsPruned / (pruneMs / 1000))} rows/s while pruning, ${Math.round(rowsPruned / durationS)} rows/s over the run; ` +
      `longest single delete statement ${longest} ms`,
  );
  // Flat: after one retention period (plus the pruning interval and a sample) the tables stop
  // growing; compare that first steady sample with the last.
  const settledAt = (toMs(retention) + toMs(interval)) / 1000 + sampleS;
  const first = sizes.find((s) => s.t >= settledAt);
  const last = sizes.at(-1);
  if (first && last && last !== first) {
    for (const table of TABLES) {
      console.log(
        `${table.padEnd(20)} rows ${first.rows[table]} at ${first.t} s → ${last.rows[table]} at ${last.t} s; ` +
          `size ${(first.bytes[table]! / 1048576).toFixed(2)} → ${(last.bytes[table]! / 1048576).toFixed(2)} MB`,
      );
    }
  }
}

await main();
