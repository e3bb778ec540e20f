import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createPgDriver } from '../src/store/pg-driver.ts';
import { createPgliteDriver } from '../src/store/pglite-driver.ts';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
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

  it('are append-only: a released migration file is never edited (new behaviour comes as a new file)', async () => {
    // A database that ran one of these has it recorded as done: an edit would never reach it.
    // Add the hash of a new file here when it is released; never change one.
    const released: Record<string, string> = {
      'store/migrations/0001_jobs.sql': '000ef7255f691fadedec1f3a4c26683b2608b3ab49a79d566510c396c08a6cba',
      'store/migrations/0002_webhooks.sql': '08f48f02c6b1d675c2ddd90674f54e565bfa7d856e1e9651329d5a2c2a2a7b6c',
      'store/migrations/0003_person.sql': '399014f65ecdf974770005b2b6df2bce26c7e95ef2f9a676eb6adb7415baaf9c',
      'store/migrations/0004_durable_execution.sql': '414a177218af700d832e49ca3a8fcaa1d8786c6a5f7e1ebec2c747f53157e898',
      'store/migrations/0005_throughput.sql': 'ba87e7a8935492bdedb0ea3fca6960ed8135b50f5a7d9b0bad558d2437c2d952',
      'reconciler/migrations/0001_tracked_jobs.sql': '0f4e0586fea971dac3e0b841b4020aadca4de4c5b348b7cb20240c8d49e8b500',
    };
    for (const [file, hash] of Object.entries(released)) {
      const text = await readFile(new URL(`../src/${file}`, import.meta.url));
      assert.equal(createHash('sha256').update(text).digest('hex'), hash, `${file} is unchanged`);
    }
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

  it('give up waiting for another migrator after migratorWaitMs and say which session it is', async () => {
    await withSchema(async (driver, schema) => {
      await migrate(driver, schema);
      const other = new pg.Client({ connectionString: POSTGRES_URL, application_name: 'other-migrator' });
      await other.connect();
      try {
        await other.query('BEGIN');
        await other.query(`SELECT pg_advisory_xact_lock(hashtext('waitless.migrate.' || $1))`, [schema]);
        await assert.rejects(migrate(driver, schema, undefined, { migratorWaitMs: 200 }), (error: Error) => {
          assert.ok(error instanceof MigrationError, String(error));
          assert.match(error.message, /gave up waiting for the migration lock/);
          assert.match(error.message, /other-migrator/);
          return true;
        });
      } finally {
        await other.query('ROLLBACK').catch(() => {});
        await other.end();
      }
      assert.deepEqual(await migrate(driver, schema), [], 'runs once the other is done');
    });
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
