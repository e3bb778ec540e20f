import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { livenessSchema, readinessSchema } from '../src/contract/responses.ts';
import { createWaitless } from '../src/engine.ts';
import { loadMigrations } from '../src/store/migrate.ts';
import { dropSchema, freshSchema, openEngine, POSTGRES_URL, silentLogger, startServer } from './helpers.ts';
import { freePort, tcpProxy } from './tcp-proxy.ts';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

async function get(url: string): Promise<{ status: number; type: string | null; body: Record<string, unknown> }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(20_000) });
  return { status: response.status, type: response.headers.get('content-type'), body: (await response.json()) as Record<string, unknown> };
}

describe('GET /livez and /readyz', () => {
  it('ready on a database whose migrations are current; not ready (503) once the migrations table is behind', async () => {
    const engine = await openEngine('postgres', { jobs: [] });
    cleanups.push(() => engine.close());
    const server = await startServer(engine.waitless);
    cleanups.push(() => server.close());
    const code = (await loadMigrations()).at(-1)!.version;

    assert.deepEqual((await get(`${server.url}/livez`)).body, { status: 'ok' });
    const ready = await get(`${server.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(readinessSchema.strict().parse(ready.body), { status: 'ready', database: 'postgres', migrations: { database: code, code } });
    livenessSchema.strict().parse((await get(`${server.url}/livez`)).body);

    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    try {
      await client.query(`DELETE FROM ${engine.schema}.migrations WHERE version = $1`, [code]);
    } finally {
      await client.end();
    }
    const behind = await get(`${server.url}/readyz`);
    assert.equal(behind.status, 503);
    assert.match(behind.type ?? '', /application\/problem\+json/);
    assert.equal(behind.body.type, '/problems/not-ready');
    assert.match(String(behind.body.detail), /run waitless migrate/);
    assert.deepEqual(behind.body.migrations, { database: code - 1, code });
    assert.equal((await get(`${server.url}/livez`)).status, 200, 'still live: a restart would not help');
  });

  it('not ready (503) while the database is unreachable, ready again when it answers', async () => {
    const proxy = tcpProxy(await freePort());
    cleanups.push(() => proxy.close());
    await proxy.open();
    const schema = freshSchema();
    cleanups.push(() => dropSchema(schema));
    const waitless = await createWaitless({ jobs: [], database: `postgres://postgres@127.0.0.1:${proxy.port}/test`, schema, logger: silentLogger });
    cleanups.push(() => waitless.close());
    const server = await startServer(waitless);
    cleanups.push(() => server.close());
    assert.equal((await get(`${server.url}/readyz`)).status, 200);

    await proxy.close();
    const down = await get(`${server.url}/readyz`);
    assert.equal(down.status, 503);
    assert.match(String(down.body.detail), /database does not answer/);
    assert.equal((await get(`${server.url}/livez`)).status, 200);

    await proxy.open();
    assert.equal((await get(`${server.url}/readyz`)).status, 200);
  });

  it('answer on PGlite too, without an API key', async () => {
    const engine = await openEngine('pglite', { jobs: [] });
    cleanups.push(() => engine.close());
    const server = await startServer(engine.waitless, { auth: { mode: 'api-key', keys: engine.waitless.apiKeys } });
    cleanups.push(() => server.close());
    assert.equal((await get(`${server.url}/readyz`)).body.status, 'ready');
    assert.equal((await get(`${server.url}/livez`)).status, 200);
  });
});
