/**
 * The HTTP API in a process of its own, for bench/submit.ts (`--server process`, the default),
 * so the load generator's fetch calls do not share an event loop with the server.
 *
 *   node bench/http-server.ts --backend postgres|pglite --schema NAME [--database URL]
 *
 * Serves on a free loopback port and prints one JSON line `{"url": …}` when ready. Then reads
 * commands on stdin, one per line: `reset` (start counting afresh), `report` (print one JSON
 * line of what the server saw: handler and submit() timings, GC, event-loop delay, new
 * database connections). Exits when stdin closes. No worker runs: only the acknowledgement is served.
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { type Backend, DEFAULT_POSTGRES_URL, openEngine, serveInstrumented } from './common.ts';
import * as jobs from './jobs.ts';

const { values } = parseArgs({
  options: { backend: { type: 'string' }, schema: { type: 'string' }, database: { type: 'string' }, pool: { type: 'string' } },
});
const backend = (values.backend ?? 'postgres') as Backend;
const engine = await openEngine(backend, {
  jobs,
  schema: values.schema,
  databaseUrl: values.database ?? DEFAULT_POSTGRES_URL,
  maxConnections: values.pool ? Number(values.pool) : undefined,
});
const server = await serveInstrumented(engine.waitless);
process.stdout.write(`${JSON.stringify({ url: server.url, pid: process.pid })}\n`);

let closing = false;
async function shutdown(): Promise<void> {
  if (closing) return;
  closing = true;
  await server.close();
  // The parent owns the schema (it drops it); only close the connections here.
  await engine.waitless.close();
  process.exit(0);
}
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line === 'reset') server.reset();
  else if (line === 'report') process.stdout.write(`${JSON.stringify(server.report())}\n`);
});
lines.on('close', () => void shutdown());
process.on('SIGTERM', () => void shutdown());
