import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import type { Job } from '../src/job/model.ts';
import { dropSchema, eventually, freshSchema, POSTGRES_URL } from './helpers.ts';

const CLI = new URL('../src/cli/main.ts', import.meta.url).pathname;
const execFileAsync = promisify(execFile);
/** Runs a CLI command to its end; one that outlives the bound is killed, never left behind. */
const run = (file: string, args: string[], options: { env: NodeJS.ProcessEnv }) => execFileAsync(file, args, { ...options, timeout: 60_000, killSignal: 'SIGKILL' });

/** Runs the CLI expecting it to fail; answers its exit code and standard error. */
async function runFailing(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stderr: string }> {
  try {
    await run(process.execPath, [CLI, ...args], { env });
  } catch (error) {
    const { code, stderr } = error as { code: number; stderr: string };
    return { code, stderr };
  }
  throw new Error(`waitless ${args.join(' ')} succeeded but should have failed`);
}

describe('waitless serve, keys and migrate on PostgreSQL', () => {
  const schema = freshSchema();
  const env = { ...process.env, DATABASE_URL: POSTGRES_URL, LOG_LEVEL: 'warn' };
  let server: ChildProcess | undefined;
  after(async () => {
    server?.kill('SIGKILL');
    await dropSchema(schema);
  });

  it('migrates, creates a key, and serves only requests that carry it', async () => {
    const migrated = await run(process.execPath, [CLI, 'migrate', '--schema', schema], { env });
    assert.match(migrated.stdout, /migrations applied/);

    // The highest cap there is: the submits below are not refused, and keys list shows it.
    const created = await run(process.execPath, [CLI, 'keys', 'create', '--tenant', 'acme', '--label', 'green', '--max-priority', '1000', '--schema', schema], { env });
    const token = /^(wl_\S+)$/m.exec(created.stdout)?.[1];
    assert.ok(token, `a key is printed: ${created.stdout}`);
    assert.match(created.stdout, /priority at most 1000/);
    const listed = await run(process.execPath, [CLI, 'keys', 'list', '--schema', schema], { env });
    assert.match(listed.stdout, /acme\s+green/);
    assert.match(listed.stdout, /max-priority 1000/);
    assert.ok(!listed.stdout.includes(token), 'the secret is never shown again');

    server = spawn(process.execPath, [CLI, 'serve', '--demo', '--port', '0', '--host', '127.0.0.1', '--schema', schema, '--webhook-allow', '127.0.0.1'], {
      env: { ...env, LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    server.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    server.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const url = await eventually(() => /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(output)?.[1], 'serve listens', 30_000);

    assert.equal((await fetch(`${url}/v1/jobs`)).status, 401);
    const submit = await fetch(`${url}/v1/jobs/analyze-document`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ input: { text: 'served by the standalone service', seconds: 0.5 } }),
    });
    assert.equal(submit.status, 202);
    const { id } = (await submit.json()) as Job;
    const done = await eventually(async () => {
      const job = (await (await fetch(`${url}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${token}` } })).json()) as Job;
      return job.done && job;
    }, 'job done');
    assert.equal(done.status, 'completed');

    // --webhook-allow lets a webhook reach a receiver on loopback; without it, it is refused.
    const received: string[] = [];
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        received.push(body);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    try {
      const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
      const withHook = await fetch(`${url}/v1/jobs/analyze-document`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ input: { text: 'tell me when done', seconds: 0.2 }, webhook: { url: hookUrl } }),
      });
      assert.equal(withHook.status, 202);
      await eventually(() => received.length === 1, 'webhook delivered to loopback');
      assert.equal((JSON.parse(received[0]!) as { type: string }).type, 'job.completed');
    } finally {
      receiver.close();
    }

    // An admin key (keys create --admin) may recover a job; a service key may not. Both open
    // the tenant's live stream the dashboard follows; the dashboard page itself needs no key.
    const admin = await run(process.execPath, [CLI, 'keys', 'create', '--tenant', 'acme', '--admin', '--schema', schema], { env });
    const adminKey = /^(wl_\S+)$/m.exec(admin.stdout)?.[1];
    assert.match(admin.stdout, /Admin key for tenant "acme"/);
    assert.match((await run(process.execPath, [CLI, 'keys', 'list', '--schema', schema], { env })).stdout, /acme\s+admin/);
    const cancelled = (await (await fetch(`${url}/v1/jobs/analyze-document`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ input: { text: 'cancel me, then recover me', seconds: 30 } }),
    })).json()) as Job;
    await fetch(`${url}/v1/jobs/${cancelled.id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    assert.equal((await fetch(`${url}/v1/jobs/${cancelled.id}/recover`, { method: 'POST', headers: { authorization: `Bearer ${token}` } })).status, 403);
    const recovered = await fetch(`${url}/v1/jobs/${cancelled.id}/recover`, { method: 'POST', headers: { authorization: `Bearer ${adminKey}` } });
    assert.equal(recovered.status, 200);
    assert.equal(((await recovered.json()) as Job).status, 'queued');
    await fetch(`${url}/v1/jobs/${cancelled.id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    assert.equal((await fetch(`${url}/dashboard/`)).status, 200);
    assert.equal((await fetch(`${url}/v1/events`)).status, 401);

    const keyId = /^wl_([0-9a-f]{16})_/.exec(token)![1]!;
    await run(process.execPath, [CLI, 'keys', 'revoke', keyId, '--schema', schema], { env });
    // The server caches a verified key for a few seconds; after that the revoked key is refused.
    await eventually(async () => (await fetch(`${url}/v1/jobs`, { headers: { authorization: `Bearer ${token}` } })).status === 401, 'revoked key refused', 20_000);

    server.kill('SIGTERM');
    const code = await new Promise((resolve) => server!.on('exit', resolve));
    assert.equal(code, 0);
  });

  it('runs a worker that answers health checks on --port and stops cleanly', async () => {
    const worker = spawn(process.execPath, [CLI, 'worker', '--demo', '--port', '0', '--host', '127.0.0.1', '--schema', schema], {
      env: { ...env, LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let output = '';
      worker.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const url = await eventually(() => /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(output)?.[1], 'worker listens', 30_000);
      const health = (await (await fetch(`${url}/healthz`)).json()) as { status: string; workerId: string; busy: number };
      assert.equal(health.status, 'ok');
      assert.equal(health.busy, 0);
      assert.deepEqual(await (await fetch(`${url}/livez`)).json(), { status: 'ok' });
      const ready = (await (await fetch(`${url}/readyz`)).json()) as { status: string; migrations: { database: number; code: number } };
      assert.equal(ready.status, 'ready');
      assert.equal(ready.migrations.database, ready.migrations.code);
      assert.equal((await fetch(`${url}/v1/jobs`)).status, 404, 'a worker serves no API');
      worker.kill('SIGTERM');
      assert.equal(await new Promise((resolve) => worker.on('exit', resolve)), 0);
    } finally {
      worker.kill('SIGKILL');
    }
  });

  it('refuses to start without a database or without jobs, saying why', async () => {
    const noDb = await runFailing(['serve', '--demo'], { ...process.env, DATABASE_URL: '' });
    assert.equal(noDb.code, 2);
    assert.match(noDb.stderr, /DATABASE_URL/);
    const noJobs = await runFailing(['worker', '--schema', schema], env);
    assert.equal(noJobs.code, 2);
    assert.match(noJobs.stderr, /no jobs/);
  });
});
