import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createPgDriver } from '../src/store/pg-driver.ts';
import { createPgliteDriver } from '../src/store/pglite-driver.ts';
import { loadMigrations, migrate } from '../src/store/migrate.ts';
import { dropSchema, freshSchema, POSTGRES_URL } from './helpers.ts';

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
