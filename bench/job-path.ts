/**
 * What one no-op job costs the database, from submit to completed: statements and commits,
 * counted at the engine's driver (library submit and a worker in the same process), on
 * PostgreSQL. Two shapes: one job at a time (submit, wait for completed, next), and a burst of
 * N jobs submitted by C concurrent callers while a worker with concurrency 10 runs them.
 * `--tree name=/path` (repeatable) runs another checkout of the project too (e.g. the earlier
 * release), alternating with this one.
 *
 *   node bench/job-path.ts [--jobs 2000] [--callers 50] [--sequential 200] [--rounds 2]
 *                          [--tree before=../waitless-before] [--database URL]
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_POSTGRES_URL, dropSchema, freshSchema, printMachine, printTable, silentLogger } from './common.ts';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '2000' },
    callers: { type: 'string', default: '50' },
    sequential: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '2' },
    tree: { type: 'string', multiple: true },
    database: { type: 'string' },
  },
});
const databaseUrl = values.database ?? DEFAULT_POSTGRES_URL;
const trees: Array<{ name: string; root: string }> = [{ name: 'current', root: resolve(import.meta.dirname, '..') }];
for (const spec of values.tree ?? []) {
  const [name, path] = spec.split('=');
  if (!name || !path) throw new Error(`--tree takes name=/path, got "${spec}"`);
  trees.push({ name, root: resolve(path) });
}

interface Counts {
  statements: number;
  commits: number;
}

interface EngineLike {
  driver: {
    query: (sql: { text: string; values: unknown[] }) => Promise<unknown[]>;
    transaction: <T>(fn: (tx: { query: (sql: { text: string; values: unknown[] }) => Promise<unknown[]> }) => Promise<T>) => Promise<T>;
  };
  submit(job: string, input: unknown): Promise<{ job: { id: string } }>;
  get(id: string): Promise<{ status: string } | undefined>;
  startWorker(options: { concurrency: number; pollInterval: string }): unknown;
  close(): Promise<void>;
}

/** Counts every statement and commit the engine makes through its driver. */
function count(engine: EngineLike): Counts {
  const counts: Counts = { statements: 0, commits: 0 };
  const driver = engine.driver;
  const query = driver.query.bind(driver);
  const transaction = driver.transaction.bind(driver);
  driver.query = (sql) => {
    counts.statements++;
    counts.commits++;
    return query(sql);
  };
  driver.transaction = (fn) => {
    counts.commits++;
    return transaction((tx) =>
      fn({
        query: (sql) => {
          counts.statements++;
          return tx.query(sql);
        },
      }),
    );
  };
  return counts;
}

async function openTree(root: string, schema: string): Promise<EngineLike> {
  const { createWaitless } = (await import(pathToFileURL(`${root}/src/engine.ts`).href)) as { createWaitless: (o: object) => Promise<EngineLike> };
  const { noop } = (await import(pathToFileURL(`${root}/bench/jobs.ts`).href)) as { noop: unknown };
  return createWaitless({ jobs: [noop], database: databaseUrl, schema, logger: silentLogger });
}

async function waitDone(engine: EngineLike, ids: string[]): Promise<void> {
  for (const id of ids) {
    for (;;) {
      const job = await engine.get(id);
      if (job?.status === 'completed') break;
      if (job && job.status !== 'queued' && job.status !== 'running') throw new Error(`job ${id} ended ${job.status}`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

/** Runs a shape and answers the statements and commits per job, not counting the status reads of the wait itself. */
async function measure(root: string, shape: 'sequential' | 'burst'): Promise<Counts> {
  const schema = freshSchema('jobpath');
  const engine = await openTree(root, schema);
  try {
    engine.startWorker({ concurrency: 10, pollInterval: '2s' });
    await new Promise((r) => setTimeout(r, 200));
    const counts = count(engine);
    let waitReads = 0;
    const get = engine.get.bind(engine);
    engine.get = (id) => {
      waitReads++;
      return get(id);
    };
    let jobs: number;
    if (shape === 'sequential') {
      jobs = Number(values.sequential);
      for (let n = 0; n < jobs; n++) {
        const { job } = await engine.submit('bench-noop', { n });
        await waitDone(engine, [job.id]);
      }
    } else {
      jobs = Number(values.jobs);
      const callers = Number(values.callers);
      let next = 0;
      const ids: string[] = [];
      await Promise.all(
        Array.from({ length: callers }, async () => {
          while (next < jobs) {
            const n = next++;
            ids.push((await engine.submit('bench-noop', { n })).job.id);
          }
        }),
      );
      await waitDone(engine, ids);
    }
    // Let grouped writes that are still on their way land before the counts are read.
    await new Promise((r) => setTimeout(r, 100));
    return { statements: (counts.statements - waitReads) / jobs, commits: (counts.commits - waitReads) / jobs };
  } finally {
    await engine.close();
    await dropSchema(databaseUrl, schema);
  }
}

await printMachine(databaseUrl);
console.log(`command: node bench/job-path.ts ${process.argv.slice(2).join(' ')}\n`);
const results = new Map<string, Counts[]>();
for (let round = 1; round <= Number(values.rounds); round++) {
  for (const shape of ['sequential', 'burst'] as const) {
    for (const tree of trees) {
      const key = `${tree.name} ${shape}`;
      const counts = await measure(tree.root, shape);
      console.log(`round ${round}: ${key}: ${counts.statements.toFixed(2)} statements, ${counts.commits.toFixed(2)} commits per job`);
      results.set(key, [...(results.get(key) ?? []), counts]);
    }
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
printTable(
  ['tree, shape', 'statements / job', 'commits / job'],
  [...results].map(([key, list]) => [key, median(list.map((c) => c.statements)).toFixed(2), median(list.map((c) => c.commits)).toFixed(2)]),
);
