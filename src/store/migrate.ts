import { readdir, readFile } from 'node:fs/promises';
import type { Driver, Queryable } from './driver.ts';
import { migrationQueries } from './queries.ts';

const MIGRATIONS_DIR = new URL('./migrations/', import.meta.url);

/** A numbered migration file, e.g. `0001_jobs.sql`. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Options of {@link migrate}. */
export interface MigrateOptions {
  /**
   * Longest wait for a table lock a migration needs (`lock_timeout`). A schema change that
   * queues behind a long transaction blocks every query on that table behind itself; past this
   * the migration gives up and says which sessions held the lock. Default: `10_000` ms.
   */
  lockTimeoutMs?: number;
  /**
   * Longest wait for another process that is migrating the same schema at the same time.
   * Default: `120_000` ms.
   */
  migratorWaitMs?: number;
}

/** Where the applied migrations of a schema stand against the ones this code has. */
export interface MigrationStatus {
  /** Newest version this code has (0 when it has none). */
  code: number;
  /** Newest version recorded in the database (0 when none, or no migrations table). */
  database: number;
  /** Versions this code has that the database has not applied. */
  pending: number[];
  /** Versions the database has applied that this code does not know: the database is newer. */
  unknown: number[];
}

/**
 * The database and the code disagree on the schema: the database is newer than the code,
 * migrations were skipped while some are pending, or a migration could not take its lock.
 */
export class MigrationError extends Error {
  override name = 'MigrationError';
}

const cache = new Map<string, Promise<Migration[]>>();

/** Reads numbered migration files from a folder (default: the job store's), in order. Read once per folder. */
export function loadMigrations(dir: URL = MIGRATIONS_DIR): Promise<Migration[]> {
  let loaded = cache.get(dir.href);
  if (!loaded) {
    loaded = (async () => {
      const files = (await readdir(dir)).filter((file) => /^\d{4}_.+\.sql$/.test(file)).sort();
      return Promise.all(
        files.map(async (file) => ({ version: Number(file.slice(0, 4)), name: file, sql: await readFile(new URL(file, dir), 'utf8') })),
      );
    })();
    loaded.catch(() => cache.delete(dir.href));
    cache.set(dir.href, loaded);
  }
  return loaded;
}

const pad = (version: number) => String(version).padStart(4, '0');

function compare(migrations: Migration[], applied: number[]): MigrationStatus {
  const known = new Set(migrations.map((m) => m.version));
  const done = new Set(applied);
  return {
    code: migrations.at(-1)?.version ?? 0,
    database: applied.length ? Math.max(...applied) : 0,
    pending: migrations.filter((m) => !done.has(m.version)).map((m) => m.version),
    unknown: applied.filter((v) => !known.has(v)).sort((a, b) => a - b),
  };
}

function newerDatabaseError(schema: string, status: MigrationStatus): MigrationError {
  return new MigrationError(
    `The database schema "${schema}" is at migration ${pad(status.database)}, newer than this Waitless, which knows migrations up to ` +
      `${pad(status.code)} (unknown: ${status.unknown.map(pad).join(', ')}). Run the Waitless version that migrated it (or a newer one); ` +
      `an older version must not write to a schema it does not know.`,
  );
}

async function appliedVersions(db: Queryable, schema: string): Promise<number[]> {
  const q = migrationQueries(schema);
  const [exists] = await db.query<{ found: boolean }>(q.tableExists());
  if (!exists?.found) return [];
  return (await db.query<{ version: number }>(q.applied())).map((row) => row.version);
}

/** Compares the schema's applied migrations with the code's, without changing anything. */
export async function migrationStatus(driver: Queryable, schema: string, dir: URL = MIGRATIONS_DIR): Promise<MigrationStatus> {
  return compare(await loadMigrations(dir), await appliedVersions(driver, schema));
}

/**
 * For a process started with migrations off: refuses to go on unless the schema holds exactly
 * the migrations this code has, so a deploy that forgot to migrate (or rolled the code back
 * under a newer schema) stops at start, not at its first query.
 */
export async function verifyMigrations(driver: Queryable, schema: string, dir: URL = MIGRATIONS_DIR): Promise<void> {
  const status = await migrationStatus(driver, schema, dir);
  if (status.unknown.length) throw newerDatabaseError(schema, status);
  if (status.pending.length) {
    throw new MigrationError(
      `Migrations are off, but the database schema "${schema}" is at migration ${pad(status.database)} and this Waitless needs ` +
        `${pad(status.code)} (missing: ${status.pending.map(pad).join(', ')}). Run \`waitless migrate\` first, or start with migrations on.`,
    );
  }
}

/** Sessions holding locks on the schema's tables or its migration lock, for a lock timeout's message. */
async function lockHolders(driver: Driver, schema: string): Promise<string> {
  try {
    const rows = await driver.query<{ pid: number; application_name: string; state: string; seconds: number; query: string }>(
      migrationQueries(schema).lockHolders(),
    );
    if (rows.length === 0) return 'no session holds it any more';
    return rows
      .map((r) => `pid ${r.pid}${r.application_name ? ` (${r.application_name})` : ''}, ${r.state}, transaction open ${r.seconds}s: ${r.query.replace(/\s+/g, ' ').slice(0, 200)}`)
      .join('; ');
  } catch {
    return 'the holders could not be read';
  }
}

/**
 * Brings the schema up to date. Safe when several processes start at once: the whole run
 * happens in one transaction that first takes an advisory lock keyed on the schema, so the
 * second process waits, then finds everything applied. Migrations are append-only: a file
 * that has run is never changed, new behaviour comes as a new file.
 *
 * Refuses a database newer than the code (an applied version this code does not know), and
 * gives up on a table lock after `lockTimeoutMs`, naming the sessions that held it.
 *
 * @returns the versions applied by this call (empty when already up to date).
 */
export async function migrate(driver: Driver, schema: string, dir: URL = MIGRATIONS_DIR, options: MigrateOptions = {}): Promise<number[]> {
  const migrations = await loadMigrations(dir);
  const q = migrationQueries(schema);
  const lockTimeoutMs = options.lockTimeoutMs ?? 10_000;
  let waitingFor = 'the migration lock (another process is migrating this schema)';
  try {
    return await driver.transaction(async (tx) => {
      await tx.query(q.lockTimeout(options.migratorWaitMs ?? 120_000));
      await tx.query(q.lock());
      waitingFor = 'a table lock';
      await tx.query(q.lockTimeout(lockTimeoutMs));
      await tx.query(q.createSchema());
      await tx.query(q.createTable());
      const status = compare(migrations, (await tx.query<{ version: number }>(q.applied())).map((row) => row.version));
      if (status.unknown.length) throw newerDatabaseError(schema, status);
      const ran: number[] = [];
      for (const migration of migrations) {
        if (!status.pending.includes(migration.version)) continue;
        await tx.exec(migration.sql);
        await tx.query(q.record(migration.version, migration.name));
        ran.push(migration.version);
      }
      return ran;
    });
  } catch (error) {
    // 55P03: lock_not_available, which is how lock_timeout ends a wait.
    if ((error as { code?: unknown }).code !== '55P03') throw error;
    throw new MigrationError(
      `Migrating schema "${schema}" gave up waiting for ${waitingFor}. Held by: ${await lockHolders(driver, schema)}. ` +
        `Migrate when that transaction has ended (or end it).`,
    );
  }
}
