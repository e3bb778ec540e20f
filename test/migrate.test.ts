import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createPgDriver } from '../src/store/pg-driver.ts';
import { createPgliteDriver } from '../src/store/pglite-driver.ts';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { createWaitless } from '../src/engine.ts';
import { loadMigrations, migrate, MigrationError, migrationStatus, verifyMigrations } from '../src/store/migrate.ts';
import { dropSchema, freshSchema, POSTGRES_URL, silentLogger } from './helpers.ts';

describe('migrations', () => {
  it('are numbered, append-only files applied in order', async () => {
    const migrations = await loadMigrations();
    assert.ok(migrations.length > 0);
    assert.deepEqual(migrations.map((m) => m.version), migrations.map((_, i) => i + 1));
  });

  it('apply once on PGlite and are a no-op the second time', async () => {
    const driver = await createPgliteDriver({ schema: 'waitless' });
    try {
      const first = await migrate(driver, 'waitless');
      assert.ok(first.length > 0);
      assert.deepEqual(await migrate(driver, 'waitless'), []);
    } finally {
      await driver.close();
    }
  });

  it('are safe when several processes start at once on PostgreSQL', async () => {
    const schema = freshSchema();
    const drivers = Array.from({ length: 6 }, () => createPgDriver({ connectionString: POSTGRES_URL, schema, maxConnections: 2 }));
    try {
      const results = await Promise.all(drivers.map((driver) => migrate(driver, schema)));
      const applied = results.flat();
      const all = (await loadMigrations()).map((m) => m.version);
      assert.deepEqual(applied.sort(), all, 'each migration applied by exactly one of them');
      const [row] = await drivers[0]!.query<{ n: number }>({ text: `SELECT count(*)::int AS n FROM ${schema}.migrations`, values: [] });
      assert.equal(row?.n, all.length);
    } finally {
      await Promise.all(drivers.map((d) => d.close()));
      await dropSchema(schema);
    }
  });
});

describe('migrations against a database that does not match the code', () => {
  const withSchema = async (fn: (driver: ReturnType<typeof createPgDriver>, schema: string) => Promise<void>) => {
    const schema = freshSchema();
    const driver = createPgDriver({ connectionString: POSTGRES_URL, schema, maxConnections: 3 });
    try {
      await fn(driver, schema);
    } finally {
      await driver.close();
      await dropSchema(schema);
    }
  };
  const latest = async () => (await loadMigrations()).at(-1)!.version;

  it('refuse a database newer than the code, naming both versions', async () => {
    await withSchema(async (driver, schema) => {
      await migrate(driver, schema);
      await driver.query({ text: `INSERT INTO ${schema}.migrations (version, name) VALUES (9998, '9998_from_the_future.sql')`, values: [] });
      const code = String(await latest()).padStart(4, '0');
      await assert.rejects(migrate(driver, schema), (error: Error) => {
        assert.ok(error instanceof MigrationError);
        assert.match(error.message, /at migration 9998/);
        assert.match(error.message, new RegExp(`knows migrations up to ${code}`));
        return true;
      });
      await assert.rejects(verifyMigrations(driver, schema), /newer than this Waitless/);
      assert.deepEqual((await migrationStatus(driver, schema)).unknown, [9998]);
    });
  });

  it('give up on a table lock after lock_timeout and say which session holds it', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'waitless-migrations-'));
    await withSchema(async (driver, schema) => {
      // Version 1 of some code, then version 2 whose migration alters the table version 1 made.
      const v1 = pathToFileURL(join(folder, 'v1/')), v2 = pathToFileURL(join(folder, 'v2/'));
      await mkdir(v1, { recursive: true });
      await mkdir(v2, { recursive: true });
      const first = `CREATE TABLE ${schema}.reports (id int)`;
      await writeFile(new URL('0001_reports.sql', v1), first);
      await writeFile(new URL('0001_reports.sql', v2), first);
      await writeFile(new URL('0002_title.sql', v2), `ALTER TABLE ${schema}.reports ADD COLUMN title text`);
      assert.deepEqual(await migrate(driver, schema, v1), [1]);
      const holder = new pg.Client({ connectionString: POSTGRES_URL, application_name: 'long-report' });
      await holder.connect();
      try {
        await holder.query('BEGIN');
        await holder.query(`SELECT count(*) FROM ${schema}.reports`);
        await assert.rejects(migrate(driver, schema, v2, { lockTimeoutMs: 200 }), (error: Error) => {
          assert.ok(error instanceof MigrationError, String(error));
          assert.match(error.message, /gave up waiting for a table lock/);
          assert.match(error.message, /long-report/);
          assert.match(error.message, /SELECT count/);
          return true;
        });
      } finally {
        await holder.query('ROLLBACK').catch(() => {});
        await holder.end();
      }
      assert.deepEqual(await migrate(driver, schema, v2), [2], 'applied once the lock is free');
    }).finally(() => rm(folder, { recursive: true, force: true }));
  });

  it('are verified when skipped: an engine with migrate: false refuses a schema behind the code', async () => {
    await withSchema(async (driver, schema) => {
      await assert.rejects(
        createWaitless({ jobs: [], database: POSTGRES_URL, schema, migrate: false, logger: silentLogger }),
        (error: Error) => error instanceof MigrationError && /Migrations are off/.test(error.message) && /run `waitless migrate`/i.test(error.message),
      );
      await migrate(driver, schema);
      const last = await latest();
      await driver.query({ text: `DELETE FROM ${schema}.migrations WHERE version = $1`, values: [last] });
      await assert.rejects(createWaitless({ jobs: [], database: POSTGRES_URL, schema, migrate: false, logger: silentLogger }), /missing: 0*\d+/);
      await driver.query({ text: `INSERT INTO ${schema}.migrations (version, name) VALUES ($1, 'restored')`, values: [last] });
      const waitless = await createWaitless({ jobs: [], database: POSTGRES_URL, schema, migrate: false, logger: silentLogger });
      await waitless.close();
    });
  });
});
