/**
 * What the fair claim costs: `EXPLAIN ANALYZE` of the unkeyed claim statement on a deep queue
 * (default 50 000 queued jobs over 4 tenants, one of them all high priority), against the claim
 * it replaced (all due jobs in one priority order, `jobs_claimable_unkeyed`). Both run as
 * prepared statements, as the pg driver runs them, past the point where PostgreSQL may switch to
 * a generic plan; each run is rolled back, so every run claims from the same queue. PostgreSQL only.
 *
 *   node bench/fair-claim.ts [--jobs 50000] [--tenants 4] [--runs 12] [--database URL]
 *
 * Environment (used when the flag is absent): WAITLESS_BENCH_DATABASE_URL.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { createWaitless } from '../src/engine.ts';
import { claimJobs } from '../src/store/queries.ts';

const { values: args } = parseArgs({
  options: { jobs: { type: 'string' }, tenants: { type: 'string' }, runs: { type: 'string' }, database: { type: 'string' } },
});
const jobs = Number(args.jobs ?? 50_000);
const tenants = Number(args.tenants ?? 4);
const runs = Number(args.runs ?? 12);
const url = args.database ?? process.env.WAITLESS_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `bench_fair_${process.pid}`;

/** The claim before fairness: the same statement, its `next` the first due jobs in one priority order. */
function previousClaim(limit: number) {
  const fair = claimJobs(['work'], limit, 'bench', 30_000);
  const tail = fair.text.slice(fair.text.indexOf(', changed AS ('));
  return {
    text: `WITH next AS (
        SELECT id FROM jobs WHERE status = 'queued' AND run_at <= now() AND name = ANY($1::text[]) AND concurrency_key IS NULL
        ORDER BY priority DESC, run_at, id LIMIT $2 FOR UPDATE SKIP LOCKED
      )${tail}`,
    values: fair.values.slice(0, 4),
  };
}

const client = new pg.Client({ connectionString: url });
await client.connect();
try {
  await (await createWaitless({ jobs: [], database: url, schema, logger: pino({ level: 'silent' }) })).close();
  await client.query(`SET search_path = ${schema}`);
  // Tenant 0 submits every job at priority 100; the others at 0–6. Due at once, oldest first.
  await client.query(
    `INSERT INTO jobs (id, tenant_id, name, status, input, max_attempts, timeout_ms, priority, run_at)
     SELECT gen_random_uuid(), 'tenant-' || (i % $2), 'work', 'queued', '{}', 3, 60000,
       CASE WHEN i % $2 = 0 THEN 100 ELSE i % 7 END, now() - i * interval '1 ms'
     FROM generate_series(1, $1::integer) i`,
    [jobs, tenants],
  );
  // The previous claim's index, which migration 0008 dropped.
  await client.query(`CREATE INDEX previous_claimable ON jobs (priority DESC, run_at, id) WHERE status = 'queued' AND concurrency_key IS NULL`);
  await client.query('ANALYZE jobs');

  const measure = async (label: string, sql: { text: string; values: unknown[] }) => {
    const name = `bench_${label.replace(/\W/g, '_')}`;
    const types = sql.values.map((v) => (Array.isArray(v) ? 'text[]' : typeof v === 'number' ? 'integer' : 'text'));
    await client.query(`PREPARE ${name} (${types.join(', ')}) AS ${sql.text}`);
    const literal = (v: unknown) => (Array.isArray(v) ? `ARRAY[${v.map((x) => `'${String(x)}'`).join(',')}]::text[]` : typeof v === 'number' ? String(v) : `'${String(v)}'`);
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      await client.query('BEGIN');
      const result = await client.query(`EXPLAIN (ANALYZE) EXECUTE ${name} (${sql.values.map(literal).join(', ')})`);
      await client.query('ROLLBACK');
      const plan = result.rows.map((row: Record<string, string>) => row['QUERY PLAN']).join('\n');
      times.push(Number(/Execution Time: ([\d.]+)/.exec(plan)![1]));
    }
    await client.query(`DEALLOCATE ${name}`);
    // The last runs: those after PostgreSQL's plan cache settled (custom or generic plan).
    const settled = times.slice(-Math.max(1, runs - 6)).sort((a, b) => a - b);
    return settled[Math.floor(settled.length / 2)]!;
  };

  console.log(`${jobs} queued jobs over ${tenants} tenants; median execution time of the last ${Math.max(1, runs - 6)} of ${runs} runs`);
  console.log('| slots (LIMIT) | previous claim (ms) | fair claim (ms) |');
  console.log('| ---: | ---: | ---: |');
  for (const limit of [1, 10, 50]) {
    const previous = await measure(`previous_${limit}`, previousClaim(limit));
    const fair = await measure(`fair_${limit}`, claimJobs(['work'], limit, 'bench', 30_000, 'tenant-1'));
    console.log(`| ${limit} | ${previous.toFixed(2)} | ${fair.toFixed(2)} |`);
  }
} finally {
  await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await client.end();
}
