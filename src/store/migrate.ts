import { readdir, readFile } from 'node:fs/promises';
import type { Driver } from './driver.ts';
import { migrationQueries } from './queries.ts';

const MIGRATIONS_DIR = new URL('./migrations/', import.meta.url);

/** A numbered migration file, e.g. `0001_jobs.sql`. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Reads numbered migration files from a folder (default: the job store's), in order. */
export async function loadMigrations(dir: URL = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((file) => /^\d{4}_.+\.sql$/.test(file)).sort();
  return Promise.all(
    files.map(async (file) => ({
      version: Number(file.slice(0, 4)),
      name: file,
      sql: await readFile(new URL(file, dir), 'utf8'),
    })),
  );
}

/**
 * Brings the schema up to date. Safe when several processes start at once: the whole run
 * happens in one transaction that first takes an advisory lock keyed on the schema, so the
 * second process waits, then finds everything applied. Migrations are append-only: a file
 * that has run is never changed, new behaviour comes as a new file.
 *
 * @returns the versions applied by this call (empty when already up to date).
 */
export async function migrate(driver: Driver, schema: string, dir: URL = MIGRATIONS_DIR): Promise<number[]> {
  const migrations = await loadMigrations(dir);
  const q = migrationQueries(schema);
  return driver.transaction(async (tx) => {
    await tx.query(q.lock());
    await tx.query(q.createSchema());
    await tx.query(q.createTable());
    const applied = new Set((await tx.query<{ version: number }>(q.applied())).map((row) => row.version));
    const ran: number[] = [];
    for (const migration of migrations) {
      if (applied.has(migration.version)) continue;
      await tx.exec(migration.sql);
      await tx.query(q.record(migration.version, migration.name));
      ran.push(migration.version);
    }
    return ran;
  });
}

