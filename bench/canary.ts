/**
 * A stall detector that runs beside a latency benchmark, in a process of its own, so that a
 * tail can be told apart from the machine's own hiccups (this VM is shared; its PostgreSQL and
 * its disk stall now and then for tens to hundreds of ms whatever runs on them).
 *
 *   node bench/canary.ts [--database URL]
 *
 * Every 10 ms it wakes up (a timer) and, with --database, commits a one-row INSERT into a table
 * of its own (a fresh schema, dropped at the end) on its own connection: no NOTIFY, nothing
 * Waitless does. A stall is a wake-up more than 10 ms late, or an INSERT that took more than
 * 10 ms. On a `report` line on stdin it prints one JSON line: the stalls of each kind as
 * [start, end] in epoch ms, and its own latency figures. It exits when stdin closes.
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { dropSchema, freshSchema, summarize } from './common.ts';

const STALL_MS = 10;
const EVERY_MS = 10;

const { values } = parseArgs({ options: { database: { type: 'string' } } });
const epoch = (t: number) => performance.timeOrigin + t;

let client: pg.Client | undefined;
let schema: string | undefined;
if (values.database) {
  schema = freshSchema('canary');
  client = new pg.Client({ connectionString: values.database });
  await client.connect();
  await client.query(`CREATE SCHEMA ${schema}`);
  await client.query(`CREATE TABLE ${schema}.beat (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())`);
}

let stalls: { timer: [number, number][]; insert: [number, number][] } = { timer: [], insert: [] };
let inserts: number[] = [];
let lateness: number[] = [];
let running = true;

async function loop(): Promise<void> {
  let due = performance.now() + EVERY_MS;
  while (running) {
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const woke = performance.now();
    const late = woke - due;
    lateness.push(late);
    if (late > STALL_MS) stalls.timer.push([epoch(due), epoch(woke)]);
    if (client && schema) {
      await client.query(`INSERT INTO ${schema}.beat DEFAULT VALUES`);
      const took = performance.now() - woke;
      inserts.push(took);
      if (took > STALL_MS) stalls.insert.push([epoch(woke), epoch(woke + took)]);
    }
    due = Math.max(due + EVERY_MS, performance.now());
  }
}

const done = loop();
process.stdout.write('{"ready":true}\n');

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line === 'reset') {
    stalls = { timer: [], insert: [] };
    inserts = [];
    lateness = [];
  } else if (line === 'report') {
    process.stdout.write(`${JSON.stringify({ stalls, insert: summarize(inserts), lateness: summarize(lateness) })}\n`);
  }
});
lines.on('close', () => {
  running = false;
  void done.then(async () => {
    await client?.end();
    if (values.database && schema) await dropSchema(values.database, schema);
    process.exit(0);
  });
});
