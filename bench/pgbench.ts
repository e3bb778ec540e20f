/**
 * pgbench helpers shared by the benchmarks: run a script (closed loop, or at a fixed rate with
 * per-transaction latencies), Waitless's submit statement as a pgbench script, and the plain
 * single-row INSERT every figure is compared with. Needs `pgbench` on PATH.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { insertJobs } from '../src/store/queries.ts';
import { withClient } from './common.ts';
import { noop } from './jobs.ts';

export interface PgbenchOptions {
  databaseUrl: string;
  /** Becomes the connections' search_path (PGOPTIONS). */
  schema: string;
  clients: number;
  seconds: number;
  /** `extended` parses and plans every statement (as node-postgres does); `prepared` once per connection. */
  protocol?: 'extended' | 'prepared';
  /** Transactions per second for all clients together (pgbench -R, Poisson arrivals); unset: as fast as possible. */
  rate?: number;
}

export interface PgbenchResult {
  tps: number;
  /** Scripts (pgbench "transactions") run. */
  count: number;
  /** WAL flushes in the whole cluster meanwhile (pg_stat_wal, PostgreSQL 14+), NaN if unknown. */
  walSyncs: number;
  /** With `rate`: each transaction's latency in ms, from its actual start (schedule lag removed). */
  latencies: number[];
  /** With `rate`: each transaction as [start, end] in epoch ms. */
  spans: [number, number][];
  command: string;
}

const walSyncs = (databaseUrl: string) =>
  withClient(databaseUrl, async (c) => Number((await c.query<{ n: string }>('SELECT wal_sync AS n FROM pg_stat_wal')).rows[0]?.n)).catch(
    () => NaN,
  );

export async function pgbench(script: string, o: PgbenchOptions): Promise<PgbenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'waitless-bench-'));
  try {
    const file = join(dir, 'script.sql');
    writeFileSync(file, script);
    const threads = Math.min(o.clients, availableParallelism());
    const args = ['-n', '-M', o.protocol ?? 'extended', '-c', String(o.clients), '-j', String(threads), '-T', String(o.seconds)];
    if (o.rate) args.push('-R', String(o.rate), '-l', `--log-prefix=${join(dir, 'tx')}`);
    args.push('-f', file, o.databaseUrl);
    const syncsBefore = await walSyncs(o.databaseUrl);
    const out = execFileSync('pgbench', args, {
      encoding: 'utf8',
      env: { ...process.env, PGOPTIONS: `-c search_path=${o.schema}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const syncs = (await walSyncs(o.databaseUrl)) - syncsBefore;
    const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(out);
    const count = /number of transactions actually processed: (\d+)/.exec(out);
    if (!tps || !count) throw new Error(`could not read pgbench output:\n${out}`);
    // Log lines: client_id transaction_no time script_no time_epoch time_us schedule_lag (µs).
    // time_epoch + time_us is when the transaction finished.
    const latencies: number[] = [];
    const spans: [number, number][] = [];
    for (const name of readdirSync(dir).filter((f) => f.startsWith('tx.'))) {
      for (const line of readFileSync(join(dir, name), 'utf8').split('\n')) {
        const f = line.split(' ');
        if (f.length < 7) continue;
        const latency = (Number(f[2]) - Number(f[6])) / 1000;
        const end = Number(f[4]) * 1000 + Number(f[5]) / 1000;
        latencies.push(latency);
        spans.push([end - latency, end]);
      }
    }
    const shownArgs = args.map((a) => a.replace(dir, '$TMP'));
    return {
      tps: Number(tps[1]),
      count: Number(count[1]),
      walSyncs: syncs,
      latencies,
      spans,
      command: `PGOPTIONS='-c search_path=${o.schema}' pgbench ${shownArgs.join(' ')}`,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Waitless's submit statement (no idempotency key) with pgbench literals in place of its parameters. */
export function submitScript(): string {
  const sql = insertJobs([{ id: '', tenant: '', name: '', input: null, maxAttempts: 1, timeoutMs: 1 }]);
  // The statement takes one array per column (a batch of submits); here, a batch of one.
  const literals: Record<string, string> = {
    $1: 'ARRAY[gen_random_uuid()]',
    $2: `ARRAY['default']`,
    $3: `ARRAY['${noop.name}']`,
    $4: `ARRAY['{"n": 1}']`,
    $5: 'ARRAY[1]',
    $6: `ARRAY[${noop.timeoutMs}]`,
    $11: 'ARRAY[0]', // priority
  };
  // Any other parameter is an optional one the submit leaves unset (a NULL array pads with NULLs).
  const text = sql.text.replace(/\$(\d+)/g, (p: string) => literals[p] ?? 'NULL');
  // pgbench reads one SQL command per line (a command ends at the end of its line).
  return `${text.replace(/\s*\n\s*/g, ' ')};\n`;
}

/** The reference: one row into a table with only a bigserial primary key. */
export const RAW_INSERT = `\\set n random(1, 1000000)\nINSERT INTO bench_insert (n) VALUES (:n);\n`;

export async function createRawTable(databaseUrl: string, schema: string): Promise<void> {
  await withClient(databaseUrl, async (c) => {
    await c.query(`CREATE SCHEMA ${schema}`);
    await c.query(`CREATE TABLE ${schema}.bench_insert (id bigserial PRIMARY KEY, n integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);
  });
}
