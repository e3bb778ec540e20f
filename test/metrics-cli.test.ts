import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, describe, it } from 'node:test';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { dropSchema, eventually, freshSchema, POSTGRES_URL } from './helpers.ts';

const CLI = new URL('../src/cli/main.ts', import.meta.url).pathname;

describe('/metrics of the CLI processes on PostgreSQL', () => {
  const schema = freshSchema();
  const children: ChildProcess[] = [];
  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await dropSchema(schema);
  });

  /** Starts a CLI command that listens; answers its URL. Killed in `after` whatever happens. */
  async function start(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ url: string; child: ChildProcess }> {
    const child = spawn(process.execPath, [CLI, ...args, '--port', '0', '--host', '127.0.0.1', '--schema', schema], {
      env: { ...process.env, DATABASE_URL: POSTGRES_URL, LOG_LEVEL: 'info', LOG_FORMAT: 'json', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const url = await eventually(() => /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(output)?.[1], `${args[0]} listens`, 30_000);
    return { url, child };
  }

  const stop = async (child: ChildProcess) => {
    child.kill('SIGTERM');
    assert.equal(await new Promise((resolve) => child.on('exit', resolve)), 0);
  };

  it("serves a worker's metrics on its --port, as Prometheus text", async () => {
    const { url, child } = await start(['worker', '--demo']);
    const response = await fetch(`${url}/metrics`);
    assert.equal(response.status, 200);
    const families = parsePrometheusTextFormat(await response.text());
    const names = families.map((f) => f.name);
    for (const name of ['waitless_jobs_running', 'waitless_jobs_queued', 'process_cpu_user_seconds_total']) assert.ok(names.includes(name), `${name} is served`);
    await stop(child);
  });

  it('serves no metrics on serve without WAITLESS_METRICS_TOKEN, and asks for the token with it', async () => {
    const closed = await start(['serve', '--demo', '--no-worker']);
    assert.equal((await fetch(`${closed.url}/metrics`)).status, 404);
    await stop(closed.child);

    const guarded = await start(['serve', '--demo', '--no-worker'], { WAITLESS_METRICS_TOKEN: 'scrape-me' });
    assert.equal((await fetch(`${guarded.url}/metrics`)).status, 401);
    const scraped = await fetch(`${guarded.url}/metrics`, { headers: { authorization: 'Bearer scrape-me' } });
    assert.equal(scraped.status, 200);
    assert.ok(parsePrometheusTextFormat(await scraped.text()).some((f) => f.name === 'waitless_sse_connections'));
    await stop(guarded.child);
  });
});
