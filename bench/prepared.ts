/**
 * An experiment, not a feature: makes node-postgres run every parameterised query of this
 * process as a named prepared statement (parsed and planned once per connection) instead of
 * an unnamed one (parsed and planned on every call), by wrapping `pg.Client.prototype.query`.
 * It measured what the pg driver would gain from naming its statements, without editing src/;
 * commit 2b6a7f9 then made src/store/pg-driver.ts name them itself (so at or after it, this
 * wrapper finds nothing left to change).
 *
 * In a benchmark process: `setNamedStatements(true)`. In a spawned worker:
 * `node --import ./bench/prepared.ts src/cli/main.ts worker …` with WAITLESS_BENCH_PREPARED=1.
 */
import pg from 'pg';

const names = new Map<string, string>();
let enabled = false;
let installed = false;

type QueryFn = (...args: unknown[]) => unknown;

function install(): void {
  if (installed) return;
  installed = true;
  const proto = pg.Client.prototype as unknown as { query: QueryFn };
  const original = proto.query;
  proto.query = function (this: unknown, ...args: unknown[]) {
    const [text, values] = args;
    // Only single statements with parameters (the store's queries); LISTEN and migrations pass no values.
    if (enabled && typeof text === 'string' && Array.isArray(values)) {
      let name = names.get(text);
      if (!name) names.set(text, (name = `waitless_${names.size + 1}`));
      return original.call(this, { name, text, values }, ...args.slice(2));
    }
    return original.apply(this, args);
  };
}

export function setNamedStatements(on: boolean): void {
  install();
  enabled = on;
}

if (process.env.WAITLESS_BENCH_PREPARED === '1') setNamedStatements(true);
